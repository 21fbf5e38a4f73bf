"""One-GPU check of seesaw-ds (driven by ``bench/gpu_check.sh``); one JSON summary.

On one NVIDIA GPU: the 150M shape (seq 1024), bf16, ZeRO-1, DeepSpeed's FusedAdam:

1. forward+backward tokens/s per micro-batch size and MFU (``seesaw_ds.calibrate``),
2. cosine and Seesaw (growth 1.1, the paper's settings on a shortened budget) through
   ``seesaw_ds.initialize``, checking that every step's global batch and LR equal the plan,
   with their tokens/s,
3. A/B overhead: plain ``deepspeed.initialize`` at a constant batch vs
   ``seesaw_ds.initialize`` with a constant-batch plan, interleaved repetitions, median
   step-time ratio.

Without a GPU it says so and runs the same path on the CPU with the tiny shape and a few
steps (fp32 and torch AdamW instead of bf16 and FusedAdam): a check of the script, not a
measurement. The
data is random tokens (no corpus on the GPU machine): losses are not meaningful here.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import time

# bf16 dense peak FLOP/s by device-name fragment (GPU_PEAK_FLOPS overrides)
_PEAKS = (("H200", 989e12), ("H100", 989e12), ("A100", 312e12), ("L40S", 362e12),
          ("A10", 125e12), ("L4", 121e12))


def _settings(gpu: bool, quick: bool) -> dict:
    if gpu:
        return {"shape": "150m", "seq": 1024, "vocab": 32128, "micros": [1, 2, 4, 8, 16],
                "b0": 32, "micro": 8, "steps": 300 if not quick else 40, "ab_steps": 30,
                "ab_reps": 3, "repeats": 5}
    return {"shape": "tiny", "seq": 128, "vocab": 2048, "micros": [1, 2, 4], "b0": 8,
            "micro": 4, "steps": 24, "ab_steps": 6, "ab_reps": 2, "repeats": 2}


def _peak_flops(name: str):
    if os.environ.get("GPU_PEAK_FLOPS"):
        return float(os.environ["GPU_PEAK_FLOPS"])
    for fragment, peak in _PEAKS:
        if fragment in name:
            return peak
    return None


def _flops_per_token(model, shape: str, seq: int) -> float:
    from seesaw_ds.model.shapes import model_config

    config = model_config(shape)
    params = sum(p.numel() for p in model.parameters())
    return 6.0 * params + 12.0 * config.n_layers * config.d_model * seq


def _ds_config(s: dict, gpu: bool, seesaw: dict = None, batch: int = None) -> dict:
    params = {"lr": 3e-3, "betas": [0.9, 0.95], "eps": 1e-8, "weight_decay": 0.0}
    if not gpu:
        params["torch_adam"] = True
    config = {
        "train_batch_size": batch or s["b0"], "train_micro_batch_size_per_gpu": s["micro"],
        "gradient_clipping": 1.0, "steps_per_print": 10 ** 9, "bf16": {"enabled": gpu},
        "zero_optimization": {"stage": 1}, "optimizer": {"type": "AdamW", "params": params},
    }
    if seesaw is not None:
        config["seesaw"] = seesaw
    return config


def _section(s: dict, schedule: str) -> dict:
    section = {"total_tokens": s["steps"] * s["b0"] * s["seq"], "seq_length": s["seq"],
               "batch_schedule": "constant" if schedule == "cosine" else "seesaw",
               "batch_multiple": s["micro"], "data_seed": 1,
               "lr_schedule": {"type": "cosine", "warmup_fraction": 0.1,
                               "warmup_start_factor": 0.1, "final_factor": 0.1}}
    if schedule == "seesaw":
        section["batch_growth"] = 1.1
    return section


class _Tokens:
    def __init__(self, size: int, seq: int, vocab: int) -> None:
        import torch

        self.data = torch.randint(0, vocab, (size, seq), generator=torch.Generator().manual_seed(0))

    def __len__(self):
        return len(self.data)

    def __getitem__(self, index):
        return {"tokens": self.data[index], "labels": self.data[index]}


def _model(s: dict):
    from seesaw_ds.model.shapes import build_model

    return build_model(s["shape"], vocab_size=s["vocab"], seq_length=s["seq"])


def _sync(gpu: bool) -> None:
    if gpu:
        import torch

        torch.cuda.synchronize()


def train_and_check(s: dict, gpu: bool, schedule: str) -> dict:
    """Train one schedule; compare every step's batch and LR with the plan."""
    import seesaw_ds
    from seesaw_ds.config import plan_from_ds_config

    config = _ds_config(s, gpu, _section(s, schedule))
    plan = plan_from_ds_config(config, 1)
    planned = list(plan.iter_steps())
    model = _model(s)
    engine, _, loader, _ = seesaw_ds.initialize(
        model=model, model_parameters=model.parameters(),
        training_data=_Tokens(len(planned) * 64 + 1024, s["seq"], s["vocab"]), config=config)
    hook = engine.seesaw
    mismatches, times = [], []
    started = None
    for batch in loader:
        if started is None:
            _sync(gpu)
            started = time.perf_counter()
            setting = hook.setting
            lr, global_batch = engine.get_lr()[0], setting.global_batch
        out = engine(batch["tokens"].to(engine.device), batch["labels"].to(engine.device))
        engine.backward(out.loss)
        engine.step()
        if not hook.at_boundary:
            continue
        _sync(gpu)
        step = hook.step - 1
        expected = planned[step][2]
        if global_batch != expected.global_batch or abs(lr - expected.lr) > 1e-12 * expected.lr:
            mismatches.append({"step": step, "batch": global_batch, "planned_batch":
                               expected.global_batch, "lr": lr, "planned_lr": expected.lr})
        times.append(time.perf_counter() - started)
        started = None
    engine.destroy()
    steady = times[len(times) // 10:] or times  # skip warm-up (kernel autotuning, JIT)
    steady_tokens = sum(planned[i][2].global_batch for i in range(len(times) - len(steady),
                                                                  len(times))) * s["seq"]
    return {"steps": len(times), "planned_steps": plan.optimizer_steps,
            "every_step_batch_and_lr_equal_plan": not mismatches and len(times) == len(planned),
            "mismatches": mismatches[:10], "seconds": sum(times),
            "tokens_per_second": steady_tokens / sum(steady),
            "final_batch": planned[-1][2].global_batch}


def _timed_steps(engine, loader, steps: int, gpu: bool):
    times, iterator = [], iter(loader)
    for _ in range(steps):
        _sync(gpu)
        started, cpu_started = time.perf_counter(), time.thread_time()
        while True:
            batch = next(iterator)
            out = engine(batch["tokens"].to(engine.device), batch["labels"].to(engine.device))
            engine.backward(out.loss)
            closing = engine.is_gradient_accumulation_boundary()
            engine.step()
            if closing:
                break
        _sync(gpu)
        times.append((time.perf_counter() - started, time.thread_time() - cpu_started))
    return times[2:]


def ab_overhead(s: dict, gpu: bool) -> dict:
    """Median step time of seesaw_ds.initialize (constant plan) over plain deepspeed.initialize,
    interleaved repetitions; wall time on a GPU, main-thread CPU time on the CPU fallback."""
    import deepspeed

    import seesaw_ds

    clock = 0 if gpu else 1
    ratios, medians = [], {"plain": [], "seesaw": []}
    data = _Tokens(4096, s["seq"], s["vocab"])
    for rep in range(s["ab_reps"]):
        result = {}
        for name in (("plain", "seesaw") if rep % 2 == 0 else ("seesaw", "plain")):
            model = _model(s)
            if name == "plain":
                engine, _, loader, _ = deepspeed.initialize(
                    model=model, model_parameters=model.parameters(), training_data=data,
                    config=_ds_config(s, gpu))
            else:
                section = _section(s, "cosine")
                section["total_tokens"] = (s["ab_steps"] + 10) * s["b0"] * s["seq"]
                section["lr_schedule"] = {"type": "constant"}
                engine, _, loader, _ = seesaw_ds.initialize(
                    model=model, model_parameters=model.parameters(), training_data=data,
                    config=_ds_config(s, gpu, section))
            times = _timed_steps(engine, loader, s["ab_steps"], gpu)
            result[name] = statistics.median(t[clock] for t in times)
            engine.destroy()
            medians[name].append(result[name])
        ratios.append(result["seesaw"] / result["plain"])
    return {"ratio": statistics.median(ratios), "ratios": ratios,
            "clock": "wall" if gpu else "main-thread CPU (CPU fallback)",
            "plain_step_seconds": statistics.median(medians["plain"]),
            "seesaw_step_seconds": statistics.median(medians["seesaw"]), "target": 1.005}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="gpu_check.json")
    parser.add_argument("--quick", action="store_true", help="fewer training steps")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    import torch

    gpu = torch.cuda.is_available()
    if gpu:
        device = torch.cuda.get_device_name(0)
        print(f"gpu_check: {device}", flush=True)
    else:
        device = "cpu"
        print("gpu_check: no NVIDIA GPU found (torch.cuda.is_available() is False): running "
              "the CPU fallback (tiny shape, a few steps); its numbers are not GPU numbers.",
              flush=True)
    if "RANK" not in os.environ:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1",
                          MASTER_PORT=str(port))
    import deepspeed

    deepspeed.init_distributed()
    s = _settings(gpu, args.quick)
    from seesaw_ds.calibrate import measure_compute

    print("gpu_check: forward+backward per micro-batch size ...", flush=True)
    seconds, optimizer_seconds, _, _ = measure_compute(s["shape"], s["vocab"], s["seq"],
                                                       s["micros"], s["repeats"], gpu)
    flops = _flops_per_token(_model(s), s["shape"], s["seq"])
    peak = _peak_flops(device) if gpu else None
    throughput = {}
    for micro, value in seconds.items():
        tokens_per_second = micro * s["seq"] / value
        throughput[str(micro)] = {
            "seconds": value, "tokens_per_second": tokens_per_second,
            "mfu": tokens_per_second * flops / peak if peak else None}
        mfu = f", MFU {100 * throughput[str(micro)]['mfu']:.1f}%" if peak else ""
        print(f"  micro {micro:2d}: {tokens_per_second:,.0f} tokens/s{mfu}", flush=True)
    runs = {}
    for schedule in ("cosine", "seesaw"):
        print(f"gpu_check: training {schedule} ...", flush=True)
        runs[schedule] = train_and_check(s, gpu, schedule)
        run = runs[schedule]
        print(f"  {run['steps']} steps, {run['tokens_per_second']:,.0f} tokens/s, every step "
              f"equals the plan: {run['every_step_batch_and_lr_equal_plan']}", flush=True)
    print("gpu_check: A/B overhead ...", flush=True)
    ab = ab_overhead(s, gpu)
    print(f"  seesaw / plain step time: {ab['ratio']:.4f} (target < 1.005)", flush=True)
    ok = all(run["every_step_batch_and_lr_equal_plan"] for run in runs.values())
    summary = {
        "gpu_found": gpu, "device": device, "shape": s["shape"], "seq_length": s["seq"],
        "dtype": "bf16" if gpu else "fp32 (CPU fallback)", "zero_stage": 1,
        "optimizer": "FusedAdam" if gpu else "torch AdamW (CPU fallback)",
        "peak_flops": peak, "flops_per_token": flops,
        "micro_batch_throughput": throughput, "optimizer_seconds": optimizer_seconds,
        "runs": runs, "step_ratio_seesaw_vs_cosine": runs["seesaw"]["steps"] / runs["cosine"]["steps"],
        "ab_overhead": ab, "plan_followed": ok, "wall_seconds": time.perf_counter() - started,
        "torch": torch.__version__, "deepspeed": deepspeed.__version__,
    }
    from seesaw_ds.atomic_files import write_json_atomic

    write_json_atomic(args.out, summary)
    print(f"gpu_check: {'OK' if ok else 'PLAN MISMATCH'}; summary in {args.out} "
          f"({summary['wall_seconds']:.0f} s)", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
