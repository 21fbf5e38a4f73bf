"""The runner of ``seesaw-ds cbs``: branches from a run's checkpoints, their losses, the
critical batch per checkpoint, a fitted curve, a JSON record and a figure.

Each branch is a normal run of ours (``python -m seesaw_ds.train --resume
--allow-plan-change --stop-at-tokens T --eval-at-stop``) in its own folder
``<out>/t<tokens>/B<batch>/`` whose checkpoint folder starts as a copy of the base
checkpoint; a branch whose ``summary.json`` exists is not run again, so an interrupted
measurement picks up where it stopped. The decisions and the fit are the pure pieces of
:mod:`seesaw_ds.cbs.branching` and :mod:`seesaw_ds.cbs.fit`.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from seesaw_ds.atomic_files import write_json_atomic
from seesaw_ds.cbs.branching import branch_ds_config, branch_lr, critical_batch
from seesaw_ds.cbs.fit import fit_power_law
from seesaw_ds.distributed import free_port
from seesaw_ds.errors import SeesawConfigError

__all__ = ["Checkpoint", "list_checkpoints", "nearest_checkpoints", "BranchSet",
           "plan_branches", "measure", "plot_cbs"]

_TAG = re.compile(r"^global_step(\d+)$")


@dataclass(frozen=True)
class Checkpoint:
    tag: str
    tokens: int


def list_checkpoints(checkpoint_dir: str) -> List[Checkpoint]:
    """The Seesaw checkpoints (``global_stepN`` with a sidecar) in ``checkpoint_dir``, by
    token count."""
    from seesaw_ds.deepspeed_adapter.universal import checkpoint_layout

    found = []
    if os.path.isdir(checkpoint_dir):
        for name in os.listdir(checkpoint_dir):
            if _TAG.match(name):
                layout = checkpoint_layout(checkpoint_dir, name)
                if layout is not None:
                    found.append(Checkpoint(name, int(layout["consumed_tokens"])))
    return sorted(found, key=lambda c: c.tokens)


@dataclass(frozen=True)
class BranchSet:
    """The branches of one checkpoint: ``configs[batch]`` is each branch's DeepSpeed config;
    ``lr_ckpt`` and ``batch_ckpt`` the base's setting of the step after the checkpoint;
    ``stop_tokens`` where every branch ends."""

    checkpoint: Checkpoint
    lr_ckpt: float
    batch_ckpt: int
    stop_tokens: int
    lrs: Dict[int, float]
    configs: Dict[int, dict]


def _lcm(values: Sequence[int]) -> int:
    result = 1
    for value in values:
        result = result * value // math.gcd(result, value)
    return result


def nearest_checkpoints(checkpoints: Sequence[Checkpoint],
                        at_tokens: Sequence[float]) -> List[Checkpoint]:
    """The checkpoint nearest each of ``at_tokens`` (each chosen once), by token count."""
    chosen = {min(checkpoints, key=lambda c: abs(c.tokens - target)) for target in at_tokens}
    return sorted(chosen, key=lambda c: c.tokens)


def branch_tokens_aligned(branch_tokens: float, batches: Sequence[int], seq_length: int) -> int:
    """``branch_tokens`` rounded up to a whole number of steps of every batch, so all
    branches of a checkpoint stop at the same token count."""
    unit = _lcm(batches) * seq_length
    return max(1, math.ceil(branch_tokens / unit)) * unit


def base_setting_after(steps_csv: str, tokens: int) -> Optional[Tuple[float, int]]:
    """``(lr, global_batch)`` of the base run's step that started at ``tokens`` (its
    ``steps.csv``: what it really used, online decisions included), or None if not logged."""
    import csv

    if not os.path.isfile(steps_csv):
        return None
    previous = None
    with open(steps_csv, encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if previous is not None and int(previous["tokens"]) == tokens:
                return float(row["lr"]), int(row["global_batch"])
            previous = row
    return None


def plan_branches(base_ds: dict, checkpoint: Checkpoint, batches: Sequence[int],
                  branch_tokens: int, dp_size: int,
                  used: Optional[Tuple[float, int]] = None) -> BranchSet:
    """Each batch's branch config from ``checkpoint``; a batch the layout cannot run (or a
    branch past the base's token budget) is refused with one line, before any training.
    ``used``: the base's ``(lr, batch)`` after the checkpoint as logged (an adaptive or
    guarded run's online decisions are not in its config's plan); default the plan's."""
    from seesaw_ds.config import plan_from_ds_config

    base_plan = plan_from_ds_config(base_ds, dp_size)
    total = base_plan.total_tokens
    stop = checkpoint.tokens + branch_tokens
    if stop > total:
        raise SeesawConfigError(
            f"cbs: the branch of {checkpoint.tag} ({checkpoint.tokens:,} tokens) would end at "
            f"{stop:,} tokens, past the run's seesaw.total_tokens {int(total):,}: lower "
            "--branch-tokens or leave that checkpoint out (--max-tokens).")
    setting = base_plan.at_tokens(checkpoint.tokens)
    lr_ckpt, batch_ckpt = used if used is not None else (setting.lr, setting.global_batch)
    lrs, configs = {}, {}
    for batch in batches:
        lr = branch_lr(lr_ckpt, batch_ckpt, batch)
        unit = branch_ds_config(base_ds, batch, 1.0)  # the LR shape at peak 1
        try:
            shape = plan_from_ds_config(unit, dp_size).at_tokens(checkpoint.tokens).lr
        except SeesawConfigError as error:
            raise SeesawConfigError(f"cbs: a branch at batch {batch} cannot run: {error}")
        lrs[batch] = lr
        configs[batch] = branch_ds_config(base_ds, batch, lr / shape)
    return BranchSet(checkpoint, lr_ckpt, batch_ckpt, stop, lrs, configs)


