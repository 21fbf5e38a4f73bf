"""Which samples the small-batch probe measures, the same on every rank layout.

The noise-scale probe measures ``chunks`` small batches of ``chunk_samples`` samples each:
chunk ``k`` is samples ``[W + k*s, W + (k+1)*s)`` of the global sample stream, ``W`` the
window's first sample and ``s = chunk_samples``. The size is fixed when a run starts (the
starting layout's per-rank micro-batch and data-parallel size, so an unchanged layout
measures exactly its ranks' first micro-batches) and travels in the checkpoint: a run
resumed on another rank count measures the same samples, feeds the estimator the same
numbers and takes the same decisions.

Each chunk is measured by one rank: the rank whose first micro-batch of the window holds
it (rows ``[r*m, (r+1)*m)`` of the window for rank ``r`` and per-rank micro-batch ``m``),
or else, when no rank holds it whole, rank ``k mod dp``, which reads the samples itself.
Pure integer math, no torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Mapping, Optional, Tuple

__all__ = ["ProbeSize", "probe_chunks"]


@dataclass(frozen=True)
class ProbeSize:
    """``chunks`` small batches of ``chunk_samples`` samples: the probe in samples."""

    chunk_samples: int
    chunks: int

    def __post_init__(self) -> None:
        for name in ("chunk_samples", "chunks"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"ProbeSize.{name} = {value!r} must be a positive integer")

    @property
    def samples(self) -> int:
        return self.chunk_samples * self.chunks

    def to_dict(self) -> dict:
        return {"chunk_samples": self.chunk_samples, "chunks": self.chunks}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "ProbeSize":
        return cls(int(values["chunk_samples"]), int(values["chunks"]))


def probe_chunks(size: ProbeSize, dp_size: int, dp_rank: int,
                 micro_batch: int) -> List[Tuple[int, Optional[int]]]:
    """The chunks rank ``dp_rank`` of ``dp_size`` measures, as ``(chunk, row)``: ``row`` is
    the chunk's first row in this rank's first micro-batch of ``micro_batch`` samples, or
    None when the rank must read the chunk's samples itself.

    Over all ranks every chunk ``0 .. size.chunks - 1`` is listed exactly once.
    """
    mine: List[Tuple[int, Optional[int]]] = []
    s, m = size.chunk_samples, micro_batch
    for chunk in range(size.chunks):
        first, end = chunk * s, (chunk + 1) * s
        holder = first // m
        held = holder < dp_size and end <= (holder + 1) * m
        owner = holder if held else chunk % dp_size
        if owner == dp_rank:
            mine.append((chunk, first - holder * m if held else None))
    return mine
