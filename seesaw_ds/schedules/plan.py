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
from seesaw_ds.schedules.micro_batches import (largest_micro_batch, layout_batch,
                                               micro_batch_reasons, steady_micro_batches)
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
        growth_policy / max_micro_batch: ``accumulation`` keeps ``micro_batch`` in every
            phase; ``micro_batch_first`` (which needs ``max_micro_batch``) keeps a steady
            micro-batch that never shrinks, see :mod:`seesaw_ds.schedules.micro_batches`;
            ``micro_batch_reasons`` says why wherever it is not ``micro_batch``.
        batch_limits: online decisions (:class:`BatchLimit`) applied on top of the batch
            schedule; ``lr_ceiling`` bounds the LR where a limit raises the batch.

    Note:
        Every schedule trains the same budget: the step that would pass ``total_tokens``
        takes only the remaining samples, rounded up to ``batch_multiple`` (so a run ends
        within one batch multiple of sequences past the budget), with its LR scaled by
        ``sqrt(last_batch / batch)`` to keep ``lr / sqrt(B)`` on the plan's path
        (:meth:`last_step` describes it as it trains).
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
        #: ``(phase index, why)`` for every micro-batch other than the configured one
        self.micro_batch_reasons: List[Tuple[int, str]] = []
        self.phases: Tuple[Phase, ...] = self._lay_out(raw)
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

    def _lay_out(self, raw: Sequence[Phase]) -> Tuple[Phase, ...]:
        """Micro-batch and GAS of every phase (see :mod:`seesaw_ds.schedules.micro_batches`);
        a phase this rank count cannot lay out keeps micro 0 in a staged plan."""
        divisor = self.micro_batch * self.dp_size
        per_rank: List[Optional[int]] = []
        for phase in raw:
            if phase.global_batch % divisor == 0:
                per_rank.append(phase.global_batch // self.dp_size)
            elif self.staged:
                per_rank.append(None)  # another job of the chain runs it
            else:
                layout_batch(phase.global_batch, self.dp_size, self.micro_batch)  # raises
        trains = [steps > 0 for steps in _steps_per_phase(raw, self.seq_length)]
        if self.growth_policy == "micro_batch_first":
            micros = steady_micro_batches(per_rank, trains, self.micro_batch,
                                          self.max_micro_batch)
            self.micro_batch_reasons = micro_batch_reasons(
                micros, per_rank, trains, self.micro_batch, self.max_micro_batch,
                self.dp_size)
        else:
            micros = [None if batch is None else self.micro_batch for batch in per_rank]
        return tuple(
            phase if micro is None else
            dataclasses.replace(phase, micro_batch=micro, grad_accum=batch // micro)
            for phase, micro, batch in zip(raw, micros, per_rank))

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
        if batch < phase.global_batch:  # the short last step: never a larger micro-batch
            layout_batch(batch, self.dp_size, self.micro_batch)  # raises if it cannot split
            micro = largest_micro_batch(batch // self.dp_size, self.micro_batch, micro)
            accum = batch // self.dp_size // micro
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
        start inside it (the short last step included); a phase shorter than the step
        before it may take none."""
        return _steps_per_phase(self.phases, self.seq_length)

    @property
    def optimizer_steps(self) -> int:
        return sum(self.steps_per_phase())

    @property
    def trained_tokens(self) -> int:
        """Tokens consumed by the realized run: ``total_tokens`` rounded up to whole
        samples and then to the last step's batch multiple."""
        return int(self.last_step()["end_tokens"])

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

    def last_step(self) -> dict:
        """The run's last optimizer step as it trains: the step that would pass the budget
        takes only the remaining samples (rounded up to the batch multiple), at the LR
        ``lr x sqrt(last_batch / batch)``, so it may differ from its phase's row.

        ``short`` says whether its batch is below its phase's; ``micro_batch`` and
        ``grad_accum`` are 0 where this rank count does not lay the phase out."""
        cursor, last_batch = 0, self.initial_batch
        for steps, phase in zip(self.steps_per_phase(), self.phases):
            if steps:
                cursor += steps * phase.global_batch * self.seq_length
                last_batch = phase.global_batch
        start = cursor - last_batch * self.seq_length
        index, lr, batch = self.lr_and_batch_at(start)
        micro = accum = 0
        if self.phases[index].micro_batch:
            setting = self.at_tokens(start)
            micro, accum = setting.micro_batch, setting.grad_accum
        return {"phase": index, "start_tokens": start, "end_tokens": start + batch * self.seq_length,
                "global_batch": batch, "micro_batch": micro, "grad_accum": accum, "lr": lr,
                "short": batch < self.phases[index].global_batch}

    def stage_lr_caps(self) -> List[Tuple[int, float]]:
        """``(phase index, LR / peak the sqrt rule wanted)`` for every phase where the
        stage rounding's LR bound (:data:`~seesaw_ds.schedules.multiples.STAGE_LR_CEILING`)
        binds; empty unless the plan is staged."""
        if not self.staged:
            return []
        caps = []
        for index, phase in enumerate(self.phases):
            if phase.lr_ceiling is None:
                continue
            wanted = phase.lr_multiplier
            if phase.follows_base:  # the base rises through warmup, then never rises
                peak_at = min(max(self.base.warmup_tokens, phase.start_tokens), phase.end_tokens)
                wanted *= self.base.factor(peak_at)
            if wanted > phase.lr_ceiling * (1 + 1e-12):
                caps.append((index, wanted))
        return caps

    def summary(self) -> dict:
        """A JSON-ready description: totals, one entry per phase (``steps``: the steps that
        start in it, the short last step included), the last step as it trains and the
        reasons for every micro-batch other than the configured one."""
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
                "lr_ceiling": phase.lr_ceiling,
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
            "last_step": self.last_step(),
            "micro_batch_reasons": [{"phase": index, "reason": reason}
                                    for index, reason in self.micro_batch_reasons],
            "stage_lr_caps": [{"phase": index, "uncapped_lr_factor": wanted}
                              for index, wanted in self.stage_lr_caps()],
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


def _steps_per_phase(phases: Sequence[Phase], seq_length: int) -> List[int]:
    counts = []
    cursor = 0.0
    for phase in phases:
        step_tokens = phase.global_batch * seq_length
        if cursor >= phase.end_tokens:
            counts.append(0)
            continue
        steps = math.ceil((phase.end_tokens - cursor) / step_tokens)
        counts.append(steps)
        cursor += steps * step_tokens
    return counts


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
        (growth_policy != "micro_batch_first" or max_micro_batch is not None,
         "seesaw.growth_policy = 'micro_batch_first' needs seesaw.max_micro_batch (the "
         "largest micro-batch per GPU that fits in memory): add it, or use growth_policy "
         "'accumulation'."),
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
