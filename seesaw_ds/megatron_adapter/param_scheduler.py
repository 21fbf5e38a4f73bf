"""An ``OptimizerParamScheduler`` look-alike whose LR comes from the plan.

The clock is consumed samples, never iterations x global batch (which breaks as soon as
the batch changes). Megatron-LM calls ``step(increment)`` only after a successful update,
while its consumed samples (which drive the batch) advance on every iteration, skipped
ones included; so the scheduler also follows the calculator (``calculator.follow``), which
sets it from the consumed-sample count at the start of every iteration: LR and batch come
from the same count, before the optimizer step that uses them.
"""

from __future__ import annotations

from typing import Any, Dict

import torch

from seesaw_ds.errors import SeesawConfigError
from seesaw_ds.schedules import Plan

__all__ = ["SeesawParamScheduler"]


class SeesawParamScheduler:
    """Sets ``lr`` (and a constant ``weight_decay``) of every param group from the plan.

    A param group with its own ``max_lr`` (Megatron's ``--decoupled-lr``) keeps its ratio to
    the plan's peak LR. An LR held as a tensor (``--optimizer-cuda-graph``: the captured
    graph reads it) is filled in place, never replaced.
    """

    def __init__(self, optimizer, plan: Plan, weight_decay: float = 0.0) -> None:
        self.optimizer = optimizer
        self.plan = plan
        self.weight_decay = float(weight_decay)
        self.num_steps = 0  # consumed samples, as in Megatron's sample-based scheduler
        self.step(0)

    def get_lr(self, param_group: Dict[str, Any]) -> float:
        lr = self.plan.at_samples(self.num_steps).lr
        return lr * (param_group.get("max_lr", self.plan.peak_lr) / self.plan.peak_lr)

    def get_wd(self, param_group: Dict[str, Any] | None = None) -> float:
        return self.weight_decay

    def step(self, increment: int) -> None:
        """Megatron's call after a successful update: ``increment`` samples were consumed."""
        self.num_steps += increment
        self._apply()

    def set_consumed_samples(self, consumed_samples: int) -> None:
        """Set the clock to ``consumed_samples`` (the calculator's count) and apply the LR."""
        self.num_steps = int(consumed_samples)
        self._apply()

    def _apply(self) -> None:
        for group in self.optimizer.param_groups:
            lr = self.get_lr(group)
            if isinstance(group.get("lr"), torch.Tensor):
                group["lr"].fill_(lr)
            else:
                group["lr"] = lr
            group["weight_decay"] = self.get_wd(group) * group.get("wd_mult", 1.0)

    def state_dict(self) -> Dict[str, Any]:
        return {"num_steps": self.num_steps, "plan": self.plan.fingerprint()}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        saved = [tuple(entry) for entry in state_dict.get("plan", [])]
        if saved and saved != [tuple(entry) for entry in self.plan.fingerprint()]:
            raise SeesawConfigError(
                "the checkpoint was trained with a different seesaw plan than the current "
                "config builds: resume with the same seesaw section (and batch_multiple)."
            )
        self.num_steps = int(state_dict["num_steps"])
        self._apply()
