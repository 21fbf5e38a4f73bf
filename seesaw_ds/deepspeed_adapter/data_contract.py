"""The contract between the user's data path and the plan: checked, never trusted.

Every training forward (``engine(batch)`` in train mode with gradients on) must carry the
plan's per-rank micro-batch of samples, and no optimizer step may start once the plan's
tokens are consumed. The engine hook calls :meth:`DataContract.before_forward` and
:meth:`DataContract.before_step`; the first breach raises one :class:`SeesawConfigError`
line naming the optimizer step, the micro-batch, the expected and the seen count.

The count is read from shapes only (no device sync, no data copy): by default the size of
dimension 0 of the first tensor found in the forward's arguments (positional first, then
keyword values, looking inside dicts, lists and tuples in order). A model whose first
tensor is not batch-first takes ``sample_count=`` (a callable ``(args, kwargs) -> int``).

:func:`first_micro_batch_change` is the pure check ``seesaw_ds.initialize`` runs before any
engine exists: where the plan's per-rank micro-batch leaves the configured one
(``growth_policy: micro_batch_first``), a DataLoader of the user's own with a fixed
``batch_size`` cannot follow it.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Dict, Optional, Tuple

from seesaw_ds.errors import SeesawConfigError
from seesaw_ds.schedules import Plan

__all__ = ["DataContract", "PAST_END_MODES", "check_contract_options",
           "first_micro_batch_change", "samples_in_call"]

PAST_END_MODES = ("error", "warn")
_log = logging.getLogger("seesaw_ds")

SampleCount = Callable[[Tuple[Any, ...], Dict[str, Any]], Optional[int]]


def _first_tensor_rows(value: Any, depth: int = 0) -> Optional[int]:
    shape = getattr(value, "shape", None)
    if shape is not None and hasattr(value, "dtype"):  # a tensor (or array): its rows
        return int(shape[0]) if len(shape) else None
    if depth > 4:
        return None
    items = value.values() if isinstance(value, dict) else (
        value if isinstance(value, (list, tuple)) else ())
    for item in items:
        rows = _first_tensor_rows(item, depth + 1)
        if rows is not None:
            return rows
    return None


def samples_in_call(args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Optional[int]:
    """Dimension 0 of the first tensor in a forward call's arguments (None: no tensor)."""
    rows = _first_tensor_rows(args)
    return rows if rows is not None else _first_tensor_rows(kwargs)


def first_micro_batch_change(plan: Plan) -> Optional[Tuple[int, int]]:
    """``(step, micro_batch)`` of the first optimizer step whose per-rank micro-batch is not
    the configured one (``plan.micro_batch``), or None when every step keeps it.

    Pure and O(phases): a phase's steps share its micro-batch, and only the shortened last
    step is laid out on its own. Phases another job of a chain runs are skipped.
    """
    step, cursor, last = 0, 0, None
    for phase, steps in zip(plan.phases, plan.steps_per_phase()):
        if not steps:
            continue
        if phase.micro_batch and phase.micro_batch != plan.micro_batch:
            return step, phase.micro_batch
        step += steps
        cursor += steps * phase.global_batch * plan.seq_length
        last = (cursor - phase.global_batch * plan.seq_length, phase.micro_batch)
    if last is not None and last[1]:
        micro = plan.at_tokens(last[0]).micro_batch
        if micro != plan.micro_batch:
            return step - 1, micro
    return None


def check_contract_options(sample_count: Any, past_end: str) -> None:
    """Raise one line for an unknown ``past_end`` or a ``sample_count`` that is not usable."""
    if past_end not in PAST_END_MODES:
        raise SeesawConfigError(
            f"past_end = {past_end!r} is unknown: use 'error' (stop at the plan's end) or "
            "'warn' (train on at the last setting)."
        )
    if not (sample_count is None or sample_count is False or callable(sample_count)):
        raise SeesawConfigError(
            f"sample_count = {sample_count!r} must be a callable (args, kwargs) -> int, or "
            "False to turn the sample-count check off."
        )


class DataContract:
    """Checks each training forward and step of one engine against its clock.

    Args:
        hook: the engine hook (reads ``state``, ``micro_in_window``, ``dp_rank``,
            ``loader``).
        sample_count: callable ``(args, kwargs) -> int`` counting a forward's samples
            (default :func:`samples_in_call`); ``False`` turns the count check off.
        past_end: ``"error"`` (default) raises at the first forward or step after the
            plan's end; ``"warn"`` logs one warning and trains on at the last setting.
    """

    def __init__(self, hook: Any, sample_count: Any = None, past_end: str = "error") -> None:
        check_contract_options(sample_count, past_end)
        self.hook = hook
        self.count: Optional[SampleCount] = (
            None if sample_count is False else (sample_count or samples_in_call))
        self.past_end = past_end
        self.checked_forwards = 0
        self._warned_past_end = False
        self._warned_uncountable = False

    def before_forward(self, args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> None:
        """Called before every training forward: refuse past the end or a wrong count."""
        self._check_not_past_end("engine(batch)")
        if self.count is None:
            return
        seen = self.count(args, kwargs)
        if seen is None:
            if not self._warned_uncountable:
                self._warned_uncountable = True
                _log.warning(
                    "seesaw: the forward's arguments hold no tensor, so its sample count "
                    "cannot be checked against the plan; pass sample_count=fn to "
                    "seesaw_ds.initialize.")
            return
        self.checked_forwards += 1
        hook = self.hook
        setting = hook.state.setting
        if seen != setting.micro_batch:
            raise SeesawConfigError(
                f"seesaw: optimizer step {hook.state.step} (micro-batch "
                f"{hook.micro_in_window + 1} of {setting.grad_accum}) got {seen} samples on "
                f"rank {hook.dp_rank} but the plan's micro-batch is {setting.micro_batch}: "
                f"{self._hint()}"
            )

    def before_step(self) -> None:
        """Called before every ``engine.step()``: refuse a step once the plan is done."""
        if self.hook.micro_in_window == 0:
            self._check_not_past_end("engine.step()")

    def _check_not_past_end(self, what: str) -> None:
        state = self.hook.state
        if not state.finished or self.hook.micro_in_window:
            return
        message = (
            f"seesaw: {what} after the end of the plan: {state.consumed_tokens} of "
            f"{state.plan.total_tokens:.6g} tokens are consumed in {state.step} optimizer "
            "steps; stop the loop when engine.seesaw.finished is True (or pass "
            "past_end='warn' to seesaw_ds.initialize to train on at the last setting)."
        )
        if self.past_end == "error":
            raise SeesawConfigError(message)
        if not self._warned_past_end:
            self._warned_past_end = True
            _log.warning(message)

    def _hint(self) -> str:
        hook = self.hook
        if hook.loader is not None:
            return ("the batches do not come from the loader Seesaw attached "
                    f"({type(hook.loader).__name__}), or it was consumed out of step.")
        policy = ""
        if getattr(hook.state.plan, "growth_policy", "") == "micro_batch_first":
            policy = "growth_policy micro_batch_first changes the micro-batch per phase; "
        return (
            f"{policy}build your DataLoader with batch_sampler=engine.seesaw.batch_sampler("
            "dataset) (or use the loader from seesaw_ds.initialize(training_data=...)); if "
            "dimension 0 of the first tensor is not the sample count, pass sample_count=fn "
            "to seesaw_ds.initialize."
        )
