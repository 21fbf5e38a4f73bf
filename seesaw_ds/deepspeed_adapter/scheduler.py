"""An LR scheduler with DeepSpeed's interface, clocked by consumed tokens.

DeepSpeed calls ``lr_scheduler.step()`` once per optimizer step (after ``optimizer.step()``).
Here that call means "one optimizer step of the current global batch is done": the shared
:class:`~seesaw_ds.deepspeed_adapter.state.SeesawState` advances by that batch and the LR of
the next step is read from the plan at the new token count.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from seesaw_ds.deepspeed_adapter.state import SeesawState
from seesaw_ds.errors import SeesawConfigError
from seesaw_ds.schedules import Plan
from seesaw_ds.schedules.optimizer_scaling import (OptimizerScaling, beta2_for_batch,
                                                   weight_decay_factor)

__all__ = ["SeesawLRScheduler"]


class SeesawLRScheduler:
    """Sets every param group's LR to ``plan LR x group scale`` for the next optimizer step.

    Args:
        optimizer: the (unwrapped) torch optimizer; DeepSpeed hands it over when this class
            (or a factory) is passed as ``lr_scheduler=`` to ``deepspeed.initialize``.
        state: the shared token clock (or a :class:`Plan`, to start a fresh clock).

    The scale of a group is its LR at construction divided by the plan's peak LR (1.0 for
    DeepSpeed's config optimizer), so per-group LR ratios survive.

    Note:
        ``step()`` ignores its argument (DeepSpeed may pass ``train_batch_size``): the batch
        of the step comes from the plan, which is what the engine hook makes the engine use.
    Limitations:
        An optimizer step skipped by fp16 overflow does not call ``step()``; the engine hook
        calls it then, because the data was consumed (the clock is tokens, not updates).
    """

    def __init__(self, optimizer: Any, state: "SeesawState | Plan") -> None:
        self.optimizer = optimizer
        self.state = state if isinstance(state, SeesawState) else SeesawState(state)
        peak = self.state.plan.peak_lr
        self.lr_scales: List[float] = [
            float(group["lr"]) / peak for group in optimizer.param_groups
        ]
        scaling = self.state.plan.optimizer_scaling
        self.weight_decays: List[float] = [
            float(group.get("weight_decay", 0.0)) for group in optimizer.param_groups]
        self.betas: List[Optional[tuple]] = [
            tuple(group["betas"]) if "betas" in group else None
            for group in optimizer.param_groups]
        if scaling.keep_beta2_half_life and None in self.betas:
            raise SeesawConfigError(
                "seesaw.keep_beta2_half_life needs an optimizer with betas (Adam, AdamW, "
                "Lamb, Lion): remove the key or change optimizer.type.")
        self._last_lr: List[float] = []
        self.apply()

    # ---- DeepSpeed / torch interface ----------------------------------------------------

    def step(self, last_batch_iteration: Optional[int] = None) -> None:
        """Advance the clock by one optimizer step and set the next step's LR."""
        del last_batch_iteration
        self.state.advance()
        self.apply()

    def get_lr(self) -> List[float]:
        """LR of every param group for the next optimizer step."""
        lr = self.state.setting.lr
        return [lr * scale for scale in self.lr_scales]

    def get_last_lr(self) -> List[float]:
        """LR last written to the optimizer."""
        return list(self._last_lr)

    def state_dict(self) -> Dict[str, Any]:
        return {"clock": self.state.to_dict(), "lr_scales": list(self.lr_scales),
                "weight_decays": list(self.weight_decays),
                "betas": [None if b is None else list(b) for b in self.betas]}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        """Restore the clock (checks the plan) and write the LR it implies."""
        self.state.load_dict(state_dict["clock"])
        scales = state_dict.get("lr_scales")
        groups = len(self.optimizer.param_groups)
        if scales is not None and len(scales) == groups:
            self.lr_scales = [float(scale) for scale in scales]
        # the config's weight decay and betas (the optimizer's own state may hold scaled ones)
        if len(state_dict.get("weight_decays") or []) == groups:
            self.weight_decays = [float(wd) for wd in state_dict["weight_decays"]]
        if len(state_dict.get("betas") or []) == groups:
            self.betas = [None if b is None else tuple(b) for b in state_dict["betas"]]
        self.apply()

    # ---- helpers ----------------------------------------------------------------------------

    def apply(self) -> None:
        """Write the current setting's LR (and, when the plan asks, weight decay and beta2)
        into the optimizer's param groups."""
        lrs = self.get_lr()
        for group, lr in zip(self.optimizer.param_groups, lrs):
            group["lr"] = lr
        self._last_lr = lrs
        scaling = self.state.plan.optimizer_scaling
        if scaling.enabled:
            self._apply_scaling(scaling)

    def _apply_scaling(self, scaling: OptimizerScaling) -> None:
        state, plan = self.state, self.state.plan
        setting = state.setting
        factor = weight_decay_factor(setting.lr, plan.base_lr_at(state.consumed_tokens),
                                     setting.global_batch, plan.initial_batch)
        for index, group in enumerate(self.optimizer.param_groups):
            if scaling.keep_weight_decay_timescale:
                group["weight_decay"] = self.weight_decays[index] * factor
            if scaling.keep_beta2_half_life:
                beta1, beta2 = self.betas[index]
                group["betas"] = (beta1, beta2_for_batch(beta2, setting.global_batch,
                                                         plan.initial_batch))

    @property
    def last_batch_iteration(self) -> int:
        """Optimizer steps taken minus one (DeepSpeed's scheduler convention)."""
        return self.state.step - 1

    def __repr__(self) -> str:
        s = self.state
        return (
            f"SeesawLRScheduler(step={s.step}, consumed_tokens={s.consumed_tokens}, "
            f"lr={s.setting.lr:.6g}, global_batch={s.setting.global_batch})"
        )

    @staticmethod
    def factory(state: SeesawState):
        """A callable for ``deepspeed.initialize(lr_scheduler=...)`` sharing ``state``."""

        def build(optimizer: Any) -> "SeesawLRScheduler":
            return SeesawLRScheduler(optimizer, state)

        return build

