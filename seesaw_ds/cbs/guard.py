"""The guard's decision: may the plan's next batch growth happen?

The guard never edits batches by itself. When it decides to hold, it returns a new
``max_batch`` (the current batch) for the Seesaw schedule; the caller rebuilds the plan with
that cap, which keeps ``lr / sqrt(B)`` on the base schedule's path (the remaining decay goes
into the LR). The decision is a pure function of the estimate and the plan, so every rank,
fed the same all-reduced norms, decides the same.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional

from seesaw_ds.cbs.estimator import GradientNoiseScale, NoiseScaleEstimate
from seesaw_ds.config.section import CBSGuardSettings
from seesaw_ds.schedules import Plan, SeesawBatch

__all__ = ["CriticalBatchGuard", "GuardDecision", "capped_plan"]


@dataclass(frozen=True)
class GuardDecision:
    """``hold_at`` is the batch to cap at, or None to let the plan grow."""

    hold_at: Optional[int]
    next_batch: Optional[int]
    critical_batch: Optional[float]
    reason: str


def capped_plan(plan: Plan, max_batch: int) -> Plan:
    """The same plan with Seesaw's ``max_batch`` set to ``max_batch``."""
    schedule = plan.batch_schedule
    if not isinstance(schedule, SeesawBatch):
        raise TypeError("the critical-batch guard only applies to batch_schedule 'seesaw'")
    capped = dataclasses.replace(schedule, max_batch=max_batch)
    return Plan(plan.base, capped, plan.peak_lr, plan.initial_batch, plan.seq_length,
                micro_batch=plan.micro_batch, dp_size=plan.dp_size,
                batch_multiple=plan.batch_multiple, min_lr=plan.min_lr,
                growth_policy=plan.growth_policy, max_micro_batch=plan.max_micro_batch)


class CriticalBatchGuard:
    """Holds Seesaw's batch once the next planned batch passes ``safety_factor * B_noise``.

    Args:
        settings: ``seesaw.cbs_guard`` options (ema_decay, safety_factor, min_samples,
            action: 'hold' caps the batch, 'warn' only reports).
    """

    def __init__(self, settings: CBSGuardSettings) -> None:
        self.settings = settings
        self.estimator = GradientNoiseScale(settings.ema_decay)
        self.held_at: Optional[int] = None

    def observe(self, small_batch: float, small_sq_norm: float, big_batch: float,
                big_sq_norm: float) -> NoiseScaleEstimate:
        return self.estimator.update(small_batch, small_sq_norm, big_batch, big_sq_norm)

    def decide(self, plan: Plan, tokens: float, last_batch: int) -> GuardDecision:
        """May the step starting at ``tokens`` use the plan's batch, after a step of
        ``last_batch``? Only a growth is judged, with the estimate of that moment: the noise
        scale rises as the loss falls, so an early estimate says little about a late batch."""
        estimate = self.estimator.estimate()
        next_batch = plan.at_tokens(tokens).global_batch
        if self.held_at is not None:
            return GuardDecision(self.held_at, next_batch, estimate.b_noise, "already held")
        if next_batch <= last_batch:
            return GuardDecision(None, next_batch, estimate.b_noise, "no growth at this step")
        if estimate.samples < self.settings.min_samples or estimate.b_noise is None:
            return GuardDecision(None, next_batch, estimate.b_noise, "estimate not ready")
        limit = self.settings.safety_factor * estimate.b_noise
        if next_batch <= limit:
            return GuardDecision(None, next_batch, limit, "below the critical batch")
        reason = (f"next batch {next_batch} > {self.settings.safety_factor:g} x B_noise "
                  f"= {limit:.1f}")
        if self.settings.action == "warn":
            return GuardDecision(None, next_batch, limit, "warn: " + reason)
        self.held_at = last_batch
        return GuardDecision(last_batch, next_batch, limit, reason)

    def apply(self, plan: Plan, tokens: float, last_batch: int) -> tuple[Plan, GuardDecision]:
        """Decide and return the plan to follow from ``tokens`` on (capped if held)."""
        decision = self.decide(plan, tokens, last_batch)
        if decision.hold_at is not None and decision.reason != "already held":
            plan = capped_plan(plan, decision.hold_at)
        return plan, decision

    def state_dict(self) -> dict:
        return {"estimator": self.estimator.state_dict(), "held_at": self.held_at}

    def load_state_dict(self, state: dict) -> None:
        self.estimator.load_state_dict(state["estimator"])
        self.held_at = state["held_at"]
