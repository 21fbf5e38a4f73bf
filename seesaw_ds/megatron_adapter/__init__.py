"""Thin adapters that let Megatron (megatron-core and Megatron-LM) follow a seesaw-ds plan.

- :class:`SeesawMicroBatchesCalculator`: megatron-core's num-microbatches calculator
  interface, driven by the plan's batch at the consumed-sample count.
- :class:`SeesawParamScheduler`: the ``OptimizerParamScheduler`` interface
  (``step(increment)`` in samples), setting every param group's LR from the plan.
- :func:`install_calculator` / :func:`plan_from_megatron_args`: wiring used by
  ``patches/megatron-lm-seesaw.patch`` (the ``--seesaw-config`` option of Megatron-LM).
"""

from seesaw_ds.megatron_adapter.calculator import (
    SeesawMicroBatchesCalculator,
    install_calculator,
)
from seesaw_ds.megatron_adapter.param_scheduler import SeesawParamScheduler
from seesaw_ds.megatron_adapter.args import plan_from_megatron_args, step_schedule_for_args

__all__ = [
    "SeesawMicroBatchesCalculator",
    "install_calculator",
    "SeesawParamScheduler",
    "plan_from_megatron_args",
    "step_schedule_for_args",
]
