"""Lay a plan out on ranks: micro-batch, accumulation and rank count per phase, and time.

For a plan (its schedules, initial batch, sequence length, peak LR) and a
:class:`~seesaw_ds.layout.throughput.Throughput`, :class:`LayoutSearch` finds the layout
that minimises projected wall-clock time, and the same for the constant-batch baseline at
the initial batch, under the same rules:

- A job runs on a fixed number of data-parallel ranks ``r``; every global batch ``B`` is
  realised exactly as ``r x micro x GAS`` (no padding), micro-batches up to the largest
  size in the throughput file.
- Batches are rounded to multiples of a batch multiple ``q`` (a divisor of the initial
  batch and a multiple of ``r``) by the plan itself (``Plan(batch_multiple=q)``), which
  corrects the LR so that ``lr / sqrt(B)`` stays on the base schedule's path. The search
  tries every such ``q`` and keeps the fastest.
- With ``max_ranks``, the run is a chain of jobs whose rank count only grows, at phase
  boundaries, in multiples of the starting count that divide ``q`` (so every job can load
  the same plan), and never below the starting per-rank batch: ranks follow the batch
  (weak scaling). The constant-batch baseline cannot grow under that rule, so it keeps
  its starting ranks.
- Per phase the layout with the smallest step time is chosen; with ``max_ranks`` the rank
  count of every phase comes from a dynamic programme over the phases (rank counts never
  shrink; ``relaunch_seconds`` is charged per extra job), for single-multiple chains as for
  staged ones.
- With ``max_ranks``, a chain may also use batch-multiple stages
  (``seesaw.batch_multiple_stages``): each job's batches are rounded up to multiples of its
  own rank count, so the rank count can follow the batch closely (any count, or with
  ``gpus_per_node`` one node or whole nodes). The staged plan is then built and timed
  exactly.
- The fastest fixed layout on at most ``ranks`` (no relaunch) is always a candidate of a
  chain, so a chain is never projected slower than Seesaw at the starting allocation.

``relaunch_seconds`` defaults to :data:`DEFAULT_RELAUNCH_SECONDS` (see
``docs/wallclock.md`` and ``bench/records/relaunch_cost.json``), never 0 unless asked.

Note:
    The baseline's own layout ``(r0, m0)`` is always among the candidates with
    ``q = r0 * m0``: every larger batch then costs ``GAS x t(m0)`` plus one step's
    collectives and update, never more per sequence than the baseline's step, so the chosen
    Seesaw layout is never slower than the baseline at the same allocation (up to the last
    step's overshoot).

GPU-hours count every rank of a job for the job's time, and each relaunch at the rank
count of the job it starts (``Projection.gpu_seconds``).

Limitations:
    Without stages, rank counts above the initial batch are not reachable (a plan's batch
    multiple divides its initial batch): a fixed layout on more ranks uses the largest
    divisor of the initial batch below it (``start_ranks`` says which).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Tuple

from seesaw_ds.errors import SeesawConfigError
from seesaw_ds.layout.throughput import Throughput
from seesaw_ds.schedules import ConstantBatch, Plan
from seesaw_ds.schedules.multiples import multiple_at

__all__ = ["Layout", "PhaseLayout", "Projection", "WallClockPlan", "LayoutSearch",
           "best_layout", "project_wallclock", "DEFAULT_RELAUNCH_SECONDS"]

#: Seconds one extra job of a chain costs when none is given: job start-up on an allocation
#: that is already held (launch, imports, process group: about 2 minutes at scale) plus a
#: ZeRO-1 checkpoint save, its universal conversion and the load (measured on CPU for the
#: 150M-600M shapes: ``bench/records/relaunch_cost.json``). A fresh queue wait is extra.
DEFAULT_RELAUNCH_SECONDS = 300.0


@dataclass(frozen=True)
class Layout:
    """How one optimizer step is laid out, and what it costs."""

    ranks: int
    micro_batch: int
    grad_accum: int
    step_seconds: float


@dataclass(frozen=True)
class PhaseLayout:
    start_tokens: float
    end_tokens: float
    global_batch: int
    steps: int
    layout: Layout

    @property
    def seconds(self) -> float:
        return self.steps * self.layout.step_seconds


@dataclass(frozen=True)
class Projection:
    """A laid-out plan: the plan built with ``batch_multiple`` and a layout per phase."""

    plan: Plan
    batch_multiple: int
    phases: Tuple[PhaseLayout, ...]
    relaunch_seconds: float = 0.0

    @property
    def seconds(self) -> float:
        relaunches = (len(self.stages()) - 1) * self.relaunch_seconds
        return sum(phase.seconds for phase in self.phases) + relaunches

    @property
    def steps(self) -> int:
        return sum(phase.steps for phase in self.phases)

    @property
    def gpu_seconds(self) -> float:
        """Every rank of each job for its time, each relaunch at the new job's ranks."""
        relaunches = sum(stage["ranks"] for stage in self.stages()[1:]) * self.relaunch_seconds
        return sum(phase.seconds * phase.layout.ranks for phase in self.phases) + relaunches

    @property
    def max_ranks(self) -> int:
        return max(phase.layout.ranks for phase in self.phases)

    @property
    def start_ranks(self) -> int:
        return self.phases[0].layout.ranks

    def stages(self) -> List[Dict[str, float]]:
        """Jobs of the chain: where each starts (tokens) and on how many ranks."""
        stages: List[Dict[str, float]] = []
        for phase in self.phases:
            if not stages or stages[-1]["ranks"] != phase.layout.ranks:
                stages.append({"start_tokens": phase.start_tokens, "ranks": phase.layout.ranks})
        return stages


