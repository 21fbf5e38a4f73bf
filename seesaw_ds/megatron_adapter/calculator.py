"""megatron-core's num-microbatches calculator, following the plan's global batch.

Megatron-LM's ``train()`` calls ``update_num_microbatches(consumed_samples)`` at the start
of every iteration, skipped or not; so the consumed-sample count seen here is the one clock
of the run. Followers registered with :meth:`SeesawMicroBatchesCalculator.follow` (the LR
scheduler) are set from the same count on every update.
"""

from __future__ import annotations

from typing import Callable, List

from megatron.core import num_microbatches_calculator as _calculators

from seesaw_ds.errors import SeesawConfigError
from seesaw_ds.megatron_adapter.samples import plan_samples
from seesaw_ds.schedules import Plan

__all__ = ["SeesawMicroBatchesCalculator", "install_calculator"]


class SeesawMicroBatchesCalculator(_calculators.NumMicroBatchesCalculator):
    """Global batch and number of micro-batches from ``plan.at_samples(consumed_samples)``.

    Megatron keeps the micro-batch fixed, so the plan must use the ``accumulation``
    growth policy (``args.megatron_section`` lays a config out so); the number of
    micro-batches per rank is the plan's GAS. The step that starts with fewer samples left
    than its phase's batch takes the plan's remaining samples.

    Limitations: the plan's ``dp_size`` must be Megatron-LM's micro-batch divisor
    (data-parallel size x ``gtp_weight_remat_size``).
    """

    def __init__(self, plan: Plan, rank: int = 0) -> None:
        super().__init__()
        if plan.growth_policy != "accumulation":
            raise SeesawConfigError(
                "seesaw.growth_policy must be 'accumulation' under Megatron (its micro-batch "
                "is fixed by --micro-batch-size)."
            )
        self.plan = plan
        self.rank = rank
        self.total_samples = plan_samples(plan)
        self.consumed_samples = 0
        self._followers: List[Callable[[int], None]] = []
        self.update(0, consistency_check=True)

    def follow(self, follower: Callable[[int], None]) -> None:
        """Call ``follower(consumed_samples)`` now and on every later update."""
        self._followers.append(follower)
        follower(self.consumed_samples)

    def update(self, consumed_samples: int, consistency_check: bool, verbose: bool = False):
        setting = self.plan.at_samples(consumed_samples)
        global_batch = setting.global_batch
        remaining = self.total_samples - consumed_samples
        if 0 < remaining < global_batch:  # a last step that takes only what is left
            global_batch = remaining
        divisor = setting.micro_batch * self.plan.dp_size
        if global_batch % divisor:
            raise SeesawConfigError(
                f"global batch {global_batch} at {consumed_samples} samples is not divisible "
                f"by micro-batch x data-parallel size = {setting.micro_batch} x "
                f"{self.plan.dp_size}: set seesaw.batch_multiple to a multiple of {divisor}."
            )
        changed = global_batch != self.current_global_batch_size
        self.consumed_samples = int(consumed_samples)
        self.current_global_batch_size = global_batch
        self.current_running_global_batch_size = global_batch
        self.micro_batch_size = setting.micro_batch
        self.num_micro_batches = global_batch // divisor
        for follower in self._followers:
            follower(self.consumed_samples)
        if verbose and changed and self.rank == 0:
            print(
                f"[seesaw] global batch {global_batch} ({self.num_micro_batches} micro-batches "
                f"of {setting.micro_batch} x {self.plan.dp_size} ranks) at {consumed_samples} "
                "samples",
                flush=True,
            )


def install_calculator(plan: Plan, rank: int = 0) -> SeesawMicroBatchesCalculator:
    """Make megatron-core's global ``get_num_microbatches()`` etc. follow ``plan``."""
    calculator = SeesawMicroBatchesCalculator(plan, rank)
    _calculators._GLOBAL_NUM_MICROBATCHES_CALCULATOR = calculator
    return calculator
