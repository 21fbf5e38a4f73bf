"""Measure what one relaunch of a growing chain costs: ZeRO-1 save, universal conversion, load.

For each model shape (the paper's 150M, 300M, 600M; vocab 32128), in a fresh process on
one CPU rank (gloo, fp32, torch AdamW, ZeRO-1): one training step so the Adam state
exists, then

- ``engine.save_checkpoint`` (seconds, bytes on disk),
- DeepSpeed's ``ds_to_universal`` with the arguments ``seesaw-ds universal`` uses,
- ``engine.load_checkpoint`` of the universal copy (``checkpoint.load_universal``) into a
  new engine, and of the plain checkpoint,
- the engine start-up (``deepspeed.initialize``) and ``import deepspeed, seesaw_ds.train``.

A shape whose state would not fit in the memory available now (``psutil``) is skipped and
said so; ``bench/records/relaunch_cost.json`` holds the figures and a per-parameter fit
the chain model uses.

    python bench/relaunch_cost.py --shapes 150m 300m --out bench/records/relaunch_cost.json

Limitations:
    CPU and one local disk: on a cluster the save and load run on every rank in parallel
    (each rank writes its shard) to a parallel file system, and the conversion on one node;
    the figures here are one process doing all of it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
BYTES_IN_MEMORY_PER_PARAMETER = 4 * 5  # fp32 weights, grads, master copy, Adam m and v


def _du(path: str) -> int:
    total = 0
    for root, _, files in os.walk(path):
        total += sum(os.path.getsize(os.path.join(root, name)) for name in files)
    return total


def _config(load_universal: bool = False) -> dict:
    config = {"train_batch_size": 1, "train_micro_batch_size_per_gpu": 1,
              "optimizer": {"type": "AdamW", "params": {"lr": 1e-4, "torch_adam": True}},
              "zero_optimization": {"stage": 1}, "steps_per_print": 10 ** 9}
    if load_universal:
        config["checkpoint"] = {"load_universal": True}
    return config


def measure_one(shape: str, workdir: str, phase: str = "save") -> dict:
    """Run in a fresh process: the figures of one shape's ``save`` or ``load`` phase (each
    phase in its own process, so only one engine's state is in memory at a time)."""
    start = time.perf_counter()
    import deepspeed
    import torch

    from seesaw_ds.model.shapes import build_model

    import_seconds = time.perf_counter() - start
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=os.environ.get("MASTER_PORT", "29731"),
                      RANK="0", LOCAL_RANK="0", WORLD_SIZE="1")
    deepspeed.init_distributed("gloo")
    torch.manual_seed(0)
    checkpoints = os.path.join(workdir, shape)
    if phase.startswith("load"):
        return _load(shape, checkpoints, universal=phase == "load_universal")
    model = build_model(shape)
    parameters = sum(p.numel() for p in model.parameters())
    start = time.perf_counter()
    engine, *rest = deepspeed.initialize(model=model, model_parameters=model.parameters(),
                                         config=_config())
    del rest
    init_seconds = time.perf_counter() - start
    tokens = torch.randint(0, model.config.vocab_size, (1, 16))
    engine.backward(engine(tokens, tokens).loss)
    engine.step()
    start = time.perf_counter()
    engine.save_checkpoint(checkpoints, tag="step1")
    save_seconds = time.perf_counter() - start
    saved_bytes = _du(os.path.join(checkpoints, "step1"))
    reference = {name: p.detach().clone()
                 for name, p in list(engine.module.named_parameters())[:3]}
    torch.save(reference, os.path.join(workdir, f"{shape}_reference.pt"))
    return {"shape": shape, "parameters": parameters, "import_seconds": import_seconds,
            "engine_init_seconds": init_seconds, "save_seconds": save_seconds,
            "checkpoint_bytes": saved_bytes}


def _load(shape: str, checkpoints: str, universal: bool) -> dict:
    import deepspeed
    import torch

    from seesaw_ds.model.shapes import build_model

    reference = torch.load(os.path.join(os.path.dirname(checkpoints),
                                        f"{shape}_reference.pt"))
    label, tag = (("load_universal_seconds", "step1_universal") if universal
                  else ("load_seconds", "step1"))
    model = build_model(shape, seed=1)  # one load per process: one engine's state in memory
    engine, *rest = deepspeed.initialize(model=model, model_parameters=model.parameters(),
                                         config=_config(universal))
    del rest
    start = time.perf_counter()
    engine.load_checkpoint(checkpoints, tag=tag)
    loads = {label: time.perf_counter() - start}
    named = dict(engine.module.named_parameters())
    loads[label.replace("seconds", "exact")] = all(
        torch.equal(named[name], value) for name, value in reference.items())
    return loads


