"""A curve through measured critical batches: ``B*(t) = a x t^b`` (a power law in tokens),
fitted by least squares on ``log B*`` against ``log t``. Pure Python.

Merrill et al. (arXiv 2505.23971) see the critical batch rise fast and then flatten; a power
law with ``b < 1`` follows the rise, and ``b`` near 0 says it has plateaued. Censored points
(the largest batch tried still matched, so the critical batch is only known to be at least
that) are fitted at their lower bound and flagged in the record.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence, Tuple

__all__ = ["PowerLaw", "fit_power_law"]


@dataclass(frozen=True)
class PowerLaw:
    """``batch(tokens) = a x tokens^b``."""

    a: float
    b: float

    def __call__(self, tokens: float) -> float:
        return self.a * tokens ** self.b

    def to_dict(self) -> dict:
        return {"form": "a * tokens**b", "a": self.a, "b": self.b}

    @classmethod
    def from_dict(cls, values) -> "PowerLaw":
        return cls(float(values["a"]), float(values["b"]))


def fit_power_law(points: Sequence[Tuple[float, float]]) -> PowerLaw:
    """Least squares of ``log batch = log a + b log tokens`` over ``(tokens, batch)`` points
    (tokens > 0, batch > 0). One distinct token count gives a flat line (``b = 0``)."""
    logs = [(math.log(t), math.log(y)) for t, y in points if t > 0 and y > 0]
    if not logs:
        raise ValueError("fit_power_law needs at least one point with tokens > 0 and batch > 0")
    n = len(logs)
    mean_x = sum(x for x, _ in logs) / n
    mean_y = sum(y for _, y in logs) / n
    sxx = sum((x - mean_x) ** 2 for x, _ in logs)
    if sxx == 0:
        return PowerLaw(math.exp(mean_y), 0.0)
    b = sum((x - mean_x) * (y - mean_y) for x, y in logs) / sxx
    return PowerLaw(math.exp(mean_y - b * mean_x), b)
