"""Base learning-rate schedules as pure functions of consumed tokens.

Every schedule is a small frozen dataclass whose :meth:`LRSchedule.factor` maps consumed
tokens to a multiplier of the peak LR. The clock is tokens, never optimizer steps: steps
change meaning as soon as the batch changes.

A schedule has two parts: an optional linear warmup from ``warmup_start_factor`` to 1 over
``warmup_tokens``, then a *decay* part that is non-increasing from 1. Seesaw only looks at
the decay part; :meth:`LRSchedule.first_tokens_at_or_below` finds where it first falls to a
level, in closed form where one exists and by bisection otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar, Optional, Tuple

from seesaw_ds.errors import SeesawConfigError

__all__ = [
    "LRSchedule",
    "ConstantLR",
    "CosineLR",
    "LinearLR",
    "WSDLR",
    "StepDecayLR",
    "InverseSqrtLR",
    "LR_SCHEDULES",
    "WSD_TAILS",
]

_BISECTION_TOLERANCE_TOKENS = 1e-3


def _linear_warmup(tokens: float, warmup_tokens: float, start_factor: float) -> float:
    return start_factor + (1.0 - start_factor) * tokens / warmup_tokens


def _check_factor(name: str, value: float, low: float = 0.0, high: float = 1.0) -> None:
    if not (low <= value <= high):
        raise SeesawConfigError(
            f"lr_schedule.{name} = {value!r} must lie in [{low}, {high}] "
            f"(it is a fraction of the peak LR)."
        )


@dataclass(frozen=True)
class LRSchedule:
    """Warmup then a non-increasing decay; subclasses define :meth:`_decay`.

    Args:
        total_tokens: length of training in tokens.
        warmup_tokens: length of the linear warmup.
        warmup_start_factor: LR factor at token 0 (the paper uses 0.1).
        floor_factor: the factor never goes below this (``min_lr / peak``). The floor is
            part of the base schedule, so Seesaw's milestones stop where the floored base
            stops falling: ``min_lr = 0.1 x peak`` plans like ``final_factor = 0.1``.
    """

    total_tokens: float
    warmup_tokens: float = 0.0
    warmup_start_factor: float = 0.0
    floor_factor: float = 0.0

    type_name: ClassVar[str] = "base"

    def __post_init__(self) -> None:
        if not self.total_tokens > 0:
            raise SeesawConfigError(
                f"total_tokens = {self.total_tokens!r} must be a positive token budget."
            )
        if self.warmup_tokens < 0:
            raise SeesawConfigError(
                f"lr_schedule.warmup_tokens = {self.warmup_tokens!r} must be >= 0."
            )
        if self.warmup_tokens >= self.total_tokens:
            raise SeesawConfigError(
                f"lr_schedule warmup ({self.warmup_tokens:g} tokens) is not shorter than "
                f"training (total_tokens = {self.total_tokens:g}): shorten the warmup."
            )
        _check_factor("warmup_start_factor", self.warmup_start_factor)
        _check_factor("floor_factor (min_lr / peak lr)", self.floor_factor)

    @property
    def decay_start_tokens(self) -> float:
        """Where the decay part begins (the end of warmup)."""
        return self.warmup_tokens

    @property
    def final_factor_at_end(self) -> float:
        """The factor at ``total_tokens`` (how far the base decays in all)."""
        return self.factor(self.total_tokens)

    def factor(self, tokens: float) -> float:
        """LR multiplier of the peak LR after ``tokens`` consumed tokens."""
        if tokens < self.warmup_tokens:
            raw = _linear_warmup(tokens, self.warmup_tokens, self.warmup_start_factor)
        else:
            raw = self._decay(min(tokens, self.total_tokens))
        return max(self.floor_factor, raw)

    def _decay(self, tokens: float) -> float:
        raise NotImplementedError

    def _decay_fraction(self, tokens: float) -> float:
        span = self.total_tokens - self.warmup_tokens
        return (tokens - self.warmup_tokens) / span

    def first_tokens_at_or_below(self, level: float) -> Optional[float]:
        """First token count in the decay part where the factor is <= ``level``.

        Returns None when the decay never reaches ``level`` before ``total_tokens`` (or
        ``level`` lies below the floor).
        """
        if level >= 1.0:
            return self.decay_start_tokens
        if level < self.floor_factor:
            return None
        tokens = self._first_decay_at_or_below(level)
        return tokens if tokens is not None and tokens <= self.total_tokens else None

    def _first_decay_at_or_below(self, level: float) -> Optional[float]:
        """The unfloored decay's first token at or below ``level`` (0 < level < 1)."""
        return self._bisect_level(level)

    def _bisect_level(self, level: float) -> Optional[float]:
        low, high = self.decay_start_tokens, self.total_tokens
        if self._decay(high) > level:
            return None
        if self._decay(low) <= level:
            return low
        while high - low > _BISECTION_TOLERANCE_TOKENS:
            middle = 0.5 * (low + high)
            if not low < middle < high:
                break  # adjacent floats: no tighter bracket exists (huge token counts)
            if self._decay(middle) <= level:
                high = middle
            else:
                low = middle
        return high

    def describe(self) -> str:
        return self.type_name