def _branch_run_config(base_run: dict, folder: str) -> dict:
    run = json.loads(json.dumps(base_run))
    run["output_dir"] = folder
    checkpoint = dict(run.get("checkpoint") or {})
    checkpoint.pop("dir", None)  # the branch's own folder, never the base's
    checkpoint["interval_tokens"] = None
    run["checkpoint"] = checkpoint
    return run


def _seed_checkpoint(base_dir: str, tag: str, branch_dir: str) -> None:
    """The branch's checkpoint folder: the base checkpoint copied, ``latest`` naming it
    (kept as it is when the branch already saved a later one)."""
    target = os.path.join(branch_dir, tag)
    if os.path.isfile(os.path.join(branch_dir, "latest")):
        return
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(os.path.join(base_dir, tag), target)
    with open(os.path.join(branch_dir, "latest"), "w", encoding="utf-8") as handle:
        handle.write(tag)


def _final_loss(folder: str, stop_tokens: int) -> Optional[dict]:
    path = os.path.join(folder, "curve.json")
    if not os.path.isfile(os.path.join(folder, "summary.json")) or not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as handle:
        curve = json.load(handle)
    if not curve or curve[-1]["tokens"] != stop_tokens:  # another budget: train it again
        return None
    return curve[-1]


def _train_command(nproc: int, run_path: str, ds_path: str, folder: str, stop: int) -> list:
    args = ["-m", "seesaw_ds.train", "--run-config", run_path, "--deepspeed_config", ds_path,
            "--output-dir", folder, "--resume", "--allow-plan-change",
            "--stop-at-tokens", str(stop), "--eval-at-stop", "--no-progress"]
    if nproc == 1:
        return [sys.executable, *args]
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
            "--master_port", str(free_port()), *args]


def run_branch(branches: BranchSet, batch: int, base_run: dict, base_checkpoint_dir: str,
               out_dir: str, nproc: int, keep_checkpoints: bool,
               log: Callable[[str], None]) -> dict:
    """One branch, skipped when its summary and final point exist; its final curve point."""
    ckpt = branches.checkpoint
    folder = os.path.join(out_dir, f"t{ckpt.tokens}", f"B{batch}")
    point = _final_loss(folder, branches.stop_tokens)
    if point is not None:
        log(f"cbs: {ckpt.tag} B {batch}: done before, val loss {point['val_loss']:.6f}")
        return point
    os.makedirs(folder, exist_ok=True)
    run_path, ds_path = os.path.join(folder, "run.json"), os.path.join(folder, "ds.json")
    write_json_atomic(run_path, _branch_run_config(base_run, folder))
    write_json_atomic(ds_path, branches.configs[batch])
    _seed_checkpoint(base_checkpoint_dir, ckpt.tag, os.path.join(folder, "checkpoints"))
    command = _train_command(nproc, run_path, ds_path, folder, branches.stop_tokens)
    log(f"cbs: {ckpt.tag} ({ckpt.tokens:,} tokens) branch B {batch} at LR "
        f"{branches.lrs[batch]:.4g} to {branches.stop_tokens:,} tokens")
    with open(os.path.join(folder, "train.log"), "w", encoding="utf-8") as handle:
        code = subprocess.call(command, stdout=handle, stderr=subprocess.STDOUT,
                               env=dict(os.environ, PYTHONUNBUFFERED="1"))
    point = _final_loss(folder, branches.stop_tokens)
    if code != 0 or point is None:
        raise RuntimeError(f"cbs: the branch in {folder} failed (exit {code}); see "
                           f"{os.path.join(folder, 'train.log')}")
    if not keep_checkpoints:
        shutil.rmtree(os.path.join(folder, "checkpoints"), ignore_errors=True)
    return point


