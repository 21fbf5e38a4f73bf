"""Grow a run inside one allocation: at each stage boundary, relaunch on more of its own ranks.

    python launch/grow_in_allocation.py --run-config RUN.yaml --deepspeed_config DS.json \
        --output-dir OUT --stages 0:8 1.67e9:16 2.25e9:32 [--gpus-per-node 8] [--launcher srun]

The allocation is sized for the largest stage and held for the whole run (one queue wait);
no job is queued between stages. For stage ``k`` (``START:RANKS``, in order, ranks never
shrinking) the driver

1. converts the latest checkpoint with ``seesaw-ds universal`` when the rank count changes
   (ZeRO >= 1; on one process of the allocation, no queue),
2. launches ``-m seesaw_ds.train`` on ``RANKS`` of the allocation's ranks, with ``--resume``
   after the first stage and ``--stop-at-tokens`` at the next stage's start (the last stage
   runs to the end of the plan); the other ranks idle (or serve other work) meanwhile.

``--launcher torchrun`` (default) starts the ranks on this node (``--nproc_per_node``);
``--launcher srun`` starts ``ceil(RANKS / G)`` nodes of the SLURM allocation, one task per
node, each running ``torchrun --nnodes N --nproc_per_node min(RANKS, G)`` with a c10d
rendezvous on the first node. The DeepSpeed config must lay out every stage on its rank
count (``seesaw.batch_multiple`` and ``seesaw.batch_multiple_stages``): ``seesaw-ds plan
--throughput TP.json --ranks R --max-ranks M --json`` gives both and the ``stages`` (start
tokens, ranks), and ``launch/grow_chain.py ... --submit`` writes such a config.

It writes ``OUT/launch/grow_in_allocation.json``: per stage its ranks, start, train and
conversion seconds; the total time; GPU-hours **used** (each stage's ranks for its time, the
conversions on one GPU) and **held** (the whole allocation for the whole time, what a
cluster bills when the idle ranks are not lent out).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import socket
import subprocess
import sys
import time
from typing import List, Sequence, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)

from seesaw_ds.errors import SeesawConfigError  # noqa: E402

__all__ = ["parse_stages", "stage_command", "run_stages", "main"]


def parse_stages(items: Sequence[str]) -> List[Tuple[float, int]]:
    """``["0:1", "2e4:2"]`` -> ``[(0.0, 1), (20000.0, 2)]``; starts increasing from 0, ranks
    never shrinking, else one error naming ``--stages``."""
    stages = []
    for item in items:
        try:
            start, ranks = item.split(":")
            stages.append((float(start), int(ranks)))
        except ValueError:
            raise SeesawConfigError(f"--stages {item!r} must be START_TOKENS:RANKS, e.g. 0:8.") \
                from None
    if not stages or stages[0][0] != 0:
        raise SeesawConfigError("--stages must start with 0:RANKS (the first stage's ranks).")
    for (start, ranks), (next_start, next_ranks) in zip(stages, stages[1:]):
        if next_start <= start or next_ranks < ranks:
            raise SeesawConfigError(
                f"--stages {next_start:g}:{next_ranks} after {start:g}:{ranks}: starts must "
                "increase and ranks must not shrink.")
    if any(ranks < 1 for _, ranks in stages):
        raise SeesawConfigError("--stages: every stage needs >= 1 rank.")
    return stages


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stage_command(ranks: int, train_args: Sequence[str], launcher: str = "torchrun",
                  gpus_per_node: int = 8, port: int = 29500) -> List[str]:
    """The command that starts one stage on ``ranks`` ranks of the allocation."""
    train = ["-m", "seesaw_ds.train", *train_args]
    if launcher == "torchrun":
        return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(ranks),
                "--master_port", str(port), *train]
    if launcher == "srun":
        nodes = math.ceil(ranks / gpus_per_node)
        if nodes > 1 and ranks % gpus_per_node:
            raise SeesawConfigError(
                f"a stage of {ranks} ranks on nodes of {gpus_per_node} GPUs: across nodes a "
                "stage needs whole nodes (torchrun starts the same number of ranks per node).")
        per_node = min(ranks, gpus_per_node)
        head = "$(scontrol show hostnames \"$SLURM_JOB_NODELIST\" | head -n1)"
        torchrun = (f"{sys.executable} -m torch.distributed.run --nnodes {nodes} "
                    f"--nproc_per_node {per_node} --rdzv_backend c10d "
                    f"--rdzv_endpoint {head}:{port} --rdzv_id seesaw-{port} "
                    + " ".join(train))
        return ["srun", f"--nodes={nodes}", "--ntasks-per-node=1", f"--gpus-per-node={per_node}",
                "bash", "-c", torchrun]
    raise SeesawConfigError(f"--launcher {launcher!r} must be torchrun or srun.")


def run_stages(run_config: str, ds_config: str, output_dir: str,
               stages: Sequence[Tuple[float, int]], launcher: str = "torchrun",
               gpus_per_node: int = 8, extra: Sequence[str] = (), env=None, log=print) -> dict:
    """Run the stages one after the other on the same allocation; return the record."""
    allocation = max(ranks for _, ranks in stages)
    record = {"allocation_ranks": allocation, "launcher": launcher, "stages": []}
    started = time.perf_counter()
    previous_ranks = None
    for index, (start, ranks) in enumerate(stages):
        convert_seconds = 0.0
        if previous_ranks is not None and ranks != previous_ranks:
            begin = time.perf_counter()
            subprocess.run([sys.executable, "-m", "seesaw_ds.cli.main", "universal",
                            os.path.join(output_dir, "checkpoints")],
                           check=True, cwd=REPO, env=env, capture_output=True, text=True)
            convert_seconds = time.perf_counter() - begin
        train_args = ["--run-config", run_config, "--deepspeed_config", ds_config,
                      "--output-dir", output_dir, *extra]
        if index > 0:
            train_args.append("--resume")
        if index + 1 < len(stages):
            train_args += ["--stop-at-tokens", repr(stages[index + 1][0])]
        command = stage_command(ranks, train_args, launcher, gpus_per_node, _free_port())
        log(f"stage {index}: {ranks} of {allocation} ranks from {start:g} tokens")
        begin = time.perf_counter()
        result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - begin
        os.makedirs(os.path.join(output_dir, "launch"), exist_ok=True)
        with open(os.path.join(output_dir, "launch", f"stage{index}.log"), "w",
                  encoding="utf-8") as handle:
            handle.write(result.stdout + result.stderr)
        if result.returncode != 0:
            raise RuntimeError(f"stage {index} ({ranks} ranks) failed ({result.returncode}):\n"
                               f"{(result.stdout + result.stderr)[-3000:]}")
        record["stages"].append({"start_tokens": start, "ranks": ranks,
                                 "train_seconds": seconds, "convert_seconds": convert_seconds})
        previous_ranks = ranks
    total = time.perf_counter() - started
    record["total_seconds"] = total
    record["gpu_hours_used"] = sum(s["ranks"] * s["train_seconds"] + s["convert_seconds"]
                                   for s in record["stages"]) / 3600
    record["gpu_hours_held"] = allocation * total / 3600
    path = os.path.join(output_dir, "launch", "grow_in_allocation.json")
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(record, handle, indent=2)
    log(f"done in {total:.1f} s: {record['gpu_hours_used']:.4f} GPU-h used, "
        f"{record['gpu_hours_held']:.4f} GPU-h held ({allocation} ranks); {path}")
    return record


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-config", required=True)
    parser.add_argument("--deepspeed_config", "--deepspeed-config", dest="deepspeed_config",
                        required=True)
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--stages", nargs="+", required=True, metavar="START:RANKS")
    parser.add_argument("--launcher", default="torchrun", choices=("torchrun", "srun"))
    parser.add_argument("--gpus-per-node", type=int, default=8)
    parser.add_argument("--dry-run", action="store_true", help="print the stage commands")
    args, extra = parser.parse_known_args(argv)
    try:
        stages = parse_stages(args.stages)
        if args.dry_run:
            for index, (start, ranks) in enumerate(stages):
                print(" ".join(stage_command(ranks, ["--run-config", args.run_config, "..."],
                                             args.launcher, args.gpus_per_node)))
            return 0
        run_stages(args.run_config, args.deepspeed_config, args.output_dir, stages,
                   args.launcher, args.gpus_per_node, extra)
    except SeesawConfigError as error:
        print(f"grow_in_allocation: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
