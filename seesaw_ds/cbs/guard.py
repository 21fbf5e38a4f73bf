"""The guard's decision: how far may the plan's batch grow at this step?

The guard never edits batches by itself. It keeps a list of :class:`BatchLimit` decisions
(``cap`` = the batch it allows from that token on) and returns the plan with those limits
applied; where a cap binds, the phase follows the base with ``lr / sqrt(B)`` on its path (the
remaining decay goes into the LR). Every growth the plan wants is judged with the estimate
of that moment: hold while the next batch exceeds ``safety_factor x B_simple``, grow (to
the largest batch of the plan's ladder the estimate allows) as soon as it no longer does.
The decision is a pure function of the estimate and the plan, so every rank, fed the same
all-reduced norms, decides the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

from seesaw_ds.cbs.policy import LimitPolicy
from seesaw_ds.config.section import CBSGuardSettings
from seesaw_ds.schedules import BatchLimit, Plan
from seesaw_ds.schedules.limits import limit_at

__all__ = ["CriticalBatchGuard", "GuardDecision", "ladder_batches"]


@dataclass(frozen=True)
class GuardDecision:
    """``cap`` is the batch allowed from now on (None: no cap); ``changed`` says whether
    this decision added a limit."""

    cap: Optional[int]
    wanted_batch: int
    limit: Optional[float]
    reason: str
    changed: bool = False


def ladder_batches(plan: Plan) -> List[int]:
    """The distinct batches of the plan's schedule, without online limits, ascending."""
    return sorted({phase.global_batch for phase in plan.phases})


class CriticalBatchGuard(LimitPolicy):
    """Caps the plan's batch at the largest ladder batch below ``safety_factor x B_simple``.

    Args:
        settings: ``seesaw.cbs_guard`` options (ema_decay, safety_factor, min_samples,
            action: 'hold' caps the batch, 'warn' only reports).
    """

    def __init__(self, settings: CBSGuardSettings) -> None:
        self.settings = settings
        super().__init__(settings.ema_decay)

    @property
    def held_at(self) -> Optional[int]:
        """The cap in force after the last decision (None: growing freely)."""
        return self.limits[-1].cap if self.limits else None

    def decide(self, ladder: Plan, tokens: float, current: int) -> GuardDecision:
        """The cap for the step starting at ``tokens`` after a step of ``current``
        sequences; ``ladder`` is the plan without the guard's limits (its batches are the
        ones Seesaw wants). A growth is due when the ladder wants more than ``current``,
        and stays due (re-judged every step) while a cap holds it back."""
        estimate = self.estimator.estimate()
        wanted = ladder.at_tokens(tokens).global_batch
        active = limit_at(self.limits, tokens)
        cap = active.cap if active is not None else None
        in_force = current if cap is None else min(cap, max(current, wanted))
        if wanted <= in_force:
            return GuardDecision(cap, wanted, estimate.b_simple, "no growth due")
        if estimate.samples < self.settings.min_samples or estimate.b_simple is None:
            reason = "estimate not ready" + (": holding" if cap is not None else "")
            return GuardDecision(cap, wanted, None, reason)
        return self._judge(ladder, tokens, wanted, in_force, estimate.b_simple)

    def _judge(self, ladder: Plan, tokens: float, wanted: int, current: int,
               b_simple: float) -> GuardDecision:
        limit = self.settings.safety_factor * b_simple
        if wanted <= limit:
            allowed: Optional[int] = None
            reason = f"next batch {wanted} <= {self.settings.safety_factor:g} x B_simple"
        else:
            fitting = [b for b in ladder_batches(ladder) if current <= b <= limit]
            allowed = max(fitting, default=current)
            reason = (f"next batch {wanted} > {self.settings.safety_factor:g} x B_simple = "
                      f"{limit:.1f}: " + ("holding at" if allowed == current else
                                           "growing only to") + f" {allowed}")
        if self.settings.action == "warn":
            return GuardDecision(None, wanted, limit, "warn: " + reason)
        previous = limit_at(self.limits, tokens)
        if (previous.cap if previous is not None else None) == allowed:
            return GuardDecision(allowed, wanted, limit, reason)
        if previous is None and allowed is None:
            return GuardDecision(None, wanted, limit, reason)
        self.limits.append(BatchLimit(float(tokens), cap=allowed))
        return GuardDecision(allowed, wanted, limit, reason, changed=True)
