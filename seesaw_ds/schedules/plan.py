"""The plan: the exact phases of a run and the (LR, batch) of every optimizer step.

A :class:`Plan` is built once from a base LR schedule and a batch schedule. It is pure data:
every rank that builds it from the same inputs gets the same plan, and the training loop
asks it one question per optimizer step, ``plan.at_tokens(consumed_tokens)``, which gives
the LR, global batch, micro-batch and gradient accumulation of the step that starts there.
Batch and LR come from the same lookup, so they always change on the same step, and a step
that starts past several milestones applies them all.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
from dataclasses import dataclass
from typing import Iterator, List, Optional, Sequence, Tuple

from seesaw_ds.errors import SeesawConfigError
from seesaw_ds.schedules.batch_schedules import AdaptiveBatch, BatchSchedule, SeesawBatch
from seesaw_ds.schedules.limits import BatchLimit, apply_batch_limits
from seesaw_ds.schedules.lr_schedules import LRSchedule
from seesaw_ds.schedules.multiples import (check_no_online_decisions, multiple_at,
                                          parse_multiple_stages, restage_phases)
from seesaw_ds.schedules.optimizer_scaling import OptimizerScaling
from seesaw_ds.schedules.phases import Phase

__all__ = ["GROWTH_POLICIES", "StepSetting", "Plan", "build_plan", "layout_batch"]

GROWTH_POLICIES = ("accumulation", "micro_batch_first")
_BOUND_INTEGRATION_POINTS = 20_000


@dataclass(frozen=True)
class StepSetting:
    """What one optimizer step uses."""

    lr: float
    global_batch: int
    micro_batch: int
    grad_accum: int
    phase_index: int


def layout_batch(
    global_batch: int,
    dp_size: int,
    micro_batch: int,
    max_micro_batch: Optional[int] = None,
    growth_policy: str = "accumulation",
) -> Tuple[int, int]:
    """Per-rank (micro_batch, grad_accum) for a global batch.

    ``accumulation`` keeps the configured micro-batch and grows accumulation;
    ``micro_batch_first`` takes the largest micro-batch up to ``max_micro_batch`` that
    divides the per-rank batch, then accumulates.
    """
    if global_batch % (dp_size * micro_batch):
        raise SeesawConfigError(
            f"global batch {global_batch} is not a multiple of micro-batch x data-parallel "
            f"size = {micro_batch} x {dp_size}: set seesaw.batch_multiple to a multiple of "
            f"{micro_batch * dp_size}."
        )
    per_rank = global_batch // dp_size
    if growth_policy == "micro_batch_first" and max_micro_batch:
        for candidate in range(min(max_micro_batch, per_rank), micro_batch - 1, -1):
            if per_rank % candidate == 0 and candidate % micro_batch == 0:
                return candidate, per_rank // candidate
    return micro_batch, per_rank // micro_batch


class Plan:
    """The phases of a run and the lookups the training loop needs.

    Args:
        base: the base LR schedule (its ``total_tokens`` is the run's budget).
        batch_schedule: the batch schedule (Seesaw, constant, ramp, step, late switch).
        peak_lr: the optimizer's LR at factor 1.
        initial_batch: the starting global batch in sequences (``train_batch_size``).
        seq_length: tokens per sequence.
        micro_batch: per-rank micro-batch at the start.
        dp_size: data-parallel size.
        batch_multiple: every global batch is a multiple of this (default
            ``micro_batch * dp_size``). Keep it fixed to resume on another rank count.
        multiple_stages: later stages of the batch multiple, ``[{"from_tokens": T,
            "multiple": q}, ...]`` (see :mod:`seesaw_ds.schedules.multiples`): a chain of
            jobs whose rank count grows. A job only lays out the phases its rank count
            divides; a step in any other phase is an error naming the stage.
        min_lr: LR floor. It is applied to the base schedule (``floor_factor = min_lr /
            peak_lr``) before the batch schedule sees it, so Seesaw stops growing where the
            floored base stops falling, and it clamps every step's LR.
        growth_policy / max_micro_batch: see :func:`layout_batch`.
        batch_limits: online decisions (:class:`BatchLimit`) applied on top of the batch
            schedule; ``lr_ceiling`` bounds the LR where a limit raises the batch.

    Note:
        Every schedule trains the same budget: the step that would pass ``total_tokens``
        takes only the remaining samples, rounded up to ``batch_multiple`` (so a run ends
        within one batch multiple of sequences past the budget), with its LR scaled by
        ``sqrt(last_batch / batch)`` to keep ``lr / sqrt(B)`` on the plan's path.
    """

    def __init__(
        self,
        base: LRSchedule,
        batch_schedule: BatchSchedule,
        peak_lr: float,
        initial_batch: int,
        seq_length: int,
        micro_batch: int = 1,
        dp_size: int = 1,
        batch_multiple: Optional[int] = None,
        min_lr: float = 0.0,
        growth_policy: str = "accumulation",
        max_micro_batch: Optional[int] = None,
        batch_limits: Sequence[BatchLimit] = (),
        lr_ceiling: Optional[float] = None,
        multiple_stages: Optional[Sequence] = None,
        optimizer_scaling: OptimizerScaling = OptimizerScaling(),
    ) -> None:
        _validate_plan_inputs(
            peak_lr, initial_batch, seq_length, micro_batch, dp_size, min_lr,
            growth_policy, max_micro_batch,
        )
        if min_lr > 0 and base.floor_factor != min_lr / peak_lr:
            base = dataclasses.replace(base, floor_factor=min_lr / peak_lr)
        self.base = base
        self.batch_schedule = batch_schedule
        self.peak_lr = float(peak_lr)
        self.initial_batch = int(initial_batch)
        self.seq_length = int(seq_length)
        self.dp_size = int(dp_size)
        self.micro_batch = int(micro_batch)
        self.batch_multiple = int(batch_multiple or micro_batch * dp_size)
        self.min_lr = float(min_lr)
        self.growth_policy = growth_policy
        self.max_micro_batch = max_micro_batch
        self.optimizer_scaling = optimizer_scaling
        self.multiple_stages = parse_multiple_stages(
            multiple_stages, self.batch_multiple, base.total_tokens)
        self._check_multiples(batch_schedule, batch_limits)
        if self.initial_batch % self.batch_multiple:
            raise SeesawConfigError(
                f"train_batch_size = {self.initial_batch} is not a multiple of "
                f"{self.batch_multiple} (micro-batch x data-parallel size, or "
                "seesaw.batch_multiple): change one of them."
            )
        self.batch_limits: Tuple[BatchLimit, ...] = tuple(batch_limits)
        if lr_ceiling is None:
            lr_ceiling = getattr(batch_schedule, "lr_ceiling", None)
        self.lr_ceiling = lr_ceiling
        raw = batch_schedule.phases(self.base, self.initial_batch, self.batch_multiple,
                                    seq_length)
        raw = apply_batch_limits(raw, self.batch_limits, self.initial_batch, lr_ceiling)
        raw = restage_phases(raw, self.multiple_stages, isinstance(batch_schedule, SeesawBatch),
                             getattr(batch_schedule, "max_batch", None))
        self.phases: Tuple[Phase, ...] = tuple(self._lay_out(phase) for phase in raw)
        self._starts = [phase.start_tokens for phase in self.phases]

    @property
    def staged(self) -> bool:
        """Whether the batch multiple changes during the run (a chain of jobs)."""
        return len(self.multiple_stages) > 1

    def _check_multiples(self, batch_schedule: BatchSchedule,
                         batch_limits: Sequence[BatchLimit]) -> None:
        divisor = self.micro_batch * self.dp_size
        multiples = [multiple for _, multiple in self.multiple_stages]
        if not any(multiple % divisor == 0 for multiple in multiples):
            field = ("seesaw.batch_multiple" if not self.staged else
                     "every stage of seesaw.batch_multiple / batch_multiple_stages")
            raise SeesawConfigError(
                f"{field} = {multiples[0] if not self.staged else multiples} is not a "
                f"multiple of micro-batch x data-parallel size = {divisor}: use a common "
                "multiple of every rank layout you will run on."
            )
        check_no_online_decisions(
            self.staged, bool(batch_limits) or isinstance(batch_schedule, AdaptiveBatch))

    def _lay_out(self, phase: Phase) -> Phase:
        try:
            micro, accum = layout_batch(
                phase.global_batch, self.dp_size, self.micro_batch,
                self.max_micro_batch, self.growth_policy,
            )
        except SeesawConfigError:
            if not self.staged:
                raise
            return phase  # another job of the chain runs it (micro_batch stays 0)
        return dataclasses.replace(phase, micro_batch=micro, grad_accum=accum)

    def _unrunnable(self, phase: Phase) -> SeesawConfigError:
        multiple = multiple_at(self.multiple_stages, phase.start_tokens)
        return SeesawConfigError(
            f"the plan's batch {phase.global_batch} from token {phase.start_tokens:.6g} "
            f"(batch-multiple stage {multiple}) is not a multiple of micro-batch x "
            f"data-parallel size = {self.micro_batch} x {self.dp_size}: this rank count runs "
            "only the stages whose multiple it divides. Stop the job before it with "
            "--stop-at-tokens and continue on the rank count of that stage."
        )

    def first_runnable_tokens(self) -> float:
        """Start of the first phase this rank count lays out (0 unless the plan is staged)."""
        for phase in self.phases:
            if phase.micro_batch:
                return phase.start_tokens
        raise self._unrunnable(self.phases[0])

    def check_runnable(self, start_tokens: float, stop_tokens: Optional[float] = None) -> None:
        """Raise (before any training) if a step between ``start_tokens`` and
        ``stop_tokens`` (default: the end) falls in a phase this rank count cannot lay out."""
        stop = self.total_tokens if stop_tokens is None else stop_tokens
        cursor = 0.0
        for phase, steps in zip(self.phases, self.steps_per_phase()):
            step_tokens = phase.global_batch * self.seq_length
            last_start = cursor + (steps - 1) * step_tokens
            if steps and last_start >= start_tokens and cursor < stop \
                    and not phase.micro_batch:
                raise self._unrunnable(phase)
            cursor += steps * step_tokens

    def with_batch_limits(self, limits: Sequence[BatchLimit]) -> "Plan":
        """The same plan with ``limits`` (replacing its own) applied."""
        return Plan(self.base, self.batch_schedule, self.peak_lr, self.initial_batch,
                    self.seq_length, micro_batch=self.micro_batch, dp_size=self.dp_size,
                    batch_multiple=self.batch_multiple, min_lr=self.min_lr,
                    growth_policy=self.growth_policy, max_micro_batch=self.max_micro_batch,
                    batch_limits=limits, lr_ceiling=self.lr_ceiling,
                    multiple_stages=self.later_multiple_stages(),
                    optimizer_scaling=self.optimizer_scaling)

    def later_multiple_stages(self) -> List[dict]:
        """The stages after the first, in the config's form (``seesaw.batch_multiple_stages``)."""
        return [{"from_tokens": start, "multiple": multiple}
                for start, multiple in self.multiple_stages[1:]]

    # ---- lookups -------------------------------------------------------------------------

    @property
    def total_tokens(self) -> float:
        return self.base.total_tokens

    def phase_index_at(self, tokens: float) -> int:
        """Index of the phase containing ``tokens`` (O(log phases))."""
        return max(0, bisect.bisect_right(self._starts, tokens) - 1)

    def at_tokens(self, tokens: float) -> StepSetting:
        """The setting of the optimizer step that starts after ``tokens`` consumed tokens."""
        index, lr, batch = self.lr_and_batch_at(tokens)
        phase = self.phases[index]
        if not phase.micro_batch:
            raise self._unrunnable(phase)
        micro, accum = phase.micro_batch, phase.grad_accum
        if batch < phase.global_batch:  # the short last step
            micro, accum = layout_batch(batch, self.dp_size, self.micro_batch,
                                        self.max_micro_batch, self.growth_policy)
        return StepSetting(lr, batch, micro, accum, index)

    def lr_and_batch_at(self, tokens: float) -> Tuple[int, float, int]:
        """(phase index, LR, global batch) of the step that starts at ``tokens``: the
        schedule alone, on any rank count."""
        index = self.phase_index_at(tokens)
        phase = self.phases[index]
        lr = phase.lr_at(tokens, self.peak_lr, self.base)
        batch = phase.global_batch
        last = self._last_step_batch(tokens, batch)
        if last < batch:
            lr *= math.sqrt(last / batch)
            batch = last
        return index, max(self.min_lr, lr), batch

    def base_lr_at(self, tokens: float) -> float:
        """LR of the constant-batch base run at ``tokens`` (floored at ``min_lr``)."""
        return max(self.min_lr, self.peak_lr * self.base.factor(tokens))

    def _last_step_batch(self, tokens: float, batch: int) -> int:
        """``batch``, or fewer sequences for the step that would pass the budget."""
        remaining = self.total_tokens - tokens
        if remaining <= 0 or remaining >= batch * self.seq_length:
            return batch
        samples = math.ceil(remaining / self.seq_length)
        multiple = multiple_at(self.multiple_stages, tokens)
        return min(batch, math.ceil(samples / multiple) * multiple)

    def at_samples(self, samples: int) -> StepSetting:
        return self.at_tokens(samples * self.seq_length)

    def is_finished(self, tokens: float) -> bool:
        return tokens >= self.total_tokens

    # ---- the realized run ------------------------------------------------------------------

    def steps_per_phase(self) -> List[int]:
        """Optimizer steps taken in each phase, O(phases): a phase takes the steps that
        start inside it; a phase shorter than the step before it may take none."""
        counts = []
        cursor = 0.0
        for phase in self.phases:
            step_tokens = phase.global_batch * self.seq_length
            if cursor >= phase.end_tokens:
                counts.append(0)
                continue
            steps = math.ceil((phase.end_tokens - cursor) / step_tokens)
            counts.append(steps)
            cursor += steps * step_tokens
        return counts

    @property
    def optimizer_steps(self) -> int:
        return sum(self.steps_per_phase())

    @property
    def trained_tokens(self) -> int:
        """Tokens consumed by the realized run: ``total_tokens`` rounded up to whole
        samples and then to the last step's batch multiple."""
        cursor, last_batch = 0, self.initial_batch
        for steps, phase in zip(self.steps_per_phase(), self.phases):
            if steps:
                cursor += steps * phase.global_batch * self.seq_length
                last_batch = phase.global_batch
        last_start = cursor - last_batch * self.seq_length
        return int(last_start + self.lr_and_batch_at(last_start)[2] * self.seq_length)

    @property
    def trained_samples(self) -> int:
        """Samples (sequences) consumed by the realized run."""
        return self.trained_tokens // self.seq_length

    @property
    def baseline_optimizer_steps(self) -> int:
        """Steps of the constant-batch run at the initial batch over the same tokens."""
        return math.ceil(self.total_tokens / (self.initial_batch * self.seq_length))

    def iter_steps(self) -> Iterator[Tuple[int, int, StepSetting]]:
        """Every step as (step_index, start_tokens, setting): for tests and plots."""
        tokens, step = 0, 0
        while tokens < self.total_tokens:
            setting = self.at_tokens(tokens)
            yield step, tokens, setting
            tokens += setting.global_batch * self.seq_length
            step += 1

    def continuous_limit_saving(self) -> float:
        """Step saving of the ideal run with a continuously growing batch.

        For Seesaw the batch grows as ``B0 * f(t) ** -(log g / log d)`` after warmup (``f``
        the base factor, ``d`` the base fall per milestone; exponent 1 for Seesaw), capped
        at ``max_batch``; the saving is ``1 - mean(B0 / B)`` over tokens, i.e. 1 - the
        time-average of the LR factor with warmup counted at 1. For other schedules it is
        the same mean over their own phases.
        """
        schedule = self.batch_schedule
        if not isinstance(schedule, SeesawBatch):
            mean = sum(
                (p.end_tokens - p.start_tokens) * self.initial_batch / p.global_batch
                for p in self.phases
            ) / self.total_tokens
            return 1.0 - mean
        exponent = math.log(schedule.batch_growth) / math.log(schedule.decay_per_milestone)
        cap = (schedule.max_batch or math.inf) / self.initial_batch
        start = self.base.decay_start_tokens
        span = self.total_tokens - start
        count = _BOUND_INTEGRATION_POINTS
        total = 0.0
        for i in range(count):  # midpoint rule on a smooth integrand
            tokens = start + (i + 0.5) * span / count
            factor = max(self.base.factor(tokens), 1e-12)
            total += 1.0 / min(factor ** (-exponent), cap)
        mean = (start + total * span / count) / self.total_tokens
        return 1.0 - mean

    # ---- exports -----------------------------------------------------------------------------

    def megatron_step_schedule(self) -> str:
        """The batch part as Megatron's ``--step-batch-size-schedule`` ("TOKENS:BATCH ...").

        Thresholds are rounded up to whole samples (``ceil(start / seq) * seq`` tokens):
        Megatron floors tokens to samples, and a step whose start ``s`` samples satisfies
        ``s * seq >= start`` is exactly one with ``s >= ceil(start / seq)``.
        """
        entries, previous = [], None
        for phase in self.phases:
            if phase.global_batch == previous:
                continue
            first_sample = math.ceil(phase.start_tokens / self.seq_length)
            entries.append(f"{first_sample * self.seq_length}:{phase.global_batch}")
            previous = phase.global_batch
        return " ".join(entries)

    def summary(self) -> dict:
        """A JSON-ready description: totals plus one entry per phase."""
        phases = []
        for phase, steps in zip(self.phases, self.steps_per_phase()):
            phases.append({
                "start_tokens": phase.start_tokens,
                "end_tokens": phase.end_tokens,
                "global_batch": phase.global_batch,
                "micro_batch": phase.micro_batch,
                "grad_accum": phase.grad_accum,
                "lr_start": self._phase_lr(phase, phase.start_tokens),
                "lr_end": self._phase_lr(phase, phase.end_tokens),
                "follows_base": phase.follows_base,
                "steps": steps,
            })
        steps = self.optimizer_steps
        baseline = self.baseline_optimizer_steps
        return {
            "batch_schedule": self.batch_schedule.type_name,
            "lr_schedule": self.base.type_name,
            "total_tokens": self.total_tokens,
            "trained_tokens": self.trained_tokens,
            "seq_length": self.seq_length,
            "peak_lr": self.peak_lr,
            "initial_batch": self.initial_batch,
            "dp_size": self.dp_size,
            "batch_multiple": self.batch_multiple,
            "batch_multiple_stages": self.later_multiple_stages(),
            "optimizer_steps": steps,
            "baseline_optimizer_steps": baseline,
            "steps_ratio": steps / baseline,
            "step_saving": 1.0 - steps / baseline,
            "continuous_limit_saving": self.continuous_limit_saving(),
            "megatron_step_batch_size_schedule": self.megatron_step_schedule(),
            "batch_limits": [limit.to_list() for limit in self.batch_limits],
            "phases": phases,
        }

    def _phase_lr(self, phase: Phase, tokens: float) -> float:
        return max(self.min_lr, phase.lr_at(tokens, self.peak_lr, self.base))

    def fingerprint(self) -> List[Tuple[float, int, float]]:
        """What must match for a resume to continue the same run: every phase as (start
        tokens, global batch, absolute LR at its start), then (total tokens, seq length,
        LR at the end). Absolute LRs, so a changed peak LR, floor or warmup start is seen
        even where the phases' boundaries and batches stay the same."""
        entries = [(p.start_tokens, p.global_batch, self._phase_lr(p, p.start_tokens))
                   for p in self.phases]
        last = self.phases[-1]
        return entries + [(self.total_tokens, self.seq_length,
                           self._phase_lr(last, last.end_tokens))]


def _validate_plan_inputs(
    peak_lr, initial_batch, seq_length, micro_batch, dp_size, min_lr, growth_policy,
    max_micro_batch,
) -> None:
    checks = [
        (peak_lr > 0, f"optimizer lr = {peak_lr!r} must be > 0 (it is the peak LR)."),
        (int(initial_batch) == initial_batch and initial_batch > 0,
         f"train_batch_size = {initial_batch!r} must be a positive integer."),
        (int(seq_length) == seq_length and seq_length > 0,
         f"seesaw.seq_length = {seq_length!r} must be a positive integer."),
        (micro_batch > 0, f"train_micro_batch_size_per_gpu = {micro_batch!r} must be > 0."),
        (dp_size > 0, f"data-parallel size = {dp_size!r} must be > 0."),
        (0 <= min_lr <= peak_lr,
         f"seesaw.min_lr = {min_lr!r} must lie between 0 and the peak lr ({peak_lr!r})."),
        (growth_policy in GROWTH_POLICIES,
         f"seesaw.growth_policy = {growth_policy!r} is unknown: use one of "
         f"{list(GROWTH_POLICIES)}."),
        (max_micro_batch is None or max_micro_batch >= micro_batch,
         f"seesaw.max_micro_batch = {max_micro_batch!r} must be >= the micro-batch "
         f"({micro_batch})."),
    ]
    for ok, message in checks:
        if not ok:
            raise SeesawConfigError(message)


def build_plan(
    base: LRSchedule, batch_schedule: BatchSchedule, peak_lr: float, initial_batch: int,
    seq_length: int, **layout,
) -> Plan:
    """Functional spelling of :class:`Plan`."""
    return Plan(base, batch_schedule, peak_lr, initial_batch, seq_length, **layout)
