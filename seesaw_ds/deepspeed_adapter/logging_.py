"""Per-step logging of the Seesaw setting: DeepSpeed's monitor and stdout.

Every optimizer step writes ``Train/Seesaw/{lr, global_batch, micro_batch, grad_accum,
consumed_tokens}`` through ``engine.monitor`` (csv_monitor, tensorboard, wandb sections of
the DeepSpeed config) when it is enabled, with DeepSpeed's x-axis (``global_samples``).
Every ``steps_per_print`` steps, rank 0 prints one line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Tuple

from seesaw_ds.schedules import StepSetting

__all__ = ["StepRecord", "SeesawStepLogger", "EVENT_PREFIX"]

EVENT_PREFIX = "Train/Seesaw/"


@dataclass(frozen=True)
class StepRecord:
    """What one finished optimizer step used (its setting) and where the clock is after it."""

    step: int
    setting: StepSetting
    consumed_samples: int
    consumed_tokens: int

    def events(self, x: int) -> List[Tuple[str, float, int]]:
        s = self.setting
        return [
            (EVENT_PREFIX + "lr", s.lr, x),
            (EVENT_PREFIX + "global_batch", s.global_batch, x),
            (EVENT_PREFIX + "micro_batch", s.micro_batch, x),
            (EVENT_PREFIX + "grad_accum", s.grad_accum, x),
            (EVENT_PREFIX + "consumed_tokens", self.consumed_tokens, x),
        ]

    def line(self) -> str:
        s = self.setting
        return (
            f"[seesaw] step={self.step} tokens={self.consumed_tokens} lr={s.lr:.6g} "
            f"global_batch={s.global_batch} micro_batch={s.micro_batch} "
            f"grad_accum={s.grad_accum} phase={s.phase_index}"
        )


class SeesawStepLogger:
    """Writes a :class:`StepRecord` to the engine's monitor and, periodically, to stdout.

    Args:
        engine: the DeepSpeed engine (``monitor``, ``global_samples``, ``global_rank``).
        steps_per_print: print every this many optimizer steps (None or 0: never).
        printer: where lines go (default: ``print`` with flush, rank 0 only).
    """

    def __init__(
        self,
        engine: Any,
        steps_per_print: Optional[int],
        printer: Optional[Callable[[str], None]] = None,
    ) -> None:
        self.engine = engine
        self.steps_per_print = steps_per_print or 0
        self.rank0 = int(getattr(engine, "global_rank", 0)) == 0
        self.printer = printer or (lambda text: print(text, flush=True))
        self.history_limit = 0  # set > 0 to keep the last records in ``history``
        self.history: List[StepRecord] = []

    @property
    def monitor_enabled(self) -> bool:
        monitor = getattr(self.engine, "monitor", None)
        return bool(monitor is not None and monitor.enabled)

    def log(self, record: StepRecord) -> None:
        if not self.rank0:
            return
        if self.monitor_enabled:
            self.engine.monitor.write_events(record.events(int(self.engine.global_samples)))
        if self.steps_per_print and record.step % self.steps_per_print == 0:
            self.printer(record.line())
        if self.history_limit:
            self.history.append(record)
            del self.history[: -self.history_limit]
