"""Thin adapters that let Megatron (megatron-core and Megatron-LM) follow a seesaw-ds plan.

- :class:`SeesawMicroBatchesCalculator`: megatron-core's num-microbatches calculator
  interface, driven by the plan's batch at the consumed-sample count.
- :class:`SeesawParamScheduler`: the ``OptimizerParamScheduler`` interface
  (``step(increment)`` in samples), setting every param group's LR from the plan at the
  calculator's consumed-sample count.
- :func:`configure_megatron_args` / :func:`plan_from_megatron_args`: Megatron-LM's
  arguments under ``--seesaw-config`` (conflicts refused, length from the plan).
- :func:`megatron_section`: a config's ``seesaw`` section laid out as megatron-core runs it
  (accumulation at a fixed micro-batch), for a loop of your own (docs/megatron_core.md).
- :mod:`seesaw_ds.megatron_adapter.megatron_lm`: the calls made by
  ``patches/megatron-lm-seesaw.patch`` (imported by the patch, not here).
"""

from seesaw_ds.megatron_adapter.args import (
    REPLACED_FLAGS,
    configure_megatron_args,
    explicit_flags,
    megatron_dp_size,
    megatron_section,
    plan_from_megatron_args,
    step_schedule_for_args,
)
from seesaw_ds.megatron_adapter.calculator import (
    SeesawMicroBatchesCalculator,
    install_calculator,
)
from seesaw_ds.megatron_adapter.param_scheduler import SeesawParamScheduler
from seesaw_ds.megatron_adapter.samples import plan_samples

__all__ = [
    "SeesawMicroBatchesCalculator",
    "install_calculator",
    "SeesawParamScheduler",
    "REPLACED_FLAGS",
    "configure_megatron_args",
    "explicit_flags",
    "megatron_dp_size",
    "megatron_section",
    "plan_from_megatron_args",
    "plan_samples",
    "step_schedule_for_args",
]
