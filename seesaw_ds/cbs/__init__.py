"""Online critical-batch-size guard: stop Seesaw's batch growth where it would start to lose.

Seesaw only matches the base schedule below the critical batch size (CBS); past it, a batch
step buys less than the LR cut it replaces. The guard estimates the gradient noise scale
``B_simple = tr(Sigma) / |G|^2`` (McCandlish et al., 2018) from two gradient norms the run
already has (a small and a big batch), and holds the batch while the next planned batch would
exceed ``safety_factor * B_simple``; the rest of the decay then goes into the LR, exactly as
with a ``max_batch`` cap. It re-judges every step: once the estimate (which rises as the
loss falls) allows it, the batch grows again along the plan's ladder.
"""

from seesaw_ds.cbs.estimator import GradientNoiseScale, NoiseScaleEstimate
from seesaw_ds.cbs.guard import CriticalBatchGuard, GuardDecision

__all__ = ["GradientNoiseScale", "NoiseScaleEstimate", "CriticalBatchGuard", "GuardDecision"]
