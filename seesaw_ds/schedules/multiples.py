"""Batch-multiple stages: a run whose rank count grows in a chain of jobs.

A plan rounds every batch to a multiple ``q`` that each job's ``micro-batch x data-parallel
size`` must divide. One ``q`` for the whole run forces every job's rank count to divide the
initial batch. With stages, ``q`` changes at token counts chosen for the jobs of a chain:
``((0, q0), (T1, q1), ...)`` rounds the batches that start in ``[Tk, Tk+1)`` to multiples of
``qk``, so the job from ``Tk`` can run on any rank count that divides ``qk``.

The rounding goes up (``ceil(B / qk) * qk``, and never below the batch before it, so batches
stay monotone when a later stage's multiple is finer), and multiplies the phase's LR by
``sqrt(B' / B)``: ``lr / sqrt(B)`` stays where the schedule put it, the rule
the plan uses for every rounded batch, with one bound: a rounded phase never trains above the
peak LR (``lr_ceiling`` :data:`STAGE_LR_CEILING`). A stage that starts in the warmup or
constant part (batch ``B0``, LR at the peak) would otherwise lift the LR above the tuned peak
(1.22x for ``B0`` 48 rounded to 72); there the cap binds, ``lr / sqrt(B)`` falls below the
schedule's path, and the plan says so (:meth:`Plan.stage_lr_caps`). Only schedules whose batches are derived (Seesaw) are
rounded; a batch the user wrote (late switch, step, linear ramp) that is not a multiple of its
stage's ``q`` is an error.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
from typing import Any, List, Sequence, Tuple

from seesaw_ds.errors import SeesawConfigError
from seesaw_ds.schedules.phases import Phase

__all__ = ["MultipleStages", "parse_multiple_stages", "multiple_at", "restage_phases",
           "check_no_online_decisions", "STAGE_LR_CEILING"]

MultipleStages = Tuple[Tuple[float, int], ...]

#: LR bound (a multiple of the peak) of a phase whose batch a stage rounded up.
STAGE_LR_CEILING = 1.0


def parse_multiple_stages(stages: Any, first_multiple: int, total_tokens: float,
                          field: str = "seesaw.batch_multiple_stages") -> MultipleStages:
    """``((0, first_multiple), (T1, q1), ...)`` from a list of ``{"from_tokens", "multiple"}``
    (or ``[tokens, multiple]`` pairs); raises SeesawConfigError naming the entry."""
    if stages is None:
        return ((0.0, int(first_multiple)),)
    if isinstance(stages, (str, bytes)) or not isinstance(stages, Sequence):
        raise SeesawConfigError(
            f"{field} must be a list of {{\"from_tokens\": T, \"multiple\": q}} entries, got "
            f"{type(stages).__name__}.")
    parsed: List[Tuple[float, int]] = [(0.0, int(first_multiple))]
    for index, entry in enumerate(stages):
        where = f"{field}[{index}]"
        if isinstance(entry, dict):
            unknown = sorted(set(entry) - {"from_tokens", "multiple"})
            if unknown or "from_tokens" not in entry or "multiple" not in entry:
                raise SeesawConfigError(
                    f"{where} must have exactly the keys from_tokens and multiple "
                    f"(got {sorted(entry)}).")
            tokens, multiple = entry["from_tokens"], entry["multiple"]
        elif isinstance(entry, Sequence) and not isinstance(entry, (str, bytes)) \
                and len(entry) == 2:
            tokens, multiple = entry
        else:
            raise SeesawConfigError(
                f"{where} = {entry!r} must be {{\"from_tokens\": T, \"multiple\": q}}.")
        if isinstance(tokens, bool) or not isinstance(tokens, (int, float)) \
                or not parsed[-1][0] < tokens < total_tokens:  # also NaN, inf, 10**400
            raise SeesawConfigError(
                f"{where}.from_tokens = {tokens!r} must be a number above the previous "
                f"stage's ({parsed[-1][0]:g}) and below seesaw.total_tokens "
                f"({total_tokens:g}): list stages in token order.")
        if isinstance(multiple, bool) or not isinstance(multiple, int) or multiple < 1 \
                or multiple > total_tokens:
            raise SeesawConfigError(
                f"{where}.multiple = {multiple!r} must be a positive whole number (the "
                "micro-batch x data-parallel size of the job that runs the stage, or a "
                "multiple of it), at most seesaw.total_tokens.")
        parsed.append((float(tokens), multiple))
    return tuple(parsed)


def check_no_online_decisions(staged: bool, online: bool) -> None:
    """Stages and online batch decisions (the adaptive schedule, the guard) do not mix: the
    decisions' rungs use one batch multiple."""
    if staged and online:
        raise SeesawConfigError(
            "seesaw.batch_multiple_stages cannot be combined with online batch decisions "
            "(batch_schedule 'adaptive' or cbs_guard): their rungs use one batch multiple. "
            "Remove batch_multiple_stages or the online policy.")


def multiple_at(stages: MultipleStages, tokens: float) -> int:
    """The batch multiple in force for a step that starts at ``tokens``."""
    starts = [start for start, _ in stages]
    return stages[max(0, bisect.bisect_right(starts, tokens) - 1)][1]


def _split_at_stages(phases: Sequence[Phase], stages: MultipleStages) -> List[Phase]:
    pieces: List[Phase] = []
    bounds = [start for start, _ in stages[1:]]
    for phase in phases:
        start = phase.start_tokens
        for bound in bounds:
            if start < bound < phase.end_tokens:
                pieces.append(dataclasses.replace(phase, start_tokens=start, end_tokens=bound))
                start = bound
        pieces.append(dataclasses.replace(phase, start_tokens=start))
    return pieces


def restage_phases(phases: Sequence[Phase], stages: MultipleStages, rounds_batches: bool,
                   max_batch: int = None) -> List[Phase]:
    """Phases split at the stage boundaries, each batch a multiple of its stage's ``q``.

    Args:
        phases: the schedule's phases (built with the first stage's multiple).
        stages: from :func:`parse_multiple_stages`.
        rounds_batches: the schedule derives its batches (Seesaw): round up and correct
            the LR; otherwise a batch that is not a multiple is an error.
        max_batch: the schedule's cap, which every stage's multiple must divide.
    """
    if len(stages) == 1:
        return list(phases)
    out: List[Phase] = []
    for phase in _split_at_stages(phases, stages):
        multiple = multiple_at(stages, phase.start_tokens)
        batch = phase.global_batch
        floor = out[-1].global_batch if out else 0  # a later, finer stage never shrinks it
        if batch % multiple or batch < floor:
            if not rounds_batches:
                raise SeesawConfigError(
                    f"the batch {batch} from token {phase.start_tokens:.6g} is not a multiple "
                    f"of seesaw.batch_multiple_stages' multiple {multiple} in force there: "
                    "choose batches that are multiples of every stage's multiple.")
            rounded = math.ceil(max(batch, floor) / multiple) * multiple
            if max_batch is not None and rounded > max_batch:
                raise SeesawConfigError(
                    f"seesaw.max_batch = {max_batch} is not a multiple of the batch multiple "
                    f"{multiple} of the stage from token {phase.start_tokens:.6g}: make "
                    "max_batch a multiple of every stage's multiple.")
            ceiling = STAGE_LR_CEILING if phase.lr_ceiling is None else min(
                phase.lr_ceiling, STAGE_LR_CEILING)
            phase = dataclasses.replace(
                phase, global_batch=rounded,
                lr_multiplier=phase.lr_multiplier * math.sqrt(rounded / batch),
                lr_ceiling=ceiling)
        out.append(phase)
    return out
