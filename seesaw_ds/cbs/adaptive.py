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
of them); one rung per step at most. That does not bound a spike's effect by
``batch_growth``: one estimate is reused for the ``PROBE_EVERY`` steps until the next
measurement, so a spike can climb up to ``PROBE_EVERY`` rungs, and a rung is at least one
batch multiple (at B 8 with multiple 4 and growth 1.1 the next rung is 12, 1.5x). Under the
default rule floors only rise, so growth taken on a spike is kept for the rest of the run.
Inputs are all-reduced, so every rank decides alike.

``adaptive.confidence`` (e.g. 0.9; default None keeps the rule above) judges the
estimator's interval instead of its point value (:meth:`GradientNoiseScale.interval`):

- grow one rung only while the rung is <= ``safety_factor x`` the interval's lower bound,
  and at most one rung per new measurement (a reused estimate never climbs twice);
- release: while the floor in force is above ``safety_factor x`` the upper bound, lower it
  to the highest rung (counted up from the plan's own batch) that the upper bound allows,
  or remove it; the plan then follows the staircase again, and where a floor still lifts
  the batch ``lr / sqrt(B)`` stays on the base path, as for any floor.

Between the two bounds nothing changes, so the batch does not oscillate on a steady
estimate.
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
        self._grown_at_sample = -1  # confidence rule: the measurement count of the last rung

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
        if self.schedule.confidence is not None:
            return self._decide_with_interval(ladder, tokens)
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

    # ---- the confidence rule (adaptive.confidence) -------------------------------------

    def _decide_with_interval(self, ladder: Plan, tokens: float) -> GrowthDecision:
        active = limit_at(self.limits, tokens)
        floor = active.floor if active is not None else None
        base = ladder.at_tokens(tokens).global_batch
        in_force = max(base, floor or 0)
        rung = self.next_rung(ladder, in_force)
        estimate = self.estimator.estimate()
        bounds = self.estimator.interval(self.schedule.confidence)
        if estimate.samples < self.schedule.min_samples or bounds is None:
            return GrowthDecision(floor, rung, None, "estimate not ready")
        safety = self.schedule.safety_factor
        low, high = safety * bounds[0], safety * bounds[1]
        if floor is not None and floor > max(base, high):
            kept = self._highest_rung(ladder, base, high, below=floor)
            kept = kept if kept > base else None
            self.limits.append(BatchLimit(float(tokens), floor=kept))
            return GrowthDecision(kept, rung, high,
                                  f"floor {floor} > {safety:g} x upper bound = {high:.1f}: "
                                  f"released to {kept or base}", changed=True)
        if rung is None:
            return GrowthDecision(floor, None, low, "at the largest batch")
        if rung > low:
            return GrowthDecision(floor, rung, low,
                                  f"next rung {rung} > {safety:g} x lower bound = {low:.1f}")
        if estimate.samples <= self._grown_at_sample:
            return GrowthDecision(floor, rung, low, "waiting for a new measurement")
        self._grown_at_sample = estimate.samples
        self.limits.append(BatchLimit(float(tokens), floor=rung))
        return GrowthDecision(rung, rung, low,
                              f"next rung {rung} <= {safety:g} x lower bound = {low:.1f}: "
                              "growing", changed=True)

    def _highest_rung(self, ladder: Plan, base: int, bound: float, below: int) -> int:
        """The highest batch on the rungs up from ``base`` that is <= ``bound`` and
        < ``below`` (``base`` itself when none is)."""
        batch = base
        while True:
            rung = self.next_rung(ladder, batch)
            if rung is None or rung > bound or rung >= below:
                return batch
            batch = rung

    def state_dict(self) -> dict:
        state = super().state_dict()
        state["grown_at_sample"] = self._grown_at_sample
        return state

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self._grown_at_sample = int(state.get("grown_at_sample", -1))
