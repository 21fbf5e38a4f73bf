"""Batch schedules: how the global batch (and the LR rule with it) changes with tokens.

Each schedule is a frozen dataclass with one pure method,
``phases(base, initial_batch, batch_multiple, seq_length) -> list[Phase]``, whose phases tile
``[0, base.total_tokens)``. Batches are in sequences; every batch is a multiple of
``batch_multiple`` (micro-batch x data-parallel size unless configured otherwise).

- :class:`SeesawBatch`: the Seesaw transform of the base LR schedule (arXiv 2510.14717).
- :class:`ConstantBatch`: the baseline.
- :class:`LinearRampBatch`: Megatron ``--rampup-batch-size`` semantics.
- :class:`StepBatch`: explicit token thresholds (Megatron ``--step-batch-size-schedule``).
- :class:`LateSwitchBatch`: small batch, then one switch late in training (arXiv 2602.14208).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass, field
from typing import ClassVar, List, Optional, Sequence, Tuple

from seesaw_ds.errors import SeesawConfigError
from seesaw_ds.schedules.lr_schedules import LRSchedule
from seesaw_ds.schedules.phases import Phase

__all__ = [
    "BatchSchedule",
    "SeesawBatch",
    "AdaptiveBatch",
    "ConstantBatch",
    "LinearRampBatch",
    "StepBatch",
    "LateSwitchBatch",
    "BATCH_SCHEDULES",
    "round_to_multiple",
    "SeesawStabilityWarning",
    "LR_SCALINGS",
]

_MAX_MILESTONES = 10_000
_LEVEL_SLACK = 1e-12
LR_SCALINGS = ("none", "sqrt")


class SeesawStabilityWarning(UserWarning):
    """An ``lr_cut`` below ``sqrt(batch_growth)``: the run may diverge or end worse."""


def round_to_multiple(value: float, multiple: int) -> int:
    """Nearest multiple of ``multiple`` (halves round up), never below ``multiple``."""
    return max(multiple, multiple * math.floor(value / multiple + 0.5))


def _check_multiple(field_name: str, batch: int, multiple: int) -> None:
    if batch <= 0 or batch % multiple:
        raise SeesawConfigError(
            f"{field_name} = {batch} is not a positive multiple of {multiple} "
            "(micro-batch x data-parallel size, or seesaw.batch_multiple): pick a multiple "
            f"of {multiple}."
        )


@dataclass(frozen=True)
class BatchSchedule:
    """Interface of every batch schedule."""

    type_name: ClassVar[str] = "base"

    def phases(
        self, base: LRSchedule, initial_batch: int, batch_multiple: int, seq_length: int
    ) -> List[Phase]:
        raise NotImplementedError

    def largest_batch(self, initial_batch: int) -> Optional[int]:
        """Largest batch the schedule can ask for, when known without a base schedule."""
        return None


@dataclass(frozen=True)
class SeesawBatch(BatchSchedule):
    """Where the base LR falls by ``lr_cut * sqrt(batch_growth)``, cut the LR by ``lr_cut``
    and grow the batch by ``batch_growth``.

    With the default ``lr_cut = sqrt(batch_growth)`` the milestones are where the base
    factor crosses ``batch_growth**-k``, exactly Seesaw. The per-token noise temperature
    ``lr / sqrt(B)`` then follows the base schedule's ``lr / sqrt(B0)`` at every milestone,
    while the normalized-SGD step size ``lr * sqrt(B)`` stays at the peak's.

    Args:
        batch_growth: batch multiplier per milestone, > 1 (the paper's runs use 1.1).
        lr_cut: LR divisor per milestone; the paper's ablations vary it. Stability needs
            ``lr_cut >= sqrt(batch_growth)``; below that a warning, or an error if strict.
        max_batch: cap on the global batch; once reached the LR takes the remaining decay
            (it follows the base schedule scaled by ``sqrt(max_batch / B0)``).
        strict: turn the stability warning into an error.

    Note:
        Milestones come from the base schedule's inverse (closed form or bisection), not
        from stepping. Several milestones at the same token (a step-decay base) become one
        phase with all of them applied. Growth stops once one step of the next batch would
        not fit in the tokens left, so a base that decays to 0 gives a finite plan.
    """

    batch_growth: float = 2.0
    lr_cut: Optional[float] = None
    max_batch: Optional[int] = None
    strict: bool = False

    type_name: ClassVar[str] = "seesaw"

    def __post_init__(self) -> None:
        if not (isinstance(self.batch_growth, (int, float)) and 1.0 < self.batch_growth
                < math.inf):
            raise SeesawConfigError(
                f"seesaw.batch_growth = {self.batch_growth!r} must be a finite number > 1 "
                "(the batch multiplier at each milestone; the paper uses 1.1, default 2)."
            )
        if self.lr_cut is not None:
            if not 1.0 <= self.lr_cut < math.inf:
                raise SeesawConfigError(
                    f"seesaw.lr_cut = {self.lr_cut!r} must be >= 1 (the LR divisor at each "
                    "milestone); leave it unset for Seesaw's sqrt(batch_growth)."
                )
            if self.lr_cut < math.sqrt(self.batch_growth) * (1 - 1e-12):
                message = (
                    f"seesaw.lr_cut = {self.lr_cut:g} is below sqrt(batch_growth) = "
                    f"{math.sqrt(self.batch_growth):g}: the run breaks Seesaw's stability "
                    "constraint and is expected to end worse. Raise lr_cut, or set "
                    "strict: false to run the ablation anyway."
                )
                if self.strict:
                    raise SeesawConfigError(message)
                warnings.warn(message, SeesawStabilityWarning, stacklevel=3)

    @property
    def effective_lr_cut(self) -> float:
        return self.lr_cut if self.lr_cut is not None else math.sqrt(self.batch_growth)

    @property
    def decay_per_milestone(self) -> float:
        """Base-LR fall between milestones: ``lr_cut * sqrt(batch_growth)``."""
        if self.lr_cut is None:
            return float(self.batch_growth)  # sqrt(g) * sqrt(g), without the rounding
        return self.effective_lr_cut * math.sqrt(self.batch_growth)

    def largest_batch(self, initial_batch: int) -> Optional[int]:
        return self.max_batch

    def milestone(self, base: LRSchedule, k: int) -> Optional[float]:
        """Token count where the base factor first falls to ``decay_per_milestone**-k``, or
        None when that happens at or after ``total_tokens`` (or never)."""
        # A relative slack so that a base landing exactly on a level (a step decay by 1/2
        # under batch_growth 2) is not missed by a last-bit rounding of the level.
        level = self.decay_per_milestone ** (-k) * (1.0 + _LEVEL_SLACK)
        if level <= 0.0:
            return None
        tokens = base.first_tokens_at_or_below(level)
        return None if tokens is None or tokens >= base.total_tokens else tokens

    def milestones(self, base: LRSchedule) -> List[float]:
        """Every milestone's token count, in order (at most ``_MAX_MILESTONES``)."""
        points: List[float] = []
        for k in range(1, _MAX_MILESTONES + 1):
            tokens = self.milestone(base, k)
            if tokens is None:
                break
            points.append(tokens)
        return points

    def phases(
        self, base: LRSchedule, initial_batch: int, batch_multiple: int, seq_length: int
    ) -> List[Phase]:
        if self.max_batch is not None:
            _check_multiple("seesaw.max_batch", self.max_batch, batch_multiple)
            if self.max_batch < initial_batch:
                raise SeesawConfigError(
                    f"seesaw.max_batch = {self.max_batch} is below the initial global batch "
                    f"(train_batch_size = {initial_batch}): raise max_batch or remove it."
                )
        self._check_base_decays_enough(base, initial_batch, batch_multiple, seq_length)
        builder = _SeesawPhaseBuilder(self, base, initial_batch, batch_multiple, seq_length)
        return _close_intervals(builder.build(), base.total_tokens)

    def _check_base_decays_enough(self, base: LRSchedule, initial_batch: int,
                                  batch_multiple: int, seq_length: int) -> None:
        """Refuse a growth the base never reaches (or reaches with no room left for one
        step of the grown batch): that "Seesaw" would be the base itself."""
        final = base.final_factor_at_end
        first = self.milestone(base, 1)
        grown = round_to_multiple(initial_batch * self.batch_growth, batch_multiple)
        if self.max_batch is not None:
            grown = min(grown, self.max_batch)
        room = None if first is None else base.total_tokens - first
        if final < 1.0 and (room is None or room < grown * seq_length):
            raise SeesawConfigError(
                f"seesaw.batch_growth = {self.batch_growth:g} never applies: the base LR "
                f"schedule falls to {final:.4g} x peak by total_tokens (lr_schedule."
                f"final_factor, gamma or min_lr) and reaches one milestone's fall "
                f"(1/{self.decay_per_milestone:g}) too late, or never, to train one step of "
                f"the grown batch. Use a batch_growth well below "
                f"{1.0 / max(final, 1e-300):.4g} (the paper uses 1.1) or batch_schedule "
                "'constant'."
            )


# Largest batch a Seesaw plan may reach without an explicit seesaw.max_batch, as a multiple
# of the initial batch: a base that decays further (cosine to 0, a long step decay) would
# otherwise grow the batch far past any critical batch size near the end of training.
AUTO_BATCH_BOUND = 64
_MAX_PHASES = 100_000


class _SeesawPhaseBuilder:
    """Walks Seesaw's milestones once and emits phases (see :class:`SeesawBatch`).

    Each milestone ``k`` either grows the batch (a staircase phase: constant LR
    ``peak * lr_cut**-k * sqrt(batch / ideal_k)``) or, when the batch cannot grow there (a
    rounded batch equal to the current one, ``max_batch``, or a step that no longer fits
    before the end), starts a phase that follows the base: LR ``peak * f(t) *
    sqrt(batch / B0)``, so ``lr / sqrt(B)`` stays on the base's ``peak * f(t) / sqrt(B0)``
    and no decay is dropped. The last phase always follows the base, so the run ends its LR
    where the base ends for the final batch. While the batch cannot grow, milestones whose
    rounded batch cannot change are skipped in O(1), so a growth close to 1 costs one
    iteration per distinct batch, not per milestone.
    """

    def __init__(self, schedule: "SeesawBatch", base: LRSchedule, initial_batch: int,
                 batch_multiple: int, seq_length: int) -> None:
        self.schedule = schedule
        self.base = base
        self.initial_batch = initial_batch
        self.multiple = batch_multiple
        self.seq_length = seq_length
        self.phases: List[Phase] = []

    def _append(self, phase: Phase) -> None:
        if self.phases and self.phases[-1].start_tokens >= phase.start_tokens:
            self.phases.pop()  # coincident milestones: apply them all at once
        if len(self.phases) >= _MAX_PHASES:
            raise SeesawConfigError(
                f"the Seesaw plan needs more than {_MAX_PHASES:,} phases: raise "
                "seesaw.batch_growth or seesaw.batch_multiple (fewer distinct batches)."
            )
        self.phases.append(phase)

    def _following(self, start: float, batch: int) -> Phase:
        return Phase(start, self.base.total_tokens, batch,
                     math.sqrt(batch / self.initial_batch), True)

    def _next_growth_index(self, k: int, batch: int) -> int:
        """A milestone index > k no later than the first one that could grow ``batch``."""
        growth = self.schedule.batch_growth
        needed = batch + self.multiple / 2.0  # round_to_multiple rounds halves up
        if self.schedule.max_batch is not None:
            needed = min(needed, float(self.schedule.max_batch))
        jump = math.floor(math.log(needed / self.initial_batch) / math.log(growth)) - 1
        return max(k + 1, jump)

    def _candidate(self, k: int, batch: int) -> Tuple[int, float, bool]:
        """(batch, ideal batch, capped) at milestone ``k``."""
        ideal = self.initial_batch * self.schedule.batch_growth ** k
        cap = self.schedule.max_batch
        if cap is not None and ideal > cap * (1 + 1e-9):
            return max(batch, cap), ideal, True
        return max(batch, round_to_multiple(ideal, self.multiple)), ideal, False

    def _check_bound(self, candidate: int) -> None:
        if self.schedule.max_batch is None and candidate > AUTO_BATCH_BOUND * self.initial_batch:
            final = self.base.final_factor_at_end
            raise SeesawConfigError(
                f"the base LR schedule decays to {final:.4g} x peak (lr_schedule."
                f"final_factor, gamma or min_lr), so Seesaw would grow the batch past "
                f"{AUTO_BATCH_BOUND} x train_batch_size ({candidate} > "
                f"{AUTO_BATCH_BOUND * self.initial_batch} sequences). Set seesaw.max_batch "
                "(after it the LR takes the remaining decay), or raise lr_schedule."
                f"final_factor / min_lr to >= {1.0 / AUTO_BATCH_BOUND:.4g} x peak."
            )

    def build(self) -> List[Phase]:
        base, total, initial = self.base, self.base.total_tokens, self.initial_batch
        if base.warmup_tokens > 0:
            self._append(Phase(0.0, base.warmup_tokens, initial, 1.0, True))
        self._append(Phase(base.decay_start_tokens, total, initial, 1.0, False))
        batch, k, following = initial, 0, False
        while True:
            k = self._next_growth_index(k, batch) if following else k + 1
            start = self.schedule.milestone(self.base, k)
            if start is None:
                break
            candidate, ideal, capped = self._candidate(k, batch)
            fits = (total - start) >= candidate * self.seq_length
            if candidate == batch or not fits:
                if not following:  # the batch stops growing: the LR takes the decay
                    self._append(self._following(start, batch))
                    following = True
                if capped or not fits:
                    break  # no later milestone can grow the batch either
                continue
            self._check_bound(candidate)
            batch = candidate
            if capped:
                self._append(self._following(start, batch))
                break
            multiplier = self.schedule.effective_lr_cut ** (-k) * math.sqrt(batch / ideal)
            self._append(Phase(start, total, batch, multiplier, False))
            following = False
        last = self.phases[-1]
        if not last.follows_base:
            self.phases[-1] = self._following(last.start_tokens, last.global_batch)
        return self.phases


@dataclass(frozen=True)
class AdaptiveBatch(SeesawBatch):
    """Seesaw's staircase as an envelope, plus growth whenever the measured critical batch
    size allows it (decided online, ``seesaw_ds.cbs.adaptive``).

    The plan built offline is the Seesaw staircase (its decay-driven growth stays in force).
    During training, after every step, the next rung (the batch in force x
    ``batch_growth``, rounded) is taken as soon as ``safety_factor x B_simple`` (the
    critical-batch guard's estimator) reaches it; the decision is a :class:`BatchLimit`
    floor from that token on. Where a floor lifts the batch above the staircase, the LR
    follows the base with ``lr = peak * f(t) * sqrt(B / B0)`` (the noise temperature
    ``lr / sqrt(B)`` stays on the base's path), bounded by ``lr_ceiling x peak``.

    Args:
        safety_factor: grow once the next rung is <= ``safety_factor x B_simple``. Default
            0.25: on the frontier sweep (3 seeds, B0 = 8) it came closest to the best
            cosine's loss at half its steps; 0.5 saved more steps and lost 1-2%.
        lr_ceiling: LR bound as a multiple of the peak. Default 2: Adam's update size
            scales with the LR, not the batch, so an LR far above the tuned peak risks
            instability; the sqrt rule wants ``sqrt(B / B0)`` x the base LR where the batch
            outgrows the staircase, and on the sweep a ceiling of 1 (never above the peak:
            the larger batch then lowers the noise temperature, like Merrill et al.'s batch
            warmup) ended 0.2-1% worse than 2, while 4 changed nothing (the ceiling of 2
            was rarely reached).
        ema_decay / min_samples: the estimator's smoothing and the measurements needed
            before the first decision.
        confidence: None (the default: the rule above, on the point estimate, as the
            frontier records ran) or a two-sided level such as 0.9: grow only while the
            next rung is <= ``safety_factor x`` the interval's lower bound (at most one rung
            per new measurement), and release a floor while it is above ``safety_factor x``
            the upper bound (``seesaw_ds.cbs.adaptive``).
        probe_samples: None (the default: the probe's small batches are the ranks' first
            micro-batches) or the samples in each small batch, e.g. 1: the probe then
            measures ``micro x dp / probe_samples`` small batches of that size, the same
            samples at the same cost, so the estimator's two batch sizes (this and the global
            batch) lie far apart; with micro-batch 4 at a global batch 8 they differ only 2x
            and the estimate is noisy.
    """

    safety_factor: float = 0.25
    lr_ceiling: float = 2.0
    ema_decay: float = 0.9
    min_samples: int = 3
    confidence: Optional[float] = None
    probe_samples: Optional[int] = None

    type_name: ClassVar[str] = "adaptive"

    def __post_init__(self) -> None:
        super().__post_init__()
        checks = [
            (0 < self.safety_factor < math.inf, "adaptive.safety_factor", "a finite number > 0"),
            (1.0 <= self.lr_ceiling < math.inf, "adaptive.lr_ceiling", "a finite number >= 1"),
            (0.0 <= self.ema_decay < 1.0, "adaptive.ema_decay", "in [0, 1)"),
            (self.min_samples >= 1, "adaptive.min_samples", "an integer >= 1"),
            (self.confidence is None or 0.5 <= self.confidence < 1.0, "adaptive.confidence",
             "null or in [0.5, 1), e.g. 0.9"),
            (self.probe_samples is None or self.probe_samples >= 1, "adaptive.probe_samples",
             "null or an integer >= 1, e.g. 1"),
        ]
        for ok, name, expected in checks:
            if not ok:
                raise SeesawConfigError(
                    f"seesaw.{name} = {getattr(self, name.split('.')[1])!r} must be "
                    f"{expected}.")

    def largest_batch(self, initial_batch: int) -> Optional[int]:
        return self.max_batch or AUTO_BATCH_BOUND * initial_batch

    def phases(self, base: LRSchedule, initial_batch: int, batch_multiple: int,
               seq_length: int) -> List[Phase]:
        if self.probe_samples is not None and self.probe_samples >= initial_batch:
            raise SeesawConfigError(
                f"seesaw.adaptive.probe_samples = {self.probe_samples} must be below the "
                f"initial batch (train_batch_size = {initial_batch}): the probe compares its "
                "small batches with the global batch; use e.g. 1.")
        return super().phases(base, initial_batch, batch_multiple, seq_length)


def _close_intervals(phases: List[Phase], total: float) -> List[Phase]:
    """Set each phase's end to the next one's start and the last one's to ``total``."""
    closed = []
    for index, phase in enumerate(phases):
        end = phases[index + 1].start_tokens if index + 1 < len(phases) else total
        closed.append(dataclasses.replace(phase, end_tokens=end))
    return closed


def _check_lr_scaling(lr_scaling: str) -> None:
    if lr_scaling not in LR_SCALINGS:
        raise SeesawConfigError(
            f"seesaw.lr_scaling = {lr_scaling!r} is unknown: use 'none' (the LR follows the "
            "base schedule, so a larger batch lowers lr / sqrt(B)) or 'sqrt' (LR x "
            "sqrt(B / B0), which keeps lr / sqrt(B) on the base path)."
        )


def _phases_from_breakpoints(
    breakpoints: Sequence[Tuple[float, int]],
    base: LRSchedule,
    initial_batch: int,
    lr_scaling: str,
) -> List[Phase]:
    """Phases that follow the base LR, one per (start_tokens, batch) breakpoint."""
    phases = []
    for start, batch in breakpoints:
        multiplier = math.sqrt(batch / initial_batch) if lr_scaling == "sqrt" else 1.0
        if phases and phases[-1].global_batch == batch:
            continue
        phases.append(Phase(float(start), base.total_tokens, batch, multiplier, True))
    return _close_intervals(phases, base.total_tokens)


@dataclass(frozen=True)
class ConstantBatch(BatchSchedule):
    """The baseline: the initial batch throughout, the LR follows the base schedule."""

    type_name: ClassVar[str] = "constant"

    def largest_batch(self, initial_batch: int) -> Optional[int]:
        return initial_batch

    def phases(self, base, initial_batch, batch_multiple, seq_length):
        return _phases_from_breakpoints([(0.0, initial_batch)], base, initial_batch, "none")


@dataclass(frozen=True)
class LinearRampBatch(BatchSchedule):
    """Megatron's ``--rampup-batch-size``: from the initial batch up to ``final_batch`` in
    equal ``batch_increment`` steps spread evenly over the first ``ramp_tokens``."""

    final_batch: int = 0
    batch_increment: int = 0
    ramp_tokens: float = 0.0
    lr_scaling: str = "none"

    type_name: ClassVar[str] = "linear_ramp"

    def largest_batch(self, initial_batch: int) -> Optional[int]:
        return self.final_batch

    def phases(self, base, initial_batch, batch_multiple, seq_length):
        _check_lr_scaling(self.lr_scaling)
        _check_multiple("seesaw.final_batch", self.final_batch, batch_multiple)
        _check_multiple("seesaw.batch_increment", self.batch_increment, batch_multiple)
        if self.final_batch <= initial_batch:
            raise SeesawConfigError(
                f"seesaw.final_batch = {self.final_batch} must exceed the initial batch "
                f"(train_batch_size = {initial_batch})."
            )
        if (self.final_batch - initial_batch) % self.batch_increment:
            raise SeesawConfigError(
                f"seesaw.final_batch - train_batch_size = {self.final_batch - initial_batch} "
                f"is not a multiple of seesaw.batch_increment = {self.batch_increment}."
            )
        if not 0 < self.ramp_tokens <= base.total_tokens:
            raise SeesawConfigError(
                f"seesaw.ramp_tokens = {self.ramp_tokens!r} must be > 0 and at most "
                f"total_tokens ({base.total_tokens:g})."
            )
        increments = (self.final_batch - initial_batch) // self.batch_increment
        if increments >= _MAX_PHASES:
            raise SeesawConfigError(
                f"seesaw.batch_increment = {self.batch_increment} makes {increments:,} batch "
                f"changes from {initial_batch} to seesaw.final_batch = {self.final_batch}; at "
                f"most {_MAX_PHASES - 1:,}: use a larger batch_increment."
            )
        tokens_per_increment = self.ramp_tokens / increments
        breakpoints = [
            (k * tokens_per_increment, initial_batch + k * self.batch_increment)
            for k in range(increments + 1)
        ]
        return _phases_from_breakpoints(breakpoints, base, initial_batch, self.lr_scaling)


@dataclass(frozen=True)
class StepBatch(BatchSchedule):
    """Explicit ``(start_tokens, global_batch)`` steps; before the first, the initial batch."""

    batch_steps: Tuple[Tuple[float, int], ...] = field(default_factory=tuple)
    lr_scaling: str = "none"

    type_name: ClassVar[str] = "step"

    def largest_batch(self, initial_batch: int) -> Optional[int]:
        return max([initial_batch] + [batch for _, batch in self.batch_steps])

    def phases(self, base, initial_batch, batch_multiple, seq_length):
        _check_lr_scaling(self.lr_scaling)
        if not self.batch_steps:
            raise SeesawConfigError(
                "seesaw.batch_steps is empty: give [[start_tokens, global_batch], ...]."
            )
        previous = 0.0
        for index, (start, batch) in enumerate(self.batch_steps):
            _check_multiple(f"seesaw.batch_steps[{index}] batch", batch, batch_multiple)
            if start < previous or (index and start == previous) or start >= base.total_tokens:
                raise SeesawConfigError(
                    f"seesaw.batch_steps[{index}] starts at {start:g} tokens: starts must "
                    f"increase and lie below total_tokens ({base.total_tokens:g})."
                )
            previous = start
        steps = list(self.batch_steps)
        if steps[0][0] > 0:
            steps.insert(0, (0.0, initial_batch))
        elif steps[0][1] != initial_batch:
            raise SeesawConfigError(
                f"seesaw.batch_steps starts at token 0 with batch {steps[0][1]}, but "
                f"train_batch_size is {initial_batch}: make them equal or drop the 0 entry."
            )
        return _phases_from_breakpoints(steps, base, initial_batch, self.lr_scaling)


@dataclass(frozen=True)
class LateSwitchBatch(BatchSchedule):
    """Keep the initial batch until ``switch_fraction`` of the tokens, then ``switch_batch``.

    Wang et al. (arXiv 2602.14208) found switching at ~70-75% of the tokens best for hard
    tasks under a fixed data budget: the larger batch lowers the gradient noise and the loss
    "catches up" fast after the switch.

    ``lr_scaling`` decides what the switch does to the noise temperature ``lr / sqrt(B)``:

    - ``none`` (default, the late-switch recipe): the LR keeps following the base, so the
      switch divides ``lr / sqrt(B)`` by ``sqrt(switch_batch / B0)``: an extra annealing on
      top of the base schedule, which is what the switch is for.
    - ``sqrt``: LR x ``sqrt(switch_batch / B0)`` keeps ``lr / sqrt(B)`` on the base path, so
      the switch only saves steps (Seesaw's equivalence) and cancels the noise reduction.
    """

    switch_fraction: float = 0.7
    switch_batch: int = 0
    lr_scaling: str = "none"

    type_name: ClassVar[str] = "late_switch"

    def largest_batch(self, initial_batch: int) -> Optional[int]:
        return max(initial_batch, self.switch_batch)

    def phases(self, base, initial_batch, batch_multiple, seq_length):
        _check_lr_scaling(self.lr_scaling)
        if not 0.0 < self.switch_fraction < 1.0:
            raise SeesawConfigError(
                f"seesaw.switch_fraction = {self.switch_fraction!r} must lie in (0, 1) "
                "(the fraction of total_tokens trained before the switch; ~0.7 is typical)."
            )
        _check_multiple("seesaw.switch_batch", self.switch_batch, batch_multiple)
        if self.switch_batch <= initial_batch:
            raise SeesawConfigError(
                f"seesaw.switch_batch = {self.switch_batch} must exceed the initial batch "
                f"(train_batch_size = {initial_batch}): a late switch grows the batch."
            )
        breakpoints = [
            (0.0, initial_batch),
            (self.switch_fraction * base.total_tokens, self.switch_batch),
        ]
        return _phases_from_breakpoints(breakpoints, base, initial_batch, self.lr_scaling)


BATCH_SCHEDULES = {
    schedule.type_name: schedule
    for schedule in (SeesawBatch, AdaptiveBatch, ConstantBatch, LinearRampBatch, StepBatch,
                     LateSwitchBatch)
}
