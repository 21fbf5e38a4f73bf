"""An ``OptimizerParamScheduler`` look-alike whose LR comes from the plan.

Megatron calls ``step(increment)`` after every optimizer step with the samples the step
consumed; the clock here is those consumed samples, never iterations x global batch (which
breaks as soon as the batch changes).
"""

from __future__ import annotations

from typing import Any, Dict

from seesaw_ds.schedules import Plan

__all__ = ["SeesawParamScheduler"]


class SeesawParamScheduler:
    """Sets ``lr`` (and a constant ``weight_decay``) of every param group from the plan.

    A param group with its own ``max_lr`` keeps its ratio to the plan's peak LR.
    """

    def __init__(self, optimizer, plan: Plan, weight_decay: float = 0.0) -> None:
        self.optimizer = optimizer
        self.plan = plan
        self.weight_decay = float(weight_decay)
        self.num_steps = 0  # consumed samples, as in Megatron's sample-based scheduler
        self.step(0)

    def get_lr(self, param_group: Dict[str, Any]) -> float:
        lr = self.plan.at_samples(self.num_steps).lr
        return lr * param_group.get("max_lr", self.plan.peak_lr) / self.plan.peak_lr

    def get_wd(self, param_group: Dict[str, Any] | None = None) -> float:
        return self.weight_decay

    def step(self, increment: int) -> None:
        self.num_steps += increment
        for group in self.optimizer.param_groups:
            group["lr"] = self.get_lr(group)
            group["weight_decay"] = self.get_wd(group) * group.get("wd_mult", 1.0)

    def state_dict(self) -> Dict[str, Any]:
        return {"num_steps": self.num_steps, "plan": self.plan.fingerprint()}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        saved = [tuple(entry) for entry in state_dict.get("plan", [])]
        if saved and saved != [tuple(entry) for entry in self.plan.fingerprint()]:
            from seesaw_ds.errors import SeesawConfigError

            raise SeesawConfigError(
                "the checkpoint was trained with a different seesaw plan than the current "
                "config builds: resume with the same seesaw section (and batch_multiple)."
            )
        self.num_steps = int(state_dict["num_steps"])
        self.step(0)
