"""Project a plan's wall-clock time onto a cluster from measured step-time pieces.

A CPU box cannot show Seesaw's wall-clock gain: with two cores, time follows tokens. On a
cluster the larger batches of the later phases are spread over more data-parallel ranks, so
an optimizer step costs about the same however large the batch, and time follows optimizer
steps. This module turns measured pieces into that projection:

- ``micro_seconds[m]``: forward + backward of one micro-batch of ``m`` sequences on one rank,
- ``optimizer_seconds``: one optimizer step on one rank,
- an all-reduce cost ``latency + bytes / bandwidth`` per ring hop (alpha-beta model, fitted
  from gloo all-reduces measured at several sizes).

For each phase the cluster uses ``dp = min(max_ranks, B / micro)`` ranks, each accumulating
``ceil(B / (micro * dp))`` micro-batches; the step time is their compute plus one ring
all-reduce of the gradients plus the optimizer step.

Limitations:
    No overlap of communication with backward, no pipeline or tensor parallelism, one
    micro-batch size per run. Measured pieces from one machine stand for one worker.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, List

from seesaw_ds.schedules import Plan

__all__ = ["StepTimeModel", "PhaseProjection", "project_plan"]


@dataclass(frozen=True)
class StepTimeModel:
    micro_seconds: Dict[int, float]
    optimizer_seconds: float
    allreduce_latency: float
    allreduce_seconds_per_byte: float
    gradient_bytes: int

    def allreduce_seconds(self, ranks: int) -> float:
        if ranks <= 1:
            return 0.0
        hops = 2 * (ranks - 1)
        return hops * self.allreduce_latency + hops / ranks * self.gradient_bytes * (
            self.allreduce_seconds_per_byte
        )

    def step_seconds(self, micro: int, grad_accum: int, ranks: int) -> float:
        return (grad_accum * self.micro_seconds[micro] + self.allreduce_seconds(ranks)
                + self.optimizer_seconds)


@dataclass(frozen=True)
class PhaseProjection:
    global_batch: int
    steps: int
    ranks: int
    grad_accum: int
    step_seconds: float

    @property
    def seconds(self) -> float:
        return self.steps * self.step_seconds


@dataclass(frozen=True)
class Projection:
    phases: List[PhaseProjection] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return sum(phase.seconds for phase in self.phases)

    @property
    def steps(self) -> int:
        return sum(phase.steps for phase in self.phases)


def project_plan(plan: Plan, model: StepTimeModel, micro: int, max_ranks: int) -> Projection:
    """Projected time of every phase of ``plan`` on up to ``max_ranks`` workers."""
    phases = []
    for phase, steps in zip(plan.phases, plan.steps_per_phase()):
        if steps == 0:
            continue
        ranks = max(1, min(max_ranks, phase.global_batch // micro))
        grad_accum = math.ceil(phase.global_batch / (micro * ranks))
        phases.append(PhaseProjection(
            phase.global_batch, steps, ranks, grad_accum,
            model.step_seconds(micro, grad_accum, ranks),
        ))
    return Projection(phases)
