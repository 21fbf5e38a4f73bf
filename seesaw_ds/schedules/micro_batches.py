"""The per-rank micro-batch of every phase: steady, and never changed without a reason.

``growth_policy: accumulation`` keeps the configured micro-batch (``train_micro_batch_size_per_gpu``)
and grows gradient accumulation. ``micro_batch_first`` uses a larger micro-batch where the
batches allow one, under one rule that keeps the per-GPU load steady:

    the micro-batch of a phase is the largest multiple of the configured micro-batch, at most
    ``max_micro_batch``, that divides the per-rank batch of this phase **and of every later
    phase that trains a step**.

So the micro-batch never shrinks during a run (a later per-rank batch that a large micro-batch
does not divide keeps the micro-batch where it is from the start), and it grows only where
every remaining batch allows the larger size. A per-phase greedy choice (the largest size
dividing each batch on its own) swings: on 8 ranks the 150M config went 16 -> 6 -> 10 -> 2.
The one exception is the short last step (the budget's remainder), which may need a smaller
micro-batch for that single step. Every change, and a first micro-batch other than the
configured one, comes with a reason (:func:`micro_batch_reasons`) that the plan prints.
"""

from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple

from seesaw_ds.errors import SeesawConfigError

__all__ = ["layout_batch", "largest_micro_batch", "steady_micro_batches",
           "micro_batch_reasons"]


def largest_micro_batch(per_rank: int, micro_batch: int, ceiling: int) -> int:
    """The largest multiple of ``micro_batch`` up to ``ceiling`` that divides ``per_rank``
    (``micro_batch`` itself when none is larger)."""
    for candidate in range(min(ceiling, per_rank), micro_batch, -1):
        if per_rank % candidate == 0 and candidate % micro_batch == 0:
            return candidate
    return micro_batch


def layout_batch(
    global_batch: int,
    dp_size: int,
    micro_batch: int,
    max_micro_batch: Optional[int] = None,
    growth_policy: str = "accumulation",
) -> Tuple[int, int]:
    """Per-rank (micro_batch, grad_accum) of one batch taken on its own.

    ``accumulation`` keeps the configured micro-batch; ``micro_batch_first`` takes the
    largest micro-batch up to ``max_micro_batch`` that divides the per-rank batch. A plan
    does not lay out phases one by one with it (see :func:`steady_micro_batches`).
    """
    if global_batch % (dp_size * micro_batch):
        raise SeesawConfigError(
            f"global batch {global_batch} is not a multiple of micro-batch x data-parallel "
            f"size = {micro_batch} x {dp_size}: set seesaw.batch_multiple to a multiple of "
            f"{micro_batch * dp_size}."
        )
    per_rank = global_batch // dp_size
    if growth_policy == "micro_batch_first" and max_micro_batch:
        micro = largest_micro_batch(per_rank, micro_batch, max_micro_batch)
        return micro, per_rank // micro
    return micro_batch, per_rank // micro_batch


def steady_micro_batches(per_rank: Sequence[Optional[int]], trains: Sequence[bool],
                         micro_batch: int, max_micro_batch: int) -> List[Optional[int]]:
    """Micro-batch of every phase under ``micro_batch_first`` (None where ``per_rank`` is
    None: a phase this rank count does not lay out).

    Args:
        per_rank: each phase's per-rank batch (every one a multiple of ``micro_batch``).
        trains: whether the phase trains a step (a phase with no step constrains nothing
            before it).
    """
    out: List[Optional[int]] = [None] * len(per_rank)
    later = 0  # gcd of the per-rank batches of the later phases that train a step
    for index in range(len(per_rank) - 1, -1, -1):
        batch = per_rank[index]
        if batch is None:
            continue
        common = math.gcd(later, batch)
        out[index] = largest_micro_batch(common, micro_batch, max_micro_batch)
        if trains[index]:
            later = common
    return out


def micro_batch_reasons(micros: Sequence[Optional[int]], per_rank: Sequence[Optional[int]],
                        trains: Sequence[bool], micro_batch: int,
                        max_micro_batch: Optional[int], dp_size: int) -> List[Tuple[int, str]]:
    """``(phase index, reason)`` for the first micro-batch when it is not the configured one,
    for every change between phases that train, and for a ``max_micro_batch`` never reached."""
    reasons: List[Tuple[int, str]] = []
    previous: Optional[int] = None
    for index, (micro, batch, runs) in enumerate(zip(micros, per_rank, trains)):
        if micro is None or not runs:
            continue
        if previous is None and micro != micro_batch:
            reasons.append((index, (
                f"micro-batch {micro} from the first step, not the configured {micro_batch} "
                f"(train_micro_batch_size_per_gpu): growth_policy micro_batch_first takes the "
                f"largest multiple of {micro_batch} up to max_micro_batch {max_micro_batch} "
                f"that divides every per-rank batch of the run")))
        elif previous is not None and micro != previous:
            reasons.append((index, (
                f"micro-batch {previous} -> {micro} at phase {index}: every per-rank batch "
                f"from here on (first {batch}) is a multiple of {micro}")))
        previous = micro
    top = max((m for m, runs in zip(micros, trains) if m and runs), default=None)
    if max_micro_batch and top is not None and top < max_micro_batch:
        blocking = next(((index, batch) for index, (batch, runs) in
                         enumerate(zip(per_rank, trains))
                         if batch and runs and batch % max_micro_batch), None)
        if blocking is not None:
            index, batch = blocking
            reasons.append((index, (
                f"max_micro_batch {max_micro_batch} is not reached (largest micro-batch "
                f"{top}): the per-rank batch {batch} of phase {index} is not a multiple of "
                f"it, and the micro-batch never shrinks during the run (it reaches "
                f"{max_micro_batch} where every batch is a multiple of {dp_size} x "
                f"{max_micro_batch} = {dp_size * max_micro_batch}: seesaw.batch_multiple)")))
    return reasons
