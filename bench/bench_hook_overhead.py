"""Benchmark: cost of the Seesaw scheduler + engine hook per optimizer step (not a test).

    python bench/bench_hook_overhead.py                 # 2 CPU ranks, ZeRO 0..3
    python bench/bench_hook_overhead.py --stages 0 2 --nproc 2

Relaunches itself under torchrun. Per ZeRO stage it trains a ~1M-parameter MLP through a
plan whose batch changes 12 times (8 <-> 16 <-> 32), and prints:

* per optimizer step: wall time of the step (first forward to the closing ``engine.step``),
  time in the Seesaw scheduler (inside DeepSpeed's step) + hook (after it), and their ratio
  (target < 0.5%), over the whole run, per step, and for the steps that change the batch.
  On a 2-core machine running 2 ranks, single-step wall maxima of a few ms are the OS
  preempting the process (the hook has no I/O or collectives): the thread CPU time of the
  same code stays flat, so the overhead ratios use CPU time of the Seesaw code over wall
  time of the step;
* at every batch change: whether the engine, its optimizer and the basic optimizer are the
  same objects as at the start; the process RSS from step 10 to the end, next to a control
  run at a constant batch of 32 (the largest) over the same tokens.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--width", type=int, default=512, help="MLP width (params ~ 4 w^2)")
    parser.add_argument("--out", default=None, help="(internal) result file")
    parser.add_argument("--local_rank", type=int, default=int(os.environ.get("LOCAL_RANK", 0)))
    return parser.parse_args()


def config(stage: int, control: bool = False) -> dict:
    """12 batch changes (8 -> 16 -> 32 -> 16 -> 8 ...); ``control``: constant batch 32."""
    steps = []
    cycle = [16, 32, 16, 8]
    for i in range(12):
        steps.append([2048 * (i + 1), cycle[i % 4]])
    schedule = {"batch_schedule": "constant"} if control else {
        "batch_schedule": "step", "batch_steps": steps}
    return {
        "train_batch_size": 32 if control else 8,
        "train_micro_batch_size_per_gpu": 4,
        "gradient_clipping": 0.0,
        "steps_per_print": 10 ** 9,
        "optimizer": {"type": "AdamW", "params": {"lr": 1e-3, "torch_adam": True}},
        "zero_optimization": {"stage": stage},
        "seesaw": {
            "total_tokens": 2048 * 13, "seq_length": 16, **schedule,
            "lr_schedule": {"type": "cosine", "warmup_fraction": 0.1},
        },
    }


def rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def worker(args) -> None:
    import torch
    from torch import nn

    import seesaw_ds

    class Data(torch.utils.data.Dataset):
        def __init__(self, width, n=1024):
            gen = torch.Generator().manual_seed(0)
            self.x = torch.randn(n, width, generator=gen)
            self.y = torch.randn(n, width, generator=gen)

        def __len__(self):
            return len(self.x)

        def __getitem__(self, i):
            return self.x[i], self.y[i]

    class MLP(nn.Module):
        def __init__(self, width):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(width, 2 * width), nn.GELU(),
                                     nn.Linear(2 * width, width))

        def forward(self, x, y):
            return ((self.net(x) - y) ** 2).mean()

    def run(stage: int, control: bool) -> dict:
        torch.manual_seed(0)
        model = MLP(args.width)
        params = sum(p.numel() for p in model.parameters())
        engine, optimizer, loader, scheduler = seesaw_ds.initialize(
            args=argparse.Namespace(local_rank=args.local_rank), model=model,
            model_parameters=model.parameters(), training_data=Data(args.width),
            config=config(stage, control))
        hook = engine.seesaw
        sched_time, sched_cpu = [0.0], [0.0]
        inner_step = scheduler.step

        def timed_step(*a, **k):
            t, c = time.perf_counter(), time.thread_time()
            inner_step(*a, **k)
            sched_time[0] += time.perf_counter() - t
            sched_cpu[0] += time.thread_time() - c

        scheduler.step = timed_step
        ids0 = (id(engine), id(engine.optimizer), id(engine.basic_optimizer))
        rows, boundaries, rss = [], [], []
        window_start = None
        for x, y in loader:
            if hook.at_boundary:
                window_start = time.perf_counter()
                hook_before, sched_before = hook.hook_seconds, sched_time[0]
                cpu_before = hook.hook_cpu_seconds + sched_cpu[0]
                batch_before = hook.setting.global_batch
            loss = engine(x.to(engine.device), y.to(engine.device))
            engine.backward(loss)
            engine.step()
            if not hook.at_boundary:
                continue
            wall = time.perf_counter() - window_start
            cost = hook.hook_seconds - hook_before + sched_time[0] - sched_before
            changed = hook.setting.global_batch != batch_before
            cpu = hook.hook_cpu_seconds + sched_cpu[0] - cpu_before
            rows.append({"wall": wall, "cost": cost, "cpu": cpu, "changed": changed})
            rss.append(rss_mb())
            if changed:
                ids = (id(engine), id(engine.optimizer), id(engine.basic_optimizer))
                boundaries.append({"step": hook.step, "from": batch_before,
                                   "to": hook.setting.global_batch,
                                   "same_engine": ids[0] == ids0[0],
                                   "same_optimizer": ids[1:] == ids0[1:], "rss_mb": rss[-1]})
        engine.destroy()
        return {"rows": rows, "boundaries": boundaries, "params": params, "rss": rss}

    results = {}
    for stage in args.stages:
        results[stage] = run(stage, control=False)
        results[stage]["control_rss"] = run(stage, control=True)["rss"]
    if int(os.environ.get("RANK", "0")) == 0:
        Path(args.out).write_text(json.dumps(results))
    import torch.distributed as dist

    dist.destroy_process_group()


def report(results: dict, nproc: int) -> None:
    print(f"\nSeesaw hook + scheduler cost per optimizer step ({nproc} CPU ranks, gloo)")
    print("overhead % = CPU time of the scheduler + hook / wall time of the step\n")
    print("| ZeRO | params | steps | step ms (median) | hook+sched us wall (median / max) "
          "| CPU us (median / max) | overhead % (whole run) "
          "| overhead % per step (median / p99 / max) | at batch changes % (max) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for stage, res in sorted(results.items(), key=lambda kv: int(kv[0])):
        rows = res["rows"][1:]  # the first step includes warm-up
        ratios = sorted(r["cpu"] / r["wall"] for r in rows)
        costs = [r["cost"] * 1e6 for r in rows]
        cpus = [r["cpu"] * 1e6 for r in rows]
        changed = [r["cpu"] / r["wall"] for r in rows if r["changed"]]
        p99 = ratios[min(len(ratios) - 1, int(0.99 * len(ratios)))]
        print(f"| {stage} | {res['params'] / 1e6:.2f}M | {len(rows)} | "
              f"{statistics.median(r['wall'] for r in rows) * 1e3:.1f} | "
              f"{statistics.median(costs):.0f} / {max(costs):.0f} | "
              f"{statistics.median(cpus):.0f} / {max(cpus):.0f} | "
              f"{100 * sum(r['cpu'] for r in rows) / sum(r['wall'] for r in rows):.3f} | "
              f"{statistics.median(ratios) * 100:.3f} / {p99 * 100:.3f} / "
              f"{max(ratios) * 100:.3f} | "
              f"{max(changed) * 100:.3f} |")
    print("\nBatch changes: same objects and RSS (control: constant batch 32, same tokens)\n")
    print("| ZeRO | changes | batches | same engine | same optimizer "
          "| RSS MB step 10 -> end (max) | control RSS MB step 10 -> end (max) |")
    print("|---|---|---|---|---|---|---|")
    for stage, res in sorted(results.items(), key=lambda kv: int(kv[0])):
        b = res["boundaries"]
        path = " ".join(str(x["to"]) for x in b)
        rss, ctl = res["rss"], res["control_rss"]
        print(f"| {stage} | {len(b)} | {b[0]['from']} -> {path} | "
              f"{all(x['same_engine'] for x in b)} | {all(x['same_optimizer'] for x in b)} | "
              f"{rss[9]:.1f} -> {rss[-1]:.1f} ({max(rss[9:]):.1f}) | "
              f"{ctl[9]:.1f} -> {ctl[-1]:.1f} ({max(ctl[9:]):.1f}) |")


def main() -> None:
    args = parse_args()
    if "RANK" in os.environ:
        worker(args)
        return
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bench.json"
        env = dict(os.environ, DS_ACCELERATOR="cpu", OMP_NUM_THREADS="1")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node",
               str(args.nproc), "--master_port", str(29600 + os.getpid() % 300), __file__,
               "--out", str(out), "--width", str(args.width), "--stages",
               *map(str, args.stages)]
        started = time.time()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
            sys.exit(proc.returncode)
        results = json.loads(out.read_text())
        report(results, args.nproc)
        print(f"\n(total {time.time() - started:.0f}s)")


if __name__ == "__main__":
    main()
