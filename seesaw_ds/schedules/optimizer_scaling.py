"""Opt-in AdamW hyperparameters that move with the batch (``seesaw.keep_weight_decay_timescale``,
``seesaw.keep_beta2_half_life``).

When Seesaw grows the batch by ``1/a`` and moves the LR by ``sqrt(a)``, two AdamW timescales
move with them unless their hyperparameters follow:

- **Weight decay** (decoupled, as in torch's AdamW): each step multiplies the weights by
  ``1 - lr * wd``, so the decay timescale in samples is ``tau = B / (lr * wd)`` (Power Lines,
  arXiv 2505.13738, write it per epoch: ``B / (lr * wd * D)``). With the key set, every step
  uses ``wd = wd0 * (B / B0) * (lr_base / lr)``, where ``lr_base = peak * f(t)`` is the LR of
  the constant-batch base run at the same token: ``tau`` is then the base run's at every
  token (so continuous through every batch change), and the decay per token,
  ``lr * wd / B = lr_base * wd0 / B0``, is exactly the base run's. Where the plan keeps
  ``lr / sqrt(B)`` on the base path this is ``wd0 * sqrt(B / B0)``.
- **Adam's second moment**: an EMA with factor ``beta2`` per step has a half-life of
  ``ln(1/2) / ln(beta2)`` steps, ``B`` times as many samples. With the key set, every step
  uses ``beta2 ** (B / B0)``, which keeps the half-life in tokens (Marek et al., arXiv
  2507.07101) at the base run's.

Pure functions; the DeepSpeed scheduler writes the results into the param groups.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["OptimizerScaling", "weight_decay_factor", "beta2_for_batch", "half_life_samples"]


def weight_decay_factor(lr: float, base_lr: float, batch: int, initial_batch: int) -> float:
    """``wd / wd0`` that gives a step of ``batch`` at ``lr`` the base run's decay per token
    (1 where the LR is 0: no decay happens then anyway)."""
    if lr <= 0.0:
        return 1.0
    return (batch / initial_batch) * (base_lr / lr)


def beta2_for_batch(beta2: float, batch: int, initial_batch: int) -> float:
    """``beta2`` per step of ``batch`` with the half-life in samples of ``beta2`` at
    ``initial_batch``."""
    return beta2 ** (batch / initial_batch)


def half_life_samples(beta2: float, batch: int) -> float:
    """Samples until a second-moment EMA with ``beta2`` per step of ``batch`` halves."""
    return math.log(0.5) / math.log(beta2) * batch


@dataclass(frozen=True)
class OptimizerScaling:
    """Which AdamW timescales follow the batch (both off: the config's values throughout)."""

    keep_weight_decay_timescale: bool = False
    keep_beta2_half_life: bool = False

    @property
    def enabled(self) -> bool:
        return self.keep_weight_decay_timescale or self.keep_beta2_half_life
