"""The product part of ``bench/gpu_check.sh``: paper launch path runs, checked against the plan.

Each run is ``launch/single_node.sh SHAPE B0 seesaw`` (the paper's launch script: it resolves
the run config, prepares the data once, then ``deepspeed --num_gpus N --module
seesaw_ds.train``) with ``SEESAW_DS_CONFIG`` / ``SEESAW_RUN_CONFIG`` pointing at a paper
config cut short (``seesaw.total_tokens``) and the data swapped for the standard-library
corpus (nothing can be fetched on the GPU machine):

- ``plain``: to the end; every step's global batch, micro-batch, accumulation and LR
  (``steps.csv``) and the optimizer's own LR (DeepSpeed's ``Train/Samples/lr`` monitor)
  equal the plan;
- ``killed``: the same run, SIGKILLed after a checkpoint past the first batch change, then
  ``--resume``: every row equals ``plain``'s (losses bitwise on CPU; on a GPU, whose kernels
  are not bitwise deterministic, within ``loss_tolerance``);
- ``guard``: the critical-batch guard on; the run ends, its decisions are reported, and
  every step before its first decision equals the plan.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

REPO = Path(__file__).resolve().parents[1]
SCHEDULE_COLUMNS = ("step", "tokens", "lr", "global_batch", "micro_batch", "grad_accum")

__all__ = ["product_runs", "run_logged"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ds_config(s: Dict[str, Any], gpu: bool, guard: bool = False) -> Dict[str, Any]:
    """``ds_configs/150m_b128_seesaw.json`` (the paper's) with the budget cut short."""
    config = json.loads((REPO / "ds_configs" / "150m_b128_seesaw.json").read_text())
    config["train_batch_size"] = s["b0"]
    config["train_micro_batch_size_per_gpu"] = s["micro"]
    config["steps_per_print"] = 10 ** 9
    config["csv_monitor"]["job_name"] = "gpu_check"
    section = config["seesaw"]
    section.update(total_tokens=s["total_tokens"], seq_length=s["seq"],
                   batch_multiple=s["micro"], max_micro_batch=s["micro"])
    if guard:
        section["cbs_guard"] = {"enabled": True}
    if not gpu:  # the CPU fallback: fp32 and torch AdamW (no CUDA kernels to build)
        config["bf16"] = {"enabled": False}
        config["optimizer"]["params"]["torch_adam"] = True
    elif not s.get("fused_adam", True):
        config["optimizer"]["params"]["torch_adam"] = True
    return config


def run_config(s: Dict[str, Any], data_dir: Path) -> Dict[str, Any]:
    return {
        "model": {"shape": s["shape"], "z_loss_coef": 1e-4},
        "data": {"prepared_dir": str(data_dir), "vocab_size": s["data_vocab"],
                 "max_bytes": s["data_bytes"], "split": s["split"]},
        "eval": {"interval_tokens": s["eval_interval"], "batches": s["eval_batches"],
                 "batch_size": s["eval_batch_size"]},
        "checkpoint": {"interval_tokens": s["checkpoint_interval"]},
        "seed": 0,
    }


class Launch:
    """One ``launch/single_node.sh`` job of the check (a config folder and a results folder)."""

    def __init__(self, work: Path, name: str, s: Dict[str, Any], gpu: bool, ds: Dict,
                 run: Dict, log) -> None:
        self.work, self.name, self.s, self.gpu, self.log = work, name, s, gpu, log
        self.config_dir = work / "configs" / name
        self.config_dir.mkdir(parents=True, exist_ok=True)
        self.ds_path = self.config_dir / "ds.json"
        self.run_path = self.config_dir / "run.yaml"
        self.ds_path.write_text(json.dumps(ds, indent=1))
        self.run_path.write_text(json.dumps(run, indent=1))  # JSON is YAML
        self.results = work / "results" / name
        self.out = self.results / f"{s['shape']}_b{s['b0']}_seesaw"
        self.logs: List[str] = []

    def command(self, *extra: str) -> List[str]:
        return ["bash", str(REPO / "launch" / "single_node.sh"), self.s["shape"],
                str(self.s["b0"]), "seesaw", "--no-progress", *extra]

    def env(self) -> Dict[str, str]:
        env = dict(os.environ, SEESAW_DS_CONFIG=str(self.ds_path),
                   SEESAW_RUN_CONFIG=str(self.run_path), SEESAW_RESULTS=str(self.results),
                   NGPUS="1", MASTER_PORT=str(_free_port()), SEESAW_DATA="prepare",
                   PYTHON=sys.executable, PYTHONUNBUFFERED="1")
        env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")])
        return env

    def _log_path(self) -> Path:
        path = self.work / "logs" / f"{self.name}.{len(self.logs)}.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        self.logs.append(str(path))
        return path

    def run(self, *extra: str) -> float:
        """Run to the end; wall seconds. Raises with the log tail unless it exits 0 within
        ``s["launch_timeout"]`` seconds (then launcher and ranks are killed)."""
        path, started = self._log_path(), time.perf_counter()
        self.log(f"  {self.name}: {' '.join(self.command(*extra)[2:])}")
        code = run_logged(self.command(*extra), REPO, self.env(), path, self.s["launch_timeout"])
        if code != 0:
            raise RuntimeError(f"{self.name} exited {code}: {_tail(path)}")
        return time.perf_counter() - started

    def run_and_kill(self, past_step: int, rows_after: int) -> int:
        """Start, SIGKILL launcher and ranks once ``latest`` names a checkpoint of a step
        > ``past_step`` and ``rows_after`` more steps are logged; the checkpoint's step."""
        path = self._log_path()
        latest, steps = self.out / "checkpoints" / "latest", self.out / "steps.csv"
        deadline = time.monotonic() + self.s["launch_timeout"]
        with open(path, "w", encoding="utf-8") as handle:
            proc = subprocess.Popen(self.command(), cwd=str(REPO), env=self.env(),
                                    stdout=handle, stderr=subprocess.STDOUT)
        try:
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"{self.name} ended ({proc.returncode}) before the "
                                       f"kill past step {past_step}: {_tail(path)}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.name}: no checkpoint past step {past_step}")
                tag = latest.read_text().strip() if latest.exists() else ""
                if tag and int(tag.replace("global_step", "")) > past_step and steps.exists():
                    saved = int(tag.replace("global_step", ""))
                    if steps.read_text().count("\n") - 1 >= saved + rows_after:
                        _kill_tree(proc.pid)
                        proc.wait()
                        self.log(f"  {self.name}: SIGKILL after checkpoint {tag}")
                        return saved
                time.sleep(0.005)
        finally:
            if proc.poll() is None:
                _kill_tree(proc.pid)
                proc.wait()

    def rows(self) -> List[Dict[str, str]]:
        with open(self.out / "steps.csv", encoding="utf-8") as handle:
            return list(csv.DictReader(handle))

    def summary(self) -> Dict[str, Any]:
        return json.loads((self.out / "summary.json").read_text())

    def monitor_lr(self) -> Optional[List[List[float]]]:
        """DeepSpeed's own ``Train/Samples/lr`` rows (samples, lr), if its monitor wrote them."""
        found = sorted(self.out.glob("monitor/**/Train_Samples_lr.csv"))
        if not found:
            return None
        with open(found[0], encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
        return [[float(r[0]), float(r[1])] for r in rows[1:] if len(r) >= 2]


def run_logged(command: List[str], cwd: Path, env: Dict[str, str], log: Path,
               timeout: float) -> int:
    """Run ``command`` with its output in ``log``; past ``timeout`` seconds kill it and every
    process it started (exit code -9)."""
    with open(log, "w", encoding="utf-8") as handle:
        proc = subprocess.Popen(command, cwd=str(cwd), env=env, stdout=handle,
                                stderr=subprocess.STDOUT)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_tree(proc.pid)
        proc.wait()
        with open(log, "a", encoding="utf-8") as handle:
            handle.write(f"\n[gpu_check] killed after {timeout:.0f} s\n")
        return -9


def _tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:]


