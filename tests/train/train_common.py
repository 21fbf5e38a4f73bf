"""Shared pieces of the ``seesaw_ds.train`` end-to-end tests: configs, launchers, readers.

Every job is a real 2-rank launch (torchrun or the deepspeed launcher) of
``-m seesaw_ds.train`` on the tiny stdlib corpus (``seesaw_ds.data.testing``), the
``micro`` GPT, seq 64, fp32 on CPU, so runs are bitwise reproducible.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

from seesaw_ds.data.testing import TINY_MAX_BYTES, TINY_SEQ, TINY_SPLIT, TINY_VOCAB
from seesaw_ds.distributed import free_port

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SEQ = TINY_SEQ
B0 = 8  # global batch at the start: micro 2 x 2 ranks x GAS 2
WORLD = 2

# The reference Seesaw run (conftest ``uninterrupted``). Its budget is more than one epoch of
# the tiny train split, and one where sizing the train dataset by the plan (trained tokens +
# last batch) would give megatron-core GPTDatasets of different lengths for cosine (2640
# samples asked) and Seesaw (2712), so different global sample orders.
REFERENCE_TOTAL = 1.68e5
REFERENCE_EVAL = 3.0e4
REFERENCE_CHECKPOINT = 1.1e5  # past the first batch growth (8 -> 16 at ~98k tokens)


def ds_config(total_tokens: float, schedule: str = "seesaw", stage: int = 0,
              clip: float = 1.0, guard: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """The DeepSpeed JSON of a test run: AdamW (torch), cosine base with 10% warmup."""
    section: Dict[str, Any] = {
        "total_tokens": total_tokens, "seq_length": SEQ, "batch_schedule": schedule,
        "lr_schedule": {"type": "cosine", "warmup_fraction": 0.1, "warmup_start_factor": 0.1,
                        "final_factor": 0.1},
    }
    if schedule == "seesaw":
        section["batch_growth"] = 2.0
    if guard is not None:
        section["cbs_guard"] = {"enabled": True, **guard}
    return {
        "train_batch_size": B0, "train_micro_batch_size_per_gpu": 2,
        "gradient_clipping": clip, "steps_per_print": 10 ** 9,
        "optimizer": {"type": "AdamW", "params": {"lr": 3e-3, "betas": [0.9, 0.95],
                                                  "eps": 1e-8, "weight_decay": 0.0,
                                                  "torch_adam": True}},
        "zero_optimization": {"stage": stage},
        "seesaw": section,
    }


def run_config(prepared_dir: Path, eval_interval: float,
               checkpoint_interval: Optional[float] = None) -> Dict[str, Any]:
    """A run config whose data section matches ``make_tiny_prepared`` (so it is reused)."""
    config: Dict[str, Any] = {
        "model": {"shape": "micro"},
        "data": {"prepared_dir": str(prepared_dir), "vocab_size": TINY_VOCAB,
                 "max_bytes": TINY_MAX_BYTES, "split": TINY_SPLIT},
        "eval": {"interval_tokens": eval_interval, "batches": 2, "batch_size": 8},
        "seed": 0,
    }
    if checkpoint_interval is not None:
        config["checkpoint"] = {"interval_tokens": checkpoint_interval}
    return config


def write_configs(folder: Path, run: Dict[str, Any], ds: Dict[str, Any]) -> tuple:
    folder.mkdir(parents=True, exist_ok=True)
    run_path, ds_path = folder / "run.yaml", folder / "ds.json"
    run_path.write_text(json.dumps(run))  # JSON is YAML
    ds_path.write_text(json.dumps(ds))
    return run_path, ds_path


def job_env() -> Dict[str, str]:
    env = dict(os.environ, DS_ACCELERATOR="cpu", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    if "TORCH_EXTENSIONS_DIR" not in os.environ:
        # DeepSpeed JIT-builds its CPU shm comm op into a cache keyed by Python version only;
        # two environments (another venv's torch) sharing it rebuild it (~40 s) in turn.
        key = hashlib.sha1(sys.prefix.encode()).hexdigest()[:10]
        env["TORCH_EXTENSIONS_DIR"] = os.path.join(
            os.path.expanduser("~"), ".cache", "torch_extensions", f"seesaw_ds_tests_{key}")
    return env


def train_command(run_path: Path, ds_path: Path, out_dir: Path, *extra: str,
                  launcher: str = "torchrun", nproc: int = WORLD) -> List[str]:
    port = str(free_port())
    args = ["--run-config", str(run_path), "--deepspeed_config", str(ds_path),
            "--output-dir", str(out_dir), "--no-progress", *extra]
    if launcher == "torchrun":
        return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
                "--master_port", port, "-m", "seesaw_ds.train", *args]
    if launcher == "deepspeed":
        return [sys.executable, "-m", "deepspeed.launcher.runner", "--num_gpus", str(nproc),
                "--master_port", port, "--module", "seesaw_ds.train", *args]
    raise ValueError(launcher)


@dataclass
class Run:
    """What a finished (or killed) training job left in its output dir."""

    out: Path
    log: str

    @property
    def rows(self) -> List[Dict[str, str]]:
        with open(self.out / "steps.csv", encoding="utf-8") as handle:
            return list(csv.DictReader(handle))

    @property
    def summary(self) -> Dict[str, Any]:
        return json.loads((self.out / "summary.json").read_text())

    @property
    def curve(self) -> List[Dict[str, Any]]:
        return json.loads((self.out / "curve.json").read_text())

    def latest_tag(self) -> Optional[str]:
        path = self.out / "checkpoints" / "latest"
        return path.read_text().strip() if path.exists() else None


def train(run_path: Path, ds_path: Path, out_dir: Path, *extra: str,
          launcher: str = "torchrun", timeout: float = 600, nproc: int = WORLD) -> Run:
    """Run a training job to its end; fail with the log tail unless it exits 0."""
    cmd = train_command(run_path, ds_path, out_dir, *extra, launcher=launcher, nproc=nproc)
    proc = subprocess.run(cmd, cwd=str(REPO), env=job_env(), capture_output=True, text=True,
                          timeout=timeout)
    log = proc.stdout + proc.stderr
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"job{len(list(out_dir.glob('job*.log')))}.log").write_text(log)
    assert proc.returncode == 0, f"training failed ({proc.returncode}):\n{log[-5000:]}"
    # DeepSpeed's CPU comm buffers (67 MB of RAM each, one rank included) are released
    port = cmd[cmd.index("--master_port") + 1]
    left = glob.glob(f"/dev/shm/deepspeed_allreduce_buffer_*_{port}_*")
    assert not left, f"shared-memory buffers left behind: {left}"
    return Run(out_dir, log)


def _step_of(tag: str) -> int:
    return int(tag.replace("global_step", ""))


def train_and_kill(run_path: Path, ds_path: Path, out_dir: Path, past_step: int = 0,
                   rows_after: int = 1, timeout: float = 600) -> int:
    """Start a job, SIGKILL launcher and ranks once a checkpoint of a step > ``past_step``
    is ``latest`` and ``rows_after`` more steps are logged; returns the checkpoint's step."""
    cmd = train_command(run_path, ds_path, out_dir)
    log_path = out_dir.parent / f"{out_dir.name}.killed.log"
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w", encoding="utf-8") as log:
        proc = subprocess.Popen(cmd, cwd=str(REPO), env=job_env(), stdout=log,
                                stderr=subprocess.STDOUT)
    latest, steps = out_dir / "checkpoints" / "latest", out_dir / "steps.csv"
    deadline = time.monotonic() + timeout
    try:
        while True:
            if proc.poll() is not None:
                raise AssertionError(
                    f"the job ended ({proc.returncode}) before it could be killed after a "
                    f"checkpoint past step {past_step}:\n{log_path.read_text()[-3000:]}")
            assert time.monotonic() < deadline, "no checkpoint to kill after"
            tag = latest.read_text().strip() if latest.exists() else ""
            if tag and _step_of(tag) > past_step and steps.exists():
                logged = steps.read_text().count("\n") - 1
                if logged >= _step_of(tag) + rows_after:
                    _kill_tree(proc.pid)
                    proc.wait()
                    return _step_of(tag)
            time.sleep(0.002)
    finally:
        if proc.poll() is None:
            _kill_tree(proc.pid)
            proc.wait()


def _kill_tree(pid: int) -> None:
    """SIGKILL the ranks (torchrun starts each in its own session) and then the launcher."""
    import psutil  # a DeepSpeed dependency

    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    for child in children:
        try:
            child.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    psutil.wait_procs(children, timeout=30)


def plan_of(ds_path: Path):
    from seesaw_ds.config import load_config_file, plan_from_ds_config

    return plan_from_ds_config(load_config_file(str(ds_path)), WORLD)


def planned_batches(plan) -> List[int]:
    return [setting.global_batch for _, _, setting in plan.iter_steps()]


def comparable(summary: Dict[str, Any]) -> Dict[str, Any]:
    """A summary without the fields that measure time."""
    return {k: v for k, v in summary.items() if k not in ("wall_seconds", "hook_seconds")}
