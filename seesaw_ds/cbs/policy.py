"""What every online batch policy shares: the noise-scale estimator, the list of
:class:`BatchLimit` decisions, the plan they give and their checkpoint state."""

from __future__ import annotations

from typing import List

from seesaw_ds.cbs.estimator import GradientNoiseScale, NoiseScaleEstimate
from seesaw_ds.schedules import BatchLimit, Plan

__all__ = ["LimitPolicy"]


class LimitPolicy:
    """Base of the critical-batch guard and the adaptive schedule's growth.

    Subclasses add ``decide(ladder, tokens, current)``, which may append to ``limits``, and
    say which side of a :class:`BatchLimit` they never set (``foreign_side``: the guard only
    caps, so a floor is not its own; the adaptive schedule only raises floors).
    """

    foreign_side: str = "floor"

    def __init__(self, ema_decay: float) -> None:
        self.estimator = GradientNoiseScale(ema_decay)
        self.limits: List[BatchLimit] = []

    def observe(self, small_batch: float, small_sq_norm: float, big_batch: float,
                big_sq_norm: float) -> NoiseScaleEstimate:
        return self.estimator.update(small_batch, small_sq_norm, big_batch, big_sq_norm)

    def plan_for(self, ladder: Plan) -> Plan:
        """The ladder (the plan without online limits) with this policy's limits applied."""
        return ladder.with_batch_limits(self.limits)

    def state_dict(self) -> dict:
        return {"estimator": self.estimator.state_dict(),
                "limits": [limit.to_list() for limit in self.limits]}

    def load_state_dict(self, state: dict) -> None:
        self.estimator.load_state_dict(state["estimator"])
        limits = [BatchLimit.from_list(values) for values in state["limits"]]
        # A plan change from the adaptive schedule to the guard (or back) keeps the estimate
        # but not the other policy's decisions: a stale floor would hold the batch up forever.
        self.limits = [limit for limit in limits
                       if getattr(limit, self.foreign_side) is None]
