"""How many samples a plan consumes: Megatron-LM's training length under a seesaw plan."""

from __future__ import annotations

from seesaw_ds.schedules import Plan

__all__ = ["plan_samples"]


def plan_samples(plan: Plan) -> int:
    """Sequences consumed by the realized run: the sum of ``plan.iter_steps()``' batches.

    Note: asked of the plan step by step (never steps x batch), so a last step that takes
    only the remaining tokens is counted as the plan lays it out.
    """
    return sum(setting.global_batch for _, _, setting in plan.iter_steps())
