"""Measuring the critical batch size directly, by branching (Merrill et al., arXiv
2505.23971): pure pieces, no torch, no files.

From a checkpoint at ``t`` tokens (batch ``B_ckpt``, LR ``lr_ckpt`` there) short branches
train the same ``branch_tokens`` at several constant batches ``B``, each at the LR of the
plan's rule, ``lr_ckpt x sqrt(B / B_ckpt)``, so ``lr / sqrt(B)`` stays on the base path; the
branch keeps the base run's LR shape (its peak is rescaled so the LR at ``t`` is that
value). The critical batch at ``t`` is the largest batch whose loss after the branch matches
the smallest batch's within a relative tolerance.

- :func:`branch_ds_config`: the DeepSpeed config of one branch (a normal run of ours),
- :func:`branch_lr`: the LR rule,
- :func:`critical_batch`: the decision rule on measured losses.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Dict, Mapping

from seesaw_ds.errors import SeesawConfigError

__all__ = ["branch_lr", "branch_ds_config", "CriticalBatch", "critical_batch",
           "parse_batches"]

#: Keys of the seesaw section that belong to a growing schedule or an online policy; a branch
#: is a constant-batch run, so they go.
_GROWTH_KEYS = ("batch_growth", "lr_cut", "max_batch", "strict", "adaptive", "final_batch",
                "batch_increment", "ramp_tokens", "lr_scaling", "batch_steps",
                "switch_fraction", "switch_batch", "cbs_guard")


def branch_lr(lr_ckpt: float, batch_ckpt: int, batch: int) -> float:
    """The LR of a branch at ``batch`` from a checkpoint at ``(lr_ckpt, batch_ckpt)``:
    ``lr_ckpt x sqrt(batch / batch_ckpt)`` (``lr / sqrt(B)`` kept on the base path)."""
    if batch_ckpt < 1 or batch < 1:
        raise ValueError(f"batches must be positive, got {batch_ckpt} and {batch}")
    return lr_ckpt * math.sqrt(batch / batch_ckpt)


def branch_ds_config(base: Mapping[str, Any], batch: int, peak_lr: float) -> Dict[str, Any]:
    """The base run's DeepSpeed config turned into one branch's: a constant batch ``batch``
    (``train_batch_size``) and the optimizer's peak LR ``peak_lr``; the base's LR schedule,
    token budget, micro-batch and everything else unchanged (the same sample order)."""
    config = copy.deepcopy(dict(base))
    section = dict(config.get("seesaw") or {})
    for key in _GROWTH_KEYS:
        section.pop(key, None)
    section["batch_schedule"] = "constant"
    config["seesaw"] = section
    config["train_batch_size"] = int(batch)
    config.pop("gradient_accumulation_steps", None)  # derived from the batch and micro
    optimizer = config.get("optimizer")
    if not isinstance(optimizer, dict) or not isinstance(optimizer.get("params"), dict):
        raise SeesawConfigError("cbs: the base DeepSpeed config has no optimizer.params.lr: "
                                "branches set their LR there.")
    optimizer = copy.deepcopy(optimizer)
    optimizer["params"]["lr"] = float(peak_lr)
    config["optimizer"] = optimizer
    return config


def parse_batches(text: str) -> list:
    """``"8,16,32"`` -> ``[8, 16, 32]`` (sorted, distinct, each >= 1)."""
    try:
        values = sorted({int(part) for part in str(text).split(",") if part.strip()})
    except ValueError:
        values = []
    if len(values) < 2 or values[0] < 1:
        raise SeesawConfigError(f"cbs: --batches = {text!r} must list at least two positive "
                                "integers, e.g. --batches 8,16,32,64.")
    return values


@dataclass(frozen=True)
class CriticalBatch:
    """The decision at one checkpoint: ``batch`` is the largest batch that matched (every
    smaller one matched too); ``censored``: the largest batch tried matched, so the critical
    batch is at least ``batch``; ``reference``: the smallest batch's loss."""

    batch: int
    censored: bool
    reference: float
    threshold: float


def critical_batch(losses: Mapping[int, float], tolerance: float) -> CriticalBatch:
    """The largest batch ``B`` such that every tried batch ``<= B`` reached a loss at most
    ``(1 + tolerance) x`` the smallest batch's, after the same branch tokens.

    Contiguous from the smallest batch: a batch past the first one that misses does not
    count even if it matches again (noise), so the answer never rests on one lucky branch.
    """
    if not 0 <= tolerance < 1:
        raise ValueError(f"tolerance = {tolerance} must lie in [0, 1)")
    if len(losses) < 2:
        raise ValueError("critical_batch needs the losses of at least two batches")
    batches = sorted(losses)
    reference = float(losses[batches[0]])
    if not math.isfinite(reference):
        raise ValueError(f"the smallest batch's loss is {reference}")
    threshold = reference * (1 + tolerance)
    found = batches[0]
    for batch in batches[1:]:
        value = float(losses[batch])
        if not (math.isfinite(value) and value <= threshold):
            return CriticalBatch(found, False, reference, threshold)
        found = batch
    return CriticalBatch(found, True, reference, threshold)

