"""Iterable training data: draw the plan's micro-batch from the user's iterator.

An ``IterableDataset`` (or any iterable of samples: a generator factory, a ``DataLoader``
with ``batch_size=None`` whose workers load single samples) has no index, so the global
order of :class:`SeesawDataLoader` cannot apply. :class:`PlanIterableLoader` instead draws,
for every micro-step, exactly the plan's per-rank micro-batch of samples from the iterator
and collates them; iteration ends with the plan. Two layouts:

* ``stream="rank"`` (default): the iterable yields this rank's own samples (shard it
  yourself, e.g. ``split_dataset_by_node`` or by ``torch.distributed.get_rank()``). Each
  micro-step draws ``micro_batch`` samples.
* ``stream="global"``: every rank's iterable yields the same global stream; each
  micro-step draws ``micro_batch x dp`` samples and keeps this rank's share, laid out like
  the indexed loader (``micro-batch j of rank r = stream[start + (j*dp + r)*m : ...]``). It
  reads dp times the data on each rank.

Position: the samples drawn from this rank's iterator, fixed by the engine's clock
(``consumed_samples / dp`` for ``rank``, ``consumed_samples`` for ``global``). Checkpoints
save it; on resume the loader starts a fresh iterator and skips that many samples.

Note:
    Skipping costs as much as reading the skipped samples (each one is produced by the
    iterator, collation excepted): resuming at sample N re-reads N samples on each rank.
    An iterable that can seek should start at the position itself; then pass
    ``skip=False`` and read ``loader.samples_to_skip()`` to know where.

Limitations:
    The iterable must yield the same samples in the same order when iterated again (the
    resume depends on it). Running out before the plan's end raises one line naming the
    step and the samples still needed.
"""

from __future__ import annotations

import itertools
import logging
from typing import Any, Callable, Dict, Iterator, List, Optional

from seesaw_ds.deepspeed_adapter.batch_sampler import ClockPosition, plan_windows
from seesaw_ds.errors import SeesawConfigError
from seesaw_ds.schedules import Plan

__all__ = ["PlanIterableLoader", "STREAMS"]

STREAMS = ("rank", "global")
_log = logging.getLogger("seesaw_ds")


