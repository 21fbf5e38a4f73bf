"""The simple gradient noise scale ``B_simple`` from a small-batch and a big-batch squared
gradient norm.

For gradients averaged over ``b`` samples, ``E|g_b|^2 = |G|^2 + tr(Sigma) / b``. Two batch
sizes give two equations, solved for the unbiased pieces (McCandlish et al., 2018, App. A):

    |G|^2     ~ (B_big |g_big|^2 - B_small |g_small|^2) / (B_big - B_small)
    tr(Sigma) ~ (|g_small|^2 - |g_big|^2) / (1 / B_small - 1 / B_big)

Each piece is noisy, so both are smoothed with an exponential moving average before their
ratio is taken: ``B_simple = tr(Sigma) / |G|^2`` (McCandlish et al., 2018, eq. 2.3), the
"simple" noise scale that ignores the Hessian. A measurement with a non-finite norm (an fp16
overflow step, a NaN loss) is skipped and counted, never folded into the averages. Pure
Python: callers pass floats (already all-reduced, so every rank agrees).

Uncertainty (:meth:`GradientNoiseScale.interval`): the EMAs also keep the second moments of
the two pieces, so the variance of each smoothed piece is the spread of the measurements
times the EMA's effective weight ``sum w_i^2 / (sum w_i)^2``; the delta method gives the
variance of ``log B_simple`` from those (covariance included), and the interval is
``B_simple x exp(-+ z sd)``. With two batch sizes close together (micro 4 vs global 8) the
pieces are noisy and the interval is wide; a decision that waits for its lower bound does
not chase a spike. (The interval treats measurements as independent; successive probes
see different samples, but the true value drifts as training goes on.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Optional, Tuple

__all__ = ["GradientNoiseScale", "NoiseScaleEstimate"]


@dataclass(frozen=True)
class NoiseScaleEstimate:
    """Smoothed pieces and their ratio ``b_simple`` (None until both are positive);
    ``skipped`` counts measurements dropped for a non-finite value."""

    grad_sq: float
    trace_sigma: float
    b_simple: Optional[float]
    samples: int
    skipped: int = 0


class GradientNoiseScale:
    """EMA estimator of ``B_simple = tr(Sigma) / |G|^2``.

    Args:
        ema_decay: weight of the past in the moving averages (0 = no smoothing).

    Note:
        The EMA is bias-corrected (as in Adam), so early estimates are not pulled to 0.
    """

    def __init__(self, ema_decay: float = 0.95) -> None:
        if not 0.0 <= ema_decay < 1.0:
            raise ValueError(f"ema_decay = {ema_decay} must lie in [0, 1)")
        self.ema_decay = ema_decay
        self._grad_sq = 0.0
        self._trace = 0.0
        self._weight = 0.0
        # second moments (same EMA) and the sum of squared weights, for :meth:`interval`
        self._grad_sq2 = 0.0
        self._trace2 = 0.0
        self._cross = 0.0
        self._weight_sq = 0.0
        self.samples = 0
        self.skipped = 0

    def update(
        self, small_batch: float, small_sq_norm: float, big_batch: float, big_sq_norm: float
    ) -> NoiseScaleEstimate:
        """Add one measurement: ``|g|^2`` of a ``small_batch`` mean and a ``big_batch`` mean."""
        if not 0 < small_batch < big_batch:
            raise ValueError(
                f"need 0 < small_batch < big_batch, got {small_batch} and {big_batch}"
            )
        grad_sq = (big_batch * big_sq_norm - small_batch * small_sq_norm) / (
            big_batch - small_batch
        )
        trace = (small_sq_norm - big_sq_norm) / (1.0 / small_batch - 1.0 / big_batch)
        if not (math.isfinite(grad_sq) and math.isfinite(trace)):
            self.skipped += 1
            return self.estimate()
        decay = self.ema_decay
        self._grad_sq = decay * self._grad_sq + (1 - decay) * grad_sq
        self._trace = decay * self._trace + (1 - decay) * trace
        self._weight = decay * self._weight + (1 - decay)
        self._grad_sq2 = decay * self._grad_sq2 + (1 - decay) * grad_sq * grad_sq
        self._trace2 = decay * self._trace2 + (1 - decay) * trace * trace
        self._cross = decay * self._cross + (1 - decay) * grad_sq * trace
        self._weight_sq = decay * decay * self._weight_sq + (1 - decay) ** 2
        self.samples += 1
        return self.estimate()

    def estimate(self) -> NoiseScaleEstimate:
        if self._weight == 0.0:
            return NoiseScaleEstimate(0.0, 0.0, None, 0, self.skipped)
        grad_sq = self._grad_sq / self._weight
        trace = self._trace / self._weight
        ratio = trace / grad_sq if grad_sq > 0 and trace > 0 else None
        return NoiseScaleEstimate(grad_sq, trace, ratio, self.samples, self.skipped)

    def interval(self, confidence: float) -> Optional[Tuple[float, float]]:
        """A two-sided ``confidence`` interval ``(lower, upper)`` of ``B_simple``, or None
        while it is undefined (no estimate yet, fewer than two measurements, or a piece whose
        smoothed value is not positive). Delta method on ``log B_simple`` with the EMA's
        weighted spread (unbiased for the weights), so the interval narrows as measurements
        agree and as the EMA averages more of them."""
        if not 0.0 < confidence < 1.0:
            raise ValueError(f"confidence = {confidence} must lie in (0, 1)")
        ratio = self.estimate().b_simple
        if ratio is None or self.samples < 2 or self._weight_sq <= 0:
            return None
        w = self._weight
        share = self._weight_sq / (w * w)  # sum w_i^2 / (sum w_i)^2 of the EMA
        if share >= 1.0:
            return None
        g, t = self._grad_sq / w, self._trace / w
        # weighted (co)variances of single measurements, bias-corrected for the weights
        var_g = max(self._grad_sq2 / w - g * g, 0.0) / (1.0 - share)
        var_t = max(self._trace2 / w - t * t, 0.0) / (1.0 - share)
        cov = (self._cross / w - g * t) / (1.0 - share)
        # variance of log(t_bar / g_bar), t_bar and g_bar the smoothed pieces
        var_log = share * (var_t / (t * t) + var_g / (g * g) - 2.0 * cov / (g * t))
        sd = math.sqrt(max(var_log, 0.0))
        z = NormalDist().inv_cdf(0.5 + confidence / 2.0)
        return ratio * math.exp(-z * sd), ratio * math.exp(z * sd)

    def state_dict(self) -> dict:
        return {"grad_sq": self._grad_sq, "trace": self._trace, "weight": self._weight,
                "samples": self.samples, "skipped": self.skipped,
                "ema_decay": self.ema_decay, "grad_sq2": self._grad_sq2,
                "trace2": self._trace2, "cross": self._cross, "weight_sq": self._weight_sq}

    def load_state_dict(self, state: dict) -> None:
        self._grad_sq = float(state["grad_sq"])
        self._trace = float(state["trace"])
        self._weight = float(state["weight"])
        self.samples = int(state["samples"])
        self.skipped = int(state.get("skipped", 0))
        if "weight_sq" in state:
            self._grad_sq2 = float(state["grad_sq2"])
            self._trace2 = float(state["trace2"])
            self._cross = float(state["cross"])
            self._weight_sq = float(state["weight_sq"])
        else:  # a checkpoint from before the interval: its history counts as one measurement
            w = self._weight
            g, t = (self._grad_sq / w, self._trace / w) if w else (0.0, 0.0)
            self._grad_sq2, self._trace2, self._cross = w * g * g, w * t * t, w * g * t
            self._weight_sq = w * w
