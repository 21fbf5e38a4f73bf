"""Progress of ``prepare``'s tokenization: tokens/s, MB/s (of input files on disk) and an
ETA, as a bar on a terminal and as a plain line every ``interval`` seconds otherwise."""

from __future__ import annotations

import time
from typing import Callable, Optional

__all__ = ["PrepareProgress", "format_line"]


def _duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def format_line(done_bytes: int, total_bytes: int, tokens: int, elapsed: float) -> str:
    """``prepare: 12.3/45.6 MB (27%), 1.23M tokens/s, 4.56 MB/s, ETA 0:00:07``."""
    elapsed = max(elapsed, 1e-9)
    rate = done_bytes / elapsed
    eta = (total_bytes - done_bytes) / rate if rate > 0 else float("inf")
    percent = 100.0 * done_bytes / total_bytes if total_bytes else 100.0
    return (f"prepare: {done_bytes / 1e6:.1f}/{total_bytes / 1e6:.1f} MB ({percent:.0f}%), "
            f"{tokens / elapsed / 1e6:.2f}M tokens/s, {rate / 1e6:.2f} MB/s, "
            f"ETA {_duration(eta) if eta != float('inf') else '?'}")


class PrepareProgress:
    """``update(input_bytes, tokens)`` after each chunk; ``close()`` at the end.

    ``bar``: a tqdm bar over ``total_bytes`` (a terminal); otherwise ``log`` gets a
    :func:`format_line` every ``interval`` seconds (None: never).
    """

    def __init__(self, total_bytes: int, bar: bool, log: Callable[[str], None],
                 interval: Optional[float] = 30.0, clock: Callable[[], float] = time.monotonic):
        self.total_bytes, self.log, self.interval, self.clock = total_bytes, log, interval, clock
        self.started = self.last = clock()
        self.done_bytes = self.tokens = 0
        self.bar = None
        if bar:
            from tqdm import tqdm

            self.bar = tqdm(total=total_bytes, unit="B", unit_scale=True, desc="tokenize",
                            dynamic_ncols=True)

    def update(self, input_bytes: int, tokens: int) -> None:
        input_bytes = min(input_bytes, self.total_bytes)
        now = self.clock()
        if self.bar is not None:
            self.bar.update(input_bytes - self.done_bytes)
            self.bar.set_postfix_str(f"{tokens / max(now - self.started, 1e-9) / 1e6:.2f}M tok/s",
                                     refresh=False)
        elif self.interval is not None and now - self.last >= self.interval:
            self.log(format_line(input_bytes, self.total_bytes, tokens, now - self.started))
            self.last = now
        self.done_bytes, self.tokens = input_bytes, tokens

    def close(self) -> float:
        """Seconds since the start."""
        if self.bar is not None:
            self.bar.close()
        return self.clock() - self.started
