"""A batch schedule planned offline from a measured critical-batch curve (``seesaw-ds cbs``):
pure, no online decisions.

Given ``B*(t) = a x t^b`` (:class:`~seesaw_ds.cbs.fit.PowerLaw`), the batch climbs rungs
(``max(B + multiple, round(B x growth))``, as the adaptive schedule's) and takes each rung at
the first token where ``safety x B*(t)`` reaches it, so the batch stays at or below the
scaled curve. The result is a ``batch_schedule: step`` section with ``lr_scaling: sqrt``:
``lr = base(t) x sqrt(B / B0)``, so ``lr / sqrt(B)`` stays on the base path.
``seesaw-ds plan CONFIG --cbs-curve cbs.json`` prints its plan.

Note:
    A flat or falling curve (``b <= 0``) plans no growth: raise the starting batch instead.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Dict, List, Mapping, Optional, Tuple

from seesaw_ds.cbs.fit import PowerLaw
from seesaw_ds.errors import SeesawConfigError
from seesaw_ds.schedules import round_to_multiple

__all__ = ["planned_batch_steps", "planned_ds_config"]


def _next_rung(batch: int, growth: float, multiple: int) -> int:
    return max(batch + multiple, round_to_multiple(batch * growth, multiple))


def planned_batch_steps(curve: PowerLaw, initial_batch: int, total_tokens: float,
                        multiple: int, growth: float = 2.0, safety: float = 1.0,
                        max_batch: Optional[int] = None) -> List[Tuple[int, int]]:
    """``[(start_tokens, batch), ...]``: each rung from the first whole token where
    ``safety x curve(t) >= rung``, below ``total_tokens``, at most ``max_batch``."""
    if not (growth > 1 and safety > 0 and multiple >= 1 and initial_batch >= 1):
        raise ValueError("need growth > 1, safety > 0, multiple >= 1, initial_batch >= 1")
    steps: List[Tuple[int, int]] = []
    if curve.b <= 0 or curve.a <= 0:
        return steps
    batch = initial_batch
    while True:
        rung = _next_rung(batch, growth, multiple)
        if max_batch is not None and rung > max_batch:
            return steps
        start = math.ceil((rung / (safety * curve.a)) ** (1.0 / curve.b))
        if start >= total_tokens:
            return steps
        start = max(start, 1, steps[-1][0] + 1 if steps else 1)
        steps.append((start, rung))
        batch = rung


def planned_ds_config(config: Mapping[str, Any], curve: PowerLaw, dp_size: int,
                      growth: float = 2.0, safety: float = 1.0) -> Dict[str, Any]:
    """``config`` with its seesaw section replaced by the planned ``step`` schedule (its
    LR schedule, token budget and starting batch kept)."""
    out = copy.deepcopy(dict(config))
    section = dict(out.get("seesaw") or {})
    if "train_batch_size" not in out or "total_tokens" not in section:
        raise SeesawConfigError("--cbs-curve needs train_batch_size and seesaw.total_tokens "
                                "in the config.")
    initial = int(out["train_batch_size"])
    multiple = int(section.get("batch_multiple") or
                   int(out.get("train_micro_batch_size_per_gpu", 1)) * dp_size)
    from seesaw_ds.config import parse_token_count

    total = parse_token_count("seesaw.total_tokens", section["total_tokens"])
    steps = planned_batch_steps(curve, initial, total, multiple, growth, safety,
                                section.get("max_batch"))
    for key in ("batch_growth", "lr_cut", "max_batch", "strict", "adaptive", "final_batch",
                "batch_increment", "ramp_tokens", "switch_fraction", "switch_batch",
                "cbs_guard", "batch_steps", "lr_scaling"):
        section.pop(key, None)
    if steps:
        section.update(batch_schedule="step", batch_steps=[list(s) for s in steps],
                       lr_scaling="sqrt")
    else:
        section["batch_schedule"] = "constant"
    out["seesaw"] = section
    return out
