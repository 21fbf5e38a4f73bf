"""Build the plan from Megatron-LM arguments plus a seesaw config file."""

from __future__ import annotations

from typing import Any

from seesaw_ds.config import load_config_file, seesaw_section_of
from seesaw_ds.errors import SeesawConfigError
from seesaw_ds.schedules import Plan

__all__ = ["plan_from_megatron_args", "step_schedule_for_args"]


def plan_from_megatron_args(args: Any) -> Plan:
    """The plan for ``args.seesaw_config`` with Megatron's batch and LR arguments.

    ``--global-batch-size`` is the initial batch, ``--lr`` the peak, ``--micro-batch-size``
    and the data-parallel size the layout; ``--seq-length`` must match seesaw.seq_length.
    """
    config = load_config_file(args.seesaw_config)
    section = seesaw_section_of(config)
    if getattr(args, "seq_length", section.seq_length) != section.seq_length:
        raise SeesawConfigError(
            f"seesaw.seq_length = {section.seq_length} differs from --seq-length "
            f"{args.seq_length}: make them equal."
        )
    if getattr(args, "rampup_batch_size", None):
        raise SeesawConfigError(
            "--rampup-batch-size cannot be combined with --seesaw-config: use "
            "seesaw.batch_schedule 'linear_ramp' instead."
        )
    return section.build_plan(
        peak_lr=args.lr,
        initial_batch=args.global_batch_size,
        micro_batch=args.micro_batch_size,
        dp_size=args.data_parallel_size,
    )


def step_schedule_for_args(args: Any) -> str:
    """The ``--step-batch-size-schedule`` string for these arguments."""
    return plan_from_megatron_args(args).megatron_step_schedule()