def _convert(checkpoints: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "deepspeed.checkpoint.ds_to_universal",
                    "--input_folder", os.path.join(checkpoints, "step1"),
                    "--output_folder", os.path.join(checkpoints, "step1_universal"),
                    "--inject_missing_state", "--num_extract_workers", "1",
                    "--num_merge_workers", "1"], check=True, capture_output=True)
    return time.perf_counter() - start


def _parameters(shape: str) -> int:
    from seesaw_ds.model.shapes import model_config

    config = model_config(shape)
    d, layers, mlp, vocab = config.d_model, config.n_layers, config.d_mlp, config.vocab_size
    return layers * (4 * d * d + 2 * d * mlp) + 2 * vocab * d  # untied embedding and head


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", default=["150m", "300m", "600m"])
    parser.add_argument("--out", default=os.path.join(HERE, "records", "relaunch_cost.json"))
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--phase", default="save", help=argparse.SUPPRESS)
    parser.add_argument("--keep", action="store_true",
                        help="keep the rows of shapes already in --out")
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(measure_one(args.one, args.workdir, args.phase)))
        return 0
    import psutil

    rows, skipped = [], []
    if args.keep and os.path.exists(args.out):
        with open(args.out, encoding="utf-8") as handle:
            rows = [r for r in json.load(handle)["rows"] if r["shape"] not in args.shapes]
    workdir = args.workdir or tempfile.mkdtemp(prefix="relaunch_cost_")
    for shape in args.shapes:
        need = _parameters(shape) * BYTES_IN_MEMORY_PER_PARAMETER
        available = psutil.virtual_memory().available
        if need > 0.8 * available:
            skipped.append({"shape": shape, "approx_parameters": _parameters(shape),
                            "reason": f"needs about {need / 2**30:.1f} GiB, "
                            f"{available / 2**30:.1f} GiB available"})
            print(f"{shape}: skipped ({skipped[-1]['reason']})", flush=True)
            continue
        env = dict(os.environ, DS_ACCELERATOR="cpu", OMP_NUM_THREADS="2")
        row = {}
        for phase in ("save", "convert", "load_universal", "load"):
            if phase == "convert":
                row["convert_seconds"] = _convert(os.path.join(workdir, shape))
                row["universal_bytes"] = _du(os.path.join(workdir, shape, "step1_universal"))
                continue
            result = subprocess.run([sys.executable, os.path.abspath(__file__), "--one", shape,
                                     "--phase", phase, "--workdir", workdir],
                                    capture_output=True, text=True, env=env, cwd=REPO)
            if result.returncode != 0:
                row[f"{phase}_failed"] = f"exit {result.returncode}" + (
                    " (killed: out of memory)" if result.returncode == -9 else "")
                print(f"{shape} {phase}: exit {result.returncode}\n{result.stderr[-2000:]}",
                      file=sys.stderr)
                break
            row.update(json.loads(result.stdout.strip().splitlines()[-1]))
            print(json.dumps(row), flush=True)
        shutil.rmtree(os.path.join(workdir, shape), ignore_errors=True)
        rows.append(row)
        print(json.dumps(rows[-1]), flush=True)
    per_parameter = {}
    keys = ("save_seconds", "convert_seconds", "load_universal_seconds", "checkpoint_bytes")
    complete = [r for r in rows if all(key in r for key in keys)]
    if complete:
        total = sum(r["parameters"] for r in complete)
        for key in keys:
            per_parameter[key] = sum(r[key] for r in complete) / total
    record = {"description": "bench/relaunch_cost.py: one CPU process, gloo, fp32, torch "
              "AdamW, ZeRO-1, world size 1: engine start-up, save_checkpoint, ds_to_universal "
              "(as seesaw-ds universal runs it), load_checkpoint of the universal copy and of "
              "the plain one; seconds and bytes on disk", "machine": os.uname().nodename,
              "cpu_count": os.cpu_count(), "rows": rows, "skipped": skipped,
              "per_parameter": per_parameter}
    with open(args.out, "w", encoding="utf-8") as handle:
        json.dump(record, handle, indent=2)
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