def measure(run_config_path: str, ds_config_path: str, out_dir: str, batches: Sequence[int],
            branch_tokens: float, tolerance: float, base_output_dir: Optional[str] = None,
            max_tokens: Optional[float] = None, at_tokens: Optional[Sequence[float]] = None,
            nproc: int = 1, keep_checkpoints: bool = False,
            log: Callable[[str], None] = print) -> dict:
    """Branch from every checkpoint of the base run (up to ``max_tokens``; with
    ``at_tokens``, only the checkpoint nearest each of those token counts), decide the
    critical batch of each and fit the curve; writes ``<out_dir>/cbs.json`` and returns it."""
    from seesaw_ds.config import load_config_file
    from seesaw_ds.run_config import load_run_config

    if not 0 <= tolerance < 1:
        raise SeesawConfigError(f"cbs: --tolerance = {tolerance} must lie in [0, 1), e.g. "
                                "0.01 for 1%.")
    base_run_raw = dict(load_config_file(run_config_path))
    if base_output_dir is not None:
        base_run_raw["output_dir"] = base_output_dir
    run = load_run_config(run_config_path, {"output_dir": base_output_dir})
    base_ds = load_config_file(ds_config_path)
    seq = int(base_ds["seesaw"]["seq_length"])
    aligned = branch_tokens_aligned(branch_tokens, batches, seq)
    checkpoints = [c for c in list_checkpoints(run.checkpoint_dir)
                   if c.tokens > 0 and (max_tokens is None or c.tokens <= max_tokens)]
    if not checkpoints:
        raise SeesawConfigError(
            f"cbs: no checkpoint in {run.checkpoint_dir} (up to --max-tokens): train the base "
            "run with checkpoint.interval_tokens set in its run config.")
    if at_tokens:
        checkpoints = nearest_checkpoints(checkpoints, at_tokens)
    from seesaw_ds.config import plan_from_ds_config

    total = plan_from_ds_config(base_ds, nproc).total_tokens
    late = [c for c in checkpoints if c.tokens + aligned > total]
    if late:
        log(f"cbs: leaving out {', '.join(c.tag for c in late)}: a branch of {aligned:,} "
            f"tokens would pass the run's {int(total):,}")
    checkpoints = [c for c in checkpoints if c not in late]
    if not checkpoints:
        raise SeesawConfigError(
            f"cbs: no checkpoint leaves room for a branch of {aligned:,} tokens before the "
            f"run's seesaw.total_tokens {int(total):,}: lower --branch-tokens.")
    steps_csv = os.path.join(run.output_dir, "steps.csv")
    sets = [plan_branches(base_ds, c, batches, aligned, nproc,
                          base_setting_after(steps_csv, c.tokens)) for c in checkpoints]
    log(f"cbs: {len(sets)} checkpoints x {len(batches)} batches, {aligned:,} tokens each")
    rows = []
    for branches in sets:
        losses = {}
        for batch in batches:
            point = run_branch(branches, batch, base_run_raw, run.checkpoint_dir, out_dir,
                               nproc, keep_checkpoints, log)
            losses[batch] = float(point["val_loss"])
        decision = critical_batch(losses, tolerance)
        log(f"cbs: {branches.checkpoint.tag}: critical batch {decision.batch}"
            + (" (or more: the largest tried matched)" if decision.censored else ""))
        rows.append({"tag": branches.checkpoint.tag, "tokens": branches.checkpoint.tokens,
                     "base_batch": branches.batch_ckpt, "base_lr": branches.lr_ckpt,
                     "branch_lrs": {str(b): lr for b, lr in branches.lrs.items()},
                     "losses": {str(b): v for b, v in losses.items()},
                     "critical_batch": decision.batch, "censored": decision.censored,
                     "threshold": decision.threshold})
    fit = fit_power_law([(row["tokens"], row["critical_batch"]) for row in rows])
    record = {"base_run_config": run_config_path, "base_ds_config": ds_config_path,
              "branch_tokens": aligned, "batches": list(batches), "tolerance": tolerance,
              "lr_rule": "lr_ckpt * sqrt(B / B_ckpt)", "checkpoints": rows,
              "fit": fit.to_dict()}
    os.makedirs(out_dir, exist_ok=True)
    write_json_atomic(os.path.join(out_dir, "cbs.json"), record)
    return record


def plot_cbs(record: dict, path: str) -> None:
    """Critical batch against tokens (open markers: censored, at least this) and the fit."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from seesaw_ds.cbs.fit import PowerLaw

    rows = record["checkpoints"]
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for censored, marker, label in ((False, "o", "measured"), (True, "^", ">= (censored)")):
        xs = [r["tokens"] for r in rows if r["censored"] == censored]
        ys = [r["critical_batch"] for r in rows if r["censored"] == censored]
        if xs:
            ax.plot(xs, ys, marker, label=label, fillstyle="full" if not censored else "none")
    fit = PowerLaw.from_dict(record["fit"])
    lo, hi = min(r["tokens"] for r in rows), max(r["tokens"] for r in rows)
    grid = [lo * (hi / lo) ** (i / 50) for i in range(51)] if hi > lo else [lo]
    ax.plot(grid, [fit(t) for t in grid], "-",
            label=f"fit {fit.a:.3g} x t^{fit.b:.2f}")
    ax.set_xscale("log")
    ax.set_yscale("log", base=2)
    ax.set_xlabel("tokens at the checkpoint")
    ax.set_ylabel("critical batch (samples)")
    ax.set_title(f"branches of {record['branch_tokens']:,} tokens, tolerance "
                 f"{record['tolerance']:g}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
