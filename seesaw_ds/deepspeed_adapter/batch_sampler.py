"""The plan's micro-batches as a ``batch_sampler`` for the user's own ``DataLoader``.

``engine.seesaw.batch_sampler(dataset)`` gives a :class:`PlanBatchSampler`: pass it as
``torch.utils.data.DataLoader(dataset, batch_sampler=..., collate_fn=..., num_workers=...,
pin_memory=...)`` and every item is the list of dataset indices of this rank's next
micro-batch, in exactly the global sample order of :class:`SeesawDataLoader` (same
``seesaw.data_seed``, same permutation, same split over ranks and micro-batches). The
micro-batch follows the plan, so ``growth_policy: micro_batch_first`` works too.

Position: a new iteration (``for batch in loader``) starts where the engine stands
(``engine.seesaw.consumed_samples`` and the micro-batch of the window in progress), never
at an internal counter, because a ``DataLoader`` with workers draws indices ahead of the
engine. A checkpoint saves the engine's position with the order's identity (seed, dataset
size, shuffle, permutation version); resuming with other values is refused. The positions
of this sampler and of :class:`SeesawDataLoader` are interchangeable.

Limitations:
    Load a checkpoint before starting the iteration it resumes. An online plan change
    (the critical-batch guard) takes effect at the next window the sampler computes; with
    prefetching workers, batches already drawn keep the old micro-batch, and the engine's
    sample-count check refuses them if it differs.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterator, List, Tuple

from seesaw_ds.deepspeed_adapter.sampler import (GlobalSampleOrder, check_order_state,
                                                 order_state)
from seesaw_ds.errors import SeesawConfigError
from seesaw_ds.schedules import Plan, StepSetting

__all__ = ["PlanBatchSampler", "plan_windows"]


def plan_windows(
    plan_of: Callable[[], Plan], start: int, micro: int
) -> Iterator[Tuple[int, int, StepSetting]]:
    """``(window_start, first_micro, setting)`` of each optimizer step from a position to
    the plan's end; ``plan_of()`` is read at every window (a replaced plan takes over)."""
    while True:
        plan = plan_of()
        if plan.is_finished(start * plan.seq_length):
            return
        setting = plan.at_samples(start)
        if micro < setting.grad_accum:
            yield start, micro, setting
        start += setting.global_batch
        micro = 0


class ClockPosition:
    """Where a plan-following data source stands: the attached engine hook's clock
    (``clock``), or, standalone, what :meth:`set_position` last set (``_position``)."""

    clock: Any
    _position: Tuple[int, int]

    @property
    def position(self) -> Tuple[int, int]:
        """(consumed samples at the current window start, micro-batches done in it)."""
        if self.clock is not None:
            return self.clock.state.consumed_samples, self.clock.micro_in_window
        return self._position

    def set_position(self, consumed_samples: int, micro: int = 0) -> None:
        self._position = (int(consumed_samples), int(micro))


class PlanBatchSampler(ClockPosition):
    """This rank's micro-batches of dataset indices, in plan order (a ``batch_sampler``).

    Args:
        dataset: the map-style dataset (only ``len`` is used), or its length.
        plan: the run's plan; ``engine.seesaw.replace_plan`` updates the attribute.
        dp_rank / dp_size: this rank and the data-parallel size.
        data_seed: seed of the global sample order (``seesaw.data_seed``).
        shuffle: False keeps dataset order (epochs repeat it).
        clock: the engine hook (``engine.seesaw``); iterations start at its position. None
            (standalone) starts at :meth:`set_position`'s position and does not move it.
    """

    def __init__(
        self,
        dataset: Any,
        plan: Plan,
        dp_rank: int = 0,
        dp_size: int = 1,
        data_seed: int = 1234,
        shuffle: bool = True,
        clock: Any = None,
    ) -> None:
        size = dataset if isinstance(dataset, int) else _length(dataset)
        if not 0 <= dp_rank < dp_size or dp_size != plan.dp_size:
            raise SeesawConfigError(
                f"dp_rank {dp_rank} of {dp_size} ranks does not fit the plan's "
                f"data-parallel size {plan.dp_size}."
            )
        self.plan = plan
        self.dp_rank, self.dp_size = int(dp_rank), int(dp_size)
        self.order = GlobalSampleOrder(size, data_seed, shuffle)
        self.clock = clock
        self._position = (0, 0)

    # ---- position: ClockPosition (the interface the engine hook's checkpoints use) ---------

    def state_dict(self) -> Dict[str, Any]:
        return order_state(self.order, *self.position)

    def check_state_dict(self, state_dict: Dict[str, Any]) -> None:
        check_order_state(self.order, state_dict)

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        self.check_state_dict(state_dict)
        self.set_position(state_dict["consumed_samples"], state_dict.get("micro", 0))

    # ---- iteration -------------------------------------------------------------------------

    def _windows(self) -> Iterator[Tuple[int, int, StepSetting]]:
        return plan_windows(lambda: self.plan, *self.position)

    def __iter__(self) -> Iterator[List[int]]:
        dp, rank = self.dp_size, self.dp_rank
        for start, first, setting in self._windows():
            m = setting.micro_batch
            for micro in range(first, setting.grad_accum):
                yield self.order.take(start + (micro * dp + rank) * m, m)

    def __len__(self) -> int:
        """Micro-batches this rank still has to deliver from the current position."""
        return sum(setting.grad_accum - first for _, first, setting in self._windows())


def _length(dataset: Any) -> int:
    try:
        return len(dataset)
    except TypeError:
        raise SeesawConfigError(
            f"batch_sampler needs a map-style dataset with len(); {type(dataset).__name__} "
            "has none: for an iterable dataset use engine.seesaw.iterable_loader(dataset)."
        ) from None
