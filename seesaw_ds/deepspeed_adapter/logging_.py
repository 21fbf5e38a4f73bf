"""Per-step logging of the Seesaw setting: DeepSpeed's monitor and the ``seesaw_ds`` logger.

Every optimizer step writes ``Train/Seesaw/{lr, global_batch, micro_batch, grad_accum,
consumed_tokens}`` through ``engine.monitor`` (csv_monitor, tensorboard, wandb sections of
the DeepSpeed config) when it is enabled, with DeepSpeed's x-axis (``global_samples``).

Rank 0 logs through the standard :mod:`logging` logger ``seesaw_ds`` (INFO):

* ``[seesaw] start ...`` before the first step this process runs (also after a resume),
* ``[seesaw] batch change at step=N tokens=T: global_batch 32 -> 64, grad_accum 4 -> 8,
  micro_batch 4, lr=..., phase=3/7`` at the first step of every new batch (``step`` is the
  1-based number of that step, ``tokens`` the count it starts at),
* ``[seesaw] step=N/total tokens=T (p%) lr=... global_batch=... micro_batch=...
  grad_accum=... phase=i/N [loss=...] tok/s=... eta=H:MM:SS`` every ``steps_per_print``
  steps and at the plan's last step: ``loss`` is the mean of the values given to ``engine.seesaw.report_loss`` since
  the last line, ``tok/s`` the rate since the last line, ``eta`` the plan's remaining tokens
  at that rate.

Note:
    While the application has configured no logging (the root logger has no handler), these
    lines go to stdout, so a plain script shows them; once it configures logging they go
    wherever it says. ``logging.getLogger("seesaw_ds").setLevel(logging.WARNING)`` silences
    them.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from dataclasses import dataclass
from typing import Any, List, Optional, Tuple

from seesaw_ds.schedules import Plan, StepSetting

__all__ = ["StepRecord", "SeesawStepLogger", "EVENT_PREFIX", "LOGGER_NAME"]

EVENT_PREFIX = "Train/Seesaw/"
LOGGER_NAME = "seesaw_ds"
_logger = logging.getLogger(LOGGER_NAME)


class _StdoutUntilConfigured(logging.StreamHandler):
    """Writes to the current ``sys.stdout`` while the root logger has no handler."""

    def emit(self, record: logging.LogRecord) -> None:
        if not logging.getLogger().handlers:
            self.stream = sys.stdout
            super().emit(record)


def _default_output() -> None:
    """INFO lines visible by default (see the module's note); a level or handler the
    application set on ``seesaw_ds`` is kept."""
    if _logger.level == logging.NOTSET:
        _logger.setLevel(logging.INFO)
    if not any(isinstance(handler, _StdoutUntilConfigured) for handler in _logger.handlers):
        _logger.addHandler(_StdoutUntilConfigured(sys.stdout))


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


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

    def start_tokens(self, seq_length: int) -> int:
        """The token count this step started at."""
        return self.consumed_tokens - self.setting.global_batch * seq_length


def _layout(setting: StepSetting) -> Tuple[int, int, int]:
    return setting.global_batch, setting.micro_batch, setting.grad_accum


class SeesawStepLogger:
    """Writes a :class:`StepRecord` to the engine's monitor and the ``seesaw_ds`` logger.

    Args:
        engine: the DeepSpeed engine (``monitor``, ``global_samples``, ``global_rank``).
        steps_per_print: a progress line every this many optimizer steps (None or 0: never).
        clock: seconds for ``tok/s`` and ``eta`` (``time.perf_counter``; tests pass another).
    """

    def __init__(
        self,
        engine: Any,
        steps_per_print: Optional[int],
        clock=time.perf_counter,
    ) -> None:
        self.engine = engine
        steps = steps_per_print or 0
        self.steps_per_print = int(steps) if math.isfinite(steps) else 0  # accelerate: inf
        self.rank0 = int(getattr(engine, "global_rank", 0)) == 0
        self.clock = clock
        self.history_limit = 0  # set > 0 to keep the last records in ``history``
        self.history: List[StepRecord] = []
        self._previous: Optional[StepRecord] = None
        self._mark: Optional[Tuple[float, int]] = None  # (time, tokens) of the last line
        self._loss_sum: Any = 0.0
        self._loss_count = 0
        if self.rank0:
            _default_output()

    @property
    def monitor_enabled(self) -> bool:
        monitor = getattr(self.engine, "monitor", None)
        return bool(monitor is not None and monitor.enabled)

    def report_loss(self, loss: Any) -> None:
        """Add one loss value (a float, or a tensor: kept on its device, read once per line)
        to the mean the next progress line shows."""
        if self.rank0 and self.steps_per_print:
            value = loss.detach() if hasattr(loss, "detach") else float(loss)
            self._loss_sum = self._loss_sum + value
            self._loss_count += 1

    def log(self, record: StepRecord, plan: Optional[Plan] = None) -> None:
        """One finished step; ``plan`` (the hook's) enables the start, batch-change and
        progress lines."""
        if not self.rank0:
            return
        if self.monitor_enabled:
            self.engine.monitor.write_events(record.events(int(self.engine.global_samples)))
        if plan is not None:
            self._lines(record, plan)
        self._previous = record
        if self.history_limit:
            self.history.append(record)
            del self.history[: -self.history_limit]

    # ---- the lines ------------------------------------------------------------------------

    def _lines(self, record: StepRecord, plan: Plan) -> None:
        setting, phases = record.setting, len(plan.phases)
        phase = f"phase={setting.phase_index + 1}/{phases}"
        start = record.start_tokens(plan.seq_length)
        if self._previous is None:
            self._mark = (self.clock(), record.consumed_tokens)
            _logger.info(
                f"[seesaw] start step={record.step} tokens={start}: "
                f"global_batch={setting.global_batch} micro_batch={setting.micro_batch} "
                f"grad_accum={setting.grad_accum} lr={setting.lr:.6g} {phase}; plan: "
                f"{plan.optimizer_steps} steps, {plan.trained_tokens} tokens (constant "
                f"batch: {plan.baseline_optimizer_steps} steps)")
        elif _layout(setting) != _layout(self._previous.setting):
            before = self._previous.setting
            micro = (f"micro_batch {before.micro_batch} -> {setting.micro_batch}"
                     if before.micro_batch != setting.micro_batch
                     else f"micro_batch {setting.micro_batch}")
            _logger.info(
                f"[seesaw] batch change at step={record.step} tokens={start}: global_batch "
                f"{before.global_batch} -> {setting.global_batch}, grad_accum "
                f"{before.grad_accum} -> {setting.grad_accum}, {micro}, lr={setting.lr:.6g}, "
                f"{phase}")
        if self.steps_per_print and (record.step % self.steps_per_print == 0
                                     or plan.is_finished(record.consumed_tokens)):
            _logger.info(self._progress(record, plan, phase))

    def _progress(self, record: StepRecord, plan: Plan, phase: str) -> str:
        s = record.setting
        tokens, total = record.consumed_tokens, plan.trained_tokens
        line = (f"[seesaw] step={record.step}/{plan.optimizer_steps} tokens={tokens} "
                f"({min(100.0, 100.0 * tokens / plan.total_tokens):.1f}%) lr={s.lr:.6g} "
                f"global_batch={s.global_batch} micro_batch={s.micro_batch} "
                f"grad_accum={s.grad_accum} {phase}")
        if self._loss_count:
            line += f" loss={float(self._loss_sum) / self._loss_count:.4f}"
            self._loss_sum, self._loss_count = 0.0, 0
        now = self.clock()
        rate = None
        if self._mark is not None and now > self._mark[0] and tokens > self._mark[1]:
            rate = (tokens - self._mark[1]) / (now - self._mark[0])
        self._mark = (now, tokens)
        if rate is None:
            return line + " tok/s=- eta=-"
        return line + f" tok/s={rate:.0f} eta={_duration(max(0, total - tokens) / rate)}"
