"""95% confidence intervals for multi-seed comparisons: Student's t with ``n - 1`` degrees of
freedom on paired differences. Pure Python (no scipy).

- :func:`t_critical`: the two-sided 95% quantile of Student's t,
- :func:`mean_interval`: mean and 95% interval of a sample,
- :func:`verdict`: what an interval lets a README say.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Sequence

__all__ = ["t_critical", "Interval", "mean_interval", "verdict"]

# two-sided 95% quantiles t_{0.975, df}, df = 1..30 (standard tables, 3 decimals)
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
         2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
         2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def t_critical(df: int) -> float:
    """The two-sided 95% critical value of Student's t with ``df`` degrees of freedom
    (tabulated to 30; past it the normal 1.96 plus the first-order ``2.4 / df`` term)."""
    if df < 1:
        raise ValueError(f"a t interval needs df >= 1 (two or more samples), got df = {df}")
    if df <= len(_T975):
        return _T975[df - 1]
    return 1.96 + 2.4 / df


@dataclass(frozen=True)
class Interval:
    """``mean`` with its 95% interval ``[low, high]`` over ``n`` samples (``low``/``high``
    are NaN for one sample)."""

    mean: float
    low: float
    high: float
    n: int

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    def excludes_zero(self) -> bool:
        return self.n > 1 and (self.low > 0 or self.high < 0)

    def to_dict(self) -> dict:
        return {"mean": self.mean, "low": self.low, "high": self.high, "n": self.n}


def mean_interval(values: Sequence[float]) -> Interval:
    """The mean of ``values`` and its 95% t interval (``df = n - 1``); any ``+inf`` (a
    diverged run's gap) makes the whole interval ``+inf``."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("mean_interval needs at least one value")
    if any(math.isinf(v) and v > 0 for v in values):  # a diverged run: worse than any
        return Interval(math.inf, math.inf, math.inf, len(values))
    mean = statistics.fmean(values)
    if len(values) < 2:
        return Interval(mean, math.nan, math.nan, 1)
    half = t_critical(len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    return Interval(mean, mean - half, mean + half, len(values))


def verdict(gap: Interval) -> str:
    """How a paired relative loss gap (schedule minus reference, over the reference) may be
    worded: "lower loss" / "higher loss" only where the 95% interval excludes zero, else "no
    measurable difference"."""
    if not gap.excludes_zero():
        return "no measurable difference"
    return "lower loss" if gap.high < 0 else "higher loss"