@dataclass(frozen=True)
class ConstantLR(LRSchedule):
    """Warmup then the peak LR until the end."""

    type_name: ClassVar[str] = "constant"

    def _decay(self, tokens: float) -> float:
        return 1.0

    def _first_decay_at_or_below(self, level: float) -> Optional[float]:
        return None


@dataclass(frozen=True)
class CosineLR(LRSchedule):
    """Warmup then a half cosine from 1 down to ``final_factor`` at ``total_tokens``."""

    final_factor: float = 0.0

    type_name: ClassVar[str] = "cosine"

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_factor("final_factor", self.final_factor)

    def _decay(self, tokens: float) -> float:
        progress = self._decay_fraction(tokens)
        cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.final_factor + (1.0 - self.final_factor) * cosine

    def _first_decay_at_or_below(self, level: float) -> Optional[float]:
        if level < self.final_factor or self.final_factor == 1.0:
            return None
        relative = (level - self.final_factor) / (1.0 - self.final_factor)
        progress = math.acos(max(-1.0, min(1.0, 2.0 * relative - 1.0))) / math.pi
        span = self.total_tokens - self.warmup_tokens
        return self.warmup_tokens + progress * span


@dataclass(frozen=True)
class LinearLR(LRSchedule):
    """Warmup then a straight line from 1 down to ``final_factor`` at ``total_tokens``."""

    final_factor: float = 0.0

    type_name: ClassVar[str] = "linear"

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_factor("final_factor", self.final_factor)

    def _decay(self, tokens: float) -> float:
        return 1.0 - (1.0 - self.final_factor) * self._decay_fraction(tokens)

    def _first_decay_at_or_below(self, level: float) -> Optional[float]:
        if level < self.final_factor or self.final_factor == 1.0:
            return None
        progress = (1.0 - level) / (1.0 - self.final_factor)
        return self.warmup_tokens + progress * (self.total_tokens - self.warmup_tokens)


WSD_TAILS = ("linear", "cosine", "1-sqrt")


