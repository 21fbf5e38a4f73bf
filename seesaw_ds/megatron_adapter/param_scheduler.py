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

from seesaw_ds.distributed import register_clean_exit
from seesaw_ds.errors import SeesawConfigError
from seesaw_ds.schedules import Plan

__all__ = ["SeesawParamScheduler"]


class SeesawParamScheduler:
    """Sets ``lr`` (and a constant ``weight_decay``) of every param group from the plan.

    A param group with its own ``max_lr`` (Megatron's ``--decoupled-lr``) keeps its ratio to
    the plan's peak LR. An LR held as a tensor (``--optimizer-cuda-graph``: the captured
    graph reads it) is filled in place, never replaced.
    """

    def __init__(self, optimizer, plan: Plan, weight_decay: float = 0.0,
                 join_checkpoint: bool = False) -> None:
        self.optimizer = optimizer
        self.plan = plan
        self.weight_decay = float(weight_decay)
        self.join_checkpoint = bool(join_checkpoint)
        register_clean_exit()  # a CPU (gloo) job must not abort as it exits
        # each group's LR ratio to the peak, taken now: a checkpoint's optimizer state
        # restores the max_lr of the run that saved it, which must not move the LR
        self._ratios = [group.get("max_lr", plan.peak_lr) / plan.peak_lr
                        for group in optimizer.param_groups]
        self.num_steps = 0  # consumed samples, as in Megatron's sample-based scheduler
        self.step(0)

    def get_lr(self, param_group: Dict[str, Any]) -> float:
        return self.plan.at_samples(self.num_steps).lr * self._ratio(param_group)

    def _ratio(self, param_group: Dict[str, Any]) -> float:
        for index, group in enumerate(self.optimizer.param_groups):
            if group is param_group and index < len(self._ratios):
                return self._ratios[index]
        return param_group.get("max_lr", self.plan.peak_lr) / self.plan.peak_lr

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
        lr_now = self.plan.at_samples(self.num_steps).lr
        for group in self.optimizer.param_groups:
            lr = lr_now * self._ratio(group)
            if isinstance(group.get("lr"), torch.Tensor):
                group["lr"].fill_(lr)
            else:
                group["lr"] = lr
            group["weight_decay"] = self.get_wd(group) * group.get("wd_mult", 1.0)

    def state_dict(self) -> Dict[str, Any]:
        return {"num_steps": self.num_steps, "plan": self.plan.fingerprint()}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        """Resume at the checkpoint's consumed samples, if it followed this plan.

        A checkpoint without seesaw state (a run without the plan) is refused unless the
        scheduler was built with ``join_checkpoint=True`` (``--seesaw-join-checkpoint``):
        then the plan is entered at the checkpoint's consumed samples.
        """
        if "plan" not in state_dict:
            if not self.join_checkpoint:
                raise SeesawConfigError(
                    f"the checkpoint has no seesaw plan (it was trained without "
                    f"--seesaw-config; its schedule is at {state_dict.get('num_steps')} "
                    "samples): pass --seesaw-join-checkpoint to enter the plan at the "
                    "checkpoint's consumed samples, or --finetune to start the plan from "
                    "token 0 on its weights.")
            self.set_consumed_samples(int(state_dict.get("num_steps", self.num_steps)))
            return
        saved = [tuple(entry) for entry in state_dict["plan"]]
        if saved != [tuple(entry) for entry in self.plan.fingerprint()]:
            raise SeesawConfigError(
                f"the checkpoint was trained with a different seesaw plan than the current "
                f"config builds (first phase {_first_difference(saved, self.plan)}): resume "
                "with the same seesaw section, peak lr, train_batch_size and batch_multiple.")
        self.num_steps = int(state_dict["num_steps"])
        self._apply()


def _first_difference(saved, plan: Plan) -> str:
    now = [tuple(entry) for entry in plan.fingerprint()]
    for index, (old, new) in enumerate(zip(saved, now)):
        if old != new:
            return f"{index}: saved (tokens, batch, lr) {old}, now {new}"
    return f"count: saved {len(saved)}, now {len(now)}"
