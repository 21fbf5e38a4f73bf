"""The Megatron-LM part of ``bench/gpu_check.sh``: ``pretrain_gpt.py --seesaw-config``.

Megatron-LM patched with ``patches/megatron-lm-seesaw.patch`` (the tree ``MEGATRON_LM_DIR``
points at, or the tarball ``bench/make_gpu_wheels.sh`` packs, which holds Megatron-LM's
``pretrain_gpt.py`` and ``megatron/{training,...}``; megatron-core comes from its wheel)
trains a small GPT on one GPU with ``--mock-data --transformer-impl local`` (no Transformer
Engine, no Apex): a first job stops with a checkpoint (``--exit-interval``) after the first
batch change, a second ``--load``\\ s it and runs to the plan's end. Each logged iteration's
global batch and LR are compared with the plan of the same ``--seesaw-config``.

Megatron-LM needs CUDA (``initialize_megatron``): without a GPU this part is skipped, with
that reason.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tarfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from gpu_check_runs import run_logged

REPO = Path(__file__).resolve().parents[1]
TARBALL = "megatron_lm_seesaw.tar.gz"

__all__ = ["megatron_run", "find_megatron_lm"]

_LINE = re.compile(r"iteration\s+(\d+)/\s*(\d+) \| consumed samples:\s+(\d+) \|.*?"
                   r"learning rate: ([0-9.E+-]+) \| global batch size:\s+(\d+) \|")


def find_megatron_lm(work: Path, wheels: Optional[str]) -> Optional[Path]:
    """A patched Megatron-LM tree: ``MEGATRON_LM_DIR``, else the wheel folder's tarball
    unpacked under ``work``; None when neither exists."""
    given = os.environ.get("MEGATRON_LM_DIR")
    if given:
        return Path(given)
    tarball = Path(wheels or REPO / "gpu_wheels") / TARBALL
    if not tarball.is_file():
        return None
    target = work / "megatron_lm"
    if not (target / "pretrain_gpt.py").is_file():
        target.mkdir(parents=True, exist_ok=True)
        with tarfile.open(tarball) as archive:
            archive.extractall(target, filter="data")
    return target


def prebuilt_helpers() -> str:
    """Megatron-LM's ``initialize_megatron`` runs ``make -C megatron/core/datasets`` and exits
    if it fails; a megatron-core wheel ships ``helpers_cpp`` compiled but no Makefile. Give
    such an install a Makefile with nothing to do (nothing to compile: no pybind11 needed)."""
    import importlib.util

    spec = importlib.util.find_spec("megatron.core")  # the package, not executed
    if spec is None or not spec.submodule_search_locations:
        return "megatron.core not found"
    folder = Path(list(spec.submodule_search_locations)[0]) / "datasets"
    if (folder / "Makefile").exists():
        return f"{folder}/Makefile exists"
    if not list(folder.glob("helpers_cpp*.so")):
        return f"no compiled helpers_cpp in {folder} and no Makefile: Megatron-LM will fail"
    (folder / "Makefile").write_text("default:\n\t@echo 'helpers_cpp: prebuilt in the "
                                     "megatron-core wheel'\n")
    return f"helpers_cpp prebuilt (wheel); wrote a no-op {folder}/Makefile"


def seesaw_config(s: Dict[str, Any]) -> Dict[str, Any]:
    return {
        "train_batch_size": s["b0"], "train_micro_batch_size_per_gpu": s["micro"],
        "optimizer": {"type": "AdamW", "params": {"lr": 3e-3, "betas": [0.9, 0.95],
                                                  "eps": 1e-8, "weight_decay": 0.0}},
        "seesaw": {"total_tokens": s["total_tokens"], "seq_length": s["seq"],
                   "batch_schedule": "seesaw", "batch_growth": 1.1,
                   "batch_multiple": s["micro"], "growth_policy": "micro_batch_first",
                   "max_micro_batch": s["micro"],
                   "lr_schedule": {"type": "cosine", "warmup_fraction": 0.1,
                                   "warmup_start_factor": 0.1, "final_factor": 0.1}},
    }


def _argv(s: Dict[str, Any], config: Path, checkpoints: Path) -> List[str]:
    return [
        "--num-layers", str(s["layers"]), "--hidden-size", str(s["hidden"]),
        "--num-attention-heads", str(s["heads"]), "--ffn-hidden-size", str(4 * s["hidden"]),
        "--seq-length", str(s["seq"]), "--max-position-embeddings", str(s["seq"]),
        "--micro-batch-size", str(s["micro"]), "--position-embedding-type", "rope",
        "--untie-embeddings-and-output-weights", "--bf16", "--clip-grad", "1.0",
        "--transformer-impl", "local", "--no-gradient-accumulation-fusion",
        "--no-masked-softmax-fusion", "--no-bias-gelu-fusion", "--no-bias-dropout-fusion",
        "--no-rope-fusion", "--no-persist-layer-norm",
        "--mock-data", "--tokenizer-type", "NullTokenizer", "--vocab-size", str(s["vocab"]),
        "--split", "949,50,1", "--eval-interval", "100000", "--eval-iters", "1",
        "--log-interval", "1", "--distributed-backend", "nccl", "--seed", "1234",
        "--save", str(checkpoints), "--save-interval", "100000", "--ckpt-format", "torch",
        "--seesaw-config", str(config),
    ]


def _parse(log: str) -> List[Dict[str, Any]]:
    return [{"iteration": int(m.group(1)), "iterations": int(m.group(2)),
             "consumed": int(m.group(3)), "lr": float(m.group(4)), "batch": int(m.group(5))}
            for m in _LINE.finditer(log)]


def _check(lines: List[Dict[str, Any]], plan) -> Dict[str, Any]:
    """Each iteration's batch is the plan's at the samples consumed before it; the LR logged
    after it (the scheduler has stepped) is the plan's at the samples consumed after it."""
    mismatches = []
    for line in lines:
        before = line["consumed"] - line["batch"]
        setting = plan.at_samples(before)
        after_lr = plan.at_samples(line["consumed"]).lr \
            if line["consumed"] * plan.seq_length < plan.total_tokens else None
        lr_ok = after_lr is None or abs(line["lr"] - after_lr) <= 1e-5 * after_lr
        if line["batch"] != setting.global_batch or not lr_ok:
            mismatches.append(dict(line, planned_batch=setting.global_batch,
                                   planned_lr_after=after_lr))
    return {"mismatches": mismatches[:10],
            "every_iteration_equals_plan": not mismatches and len(lines) > 0}