@dataclass(frozen=True)
class WSDLR(LRSchedule):
    """Warmup, a stable stretch at the peak, then a tail over the last ``decay_tokens``.

    The tail goes from 1 to ``final_factor``: ``linear``, ``cosine`` or ``1-sqrt``
    (Hägele et al., 2024).
    """

    decay_tokens: float = 0.0
    final_factor: float = 0.0
    tail: str = "linear"

    type_name: ClassVar[str] = "wsd"

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_factor("final_factor", self.final_factor)
        if self.tail not in WSD_TAILS:
            raise SeesawConfigError(
                f"lr_schedule.tail = {self.tail!r} is unknown: use one of {list(WSD_TAILS)}."
            )
        if not 0 < self.decay_tokens <= self.total_tokens - self.warmup_tokens:
            raise SeesawConfigError(
                f"lr_schedule.decay_tokens = {self.decay_tokens:g} must be > 0 and fit "
                f"after the warmup (at most {self.total_tokens - self.warmup_tokens:g})."
            )

    @property
    def stable_end_tokens(self) -> float:
        return self.total_tokens - self.decay_tokens

    def _tail_shape(self, progress: float) -> float:
        """Fraction of the way from 1 to ``final_factor`` still left, for tail progress."""
        if self.tail == "linear":
            return 1.0 - progress
        if self.tail == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        return 1.0 - math.sqrt(progress)

    def _decay(self, tokens: float) -> float:
        if tokens <= self.stable_end_tokens:
            return 1.0
        progress = (tokens - self.stable_end_tokens) / self.decay_tokens
        return self.final_factor + (1.0 - self.final_factor) * self._tail_shape(progress)

    def _first_decay_at_or_below(self, level: float) -> Optional[float]:
        if level < self.final_factor or self.final_factor == 1.0:
            return None
        left = (level - self.final_factor) / (1.0 - self.final_factor)
        if self.tail == "linear":
            progress = 1.0 - left
        elif self.tail == "cosine":
            progress = math.acos(max(-1.0, min(1.0, 2.0 * left - 1.0))) / math.pi
        else:
            progress = (1.0 - left) ** 2
        return self.stable_end_tokens + progress * self.decay_tokens


@dataclass(frozen=True)
class StepDecayLR(LRSchedule):
    """Warmup then multiply by ``gamma`` at each token count in ``milestones``."""

    milestones: Tuple[float, ...] = field(default_factory=tuple)
    gamma: float = 0.1

    type_name: ClassVar[str] = "step"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 < self.gamma < 1.0:
            raise SeesawConfigError(
                f"lr_schedule.gamma = {self.gamma!r} must lie in (0, 1) (the LR multiplier "
                "applied at each milestone)."
            )
        points = tuple(self.milestones)
        if list(points) != sorted(points) or any(
            not self.warmup_tokens <= point < self.total_tokens for point in points
        ):
            raise SeesawConfigError(
                f"lr_schedule.milestones = {list(points)} must be increasing token counts "
                f"between the end of warmup ({self.warmup_tokens:g}) and total_tokens "
                f"({self.total_tokens:g})."
            )

    def _decay(self, tokens: float) -> float:
        passed = sum(1 for point in self.milestones if tokens >= point)
        return self.gamma**passed

    def _first_decay_at_or_below(self, level: float) -> Optional[float]:
        value = 1.0
        for point in self.milestones:
            value *= self.gamma
            if value <= level:
                return float(point)
        return None


@dataclass(frozen=True)
class InverseSqrtLR(LRSchedule):
    """Warmup then ``sqrt(timescale / (tokens - warmup + timescale))``.

    ``timescale_tokens`` defaults to the warmup length (the classic Transformer schedule).
    """

    timescale_tokens: float = 0.0

    type_name: ClassVar[str] = "inverse_sqrt"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.timescale_tokens <= 0 and self.warmup_tokens <= 0:
            raise SeesawConfigError(
                "lr_schedule type 'inverse_sqrt' needs timescale_tokens > 0 or a warmup: "
                "set lr_schedule.timescale_tokens."
            )

    @property
    def timescale(self) -> float:
        return self.timescale_tokens if self.timescale_tokens > 0 else self.warmup_tokens

    def _decay(self, tokens: float) -> float:
        return math.sqrt(self.timescale / (tokens - self.warmup_tokens + self.timescale))

    def _first_decay_at_or_below(self, level: float) -> Optional[float]:
        if level <= 0.0:
            return None
        # (timescale / level) / level: level**2 underflows to 0 for tiny levels; this
        # overflows to inf instead, which the caller reads as "never reached"
        tokens = self.warmup_tokens + (self.timescale / level) / level - self.timescale
        return tokens if tokens <= self.total_tokens else None


LR_SCHEDULES = {
    schedule.type_name: schedule
    for schedule in (ConstantLR, CosineLR, LinearLR, WSDLR, StepDecayLR, InverseSqrtLR)
}
