"""Small collective helpers shared by the training loop and the critical-batch probe.

Each works without a process group (a world of one), so callers need no special case.
``torch`` is imported inside the functions: importing this module stays cheap.

Note:
    Every tensor handed to a collective lives on the accelerator's current device
    (:func:`current_device`): NCCL has no CPU device ("No backend type associated with device
    type cpu"), while gloo takes any, so a CPU test cannot see a stray CPU tensor.
    ``tests/distributed/test_device_discipline.py`` runs these helpers under a process group
    that knows only a non-CPU device.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, List, Sequence, Union

if TYPE_CHECKING:
    import torch

__all__ = ["rank", "world_size", "barrier", "current_device", "all_mean", "free_port",
           "cpu_shm_buffer_path", "release_cpu_shm_buffer", "register_clean_exit",
           "GLOO_EXIT_GRACE_SECONDS"]

#: How long a gloo (CPU) process sleeps as it exits (see :func:`register_clean_exit`).
GLOO_EXIT_GRACE_SECONDS = 0.2
_clean_exit_registered = False


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


def current_device():
    """The accelerator's current device: DeepSpeed's ``get_accelerator()`` (``cuda:N`` on a
    GPU, ``cpu`` on its CPU accelerator), else torch's current CUDA device, else the CPU."""
    import torch

    try:
        from deepspeed.accelerator import get_accelerator
    except ImportError:
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")
    return torch.device(get_accelerator().current_device_name())


def all_mean(values: Sequence[Union[float, "torch.Tensor"]]) -> List[float]:
    """Mean over ranks of each value, as host floats.

    ``values`` are Python numbers or one-element tensors (on any device: a loss kept on the
    GPU is not synced before this call). One float64 all-reduce on :func:`current_device`,
    then one copy back to the host.
    """
    import torch
    import torch.distributed as dist

    device = current_device()
    if any(isinstance(value, torch.Tensor) for value in values):
        tensor = torch.stack([
            value.detach().reshape(()).to(device=device, dtype=torch.float64)
            if isinstance(value, torch.Tensor)
            else torch.full((), float(value), dtype=torch.float64, device=device)  # no copy
            for value in values])
    else:
        tensor = torch.tensor([float(value) for value in values], dtype=torch.float64,
                              device=device)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(tensor)
        tensor /= dist.get_world_size()
    return tensor.cpu().tolist()  # the one copy back to the host


def free_port() -> int:
    """A TCP port free on this machine now, for a job's ``MASTER_PORT``."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cpu_shm_buffer_path() -> str:
    """The POSIX shared-memory file DeepSpeed's CPU comm op makes for this rank of a job
    whose ranks are all on one machine, one rank included
    (``/dev/shm/deepspeed_allreduce_buffer_<uid>_<addr>_<port>_<rank>``, 67 MB), or ""
    without a ``MASTER_PORT`` (no such job)."""
    import os

    env = os.environ
    if "MASTER_PORT" not in env:
        return ""
    return (f"/dev/shm/deepspeed_allreduce_buffer_{os.getuid()}_"
            f"{env.get('MASTER_ADDR', '')}_{env['MASTER_PORT']}_{env.get('RANK', '0')}")


def release_cpu_shm_buffer() -> bool:
    """Remove this rank's DeepSpeed CPU shared-memory buffer name as the run ends.

    DeepSpeed creates it when a CPU job starts and never unlinks it, so every launcher CPU
    run left 67 MB per rank in ``/dev/shm`` (RAM) for good: a test suite or a sweep filled the
    machine's memory. Every rank mapped all buffers when the job started, so removing the
    name does not disturb a rank still running. True when a file was removed."""
    import os

    path = cpu_shm_buffer_path()
    if not path:
        return False
    try:
        os.unlink(path)
    except OSError:
        return False
    return True


def register_clean_exit() -> bool:
    """Make this process's exit clean on a gloo (CPU) job; True when registered.

    Registers once an ``atexit`` handler that releases the CPU shared-memory buffer
    (:func:`release_cpu_shm_buffer`) and then sleeps :data:`GLOO_EXIT_GRACE_SECONDS` with the
    GIL released. Why the sleep: a gloo worker thread drops its last reference to a finished
    collective *after* the caller's ``wait()`` returned, and with torch 2.13 that drop takes
    the GIL. When the main thread reaches interpreter shutdown first (it holds the GIL for a
    switch interval), the worker thread is killed inside a destructor and the process aborts
    with ``terminate called without an active exception`` (exit -6): the launcher reports a
    failed job after a complete run, about one run in ten on a busy 2-core machine. Exit
    handlers run while the interpreter is still whole, so the waiting threads finish there.
    A no-op (False) without a process group or on another backend (NCCL). One rank counts:
    gloo runs its collectives on worker threads there too, and DeepSpeed makes its buffer.
    """
    global _clean_exit_registered
    import torch.distributed as dist

    if _clean_exit_registered:
        return True
    if not (dist.is_available() and dist.is_initialized()):
        return False
    if "gloo" not in str(dist.get_backend()):
        return False
    import atexit

    atexit.register(_exit_cleanly)
    _clean_exit_registered = True
    return True


def _exit_cleanly() -> None:
    import time

    release_cpu_shm_buffer()
    time.sleep(GLOO_EXIT_GRACE_SECONDS)
