"""Measured step-time pieces, projected to a cluster: the honest wall-clock figure.

Measures on this machine, one thread per rank:
  1. forward+backward seconds of one micro-batch of the GPT at several micro-batch sizes,
  2. one AdamW step,
  3. gloo all-reduce times between 2 ranks at several message sizes (alpha-beta fit),
then projects cosine vs Seesaw plans onto clusters of 1..N workers
(``seesaw_ds.report.projection``). Prints one table; --json writes the raw numbers.

    python bench/wallclock.py                      # tiny model, tiny + 150M plans
    python bench/wallclock.py --shape tiny --micro 1 2 4 8 16 --ranks 8 64 512

A CPU does not show Seesaw's gain by itself (time follows tokens on 2 cores); the projection
does, under its stated model: each worker computes like this machine's core, the
interconnect like this machine's gloo loopback.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from seesaw_ds.config import load_config_file, plan_from_ds_config
from seesaw_ds.model.shapes import build_model
from seesaw_ds.report.projection import StepTimeModel, project_plan

_HERE = os.path.dirname(os.path.abspath(__file__))
_CONFIGS = os.path.join(os.path.dirname(_HERE), "ds_configs")


def _time(fn, repeats: int) -> float:
    fn()  # warm-up
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def measure_compute(shape: str, seq: int, vocab: int, micros, repeats: int):
    torch.set_num_threads(1)
    model = build_model(shape, vocab_size=vocab, seq_length=seq)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95))
    micro_seconds = {}
    for micro in micros:
        tokens = torch.randint(0, vocab, (micro, seq))

        def step():
            model(tokens, tokens).loss.backward()

        micro_seconds[micro] = _time(step, repeats)
    optimizer_seconds = _time(optimizer.step, repeats)
    gradient_bytes = sum(p.numel() * 4 for p in model.parameters())
    return micro_seconds, optimizer_seconds, gradient_bytes


def _allreduce_worker(rank, port, sizes, repeats, queue):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    results = {}
    for size in sizes:
        tensor = torch.ones(size // 4)
        results[size] = _time(lambda: dist.all_reduce(tensor), repeats)
    if rank == 0:
        queue.put(results)
    dist.barrier()
    dist.destroy_process_group()


def measure_allreduce(sizes, repeats: int):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    context = mp.get_context("spawn")
    queue = context.Queue()
    processes = [context.Process(target=_allreduce_worker, args=(r, port, sizes, repeats, queue))
                 for r in range(2)]
    for process in processes:
        process.start()
    results = queue.get(timeout=300)
    for process in processes:
        process.join()
    # 2 ranks: one hop each way -> t = 2 * (alpha + bytes / 2 * beta); least squares in bytes.
    xs = list(results)
    ys = [results[x] for x in xs]
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / sum(
        (x - mean_x) ** 2 for x in xs)
    intercept = mean_y - slope * mean_x
    return results, max(intercept / 2, 0.0), max(slope, 1e-15)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="tiny")
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--vocab", type=int, default=2048)
    parser.add_argument("--micro", type=int, nargs="+", default=[8])
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 8, 64, 512])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--pairs", nargs="+", default=["tiny", "150m_b128", "600m_b256"],
                        help="config pairs ds_configs/<name>_{cosine,seesaw}.json")
    parser.add_argument("--json", help="write the measured pieces and projections here")
    args = parser.parse_args(argv)

    print(f"measuring {args.shape} GPT, seq {args.seq}, one thread per rank ...", flush=True)
    micro_seconds, optimizer_seconds, gradient_bytes = measure_compute(
        args.shape, args.seq, args.vocab, args.micro, args.repeats)
    sizes = [2**k for k in (12, 16, 20, 22)] + [gradient_bytes]
    allreduce, alpha, beta = measure_allreduce(sorted(set(sizes)), args.repeats)
    model = StepTimeModel(micro_seconds, optimizer_seconds, alpha, beta, gradient_bytes)

    print("\nmeasured pieces (median of repeats)")
    for micro, seconds in micro_seconds.items():
        print(f"  fwd+bwd micro-batch {micro:3d}: {1000 * seconds:8.2f} ms "
              f"({micro * args.seq / seconds:,.0f} tokens/s)")
    print(f"  AdamW step: {1000 * optimizer_seconds:.2f} ms; gradients {gradient_bytes / 1e6:.2f} MB")
    print(f"  gloo all-reduce, 2 ranks: alpha {1e6 * alpha:.1f} us, "
          f"{1 / beta / 1e9:.2f} GB/s")

    micro = max(args.micro)
    rows = []
    for pair in args.pairs:
        plans = {}
        for schedule in ("cosine", "seesaw"):
            path = os.path.join(_CONFIGS, f"{pair}_{schedule}.json")
            config = load_config_file(path)
            plans[schedule] = plan_from_ds_config(config, 1)
        for ranks in args.ranks:
            cosine = project_plan(plans["cosine"], model, micro, ranks)
            seesaw = project_plan(plans["seesaw"], model, micro, ranks)
            rows.append({
                "plan": pair, "max_ranks": ranks, "micro": micro,
                "cosine_steps": cosine.steps, "seesaw_steps": seesaw.steps,
                "steps_ratio": seesaw.steps / cosine.steps,
                "cosine_hours": cosine.seconds / 3600, "seesaw_hours": seesaw.seconds / 3600,
                "wall_ratio": seesaw.seconds / cosine.seconds,
            })

    print(f"\nprojection (micro-batch {micro} per rank; each worker = one core of this box)")
    header = f"{'plan':>10} {'ranks<=':>7} {'cos steps':>9} {'ss steps':>9} {'steps':>6} " \
             f"{'cos h':>9} {'ss h':>9} {'wall':>6}"
    print(header)
    print("-" * len(header))
    for row in rows:
        print(f"{row['plan']:>10} {row['max_ranks']:>7} {row['cosine_steps']:>9} "
              f"{row['seesaw_steps']:>9} {row['steps_ratio']:>6.3f} {row['cosine_hours']:>9.2f} "
              f"{row['seesaw_hours']:>9.2f} {row['wall_ratio']:>6.3f}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"micro_seconds": micro_seconds, "optimizer_seconds": optimizer_seconds,
                       "allreduce_seconds": allreduce, "alpha": alpha, "beta": beta,
                       "gradient_bytes": gradient_bytes, "projection": rows}, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
