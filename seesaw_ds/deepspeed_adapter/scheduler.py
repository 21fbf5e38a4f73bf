"""An LR scheduler with DeepSpeed's interface, clocked by consumed tokens.

DeepSpeed calls ``lr_scheduler.step()`` once per optimizer step (after ``optimizer.step()``).
Here that call means "one optimizer step of the current global batch is done": the shared
:class:`~seesaw_ds.deepspeed_adapter.state.SeesawState` advances by that batch and the LR of
the next step is read from the plan at the new token count.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from seesaw_ds.deepspeed_adapter.state import SeesawState
from seesaw_ds.schedules import Plan

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
        return {"clock": self.state.to_dict(), "lr_scales": list(self.lr_scales)}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        """Restore the clock (checks the plan) and write the LR it implies."""
        self.state.load_dict(state_dict["clock"])
        scales = state_dict.get("lr_scales")
        if scales is not None and len(scales) == len(self.optimizer.param_groups):
            self.lr_scales = [float(scale) for scale in scales]
        self.apply()

    # ---- helpers ----------------------------------------------------------------------------

    def apply(self) -> None:
        """Write the current setting's LR into the optimizer's param groups."""
        lrs = self.get_lr()
        for group, lr in zip(self.optimizer.param_groups, lrs):
            group["lr"] = lr
        self._last_lr = lrs

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

