"""Shared pieces of the DeepSpeed adapter tests: tiny data/model, reference run, job runner.

Imported by the pytest modules and by ``worker.py`` (which runs under torchrun/deepspeed).
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch
from torch import nn

from seesaw_ds.distributed import free_port

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
WORKER = HERE / "worker.py"

D_IN = 8
N_SAMPLES = 600  # not a multiple of any batch: epochs wrap inside steps
DATA_SEED = 0
MODEL_SEED = 0


class RegressionData(torch.utils.data.Dataset):
    """Synthetic regression: items are dicts {"x": [D_IN], "y": [1]}."""

    def __init__(self, n: int = N_SAMPLES, d_in: int = D_IN, seed: int = DATA_SEED) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, d_in, generator=gen)
        w1 = torch.randn(d_in, 4, generator=gen)
        w2 = torch.randn(4, 1, generator=gen)
        self.y = torch.tanh(self.x @ w1) @ w2 + 0.1 * torch.randn(n, 1, generator=gen)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> Dict[str, torch.Tensor]:
        return {"x": self.x[index], "y": self.y[index]}


class Regressor(nn.Module):
    """A two-layer MLP whose forward takes the batch dict and returns the mean MSE."""

    def __init__(self, d_in: int = D_IN, hidden: int = 16) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d_in, hidden), nn.Tanh(), nn.Linear(hidden, 1))

    def forward(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        weight = self.net[0].weight
        pred = self.net(batch["x"].to(weight.dtype))
        return ((pred.float() - batch["y"].float()) ** 2).mean()


def make_model() -> Regressor:
    torch.manual_seed(MODEL_SEED)
    return Regressor()


def tiny_config(
    stage: int = 0,
    optimizer: str = "sgd",
    total_tokens: float = 3000,
    bf16: bool = False,
    **seesaw: Any,
) -> Dict[str, Any]:
    """A 2-rank-ready config: batch 8 (micro 2), seq 4, Seesaw growth 2 over cosine."""
    if optimizer == "sgd":
        opt = {"type": "SGD", "params": {"lr": 0.05, "momentum": 0.9}}
    else:
        opt = {"type": "AdamW", "params": {"lr": 0.01, "betas": [0.9, 0.95], "eps": 1e-8,
                                           "weight_decay": 0.01, "torch_adam": True}}
    section = {
        "total_tokens": total_tokens,
        "seq_length": 4,
        "batch_schedule": "seesaw",
        "batch_growth": 2.0,
        "lr_schedule": {"type": "cosine", "warmup_fraction": 0.1, "warmup_start_factor": 0.1,
                        "final_factor": 0.1},
        "data_seed": 7,
        # a common multiple of the 1- and 2-rank layouts (micro 2 x dp): one plan, short last
        # step included, on either rank count, so resumes may change the rank count
        "batch_multiple": 4,
    }
    if seesaw.get("batch_schedule", "seesaw") != "seesaw":
        section.pop("batch_growth")
    section.update(seesaw)
    config = {
        "train_batch_size": 8,
        "train_micro_batch_size_per_gpu": 2,
        "gradient_clipping": 0.0,
        "steps_per_print": 10 ** 9,
        "optimizer": opt,
        "zero_optimization": {"stage": stage},
        "zero_allow_untested_optimizer": True,
        "seesaw": section,
    }
    if bf16:
        config["bf16"] = {"enabled": True}
    return config


def reference_run(config: Dict[str, Any], dp_size: int = 2) -> Dict[str, Any]:
    """Plain PyTorch, one process: each step = one backward over its B samples in plan order.

    Returns {"weights": [...], "lrs": [...], "batches": [...]} per optimizer step.
    """
    from seesaw_ds.config import plan_from_ds_config, seesaw_section_of
    from seesaw_ds.deepspeed_adapter import GlobalSampleOrder

    plan = plan_from_ds_config(config, dp_size)
    section = seesaw_section_of(config)
    data = RegressionData()
    order = GlobalSampleOrder(len(data), section.data_seed)
    model = make_model()
    params = dict(config["optimizer"]["params"])
    params.pop("torch_adam", None)
    if config["optimizer"]["type"].lower() == "sgd":
        opt = torch.optim.SGD(model.parameters(), **params)
    else:
        params["betas"] = tuple(params["betas"])
        opt = torch.optim.AdamW(model.parameters(), **params)
    lrs, batches = [], []
    for _, start_tokens, setting in plan.iter_steps():
        indices = order.take(start_tokens // plan.seq_length, setting.global_batch)
        batch = torch.utils.data.default_collate([data[i] for i in indices])
        opt.zero_grad()
        model(batch).backward()
        for group in opt.param_groups:
            group["lr"] = setting.lr
        opt.step()
        lrs.append(setting.lr)
        batches.append(setting.global_batch)
    weights = [p.detach().clone().double().flatten().tolist() for p in model.parameters()]
    return {"weights": weights, "lrs": lrs, "batches": batches}


def job_env() -> Dict[str, str]:
    env = dict(os.environ)
    env.update(DS_ACCELERATOR="cpu", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


@dataclass
class JobResult:
    """What a worker job left: one result dict per rank (None if missing), log, exit code."""

    ranks: List[Optional[Dict[str, Any]]]
    log: str
    returncode: int

    def case(self, name: str, rank: int = 0) -> Dict[str, Any]:
        return self.ranks[rank]["cases"][name]


def run_job(
    spec: Dict[str, Any],
    workdir: Path,
    nproc: int = 2,
    launcher: str = "torchrun",
    timeout: float = 300,
    expect_success: bool = True,
    worker: Path = WORKER,
) -> JobResult:
    """Run ``worker`` (default ``worker.py``) on ``nproc`` ranks and collect each rank's
    result file."""
    workdir.mkdir(parents=True, exist_ok=True)
    spec = copy.deepcopy(spec)
    spec["out"] = str(workdir / "result")
    spec_path = workdir / "spec.json"
    spec_path.write_text(json.dumps(spec))
    port = str(free_port())
    if launcher == "torchrun":
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
               "--master_port", port, str(worker), "--spec", str(spec_path)]
    elif launcher == "deepspeed":
        cmd = ["deepspeed", "--num_gpus", str(nproc), "--master_port", port, str(worker),
               "--spec", str(spec_path)]
    else:
        raise ValueError(launcher)
    proc = subprocess.run(cmd, cwd=str(REPO), env=job_env(), capture_output=True, text=True,
                          timeout=timeout)
    log = proc.stdout + proc.stderr
    (workdir / "job.log").write_text(log)
    if expect_success and proc.returncode != 0:
        raise AssertionError(f"job failed ({proc.returncode}); log tail:\n{log[-6000:]}")
    ranks = []
    for rank in range(nproc):
        path = Path(f"{spec['out']}.rank{rank}.json")
        ranks.append(json.loads(path.read_text()) if path.exists() else None)
    if expect_success and any(r is None for r in ranks):
        raise AssertionError(f"a rank wrote no result; log tail:\n{log[-4000:]}")
    return JobResult(ranks, log, proc.returncode)


def max_abs_diff(a: List[List[float]], b: List[List[float]]) -> float:
    return max(abs(x - y) for pa, pb in zip(a, b) for x, y in zip(pa, pb))
