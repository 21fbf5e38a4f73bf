"""Online batch limits: the decisions of a policy (the critical-batch guard, the adaptive
schedule), written as pure data that a plan applies to its phases.

A :class:`BatchLimit` says: from ``start_tokens`` on (until the next limit), clamp the batch
schedule's batch to ``[floor, cap]``. Wherever a limit changes the batch, the phase follows
the base schedule with ``lr = peak * f(t) * sqrt(B / B0)``: the noise temperature
``lr / sqrt(B)`` stays on the base's path, so a held batch puts the decay into the LR and a
raised one is matched by a higher LR, optionally bounded by ``lr_ceiling x peak``. Where a
limit does not bind, the schedule's own phase (a Seesaw staircase step) is kept as it is.

Decisions only ever append limits at the current token count, so the phases before it
never change and a plan rebuilt from the saved limits is the same plan.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional, Sequence

from seesaw_ds.schedules.phases import Phase

__all__ = ["BatchLimit", "apply_batch_limits", "limit_at"]


@dataclass(frozen=True)
class BatchLimit:
    """From ``start_tokens`` on, the batch lies in ``[floor, cap]`` (None: unbounded)."""

    start_tokens: float
    floor: Optional[int] = None
    cap: Optional[int] = None

    def clamp(self, batch: int) -> int:
        if self.floor is not None:
            batch = max(batch, self.floor)
        if self.cap is not None:
            batch = min(batch, self.cap)
        return batch

    def to_list(self) -> list:
        return [self.start_tokens, self.floor, self.cap]

    @classmethod
    def from_list(cls, values: Sequence) -> "BatchLimit":
        start, floor, cap = values
        return cls(float(start), None if floor is None else int(floor),
                   None if cap is None else int(cap))


def limit_at(limits: Sequence[BatchLimit], tokens: float) -> Optional[BatchLimit]:
    """The limit in force at ``tokens`` (the last one starting at or before it)."""
    active = None
    for limit in limits:
        if limit.start_tokens <= tokens:
            active = limit
    return active


def apply_batch_limits(phases: Sequence[Phase], limits: Sequence[BatchLimit],
                       initial_batch: int, lr_ceiling: Optional[float] = None) -> List[Phase]:
    """Phases with every limit applied (phases split where a limit starts inside them)."""
    if not limits:
        return list(phases)
    starts = sorted({limit.start_tokens for limit in limits})
    out: List[Phase] = []
    for phase in phases:
        cuts = [s for s in starts if phase.start_tokens < s < phase.end_tokens]
        edges = [phase.start_tokens] + cuts + [phase.end_tokens]
        for start, end in zip(edges, edges[1:]):
            limit = limit_at(limits, start)
            batch = phase.global_batch if limit is None else limit.clamp(phase.global_batch)
            if batch == phase.global_batch:
                piece = Phase(start, end, batch, phase.lr_multiplier, phase.follows_base,
                              lr_ceiling=phase.lr_ceiling)
            else:
                piece = Phase(start, end, batch, math.sqrt(batch / initial_batch), True,
                              lr_ceiling=lr_ceiling)
            if out and _same_rule(out[-1], piece):
                out[-1] = Phase(out[-1].start_tokens, end, batch, piece.lr_multiplier,
                                piece.follows_base, lr_ceiling=piece.lr_ceiling)
            else:
                out.append(piece)
    return out


def _same_rule(before: Phase, after: Phase) -> bool:
    return (before.global_batch == after.global_batch and before.follows_base
            and after.follows_base and before.lr_multiplier == after.lr_multiplier
            and before.lr_ceiling == after.lr_ceiling)
