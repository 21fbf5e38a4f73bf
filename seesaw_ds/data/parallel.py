"""``ordered_map``: apply a function to a stream of tasks in worker processes, results in
input order, with a bounded number of tasks in flight.

Note:
    ``multiprocessing.Pool.imap`` would also keep the order, but its feeder thread consumes
    the input as fast as it can read it, so a reader faster than the workers queues the
    whole corpus in memory. Here at most ``window`` tasks (default ``4 * workers``) are
    submitted and not yet collected. Workers are forked when this process runs one Python
    thread, and spawned otherwise (no fork of a process holding threads, e.g. a trainer's
    process group; spawning re-imports ``__main__``, so such a script needs the usual
    ``if __name__ == "__main__"`` guard). They receive ``func`` once, in the pool's
    initializer.
"""

from __future__ import annotations

import multiprocessing
import threading
from collections import deque
from typing import Callable, Iterable, Iterator, Optional, TypeVar

__all__ = ["ordered_map", "default_workers"]

T = TypeVar("T")
R = TypeVar("R")
_FUNC = None


def default_workers() -> int:
    """The cores this process may run on."""
    try:
        import os

        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return multiprocessing.cpu_count()


def _init(func) -> None:
    global _FUNC
    _FUNC = func


def _call(task):
    return _FUNC(task)


def ordered_map(func: Callable[[T], R], tasks: Iterable[T], workers: int,
                window: Optional[int] = None) -> Iterator[R]:
    """``map(func, tasks)`` over ``workers`` processes (1: in this process), in order."""
    if workers <= 1:
        yield from map(func, tasks)
        return
    window = window or 4 * workers
    context = multiprocessing.get_context(
        "fork" if threading.active_count() == 1 and "fork" in multiprocessing.get_all_start_methods()
        else "spawn")
    pool = context.Pool(workers, initializer=_init, initargs=(func,))
    try:
        pending: deque = deque()
        for task in tasks:
            pending.append(pool.apply_async(_call, (task,)))
            if len(pending) >= window:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()
        pool.close()
    finally:
        pool.terminate()
        pool.join()
