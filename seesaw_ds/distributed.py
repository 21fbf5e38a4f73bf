"""Small collective helpers shared by the training loop and the critical-batch probe.

Each works without a process group (a world of one), so callers need no special case.
``torch`` is imported inside the functions: importing this module stays cheap.
"""

from __future__ import annotations

from typing import List

__all__ = ["rank", "world_size", "barrier", "all_mean"]


def rank() -> int:
    """This process's global rank (0 without a process group)."""
    import torch.distributed as dist

    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    """The number of processes (1 without a process group)."""
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def barrier() -> None:
    """Wait for every rank (no-op without a process group)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_mean(values: List[float]) -> List[float]:
    """Mean over ranks of each value (float64 all-reduce; the values themselves alone)."""
    import torch
    import torch.distributed as dist

    tensor = torch.tensor(values, dtype=torch.float64)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(tensor)
        tensor /= dist.get_world_size()
    return tensor.tolist()
