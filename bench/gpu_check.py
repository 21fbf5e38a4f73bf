"""One-GPU check of seesaw-ds (driven by ``bench/gpu_check.sh``); one JSON summary + logs.

On one NVIDIA GPU (about 6 minutes on an H100, FusedAdam's JIT build included):

1. the product (``bench/gpu_check_runs.py``): the paper launch path ``launch/single_node.sh``
   (``deepspeed --module seesaw_ds.train``) on ``ds_configs/150m_b128_seesaw.json`` cut short:
   the 150M shape, seq 1024, bf16, ZeRO-1, FusedAdam, >= 3 batch changes; every step's batch
   and LR (and the optimizer's own LR) equal the plan; the same run SIGKILLed after a
   checkpoint and resumed with ``--resume`` continues identically; a run with the
   critical-batch guard on;
2. Megatron-LM's ``pretrain_gpt.py --seesaw-config`` from the patched source, a small GPT with
   ``--mock-data --transformer-impl local``: a batch change, a save and a resume
   (``bench/gpu_check_megatron.py``), beside the launch runs (so their tokens/s are not a
   measurement: the calibration below is);
3. calibration: forward+backward tokens/s and MFU per micro-batch size
   (``seesaw_ds.calibrate.measure_compute``), peak memory per micro-batch size, optimizer
   step time, all-reduce time of a gradient-sized buffer (one GPU: NCCL with no peer, so
   launch cost and a local copy, not link bandwidth);
4. A/B overhead: plain ``deepspeed.initialize`` at a constant batch vs ``seesaw_ds.initialize``
   with a constant-batch plan (interleaved, median step-time ratio); and the training loop's
   loss sync: ``float(loss)`` every micro-step and an all-reduce every step (before) vs the
   loss summed on the device and one all-reduce + host copy per step (``seesaw_ds.train``
   now).

Without a GPU it says so and runs the same code path on the CPU (micro shape, gloo, fp32,
torch AdamW; Megatron-LM skipped: it needs CUDA): a check of the script, not a measurement.
The data is the standard library's sources (nothing can be fetched on the GPU machine), so
losses are not comparable with the paper's.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# bf16 dense peak FLOP/s by device-name fragment (GPU_PEAK_FLOPS overrides)
_PEAKS = (("H200", 989e12), ("H100", 989e12), ("A100", 312e12), ("L40S", 362e12),
          ("A10", 125e12), ("L4", 121e12))


def _settings(gpu: bool) -> dict:
    if gpu:
        return {
            # calibration and A/B (in this process)
            "shape": "150m", "seq": 1024, "vocab": 32128, "micros": [1, 2, 4, 8, 16],
            "repeats": 5, "ab_steps": 8, "ab_reps": 3,
            # the launch-path runs: 78 steps, batch 16 -> 120 (10 changes), 2.0M tokens
            "b0": 16, "micro": 8, "total_tokens": 2.0e6, "data_vocab": 4096,
            "data_bytes": 4_000_000, "split": "90,10,0", "eval_interval": 1.0e6,
            "eval_batches": 4, "eval_batch_size": 8, "checkpoint_interval": 1.0e6,
            "loss_tolerance": 5e-2, "launch_timeout": 300,
            # Megatron-LM: 63 iterations, batch 16 -> 88 sequences of 256
            "megatron": {"layers": 4, "hidden": 256, "heads": 4, "seq": 256, "vocab": 4096,
                         "b0": 16, "micro": 4, "total_tokens": 4.0e5,
                         "megatron_timeout": 240},
        }
    return {
        "shape": "micro", "seq": 64, "vocab": 512, "micros": [1, 2], "repeats": 2,
        "ab_steps": 3, "ab_reps": 2,
        # 26 steps, batch 8 -> 36 (8 changes), 2.0e4 tokens
        "b0": 8, "micro": 2, "total_tokens": 2.0e4, "data_vocab": 512,
        "data_bytes": 400_000, "split": "80,20,0", "eval_interval": 1.0e4,
        "eval_batches": 2, "eval_batch_size": 4, "checkpoint_interval": 1.0e4,
        "loss_tolerance": 0.0, "launch_timeout": 600,
        "megatron": None,
    }


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


def _constant_section(s: dict, steps: int) -> dict:
    return {"total_tokens": steps * s["b0"] * s["seq"], "seq_length": s["seq"],
            "batch_schedule": "constant", "batch_multiple": s["micro"], "data_seed": 1,
            "lr_schedule": {"type": "constant"}}


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


def _timed_steps(engine, iterator, steps: int, gpu: bool, loss_sync: str = "none"):
    """(wall, main-thread CPU) seconds of each of ``steps`` optimizer steps. ``loss_sync``:
    "none"; "micro" (``float(loss)`` every micro-step, an all-reduce every step: the loop
    before); "step" (summed on the device, one all-reduce + host copy per step: now)."""
    from seesaw_ds.distributed import all_mean

    times = []
    for _ in range(steps):
        _sync(gpu)
        started, cpu_started = time.perf_counter(), time.thread_time()
        losses, total, count = [], 0.0, 0
        while True:
            batch = next(iterator)
            out = engine(batch["tokens"].to(engine.device), batch["labels"].to(engine.device))
            engine.backward(out.loss)
            if loss_sync == "micro":
                losses.append(float(out.ce))
            elif loss_sync == "step":
                total, count = total + out.ce.detach().double(), count + 1
            closing = engine.is_gradient_accumulation_boundary()
            engine.step()
            if closing:
                break
        if loss_sync == "micro":
            all_mean([sum(losses) / len(losses)])
        elif loss_sync == "step":
            all_mean([total / count])
        _sync(gpu)
        times.append((time.perf_counter() - started, time.thread_time() - cpu_started))
    return times


def ab_overhead(s: dict, gpu: bool) -> dict:
    """Step time of ``seesaw_ds.initialize`` (constant plan) over plain
    ``deepspeed.initialize`` at the same batch, and of the per-step loss sync over the
    per-micro-step one: both engines live at once, blocks of steps in alternating order, the
    median of the per-round ratios of block medians. Wall time on a GPU, main-thread CPU time
    on the CPU fallback."""
    import deepspeed

    import seesaw_ds

    clock = 0 if gpu else 1
    rounds, block = s["ab_reps"], s["ab_steps"]
    data = _Tokens(4096, s["seq"], s["vocab"])
    model = _model(s)
    plain, _, plain_loader, _ = deepspeed.initialize(
        model=model, model_parameters=model.parameters(), training_data=data,
        config=_ds_config(s, gpu))
    model = _model(s)
    steps = (3 * rounds + 2) * (block + 2)
    seesaw, _, seesaw_loader, _ = seesaw_ds.initialize(
        model=model, model_parameters=model.parameters(), training_data=data,
        config=_ds_config(s, gpu, _constant_section(s, steps)))
    runners = {"plain": (plain, iter(plain_loader), "none"),
               "seesaw": (seesaw, iter(seesaw_loader), "none"),
               "sync_per_micro": (seesaw, None, "micro"), "sync_per_step": (seesaw, None, "step")}
    for engine, iterator, mode in list(runners.values()):  # warm-up (allocator, kernels)
        _timed_steps(engine, iterator or runners["seesaw"][1], 2, gpu, mode)
    medians = {name: [] for name in runners}
    for index in range(rounds):
        order = list(runners) if index % 2 == 0 else list(reversed(runners))
        for name in order:
            engine, iterator, mode = runners[name]
            times = _timed_steps(engine, iterator or runners["seesaw"][1], block, gpu, mode)
            medians[name].append(statistics.median(t[clock] for t in times))
    plain.destroy()
    seesaw.destroy()
    ratio = [b / a for a, b in zip(medians["plain"], medians["seesaw"])]
    sync = [b / a for a, b in zip(medians["sync_per_micro"], medians["sync_per_step"])]
    return {"ratio": statistics.median(ratio), "ratios": ratio, "target": 1.005,
            "clock": "wall" if gpu else "main-thread CPU (CPU fallback)",
            "plain_step_seconds": statistics.median(medians["plain"]),
            "seesaw_step_seconds": statistics.median(medians["seesaw"]),
            "loss_sync": {
                "per_micro_step_seconds": statistics.median(medians["sync_per_micro"]),
                "per_step_seconds": statistics.median(medians["sync_per_step"]),
                "ratio_per_step_over_per_micro": statistics.median(sync), "ratios": sync,
                "grad_accum": s["b0"] // s["micro"]},
            "rounds": rounds, "steps_per_block": block}


def calibration(s: dict, gpu: bool, device: str) -> dict:
    """Tokens/s, MFU and peak memory per micro-batch size; optimizer and all-reduce time."""
    import torch
    import torch.distributed as dist

    from seesaw_ds.calibrate import measure_compute
    from seesaw_ds.distributed import current_device

    peaks, current = {}, [None]

    def tick(label: str) -> None:  # measure_compute announces each micro-batch size
        if gpu and current[0] is not None:
            peaks[str(current[0])] = torch.cuda.max_memory_allocated()
        current[0] = int(label.split()[-1]) if label.startswith("fwd+bwd") else None
        if gpu:
            torch.cuda.reset_peak_memory_stats()

    seconds, optimizer_seconds, grad_bytes, _ = measure_compute(
        s["shape"], s["vocab"], s["seq"], s["micros"], s["repeats"], gpu, tick)
    with torch.device("meta"):  # parameters counted, not allocated
        flops = _flops_per_token(_model(s), s["shape"], s["seq"])
    peak = _peak_flops(device) if gpu else None
    throughput = {}
    for micro, value in seconds.items():
        tokens_per_second = micro * s["seq"] / value
        throughput[str(micro)] = {
            "seconds": value, "tokens_per_second": tokens_per_second,
            "mfu": tokens_per_second * flops / peak if peak else None,
            "peak_memory_bytes": peaks.get(str(micro))}
    gc_collect(gpu)
    buffer = torch.ones(grad_bytes // 2, dtype=torch.bfloat16 if gpu else torch.float32,
                        device=current_device())
    times = []
    for _ in range(s["repeats"] + 1):
        _sync(gpu)
        started = time.perf_counter()
        dist.all_reduce(buffer)
        _sync(gpu)
        times.append(time.perf_counter() - started)
    return {"micro_batch_throughput": throughput, "flops_per_token": flops, "peak_flops": peak,
            "optimizer_seconds": optimizer_seconds,
            "optimizer": "torch AdamW (fused on a GPU), the calibration's",
            "gradient_bytes": grad_bytes,
            "allreduce_seconds": statistics.median(times[1:]),
            "allreduce_note": f"{dist.get_backend()}, {dist.get_world_size()} rank(s): "
                              "no peer on one device, so launch cost and a local pass over "
                              "a gradient-sized bf16 buffer, not link bandwidth"}


def gc_collect(gpu: bool) -> None:
    import gc

    gc.collect()
    if gpu:
        import torch

        torch.cuda.empty_cache()


def _fused_adam(gpu: bool):
    """(usable, reason): FusedAdam JIT-builds with nvcc; without it the runs use torch AdamW."""
    if not gpu:
        return False, "CPU fallback: torch AdamW"
    if shutil.which("nvcc") or os.environ.get("CUDA_HOME"):
        return True, "DeepSpeed FusedAdam (JIT-built on first use)"
    return False, "no nvcc / CUDA_HOME on this machine: torch AdamW instead of FusedAdam"


def _part(summary: dict, name: str, call, log) -> None:
    """Run one part; its result (or its error) goes into ``summary[name]``."""
    started = time.perf_counter()
    log(f"gpu_check: {name} ...")
    try:
        summary[name] = call()
    except Exception as error:  # noqa: BLE001 - one part failing must not hide the others
        summary[name] = {"error": f"{type(error).__name__}: {error}",
                         "traceback": traceback.format_exc()[-4000:]}
        log(f"  {name} FAILED: {type(error).__name__}: {str(error)[:2000]}")
    if isinstance(summary[name], dict):
        summary[name]["part_seconds"] = time.perf_counter() - started


def _init_distributed() -> None:
    """A world of one in this process (for calibration and A/B), set up after the launch
    runs so their launcher does not inherit these variables."""
    import deepspeed

    if "RANK" not in os.environ:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1",
                          MASTER_PORT=str(port))
    deepspeed.init_distributed()
    from deepspeed.accelerator import get_accelerator

    get_accelerator().set_device(int(os.environ["LOCAL_RANK"]))


def _verdict(summary: dict) -> dict:
    product, megatron = summary.get("product") or {}, summary.get("megatron") or {}
    checks = {
        "launch_path_steps_equal_plan": bool(product.get("plain", {}).get(
            "every_step_equals_plan")),
        "optimizer_lr_equals_plan": bool(product.get("plain", {}).get(
            "optimizer_lr_equals_plan")),
        "at_least_3_batch_changes": product.get("plain", {}).get("batch_changes", 0) >= 3,
        "kill_and_resume_identical": bool(product.get("kill_resume", {}).get(
            "continuation_identical")),
        "guard_run_finished": bool(product.get("guard", {}).get("finished")),
        "megatron": "skipped" if "skipped" in megatron else bool(megatron.get("ok")),
        "calibration": "error" not in (summary.get("calibration") or {"error": 1}),
        "ab_overhead": "error" not in (summary.get("ab_overhead") or {"error": 1}),
    }
    checks["ok"] = all(value is True or value == "skipped" for value in checks.values())
    return checks


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="gpu_check.json")
    parser.add_argument("--work", default=None,
                        help="folder for data, runs and logs (default: a new temp folder)")
    parser.add_argument("--wheels", default=os.environ.get("SEESAW_WHEELS"),
                        help="the wheel folder (holds the patched Megatron-LM tarball)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
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
              "the CPU fallback (micro shape, gloo, a few steps); its numbers are not GPU "
              "numbers.", flush=True)
    work = Path(args.work or tempfile.mkdtemp(prefix="gpu_check_"))
    work.mkdir(parents=True, exist_ok=True)
    s = _settings(gpu)
    s["fused_adam"], optimizer = _fused_adam(gpu)
    log = lambda message: print(message, flush=True)  # noqa: E731
    summary = {"gpu_found": gpu, "device": device, "shape": s["shape"], "seq_length": s["seq"],
               "dtype": "bf16" if gpu else "fp32 (CPU fallback)", "zero_stage": 1,
               "optimizer": optimizer, "torch": torch.__version__, "work": str(work)}

    from gpu_check_megatron import megatron_run
    from gpu_check_runs import product_runs

    megatron = None
    if s["megatron"] is None:
        summary["megatron"] = {"skipped": "CPU fallback: Megatron-LM's pretrain_gpt.py needs "
                                          "CUDA (initialize_megatron: 'Megatron requires "
                                          "CUDA')"}
    else:  # beside the launch runs (their first minutes build FusedAdam on the CPU)
        megatron = threading.Thread(target=_part, args=(
            summary, "megatron",
            lambda: megatron_run(s["megatron"], gpu, work, args.wheels, log), log))
        megatron.start()
    logs = Path(args.out).with_suffix(".logs")

    def save() -> None:  # after every part: a run cut short still leaves what it found
        from seesaw_ds.atomic_files import write_json_atomic

        summary["checks"] = _verdict(summary)
        summary["wall_seconds"] = time.perf_counter() - started
        write_json_atomic(args.out, summary)
        if (work / "logs").is_dir():
            shutil.copytree(work / "logs", logs, dirs_exist_ok=True)

    _part(summary, "product", lambda: product_runs(s, gpu, work, log), log)
    save()
    if megatron is not None:
        megatron.join()
        save()
    _init_distributed()
    import deepspeed

    summary["deepspeed"] = deepspeed.__version__
    _part(summary, "calibration", lambda: calibration(s, gpu, device), log)
    save()
    _part(summary, "ab_overhead", lambda: ab_overhead(s, gpu), log)
    save()
    _report(summary, log)
    log(f"gpu_check: {'OK' if summary['checks']['ok'] else 'FAILED'}; summary in {args.out}, "
        f"logs in {logs} ({summary['wall_seconds']:.0f} s)")
    if not args.keep and args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if summary["checks"]["ok"] else 1


def _report(summary: dict, log) -> None:
    calibration_ = summary.get("calibration") or {}
    for micro, row in (calibration_.get("micro_batch_throughput") or {}).items():
        mfu = f", MFU {100 * row['mfu']:.1f}%" if row.get("mfu") else ""
        memory = row.get("peak_memory_bytes")
        memory = f", peak {memory / 2 ** 30:.1f} GiB" if memory else ""
        log(f"  micro {int(micro):2d}: {row['tokens_per_second']:,.0f} tokens/s{mfu}{memory}")
    ab = summary.get("ab_overhead") or {}
    if "ratio" in ab:
        log(f"  seesaw / plain step time {ab['ratio']:.4f} (target < 1.005); loss sync per "
            f"step / per micro-step {ab['loss_sync']['ratio_per_step_over_per_micro']:.4f}")
    log("  checks: " + json.dumps(summary["checks"]))


if __name__ == "__main__":
    sys.exit(main())