class PlanIterableLoader(ClockPosition):
    """Collated micro-batches drawn from an iterable, in plan sizes, resumably.

    Args:
        iterable: the samples (re-iterable: ``iter(iterable)`` starts it over).
        plan: the run's plan; ``engine.seesaw.replace_plan`` updates the attribute.
        dp_rank / dp_size: this rank and the data-parallel size.
        collate_fn: merges a list of samples (default ``torch.utils.data.default_collate``).
        stream: ``"rank"`` or ``"global"`` (see the module docstring).
        clock: the engine hook (``engine.seesaw``): iterations start at its position and
            every window start is checked against it. None: standalone, own position.
        skip: False leaves seeking to the iterable (see :meth:`samples_to_skip`).
    """

    kind = "iterable"

    def __init__(
        self,
        iterable: Any,
        plan: Plan,
        dp_rank: int = 0,
        dp_size: int = 1,
        collate_fn: Optional[Callable] = None,
        stream: str = "rank",
        clock: Any = None,
        skip: bool = True,
    ) -> None:
        if not hasattr(iterable, "__iter__"):
            raise SeesawConfigError(
                f"training_data is a {type(iterable).__name__}, neither map-style (__len__ "
                "and __getitem__) nor iterable (__iter__)."
            )
        if stream not in STREAMS:
            raise SeesawConfigError(
                f"stream = {stream!r} is unknown: use 'rank' (the iterable yields this "
                "rank's samples) or 'global' (every rank reads the same stream)."
            )
        if dp_size != plan.dp_size or not 0 <= dp_rank < dp_size:
            raise SeesawConfigError(
                f"dp_rank {dp_rank} of {dp_size} ranks does not fit the plan's "
                f"data-parallel size {plan.dp_size}."
            )
        self.iterable = iterable
        self.plan = plan
        self.dp_rank, self.dp_size = int(dp_rank), int(dp_size)
        self.collate_fn = collate_fn
        self.stream = stream
        self.clock = clock
        self.skip = bool(skip)
        self.skipped = 0  # samples skipped to resume (in this process)
        self._position = (0, 0)
        self._iterator: Optional[Iterator[Any]] = None
        self._drawn = 0  # samples drawn from self._iterator

    # ---- position ---------------------------------------------------------------------------

    def samples_to_skip(self) -> int:
        """Samples of this rank's iterator that precede the current position."""
        start, micro = self.position
        m = self.plan.at_samples(start).micro_batch if micro else 0
        if self.stream == "global":
            return start + micro * m * self.dp_size
        return start // self.dp_size + micro * m

    def state_dict(self) -> Dict[str, Any]:
        start, micro = self.position
        return {"kind": self.kind, "consumed_samples": start, "micro": micro,
                "drawn": self.samples_to_skip(), "stream": self.stream,
                "dp_size": self.dp_size}

    def check_state_dict(self, state_dict: Dict[str, Any]) -> None:
        kind = state_dict.get("kind", "indexed")
        if kind != self.kind:
            raise SeesawConfigError(
                "the checkpoint's training data was a map-style dataset read by index but "
                "this run draws from an iterable: resume with the same training_data."
            )
        if state_dict.get("stream") != self.stream:
            raise SeesawConfigError(
                f"iterable stream = {self.stream!r} but the checkpoint was trained with "
                f"{state_dict.get('stream')!r}: resume with the original value."
            )
        if self.stream == "rank" and state_dict.get("dp_size") != self.dp_size:
            raise SeesawConfigError(
                f"the checkpoint drew a per-rank iterable on {state_dict.get('dp_size')} "
                f"ranks; this run has {self.dp_size}: each rank's shard would change. Resume "
                "on the same number of ranks, or use stream='global'."
            )

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        self.check_state_dict(state_dict)
        self.set_position(state_dict["consumed_samples"], state_dict.get("micro", 0))

    # ---- iteration -------------------------------------------------------------------------

    def _seek(self, target: int) -> None:
        if self._iterator is None or self._drawn > target:
            self._iterator, self._drawn = iter(self.iterable), 0
        if not self.skip:
            self._drawn = target
            return
        count = target - self._drawn
        if count:
            _log.info("seesaw: skipping %d samples of the iterable training data to resume "
                      "(rank %d)", count, self.dp_rank)
            got = sum(1 for _ in itertools.islice(self._iterator, count))
            self._drawn += got
            self.skipped += got
            if got < count:
                raise SeesawConfigError(
                    f"seesaw: the iterable training data ran out after {self._drawn} samples "
                    f"on rank {self.dp_rank} while skipping to the resume position "
                    f"{target}: resume with the data the run was trained on."
                )

    def _draw(self, count: int, where: str) -> List[Any]:
        items = list(itertools.islice(self._iterator, count))
        self._drawn += len(items)
        if len(items) < count:
            plan = self.plan
            per_rank = plan.trained_samples if self.stream == "global" else (
                plan.trained_samples // self.dp_size)
            raise SeesawConfigError(
                f"seesaw: the iterable training data ran out on rank {self.dp_rank} after "
                f"{self._drawn} samples, at {where}; the plan needs {per_rank} on this rank: "
                "make the stream longer or repeat it (loop over epochs in __iter__)."
            )
        return items

    def __iter__(self) -> Iterator[Any]:
        collate = self.collate_fn
        if collate is None:
            from torch.utils.data import default_collate as collate
        self._seek(self.samples_to_skip())
        dp, rank = self.dp_size, self.dp_rank
        for start, first, setting in plan_windows(lambda: self.plan, *self.position):
            self._check_in_step(start)
            m = setting.micro_batch
            step = (f"optimizer step {self.clock.state.step}" if self.clock is not None
                    else f"the step from sample {start}")
            for micro in range(first, setting.grad_accum):
                where = f"{step} (micro-batch {micro + 1} of {setting.grad_accum})"
                if self.stream == "global":
                    items = self._draw(m * dp, where)[rank * m:(rank + 1) * m]
                else:
                    items = self._draw(m, where)
                if self.clock is None:
                    self._advance(start, micro + 1, setting)
                yield collate(items)

    def _advance(self, start: int, micro: int, setting: Any) -> None:
        if micro >= setting.grad_accum:
            start, micro = start + setting.global_batch, 0
        self._position = (start, micro)

    def _check_in_step(self, start: int) -> None:
        clock = self.clock
        if clock is not None and clock.state.consumed_samples != start:
            raise RuntimeError(
                f"the iterable loader is at sample {start} but the engine has consumed "
                f"{clock.state.consumed_samples}: call engine.step() once after every "
                "engine.backward(), and do not consume the loader ahead of the engine."
            )

    def __len__(self) -> int:
        """Micro-batches this rank still has to deliver."""
        return sum(setting.grad_accum - first
                   for _, first, setting in plan_windows(lambda: self.plan, *self.position))
