"""Megatron's pipeline schedules and the micro-batch counts they accept.

megatron-core picks the forward-backward schedule from the pipeline sizes
(``get_forward_backward_func``): no pipelining and the non-interleaved 1F1B schedule run any
number of micro-batches ``M >= 1``; the interleaved schedule (virtual pipeline stages)
raises unless, with ``N = microbatch_group_size_per_vp_stage`` (default: PP),
``PP <= N <= M`` and ``M % N`` is 0 or at least PP
(``forward_backward_pipelining_with_interleaving`` in
``megatron/core/pipeline_parallel/schedules.py``). A seesaw plan changes ``M`` every few
hundred steps, so every step's count is checked when the run is configured.

:func:`pipeline_multiple` is the batch multiple that makes every count valid (micro-batch x
data-parallel size x N: then ``M`` is a multiple of N); the Megatron plan rounds its batches
to it. :func:`check_plan_micro_batches` is the check of the built plan.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional

from seesaw_ds.errors import SeesawConfigError

__all__ = ["PipelineSchedule", "pipeline_schedule", "pipeline_multiple",
           "check_plan_micro_batches"]


@dataclass(frozen=True)
class PipelineSchedule:
    """The pipeline layout that decides which micro-batch counts Megatron accepts.

    Attributes:
        pp: pipeline-parallel size.
        vpp: virtual stages per pipeline rank (``None``: not interleaved).
        group: ``microbatch_group_size_per_vp_stage`` (interleaved only; default PP).
    """

    pp: int = 1
    vpp: Optional[int] = None
    group: Optional[int] = None

    @property
    def interleaved(self) -> bool:
        return self.pp > 1 and self.vpp is not None

    @property
    def group_size(self) -> int:
        return (self.group or self.pp) if self.interleaved else 1

    def describe(self) -> str:
        if not self.interleaved:
            return f"pipeline-parallel size {self.pp}"
        return (f"the interleaved schedule (PP {self.pp}, {self.vpp} virtual stages, "
                f"--microbatch-group-size-per-virtual-pipeline-stage {self.group_size})")

    def rejects(self, num_microbatches: int) -> Optional[str]:
        """Why Megatron's schedule refuses ``num_microbatches`` (``None``: accepted)."""
        if num_microbatches < 1:
            return f"{num_microbatches} micro-batches"
        if not self.interleaved:
            return None
        group = self.group_size
        if group > num_microbatches:
            return (f"{num_microbatches} micro-batches, fewer than the group size {group} "
                    "(ValueError in forward_backward_pipelining_with_interleaving)")
        remainder = num_microbatches % group
        if 0 < remainder < self.pp:
            return (f"{num_microbatches} micro-batches leave a last group of {remainder} < "
                    f"PP {self.pp} (RuntimeError in "
                    "forward_backward_pipelining_with_interleaving)")
        return None

    def check(self) -> None:
        """The group size itself: Megatron refuses every count when it is below PP."""
        if self.interleaved and self.group_size < self.pp:
            raise SeesawConfigError(
                f"--microbatch-group-size-per-virtual-pipeline-stage {self.group_size} is "
                f"below the pipeline-parallel size {self.pp}: Megatron's interleaved schedule "
                "refuses every step; drop the flag (default: PP) or raise it.")


def _virtual_stages(args: Any) -> Optional[int]:
    """Virtual stages per pipeline rank as ``validate_args`` derives them (it may not have
    done so yet when the plan is configured)."""
    pp = int(getattr(args, "pipeline_model_parallel_size", 1) or 1)
    vpp = getattr(args, "virtual_pipeline_model_parallel_size", None)
    if vpp is None and getattr(args, "num_virtual_stages_per_pipeline_rank", None):
        vpp = int(args.num_virtual_stages_per_pipeline_rank)
    layers_per_stage = getattr(args, "num_layers_per_virtual_pipeline_stage", None)
    if vpp is None and layers_per_stage and getattr(args, "num_layers", None):
        vpp = (int(args.num_layers) // pp) // int(layers_per_stage)
    return vpp if vpp and vpp > 1 and pp > 1 else None


def pipeline_schedule(args: Any) -> PipelineSchedule:
    """The :class:`PipelineSchedule` of Megatron-LM's (parsed) arguments."""
    pp = int(getattr(args, "pipeline_model_parallel_size", 1) or 1)
    group = getattr(args, "microbatch_group_size_per_vp_stage", None)
    return PipelineSchedule(pp=pp, vpp=_virtual_stages(args), group=group)


def pipeline_multiple(schedule: PipelineSchedule, micro_batch: int, dp_size: int,
                      batch_multiple: Optional[int]) -> int:
    """The batch multiple that keeps every count valid: ``lcm(batch_multiple,
    micro x dp x group)`` (``batch_multiple`` None: micro x dp)."""
    base = int(batch_multiple or micro_batch * dp_size)
    return math.lcm(base, micro_batch * dp_size * schedule.group_size)


def check_plan_micro_batches(plan: Any, schedule: PipelineSchedule) -> None:
    """Raise SeesawConfigError at the first planned step whose micro-batch count Megatron's
    schedule refuses (one check per phase and one for the short last step)."""
    schedule.check()
    if not schedule.interleaved:
        return
    divisor = plan.micro_batch * plan.dp_size
    cursor = 0.0
    counts = plan.steps_per_phase()
    for index, (phase, steps) in enumerate(zip(plan.phases, counts)):
        if steps and phase.micro_batch:
            _check_count(schedule, phase.global_batch // divisor, phase.global_batch,
                         cursor, plan, divisor)
        cursor += steps * phase.global_batch * plan.seq_length
    last_start = cursor - _last_batch(plan, counts) * plan.seq_length
    last = plan.lr_and_batch_at(last_start)[2]
    _check_count(schedule, last // divisor, last, last_start, plan, divisor)


def _last_batch(plan: Any, counts) -> int:
    for phase, steps in zip(reversed(plan.phases), reversed(counts)):
        if steps:
            return phase.global_batch
    return plan.initial_batch


def _check_count(schedule: PipelineSchedule, count: int, batch: int, tokens: float,
                 plan: Any, divisor: int) -> None:
    reason = schedule.rejects(count)
    if reason is None:
        return
    need = divisor * schedule.group_size
    raise SeesawConfigError(
        f"the plan's global batch {batch} from token {tokens:.6g} is {reason} under "
        f"{schedule.describe()}: make seesaw.batch_multiple (and train_batch_size and every "
        f"batch the schedule names) a multiple of micro-batch x data-parallel size x group "
        f"= {need}.")