def _divisors(value: int) -> List[int]:
    return [d for d in range(1, value + 1) if value % d == 0]


def best_layout(batch: int, throughput: Throughput, rank_options: Iterable[int],
                min_per_rank: int = 1) -> Optional[Layout]:
    """The fastest ``ranks x micro x GAS == batch`` over ``rank_options``; None if none fits.

    Ties go to fewer ranks, then to the larger micro-batch.
    """
    best: Optional[Layout] = None
    for ranks in sorted(set(rank_options)):
        if batch % ranks or batch // ranks < min_per_rank:
            continue
        per_rank = batch // ranks
        for micro in range(min(per_rank, throughput.max_micro_batch), 0, -1):
            if per_rank % micro:
                continue
            grad_accum = per_rank // micro
            seconds = throughput.step_seconds(micro, grad_accum, ranks)
            if best is None or seconds < best.step_seconds * (1 - 1e-12):
                best = Layout(ranks, micro, grad_accum, seconds)
    return best


class LayoutSearch:
    """Finds the fastest layouts of a plan and of its constant-batch baseline.

    Args:
        plan: the plan as configured (its ``batch_multiple`` and layout are not used).
        throughput: one worker's step-time pieces.
    """

    def __init__(self, plan: Plan, throughput: Throughput,
                 gpus_per_node: Optional[int] = None,
                 relaunch_seconds: Optional[float] = None) -> None:
        if relaunch_seconds is None:
            relaunch_seconds = DEFAULT_RELAUNCH_SECONDS
        if gpus_per_node is not None and gpus_per_node < 1:
            raise SeesawConfigError(f"--gpus-per-node = {gpus_per_node} must be >= 1.")
        if not relaunch_seconds >= 0:
            raise SeesawConfigError(f"--relaunch-seconds = {relaunch_seconds} must be >= 0.")
        self.plan = plan
        self.throughput = throughput
        self.gpus_per_node = gpus_per_node
        self.relaunch_seconds = float(relaunch_seconds)
        self._plans: Dict[Tuple[str, int], Optional[Plan]] = {}
        self._fixed: Dict[Tuple[str, int, int], Optional[Projection]] = {}

    # ---- plans with another batch multiple ----------------------------------------------

    def _variant(self, kind: str, multiple: int, stages: Tuple = ()) -> Optional[Plan]:
        key = (kind, multiple, stages)
        if key not in self._plans:
            plan = self.plan
            schedule = plan.batch_schedule if kind == "plan" else ConstantBatch()
            try:
                self._plans[key] = Plan(
                    plan.base, schedule, plan.peak_lr, plan.initial_batch, plan.seq_length,
                    micro_batch=1, dp_size=1, batch_multiple=multiple, min_lr=plan.min_lr,
                    multiple_stages=[{"from_tokens": t, "multiple": q} for t, q in stages],
                )
            except SeesawConfigError:  # e.g. a max_batch that is not a multiple of it
                self._plans[key] = None
        return self._plans[key]

    def _rank_allowed(self, ranks: int) -> bool:
        node = self.gpus_per_node
        return node is None or ranks <= node or ranks % node == 0

    # ---- chains with batch-multiple stages ----------------------------------------------------

    def _staged_costs(self, plan: Plan, options: List[int], min_per_rank: int):
        """Per phase with steps: (phase, {ranks: seconds}) with each batch rounded up to a
        multiple of the rank count (the stage rounding)."""
        costs = []
        for phase, steps in zip(plan.phases, plan.steps_per_phase()):
            if steps == 0:
                continue
            tokens = phase.end_tokens - phase.start_tokens
            by_ranks = {}
            for ranks in options:
                batch = -(-phase.global_batch // ranks) * ranks
                layout = best_layout(batch, self.throughput, [ranks], min_per_rank)
                if layout is not None:
                    by_ranks[ranks] = tokens / (batch * plan.seq_length) * layout.step_seconds
            costs.append((phase, by_ranks))
        return costs

    def _staged_ranks(self, costs, options: List[int]) -> Optional[List[int]]:
        """Rank count per phase minimising time plus relaunches (never shrinking), starting
        on ``options[0]``."""
        inf = float("inf")
        best = {r: (costs[0][1].get(r, inf) if r == options[0] else inf, [r]) for r in options}
        for _, by_ranks in costs[1:]:
            new, lowest = {}, (inf, None)
            for r in options:  # ascending: ``lowest`` is the best path ending below r
                stay = best[r]
                moved = (lowest[0] + self.relaunch_seconds, lowest[1])
                total, path = min(stay, moved, key=lambda item: item[0])
                new[r] = (total + by_ranks.get(r, inf), (path or []) + [r])
                if best[r][0] < lowest[0]:
                    lowest = best[r]
            best = new
        total, path = min(best.values(), key=lambda item: item[0])
        return None if total == inf else path

    def _lay_out_staged(self, start_ranks: int, grow_to: int) -> Optional[Projection]:
        plan = self._variant("plan", start_ranks)
        if plan is None:
            return None
        min_per_rank = plan.initial_batch // start_ranks
        options = [r for r in range(start_ranks, grow_to + 1) if self._rank_allowed(r)]
        costs = self._staged_costs(plan, options, min_per_rank)
        path = self._staged_ranks(costs, options) if costs else None
        if path is None:
            return None
        stages = tuple((phase.start_tokens, ranks)
                       for (phase, _), ranks, previous in zip(costs, path, [None] + path)
                       if previous is not None and ranks != previous)
        staged = self._variant("plan", start_ranks, stages)
        if staged is None:
            return None
        phases = []
        for phase, steps in zip(staged.phases, staged.steps_per_phase()):
            if steps == 0:
                continue
            ranks = multiple_at(staged.multiple_stages, phase.start_tokens)  # a job's ranks
            layout = best_layout(phase.global_batch, self.throughput, [ranks], min_per_rank)
            if layout is None:
                return None
            phases.append(PhaseLayout(phase.start_tokens, phase.end_tokens,
                                      phase.global_batch, steps, layout))
        return Projection(staged, start_ranks, tuple(phases), self.relaunch_seconds)

    def _lay_out(self, kind: str, start_ranks: int, multiple: int,
                 grow_to: Optional[int]) -> Optional[Projection]:
        plan = self._variant(kind, multiple)
        if plan is None:
            return None
        min_per_rank = plan.initial_batch // start_ranks
        options = [start_ranks]
        if grow_to:
            options = [r for r in range(start_ranks, grow_to + 1, start_ranks)
                       if multiple % r == 0 and self._rank_allowed(r)]
        laid = []  # (phase, steps, {ranks: layout})
        for phase, steps in zip(plan.phases, plan.steps_per_phase()):
            if steps == 0:
                continue
            by_ranks = {}
            for ranks in options:
                layout = best_layout(phase.global_batch, self.throughput, [ranks], min_per_rank)
                if layout is not None:
                    by_ranks[ranks] = layout
            laid.append((phase, steps, by_ranks))
        if not laid:
            return None
        path = self._staged_ranks(
            [(phase, {r: steps * layout.step_seconds for r, layout in by_ranks.items()})
             for phase, steps, by_ranks in laid], options)
        if path is None:
            return None
        phases = [PhaseLayout(phase.start_tokens, phase.end_tokens, phase.global_batch, steps,
                              by_ranks[ranks])
                  for (phase, steps, by_ranks), ranks in zip(laid, path)]
        return Projection(plan, multiple, tuple(phases), self.relaunch_seconds)

    def _fastest(self, kind: str, ranks: int, max_ranks: Optional[int]) -> Optional[Projection]:
        initial = self.plan.initial_batch
        best: Optional[Projection] = None
        for start_ranks in _divisors(initial):
            if start_ranks > ranks:
                break
            if not self._rank_allowed(start_ranks):
                continue
            for multiple in _divisors(initial):
                if multiple % start_ranks:
                    continue
                if kind == "baseline" and multiple != initial:
                    continue  # a constant batch needs no rounding
                if max_ranks is None:
                    key = (kind, start_ranks, multiple)
                    if key not in self._fixed:
                        self._fixed[key] = self._lay_out(kind, start_ranks, multiple, None)
                    candidate = self._fixed[key]
                else:
                    candidate = self._lay_out(kind, start_ranks, multiple, max_ranks)
                if candidate is not None and (best is None or
                                              candidate.seconds < best.seconds * (1 - 1e-12)):
                    best = candidate
        if kind == "plan" and max_ranks is not None:
            fixed = self._fastest(kind, ranks, None)  # never grow if growing does not pay
            starts = {p.start_ranks for p in (best, fixed) if p is not None}
            for start in sorted(starts):
                staged = self._lay_out_staged(start, max_ranks)
                if staged is not None and (best is None or
                                           staged.seconds < best.seconds * (1 - 1e-12)):
                    best = staged
            if fixed is not None and (best is None or
                                      fixed.seconds <= best.seconds * (1 + 1e-12)):
                best = fixed
        return best

    # ---- the answer -------------------------------------------------------------------------

    def project(self, ranks: int, max_ranks: Optional[int] = None) -> "WallClockPlan":
        """Fastest layout of the plan and of its baseline on ``ranks`` (growing to
        ``max_ranks``)."""
        if isinstance(ranks, bool) or not isinstance(ranks, int) or ranks < 1:
            raise SeesawConfigError(f"--ranks = {ranks!r} must be a positive whole number.")
        if max_ranks is not None and (not isinstance(max_ranks, int) or max_ranks < ranks):
            raise SeesawConfigError(
                f"--max-ranks = {max_ranks!r} must be a whole number >= --ranks ({ranks}).")
        seesaw = self._fastest("plan", ranks, max_ranks)
        baseline = self._fastest("baseline", ranks, None)
        fixed = self._fastest("plan", ranks, None) if max_ranks is not None else seesaw
        if seesaw is None or baseline is None or fixed is None:
            raise SeesawConfigError(
                f"no layout realises the plan's batches on <= {ranks} ranks with micro-batches "
                f"up to {self.throughput.max_micro_batch}: list larger micro-batch sizes in "
                "the throughput file or change --ranks."
            )
        largest = {}
        if max_ranks is not None:
            largest = {"seesaw_at_max": self._fastest("plan", max_ranks, None),
                       "baseline_at_max": self._fastest("baseline", max_ranks, None)}
        return WallClockPlan(ranks, max_ranks, seesaw, baseline, fixed,
                             largest.get("seesaw_at_max"), largest.get("baseline_at_max"))


@dataclass(frozen=True)
class WallClockPlan:
    """The projection the ``plan --throughput`` command prints."""

    ranks: int
    max_ranks: Optional[int]
    seesaw: Projection  # the chosen layout: a chain with max_ranks, else fixed
    baseline: Projection  # cosine (constant batch) on at most ``ranks``
    seesaw_fixed: Optional[Projection] = None  # Seesaw on at most ``ranks``, no relaunch
    seesaw_at_max: Optional[Projection] = None  # both on at most ``max_ranks``, fixed
    baseline_at_max: Optional[Projection] = None

    @property
    def ratio(self) -> float:
        """The chosen Seesaw layout's time over cosine's at ``ranks``."""
        return self.seesaw.seconds / self.baseline.seconds

    @property
    def equal_resource_ratio(self) -> float:
        """Seesaw over cosine on the same fixed allocation (``ranks``): the headline."""
        return (self.seesaw_fixed or self.seesaw).seconds / self.baseline.seconds

    def comparisons(self) -> List[Dict[str, object]]:
        """Rows side by side: label, ranks used, hours, GPU-hours, jobs."""
        rows = []

        def add(label: str, projection: Optional[Projection]) -> None:
            if projection is not None:
                rows.append({"label": label, "start_ranks": projection.start_ranks,
                             "max_ranks": projection.max_ranks,
                             "jobs": len(projection.stages()),
                             "seconds": projection.seconds,
                             "gpu_hours": projection.gpu_seconds / 3600,
                             "relaunch_seconds": (projection.relaunch_seconds
                                                  if len(projection.stages()) > 1 else 0.0)})

        add(f"seesaw, fixed {self.ranks}", self.seesaw_fixed or self.seesaw)
        add(f"cosine, fixed {self.ranks}", self.baseline)
        if self.max_ranks is not None:
            add(f"seesaw, fixed {self.max_ranks}", self.seesaw_at_max)
            add(f"cosine, fixed {self.max_ranks}", self.baseline_at_max)
            add(f"seesaw, chain {self.ranks} -> <= {self.max_ranks}", self.seesaw)
        return rows

    def to_dict(self) -> dict:
        """JSON-ready; the keys are part of the command-line interface."""
        summary = self.seesaw.plan.summary()
        phases = []
        for entry, phase in zip(
                [p for p in summary["phases"] if p["steps"] > 0], self.seesaw.phases):
            layout = phase.layout
            phases.append({
                "start_tokens": phase.start_tokens, "end_tokens": phase.end_tokens,
                "global_batch": phase.global_batch, "ranks": layout.ranks,
                "micro_batch": layout.micro_batch, "grad_accum": layout.grad_accum,
                "steps": phase.steps, "step_seconds": layout.step_seconds,
                "seconds": phase.seconds, "lr_start": entry["lr_start"],
                "lr_end": entry["lr_end"],
            })
        base = self.baseline.phases[0].layout
        return {
            "ranks": self.ranks,
            "max_ranks": self.max_ranks,
            "batch_schedule": summary["batch_schedule"],
            "total_tokens": summary["total_tokens"],
            "seq_length": summary["seq_length"],
            "initial_batch": summary["initial_batch"],
            "batch_multiple": self.seesaw.batch_multiple,
            "batch_multiple_stages": self.seesaw.plan.later_multiple_stages(),
            "relaunch_seconds": self.seesaw.relaunch_seconds,
            "start_ranks": self.seesaw.start_ranks,
            "projected_seconds": self.seesaw.seconds,
            "baseline_projected_seconds": self.baseline.seconds,
            "time_ratio": self.ratio,
            "equal_resource_time_ratio": self.equal_resource_ratio,
            "gpu_hours": self.seesaw.gpu_seconds / 3600,
            "baseline_gpu_hours": self.baseline.gpu_seconds / 3600,
            "comparisons": self.comparisons(),
            "optimizer_steps": self.seesaw.steps,
            "baseline_optimizer_steps": self.baseline.steps,
            "baseline": {"ranks": base.ranks, "micro_batch": base.micro_batch,
                         "grad_accum": base.grad_accum, "step_seconds": base.step_seconds,
                         "steps": self.baseline.steps},
            "stages": self.seesaw.stages(),
            "phases": phases,
        }


def project_wallclock(plan: Plan, throughput: Throughput, ranks: int,
                      max_ranks: Optional[int] = None, gpus_per_node: Optional[int] = None,
                      relaunch_seconds: Optional[float] = None) -> WallClockPlan:
    """Functional spelling of ``LayoutSearch(plan, throughput, gpus_per_node,
    relaunch_seconds).project(ranks, max_ranks)``."""
    return LayoutSearch(plan, throughput, gpus_per_node, relaunch_seconds).project(
        ranks, max_ranks)
