"""The adaptive schedule's online decision: grow the batch whenever the measured critical
batch size allows it, on top of Seesaw's decay-driven growth.

Merrill et al. (arXiv 2505.23971) find the critical batch size near 0 at the start, rising
fast, then plateauing, and save 43% of steps with a batch warmup; Seesaw only grows while
the LR decays. :class:`AdaptiveGrowth` does both: the plan's Seesaw staircase stays in force,
and after every step the next rung (the batch in force x ``batch_growth``, rounded to the
batch multiple, at most ``max_batch`` or ``AUTO_BATCH_BOUND x B0``) is taken as soon as
``safety_factor x B_simple`` reaches it. A decision is a :class:`BatchLimit` floor from the
current token count on; the plan applies it with ``lr / sqrt(B)`` on the base's path and the
LR bounded by ``lr_ceiling x peak`` (see :class:`~seesaw_ds.schedules.AdaptiveBatch`).

Checking cadence: every optimizer step, with the estimate of that moment (measurements come
every ``PROBE_EVERY`` steps and are EMA-smoothed, so a decision waits for ``min_samples``
of them); one rung per step at most, so a sudden spike in the estimate cannot jump the
batch by more than ``batch_growth``. Inputs are all-reduced, so every rank decides alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from seesaw_ds.cbs.policy import LimitPolicy
from seesaw_ds.schedules import AdaptiveBatch, BatchLimit, Plan, round_to_multiple
from seesaw_ds.schedules.limits import limit_at

__all__ = ["AdaptiveGrowth", "GrowthDecision"]


@dataclass(frozen=True)
class GrowthDecision:
    """``floor`` is the batch floor in force from now on; ``changed``: a new limit."""

    floor: Optional[int]
    next_rung: Optional[int]
    limit: Optional[float]
    reason: str
    changed: bool = False


class AdaptiveGrowth(LimitPolicy):
    """Raises the batch floor one rung at a time while ``safety_factor x B_simple`` allows.

    Args:
        schedule: the plan's :class:`AdaptiveBatch` (growth, cap and adaptive options).
    """

    foreign_side = "cap"

    def __init__(self, schedule: AdaptiveBatch) -> None:
        self.schedule = schedule
        super().__init__(schedule.ema_decay)

    @property
    def held_at(self) -> Optional[int]:
        return None  # the adaptive policy never caps (kept for the driver's summary)

    def next_rung(self, ladder: Plan, batch: int) -> Optional[int]:
        """The batch after ``batch`` on the adaptive ladder, or None at the top."""
        top = ladder.batch_schedule.largest_batch(ladder.initial_batch)
        rung = max(batch + ladder.batch_multiple,
                   round_to_multiple(batch * self.schedule.batch_growth,
                                     ladder.batch_multiple))
        rung = min(rung, top)
        return rung if rung > batch else None

    def decide(self, ladder: Plan, tokens: float, current: int) -> GrowthDecision:
        """The floor for the step starting at ``tokens`` after a step of ``current``."""
        active = limit_at(self.limits, tokens)
        floor = active.floor if active is not None else None
        in_force = max(ladder.at_tokens(tokens).global_batch, floor or 0, current)
        rung = self.next_rung(ladder, in_force)
        estimate = self.estimator.estimate()
        if rung is None:
            return GrowthDecision(floor, None, None, "at the largest batch")
        if estimate.samples < self.schedule.min_samples or estimate.b_simple is None:
            return GrowthDecision(floor, rung, None, "estimate not ready")
        limit = self.schedule.safety_factor * estimate.b_simple
        if rung > limit:
            return GrowthDecision(floor, rung, limit,
                                  f"next rung {rung} > {self.schedule.safety_factor:g} x "
                                  f"B_simple = {limit:.1f}")
        self.limits.append(BatchLimit(float(tokens), floor=rung))
        return GrowthDecision(rung, rung, limit,
                              f"next rung {rung} <= {self.schedule.safety_factor:g} x "
                              f"B_simple = {limit:.1f}: growing", changed=True)