def _kill_tree(pid: int) -> None:
    """SIGKILL every descendant (the deepspeed launcher's ranks), then the launcher."""
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


def compare_with_plan(rows: List[Dict[str, str]], plan, monitor=None,
                      until_step: Optional[int] = None) -> Dict[str, Any]:
    """Every logged step (up to ``until_step``) against ``plan.iter_steps()``."""
    planned = list(plan.iter_steps())
    mismatches = []
    checked = rows if until_step is None else [r for r in rows if int(r["step"]) <= until_step]
    for row in checked:
        index = int(row["step"]) - 1
        if index >= len(planned):
            mismatches.append({"step": index + 1, "beyond_plan": True})
            continue
        _, start, setting = planned[index]
        expected = {"tokens": start + setting.global_batch * plan.seq_length,
                    "global_batch": setting.global_batch, "micro_batch": setting.micro_batch,
                    "grad_accum": setting.grad_accum}
        got = {key: int(row[key]) for key in expected}
        lr_ok = abs(float(row["lr"]) - setting.lr) <= 1e-9 * setting.lr
        if got != expected or not lr_ok:
            mismatches.append({"step": index + 1, "got": dict(got, lr=float(row["lr"])),
                               "planned": dict(expected, lr=setting.lr)})
    result = {"steps": len(checked), "planned_steps": len(planned), "mismatches": mismatches[:10],
              "batch_changes": sum(1 for a, b in zip(checked, checked[1:])
                                   if a["global_batch"] != b["global_batch"]),
              "batches": sorted({int(r["global_batch"]) for r in checked})}
    result["every_step_equals_plan"] = not mismatches and (
        until_step is not None or len(checked) == len(planned))
    if monitor is not None:  # the optimizer's LR after each step = the plan's at that sample
        off = [(samples, lr) for samples, lr in monitor
               if samples * plan.seq_length < plan.total_tokens
               and abs(lr - plan.at_tokens(int(samples) * plan.seq_length).lr)
               > 1e-6 * abs(lr)]
        result["optimizer_lr_rows"] = len(monitor)
        result["optimizer_lr_equals_plan"] = not off and len(monitor) > 0
        result["optimizer_lr_mismatches"] = off[:10]
    return result