def megatron_run(s: Dict[str, Any], gpu: bool, work: Path, wheels: Optional[str],
                 log) -> Dict[str, Any]:
    if not gpu:
        return {"skipped": "Megatron-LM's pretrain_gpt.py needs CUDA (initialize_megatron: "
                           "'Megatron requires CUDA'; local layers allocate on the GPU): "
                           "runs on the GPU only"}
    tree = find_megatron_lm(work, wheels)
    if tree is None:
        return {"skipped": "no patched Megatron-LM: set MEGATRON_LM_DIR or run "
                           "bench/make_gpu_wheels.sh (packs it into the wheel folder)"}
    from seesaw_ds.config import plan_from_ds_config

    helpers = prebuilt_helpers()
    folder = work / "megatron"
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "seesaw.json"
    config.write_text(json.dumps(seesaw_config(s), indent=1))
    plan = plan_from_ds_config(seesaw_config(s), 1)
    batches = [setting.global_batch for _, _, setting in plan.iter_steps()]
    first_change = next(i for i in range(1, len(batches)) if batches[i] != batches[i - 1]) + 1
    checkpoints = folder / "checkpoints"
    env = dict(os.environ, PYTHONUNBUFFERED="1", CUDA_DEVICE_MAX_CONNECTIONS="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tree), str(REPO),
                                                      env.get("PYTHONPATH")]))
    result: Dict[str, Any] = {"tree": str(tree), "dataset_helpers": helpers,
                              "planned_iterations": plan.optimizer_steps,
                              "exit_interval": first_change + 1, "jobs": []}
    logs = []
    for job, extra in (("save", ["--exit-interval", str(first_change + 1)]),
                       ("resume", ["--load", str(checkpoints)])):
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "1",
                   "--master_port", str(_port()), "pretrain_gpt.py",
                   *_argv(s, config, checkpoints), *extra]
        started = time.perf_counter()
        path = work / "logs" / f"megatron_{job}.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        code = run_logged(command, tree, env, path, s["megatron_timeout"])
        text = path.read_text(errors="replace")
        lines = _parse(text)
        logs.extend(lines)
        result["jobs"].append({"job": job, "exit": code, "log": str(path),
                               "seconds": time.perf_counter() - started,
                               "iterations": [l["iteration"] for l in lines][:1]
                               + [l["iteration"] for l in lines][-1:]})
        log(f"  megatron {job}: exit {code}, {len(lines)} iterations logged")
        if code != 0:
            result["error"] = f"{job} exited {code}: {text[-2500:]}"
            return result
    result.update(_check(logs, plan))
    resumed = [l["iteration"] for l in logs]
    result["batches"] = sorted({l["batch"] for l in logs})
    result["batch_changes"] = sum(1 for a, b in zip(logs, logs[1:]) if a["batch"] != b["batch"])
    result["resumed_at_iteration"] = result["jobs"][1]["iterations"][0] \
        if result["jobs"][1]["iterations"] else None
    result["ok"] = bool(result["every_iteration_equals_plan"]
                        and result["batch_changes"] >= 1
                        and resumed == list(range(1, plan.optimizer_steps + 1)))
    return result


def _port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
