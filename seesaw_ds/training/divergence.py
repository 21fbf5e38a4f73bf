"""When to stop a diverged run: a small pure policy fed one loss per optimizer step.

A step is *bad* when its loss is not finite, or (if ``spike_factor`` is set) when it is
above ``spike_factor`` times the mean of the last ``spike_window`` good losses.
``max_bad_steps`` bad steps in a row stop the run; a good step resets the count. Steps that
DeepSpeed skipped itself (fp16 overflow: the weights did not change) are counted and
reported, not judged.

The training loop asks :meth:`DivergencePolicy.safe_to_save` before a checkpoint: a save
while the latest loss is bad is skipped, so no diverged weights are ever published.

Configured in the run config (``seesaw_ds.run_config``)::

    divergence: {max_bad_steps: 3, spike_factor: null, spike_window: 20}

Note:
    The spike test is off by default: early losses fall fast and a noisy run can double
    its loss for a step without diverging. ``spike_factor: 3`` is a reasonable guard for a
    run past warmup.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any, Deque, Optional

from seesaw_ds.errors import SeesawConfigError

__all__ = ["DivergenceSettings", "DivergencePolicy", "Diverged"]


def _positive_int(field: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SeesawConfigError(
            f"run config: divergence.{field} = {value!r} must be an integer >= 1.")


@dataclass(frozen=True)
class DivergenceSettings:
    """``max_bad_steps`` bad steps in a row stop the run; ``spike_factor`` (None: off) x the
    mean of the last ``spike_window`` good losses counts as bad."""

    max_bad_steps: int = 3
    spike_factor: Optional[float] = None
    spike_window: int = 20

    def __post_init__(self) -> None:
        _positive_int("max_bad_steps", self.max_bad_steps)
        _positive_int("spike_window", self.spike_window)
        factor = self.spike_factor
        if factor is not None and (isinstance(factor, bool)
                                   or not isinstance(factor, (int, float))
                                   or not math.isfinite(factor) or factor <= 1):
            raise SeesawConfigError(
                f"run config: divergence.spike_factor = {factor!r} must be a number > 1 "
                "(or null: no spike test).")


class Diverged(Exception):
    """Raised by the training loop when the policy stops the run (``str``: the reason)."""


class DivergencePolicy:
    """Counts bad steps in a row; pure (no torch): feed it ``observe(step, loss)``."""

    def __init__(self, settings: DivergenceSettings = DivergenceSettings()) -> None:
        self.settings = settings
        self.bad_in_a_row = 0
        self.first_bad_step: Optional[int] = None
        self.last_reason = ""
        self.bad_steps = 0
        self.skipped_steps = 0
        self._good: Deque[float] = deque(maxlen=settings.spike_window)

    def _judge(self, loss: float) -> Optional[str]:
        if not math.isfinite(loss):
            return f"loss {loss}"
        factor = self.settings.spike_factor
        if factor is not None and len(self._good) == self._good.maxlen:
            mean = sum(self._good) / len(self._good)
            if loss > factor * mean:
                return (f"loss {loss:.4g} > divergence.spike_factor {factor:g} x the mean "
                        f"{mean:.4g} of the last {len(self._good)} good steps")
        return None

    def observe(self, step: int, loss: float, skipped: bool = False) -> bool:
        """Judge ``step``'s loss; True when the run must stop (``reason`` says why).
        ``skipped``: DeepSpeed skipped this step's update (counted, not judged)."""
        if skipped:
            self.skipped_steps += 1
            return False
        problem = self._judge(float(loss))
        if problem is None:
            self.bad_in_a_row, self.first_bad_step = 0, None
            self._good.append(float(loss))
            return False
        self.bad_steps += 1
        self.bad_in_a_row += 1
        if self.first_bad_step is None:
            self.first_bad_step = step
        self.last_reason = problem
        return self.bad_in_a_row >= self.settings.max_bad_steps

    @property
    def safe_to_save(self) -> bool:
        """False while the latest judged step was bad: its weights may be diverged."""
        return self.bad_in_a_row == 0

    @property
    def reason(self) -> str:
        """Why the run stops, in one phrase."""
        first = self.first_bad_step
        last = first + self.bad_in_a_row - 1 if first is not None else None
        span = f"step {first}" if first == last else f"steps {first}-{last}"
        return (f"{self.bad_in_a_row} bad steps in a row ({span}; last: {self.last_reason}), "
                f"divergence.max_bad_steps = {self.settings.max_bad_steps}")

    def state_dict(self) -> dict:
        """What a checkpoint keeps: the good-loss window and the counts (a resumed run
        judges spikes as the uninterrupted one)."""
        return {"good": list(self._good), "bad_steps": self.bad_steps,
                "skipped_steps": self.skipped_steps}

    def load_state_dict(self, state: dict) -> None:
        self._good.clear()
        self._good.extend(float(loss) for loss in state.get("good", []))
        self.bad_steps = int(state.get("bad_steps", 0))
        self.skipped_steps = int(state.get("skipped_steps", 0))
        self.bad_in_a_row, self.first_bad_step = 0, None

    def summary(self) -> dict:
        return {"bad_steps": self.bad_steps, "bad_in_a_row": self.bad_in_a_row,
                "deepspeed_skipped_steps": self.skipped_steps}
