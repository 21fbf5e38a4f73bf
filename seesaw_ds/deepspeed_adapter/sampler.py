"""Data in plan order: one global sample stream, cut into each step's batch.

Sample ``i`` of a run is ``dataset[perm_e[i % N]]`` with ``e = i // N`` and ``perm_e`` a
keyed bijection of ``[0, N)`` drawn from ``(data_seed, e)`` (:class:`KeyedPermutation`:
O(1) memory, pure integer math, the same order in every library version): the stream
depends on the seed and the dataset only, never on the batch schedule, so a cosine run and
a Seesaw run see the same tokens in the same order. Optimizer step ``k`` takes the next ``B_k`` samples of the stream; they are
split into ``GAS`` micro-batches, each sharded over the data-parallel ranks:

    micro-batch j of rank r = stream[start + (j * dp + r) * m : start + (j * dp + r + 1) * m]

with ``m`` the per-rank micro-batch of that step. The stream stops when the plan's tokens
are done, and resumes at the exact sample.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from seesaw_ds.deepspeed_adapter.permutation import KeyedPermutation
from seesaw_ds.deepspeed_adapter.state import SeesawState
from seesaw_ds.errors import SeesawConfigError
from seesaw_ds.schedules import Plan

__all__ = ["GlobalSampleOrder", "SeesawBatchSampler", "SeesawDataLoader"]


#: Names the permutation algorithm in checkpoints; a different one would change the order.
SAMPLE_ORDER_VERSION = "feistel64-v1"


class GlobalSampleOrder:
    """Maps the run's sample number to a dataset index (epochs reshuffled by seed).

    Memory is O(1) whatever the dataset size: each index is computed on demand by a keyed
    bijection (:class:`~seesaw_ds.deepspeed_adapter.permutation.KeyedPermutation`).

    Args:
        dataset_size: ``len(dataset)``.
        seed: ``seesaw.data_seed``.
        shuffle: False keeps the dataset order in every epoch.
    """

    def __init__(self, dataset_size: int, seed: int, shuffle: bool = True) -> None:
        if dataset_size < 1:
            raise SeesawConfigError("training_data is empty: the plan needs at least one sample.")
        self.dataset_size = int(dataset_size)
        self.seed = int(seed)
        self.shuffle = bool(shuffle)
        self._epoch: Optional[Tuple[int, KeyedPermutation]] = None

    def _permutation(self, epoch: int) -> KeyedPermutation:
        if self._epoch is None or self._epoch[0] != epoch:
            self._epoch = (epoch, KeyedPermutation(self.dataset_size, self.seed, epoch))
        return self._epoch[1]

    def __getitem__(self, sample: int) -> int:
        epoch, offset = divmod(int(sample), self.dataset_size)
        if not self.shuffle:
            return offset
        return self._permutation(epoch)[offset]

    def take(self, start: int, count: int) -> List[int]:
        """Dataset indices of samples ``start .. start + count - 1``."""
        return [self[sample] for sample in range(int(start), int(start) + int(count))]


def check_order_state(order: GlobalSampleOrder, state_dict: Dict[str, Any]) -> None:
    """Raise unless a saved indexed-data position (``state_dict``) keeps ``order``.

    Shared by :class:`SeesawDataLoader` and the public batch sampler, whose positions are
    interchangeable (the same global stream).
    """
    kind = state_dict.get("kind", "indexed")
    if kind != "indexed":
        raise SeesawConfigError(
            f"the checkpoint's training data was {kind} (drawn from an iterator) but this run "
            "reads a map-style dataset by index: resume with the same kind of training_data."
        )
    saved_order = state_dict.get("sample_order", "numpy-default_rng")
    if order.shuffle and saved_order != SAMPLE_ORDER_VERSION:
        raise SeesawConfigError(
            f"the checkpoint's sample order is {saved_order!r} but this version shuffles "
            f"with {SAMPLE_ORDER_VERSION!r}: resuming would change the sample order; "
            "resume with the seesaw-ds version that wrote the checkpoint, or accept the "
            "new order with allow_plan_change=True (seesaw_ds.train --allow-plan-change)."
        )
    for key, now in (
        ("data_seed", order.seed),
        ("dataset_size", order.dataset_size),
        ("shuffle", order.shuffle),
    ):
        if state_dict.get(key, now) != now:
            field = "seesaw.data_seed" if key == "data_seed" else f"training_data {key}"
            raise SeesawConfigError(
                f"{field} is {now!r} but the checkpoint was trained with "
                f"{state_dict[key]!r}: resuming would change the sample order; use the "
                "original value."
            )


def order_state(order: GlobalSampleOrder, consumed_samples: int, micro: int) -> Dict[str, Any]:
    """The saved position of an indexed-data reader (what :func:`check_order_state` reads)."""
    return {
        "consumed_samples": int(consumed_samples),
        "micro": int(micro),
        "data_seed": order.seed,
        "dataset_size": order.dataset_size,
        "shuffle": order.shuffle,
        "sample_order": SAMPLE_ORDER_VERSION,
    }


class SeesawBatchSampler:
    """Per-rank micro-batches of dataset indices, following the plan (a ``batch_sampler``).

    Args:
        plan: the run's plan (batch and micro-batch per step).
        order: the global sample order.
        dp_rank / dp_size: this rank and the data-parallel size.
        start_samples: consumed samples at the start of the first window yielded.
        start_micro: micro-batches of that window already consumed.
    """

    def __init__(
        self,
        plan: Plan,
        order: GlobalSampleOrder,
        dp_rank: int,
        dp_size: int,
        start_samples: int = 0,
        start_micro: int = 0,
    ) -> None:
        if not 0 <= dp_rank < dp_size:
            raise SeesawConfigError(f"dp_rank = {dp_rank} must lie in [0, {dp_size}).")
        if dp_size != plan.dp_size:
            raise SeesawConfigError(
                f"data-parallel size {dp_size} != the plan's {plan.dp_size}: build the plan "
                "for the ranks that train."
            )
        self.plan, self.order = plan, order
        self.dp_rank, self.dp_size = dp_rank, dp_size
        self.start_samples, self.start_micro = int(start_samples), int(start_micro)

    def micro_indices(self, window_start: int, micro: int, micro_batch: int) -> List[int]:
        offset = window_start + (micro * self.dp_size + self.dp_rank) * micro_batch
        return self.order.take(offset, micro_batch)

    def windows(self) -> Iterator[Tuple[int, int, int, int]]:
        """(window_start, first micro, micro_batch, grad_accum) from the start position."""
        start, micro = self.start_samples, self.start_micro
        seq = self.plan.seq_length
        while not self.plan.is_finished(start * seq):
            setting = self.plan.at_samples(start)
            if micro < setting.grad_accum:
                yield start, micro, setting.micro_batch, setting.grad_accum
            start += setting.global_batch
            micro = 0

    def __iter__(self) -> Iterator[List[int]]:
        for start, first, micro_batch, accum in self.windows():
            for micro in range(first, accum):
                yield self.micro_indices(start, micro, micro_batch)

    def __len__(self) -> int:
        return sum(accum - first for _, first, _, accum in self.windows())


class SeesawDataLoader:
    """Iterates this rank's micro-batches of the run, in plan order, resumably.

    Each item is ``collate_fn([dataset[i] for i in micro-batch indices])`` (default:
    ``torch.utils.data.default_collate``, so dict items give dict batches). The loop is the
    plain DeepSpeed one: ``for batch in loader: loss = engine(batch); engine.backward(loss);
    engine.step()``; iteration ends when the plan's tokens are consumed.

    Args:
        dataset: a map-style dataset (``__len__`` and ``__getitem__``).
        plan: the run's plan.
        dp_rank / dp_size: this rank and the data-parallel size.
        data_seed: seed of the global sample order (``seesaw.data_seed``).
        collate_fn: merges a list of items into a batch.
        shuffle: False keeps dataset order (epochs repeat it).
        num_workers / pin_memory: passed to a ``torch.utils.data.DataLoader`` when
            ``num_workers > 0`` (workers prefetch; the position counts delivered batches).
        state: the engine's clock; when given, every window start is checked against it,
            so a loop that skips ``engine.step()`` fails loudly instead of drifting.

    Note:
        Iterating again continues from the current position (the stream is one pass over
        the plan, not an epoch); ``set_position`` or ``load_state_dict`` move it. Assigning
        ``loader.plan`` between optimizer steps (``engine.seesaw.replace_plan``) takes
        effect from the next window.
    """

    def __init__(
        self,
        dataset: Any,
        plan: Plan,
        dp_rank: int = 0,
        dp_size: int = 1,
        data_seed: int = 1234,
        collate_fn: Optional[Callable] = None,
        shuffle: bool = True,
        num_workers: int = 0,
        pin_memory: bool = False,
        state: Optional[SeesawState] = None,
    ) -> None:
        if not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
            raise SeesawConfigError(
                "training_data must be a map-style dataset (with __len__ and __getitem__): "
                "the Seesaw loader addresses samples by index to keep one global order."
            )
        self.dataset = dataset
        self.plan = plan
        self.dp_rank, self.dp_size = int(dp_rank), int(dp_size)
        self.order = GlobalSampleOrder(len(dataset), data_seed, shuffle)
        self.collate_fn = collate_fn
        self.num_workers, self.pin_memory = int(num_workers), bool(pin_memory)
        self.state = state
        self._window_start = state.consumed_samples if state is not None else 0
        self._micro = 0
        SeesawBatchSampler(plan, self.order, self.dp_rank, self.dp_size)  # validate ranks

    # ---- position ---------------------------------------------------------------------------

    @property
    def position(self) -> Tuple[int, int]:
        """(consumed samples at the current window start, micro-batches delivered in it)."""
        return self._window_start, self._micro

    def set_position(self, consumed_samples: int, micro: int = 0) -> None:
        self._window_start, self._micro = int(consumed_samples), int(micro)

    def state_dict(self) -> Dict[str, Any]:
        return order_state(self.order, self._window_start, self._micro)

    def check_state_dict(self, state_dict: Dict[str, Any]) -> None:
        """Raise unless resuming ``state_dict`` keeps the sample order (seed, size, version)."""
        check_order_state(self.order, state_dict)

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        """Resume at the saved sample; the order (seed, dataset size) must be the same."""
        self.check_state_dict(state_dict)
        self.set_position(state_dict["consumed_samples"], state_dict.get("micro", 0))

    def samples(self, start: int, count: int) -> Any:
        """Samples ``start .. start + count - 1`` of the run's stream as one collated batch
        (whichever rank they belong to; the loader's position does not move)."""
        collate = self.collate_fn
        if collate is None:
            from torch.utils.data import default_collate as collate
        return collate([self.dataset[i] for i in self.order.take(start, count)])

    # ---- iteration -------------------------------------------------------------------------

    def sampler(self) -> SeesawBatchSampler:
        """The batch sampler from the current position."""
        start, micro = self.position
        return SeesawBatchSampler(self.plan, self.order, self.dp_rank, self.dp_size, start, micro)

    def __len__(self) -> int:
        """Micro-batches this rank still has to deliver."""
        return len(self.sampler())

    def _batches(self) -> Iterator[Any]:
        sampler = self.sampler()
        if self.num_workers > 0:
            import torch.utils.data

            yield from torch.utils.data.DataLoader(
                self.dataset, batch_sampler=sampler, collate_fn=self.collate_fn,
                num_workers=self.num_workers, pin_memory=self.pin_memory,
            )
            return
        collate = self.collate_fn
        if collate is None:
            from torch.utils.data import default_collate as collate
        for indices in sampler:
            yield collate([self.dataset[i] for i in indices])

    def __iter__(self) -> Iterator[Any]:
        while True:
            plan = self.plan
            for batch in self._batches():
                if self._micro == 0:
                    self._check_in_step()
                self._advance()
                yield batch
                if self.plan is not plan:
                    break  # plan replaced between steps: restart from the position
            else:
                return

    def _advance(self) -> None:
        setting = self.plan.at_samples(self._window_start)
        self._micro += 1
        if self._micro >= setting.grad_accum:
            self._window_start += setting.global_batch
            self._micro = 0

    def _check_in_step(self) -> None:
        state = self.state
        if state is not None and state.consumed_samples != self._window_start:
            raise RuntimeError(
                f"SeesawDataLoader is at sample {self._window_start} but the engine has "
                f"consumed {state.consumed_samples}: call engine.step() once after every "
                "engine.backward(), and do not consume the loader ahead of the engine."
            )
