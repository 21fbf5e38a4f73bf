"""Can a ZeRO-1/2 checkpoint saved on 1 rank load on 2 without ``seesaw-ds universal``?

For ZeRO stages 1 and 2 (tiny GPT, fp32, torch AdamW, gloo on CPU): train 2 steps on one
rank and save; then start 2 ranks and load that checkpoint: plainly, and with
``zero_optimization.elastic_checkpoint`` (saved that way too). (The universal path,
``checkpoint.load_universal``, is tested exact by ``tests/train/test_train_grow*.py``;
``--ways universal`` adds it here.) Each way compares every parameter's fp32
master weight and Adam ``exp_avg``/``exp_avg_sq`` (``deepspeed.utils.safe_get_full_*``)
with what the one rank saved: exact means bitwise equal.

    python bench/elastic_check.py --out bench/records/elastic_checkpoint.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def _config(stage: int, elastic: bool, universal: bool, world: int) -> dict:
    config = {"train_batch_size": 2, "train_micro_batch_size_per_gpu": 2 // world,
              "optimizer": {"type": "AdamW", "params": {"lr": 1e-2, "torch_adam": True}},
              "zero_optimization": {"stage": stage, "elastic_checkpoint": elastic},
              "steps_per_print": 10 ** 9}
    if universal:
        config["checkpoint"] = {"load_universal": True}
    return config


def _state(engine) -> dict:
    from deepspeed.utils import safe_get_full_fp32_param, safe_get_full_optimizer_state

    state = {}
    for name, param in engine.module.named_parameters():
        state[name] = [safe_get_full_fp32_param(param).clone(),
                       safe_get_full_optimizer_state(param, "exp_avg").clone(),
                       safe_get_full_optimizer_state(param, "exp_avg_sq").clone()]
    return state


def worker(args) -> None:
    import deepspeed
    import torch

    from seesaw_ds.model.shapes import build_model

    deepspeed.init_distributed("gloo")
    world = torch.distributed.get_world_size()
    rank = torch.distributed.get_rank()
    model = build_model("tiny", seed=0)
    engine, *_ = deepspeed.initialize(
        model=model, model_parameters=model.parameters(),
        config=_config(args.stage, args.elastic, args.mode == "universal", world))
    if args.mode == "save":
        generator = torch.Generator().manual_seed(0)
        for _ in range(2):
            tokens = torch.randint(0, 2048, (2, 32), generator=generator)
            engine.backward(engine(tokens, tokens).loss)
            engine.step()
        engine.save_checkpoint(args.ckpt, tag="t")
        torch.save(_state(engine), os.path.join(args.ckpt, "reference.pt"))
        return
    tag = "t_universal" if args.mode == "universal" else "t"
    result = {"loaded": False, "error": None}
    try:
        engine.load_checkpoint(args.ckpt, tag=tag)
        result["loaded"] = True
        state = _state(engine)
    except Exception as error:  # what DeepSpeed says is the finding
        result["error"] = f"{type(error).__name__}: {str(error).splitlines()[0][:300]}"
    if rank == 0:
        if result["loaded"]:
            reference = torch.load(os.path.join(args.ckpt, "reference.pt"))
            worst = 0.0
            for name, tensors in reference.items():
                for saved, loaded in zip(tensors, state[name]):
                    worst = max(worst, float((saved - loaded).abs().max()))
            result.update(exact=worst == 0.0, max_abs_difference=worst)
        with open(args.result, "w", encoding="utf-8") as handle:
            json.dump(result, handle)


def _launch(nproc: int, *extra: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, DS_ACCELERATOR="cpu", OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO, env.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node",
                           str(nproc), "--master_port", str(29600 + nproc),
                           os.path.abspath(__file__), "--worker", *extra],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=900)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--stage", type=int, default=1)
    parser.add_argument("--elastic", action="store_true")
    parser.add_argument("--mode", default="save")
    parser.add_argument("--ckpt")
    parser.add_argument("--result")
    parser.add_argument("--ways", nargs="+", default=["plain", "elastic"])
    parser.add_argument("--out", default=os.path.join(HERE, "records", "elastic_checkpoint.json"))
    args = parser.parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    rows = []
    for stage in (1, 2):
        for way in args.ways:
            folder = tempfile.mkdtemp(prefix=f"elastic_{stage}_{way}_")
            elastic = ["--elastic"] if way == "elastic" else []
            saved = _launch(1, "--stage", str(stage), *elastic, "--mode", "save", "--ckpt", folder)
            if saved.returncode != 0:
                print(saved.stderr[-3000:], file=sys.stderr)
                return 1
            if way == "universal":
                subprocess.run([sys.executable, "-m", "deepspeed.checkpoint.ds_to_universal",
                                "--input_folder", os.path.join(folder, "t"), "--output_folder",
                                os.path.join(folder, "t_universal"), "--inject_missing_state"],
                               check=True, capture_output=True)
            result_path = os.path.join(folder, "result.json")
            loaded = _launch(2, "--stage", str(stage), *elastic, "--mode",
                             "universal" if way == "universal" else "load", "--ckpt", folder,
                             "--result", result_path)
            row = {"zero_stage": stage, "way": way, "saved_on": 1, "loaded_on": 2}
            if os.path.exists(result_path):
                with open(result_path, encoding="utf-8") as handle:
                    row.update(json.load(handle))
            else:
                row.update(loaded=False, error=f"exit {loaded.returncode}: "
                           + (loaded.stderr.strip().splitlines() or [""])[-1][:300])
            rows.append(row)
            print(json.dumps(row), flush=True)
    with open(args.out, "w", encoding="utf-8") as handle:
        json.dump({"description": __doc__.split("\n\n")[1].strip(), "rows": rows}, handle,
                  indent=2)
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
