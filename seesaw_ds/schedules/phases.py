"""A phase: a token interval with one global batch and one LR rule."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional

from seesaw_ds.schedules.lr_schedules import LRSchedule

__all__ = ["Phase"]


@dataclass(frozen=True)
class Phase:
    """Tokens ``[start_tokens, end_tokens)`` trained at ``global_batch`` sequences per step.

    The LR in the phase is ``peak * lr_multiplier``, times the base schedule's factor when
    ``follows_base`` is set (warmup, the constant-batch baseline, the part after a
    ``max_batch`` cap) and constant otherwise (a Seesaw step of the staircase).
    ``micro_batch`` and ``grad_accum`` are per data-parallel rank; 0 until laid out.
    ``lr_ceiling`` (a multiple of the peak) bounds the LR of a phase whose batch an online
    policy raised above the schedule's (see :mod:`seesaw_ds.schedules.limits`).
    """

    start_tokens: float
    end_tokens: float
    global_batch: int
    lr_multiplier: float
    follows_base: bool
    micro_batch: int = 0
    grad_accum: int = 0
    lr_ceiling: Optional[float] = None

    def lr_at(self, tokens: float, peak_lr: float, base: LRSchedule) -> float:
        """LR of a step that starts at ``tokens`` inside this phase."""
        lr = peak_lr * self.lr_multiplier
        lr = lr * base.factor(tokens) if self.follows_base else lr
        return lr if self.lr_ceiling is None else min(lr, peak_lr * self.lr_ceiling)

    def to_dict(self) -> dict:
        return asdict(self)