def compare_runs(reference: List[Dict[str, str]], resumed: List[Dict[str, str]],
                 tolerance: float) -> Dict[str, Any]:
    """Row by row: schedule columns equal, losses equal (bitwise, or within ``tolerance``)."""
    schedule_equal = len(reference) == len(resumed) and all(
        all(a[c] == b[c] for c in SCHEDULE_COLUMNS) for a, b in zip(reference, resumed))
    diffs = [abs(float(a["train_loss"]) - float(b["train_loss"]))
             for a, b in zip(reference, resumed)]
    bitwise = schedule_equal and all(a["train_loss"] == b["train_loss"]
                                     for a, b in zip(reference, resumed))
    worst = max(diffs) if diffs else None
    return {"rows": len(resumed), "reference_rows": len(reference),
            "schedule_identical": schedule_equal, "losses_bitwise_identical": bitwise,
            "loss_max_abs_diff": worst, "loss_tolerance": tolerance,
            "continuation_identical": schedule_equal and (
                bitwise or (worst is not None and worst <= tolerance))}


def product_runs(s: Dict[str, Any], gpu: bool, work: Path, log) -> Dict[str, Any]:
    """The three launch-path runs; a dict of what each showed (see the module docstring)."""
    from seesaw_ds.config import plan_from_ds_config

    data_dir = work / "data"
    run = run_config(s, data_dir)
    plain_ds, guard_ds = ds_config(s, gpu), ds_config(s, gpu, guard=True)
    plan = plan_from_ds_config(json.loads(json.dumps(plain_ds)), 1)
    result: Dict[str, Any] = {
        "launch": "launch/single_node.sh SHAPE B0 seesaw (deepspeed --num_gpus 1 --module "
                  "seesaw_ds.train)",
        "config": "ds_configs/150m_b128_seesaw.json with train_batch_size, micro-batch and "
                  "seesaw.total_tokens cut: " + json.dumps(
                      {k: s[k] for k in ("b0", "micro", "total_tokens")}),
        "planned_steps": plan.optimizer_steps,
        "baseline_steps": plan.baseline_optimizer_steps}

    plain = Launch(work, "plain", s, gpu, plain_ds, run, log)
    wall = plain.run()
    rows = plain.rows()
    result["plain"] = compare_with_plan(rows, plan, plain.monitor_lr())
    summary = plain.summary()
    result["plain"].update(wall_seconds=wall, train_seconds=summary["wall_seconds"],
                           final_val_loss=summary["final_val_loss"],
                           tokens_per_second=summary["tokens"] / summary["wall_seconds"],
                           logs=plain.logs)
    log(f"  plain: {len(rows)} steps, {result['plain']['batch_changes']} batch changes, "
        f"every step equals the plan: {result['plain']['every_step_equals_plan']}")

    batches = [int(r["global_batch"]) for r in rows]
    first_change = next((i + 1 for i in range(1, len(batches)) if batches[i] != batches[i - 1]),
                        1)
    killed = Launch(work, "killed", s, gpu, plain_ds, run, log)
    saved = killed.run_and_kill(past_step=first_change, rows_after=2)
    killed.run("--resume")
    result["kill_resume"] = compare_runs(rows, killed.rows(), s["loss_tolerance"])
    result["kill_resume"].update(checkpoint_step=saved, killed_after_batch_change_at=first_change,
                                 final_val_loss=killed.summary()["final_val_loss"],
                                 logs=killed.logs)
    log(f"  kill at checkpoint {saved} + resume: continuation identical: "
        f"{result['kill_resume']['continuation_identical']}")

    guard = Launch(work, "guard", s, gpu, guard_ds, run, log)
    guard.run()
    guard_summary = guard.summary()["cbs_guard"]
    decisions = guard_summary.get("decisions", [])
    first = min((d["step"] for d in decisions), default=None)
    result["guard"] = compare_with_plan(guard.rows(), plan, until_step=first)
    result["guard"].update(cbs_guard=guard_summary, first_decision_step=first,
                           finished=guard.summary()["finished"], logs=guard.logs)
    log(f"  guard: {len(decisions)} decisions, steps before the first equal the plan: "
        f"{result['guard']['every_step_equals_plan']}")
    result["ok"] = bool(result["plain"]["every_step_equals_plan"]
                        and result["plain"].get("optimizer_lr_equals_plan", True)
                        and result["plain"]["batch_changes"] >= 3
                        and result["kill_resume"]["continuation_identical"]
                        and result["guard"]["every_step_equals_plan"]
                        and result["guard"]["finished"])
    return result
