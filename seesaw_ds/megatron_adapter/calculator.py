"""megatron-core's num-microbatches calculator, following the plan's global batch."""

from __future__ import annotations

from megatron.core import num_microbatches_calculator as _calculators

from seesaw_ds.errors import SeesawConfigError
from seesaw_ds.schedules import Plan

__all__ = ["SeesawMicroBatchesCalculator", "install_calculator"]


class SeesawMicroBatchesCalculator(_calculators.NumMicroBatchesCalculator):
    """Global batch and number of micro-batches from ``plan.at_samples(consumed_samples)``.

    Megatron keeps the micro-batch fixed, so the plan must use the ``accumulation``
    growth policy; the number of micro-batches per rank is the plan's GAS.
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
        self.update(0, consistency_check=True)

    def update(self, consumed_samples: int, consistency_check: bool, verbose: bool = False):
        setting = self.plan.at_samples(consumed_samples)
        changed = setting.global_batch != self.current_global_batch_size
        if consistency_check and setting.global_batch % (
            setting.micro_batch * self.plan.dp_size
        ):
            raise SeesawConfigError(
                f"global batch {setting.global_batch} is not divisible by micro-batch x "
                f"data-parallel size = {setting.micro_batch} x {self.plan.dp_size}."
            )
        self.current_global_batch_size = setting.global_batch
        self.current_running_global_batch_size = setting.global_batch
        self.micro_batch_size = setting.micro_batch
        self.num_micro_batches = setting.grad_accum
        if verbose and changed and self.rank == 0:
            print(
                f"[seesaw] global batch {setting.global_batch} "
                f"({setting.grad_accum} micro-batches of {setting.micro_batch}) at "
                f"{consumed_samples} samples",
                flush=True,
            )


def install_calculator(plan: Plan, rank: int = 0) -> SeesawMicroBatchesCalculator:
    """Make megatron-core's global ``get_num_microbatches()`` etc. follow ``plan``."""
    calculator = SeesawMicroBatchesCalculator(plan, rank)
    _calculators._GLOBAL_NUM_MICROBATCHES_CALCULATOR = calculator
    return calculator
