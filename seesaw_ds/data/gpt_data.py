"""megatron-core ``GPTDataset`` train/valid splits over a prepared folder, or over existing
Megatron data (one prefix or a weighted blend: :mod:`seesaw_ds.data.megatron_blend`).

Items are dicts with ``tokens`` and ``labels`` (int64, length ``seq_length``, labels
shifted by one), plus megatron's ``loss_mask`` and ``position_ids``.

Note:
    Distributed use: call :func:`build_gpt_datasets` on every rank. When a process group
    is initialized, megatron-core's builder builds each split's index cache on rank 0,
    barriers on the default group, then lets the other ranks read the cache; this only
    works when every rank builds (our ``is_built_on_rank`` is always True) and no rank
    fails alone, which is why all checks here run identically on every rank first.

Limitations:
    megatron-core loops forever (``GPTDataset._get_num_epochs``) when a split with no
    documents is asked for a sample count, and silently yields an empty dataset when a
    split has fewer than ``seq_length + 1`` tokens; :func:`check_split` refuses both
    before the builder is called.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence, Tuple, Union

import numpy
import torch

from seesaw_ds.data._megatron import BlendedMegatronDatasetBuilder, GPTDataset, GPTDatasetConfig
from seesaw_ds.data.indexed import document_lengths
from seesaw_ds.data.prepare import PreparedData, load_prepared
from seesaw_ds.errors import SeesawConfigError

if TYPE_CHECKING:
    from seesaw_ds.data.megatron_blend import MegatronBlend

__all__ = ["SplitInfo", "check_split", "build_gpt_datasets", "fixed_validation_batches"]

_SPLIT_NAMES = ("train", "valid", "test")
_SPLIT_FORMAT = re.compile(r"^\s*\d+(\.\d*)?\s*(,\s*\d+(\.\d*)?\s*){0,2}$")


@dataclass(frozen=True)
class SplitInfo:
    """Documents and tokens that one split receives."""

    name: str
    num_documents: int
    num_tokens: int


def _parse_split(split: str) -> List[float]:
    if not isinstance(split, str) or not _SPLIT_FORMAT.match(split):
        raise SeesawConfigError(
            f"split = {split!r} must be up to three comma-separated weights for "
            "train,valid,test, e.g. '98,2,0'."
        )
    weights = [float(part) for part in split.split(",")] + [0.0, 0.0]
    weights = weights[:3]
    if weights[0] <= 0 or weights[1] <= 0:
        raise SeesawConfigError(
            f"split = {split!r} must give both train and valid a positive share, e.g. '98,2,0'."
        )
    return weights


def check_split(
    lengths: Sequence[int], seq_length: int, split_matrix: Sequence[Optional[Tuple[float, float]]],
    split: str = "", where: str = "the prepared data",
) -> List[SplitInfo]:
    """Documents and tokens per used split, refusing any split that gets no full sequence.

    ``lengths`` are the token counts per document; ``split_matrix`` is megatron's
    ``GPTDatasetConfig.split_matrix`` (fractional [begin, end) per split, None if unused).
    Documents are assigned exactly as megatron-core does: ``round(fraction * count)``.

    Raises:
        SeesawConfigError: a used split has zero documents or fewer than
            ``seq_length + 1`` tokens.
    """
    count = len(lengths)
    infos = []
    for name, bounds in zip(_SPLIT_NAMES, split_matrix):
        if bounds is None:
            continue
        begin, end = (int(round(fraction * count)) for fraction in bounds)
        tokens = int(numpy.sum(lengths[begin:end], dtype=numpy.int64)) if end > begin else 0
        if end <= begin or tokens < seq_length + 1:
            raise SeesawConfigError(
                f"split = {split!r} leaves the {name} split {max(end - begin, 0)} of {count} "
                f"documents ({tokens} tokens) in {where}, less than one sequence of "
                f"seq_length + 1 = {seq_length + 1} tokens. Give {name} a larger share "
                "(e.g. split '90,10,0'), prepare more data (more inputs or a larger "
                "--max-bytes), or lower seq_length."
            )
        infos.append(SplitInfo(name, end - begin, tokens))
    return infos


def _positive_or_none(name: str, value: Optional[int]) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise SeesawConfigError(f"{name} = {value!r} must be a positive integer or None.")


def build_gpt_datasets(
    prepared: Union[PreparedData, "MegatronBlend", str],
    seq_length: int,
    split: str = "98,2,0",
    seed: int = 1234,
    train_samples: Optional[int] = None,
    valid_samples: Optional[int] = None,
    cache_dir: Optional[str] = None,
) -> Tuple[GPTDataset, GPTDataset]:
    """Train and valid ``GPTDataset`` of ``seq_length`` tokens per item.

    ``train_samples``/``valid_samples`` of None give one epoch of their split; a larger
    number repeats the split's documents (megatron reshuffles every epoch). The shuffle
    depends only on the prepared data, ``seq_length``, ``split`` and ``seed``.

    A weighted blend (:class:`~seesaw_ds.data.megatron_blend.MegatronBlend`) needs both
    sample counts (megatron-core sizes each prefix's share from them); its train items
    come from the prefixes in the proportions of the weights.
    """
    if isinstance(prepared, str):
        prepared = load_prepared(prepared)
    if isinstance(seq_length, bool) or not isinstance(seq_length, int) or seq_length < 1:
        raise SeesawConfigError(f"seq_length = {seq_length!r} must be a positive integer.")
    _positive_or_none("train_samples", train_samples)
    _positive_or_none("valid_samples", valid_samples)
    _parse_split(split)
    prefixes, weights = prepared.blend
    if weights is not None and (train_samples is None or valid_samples is None):
        raise SeesawConfigError(
            "a weighted blend needs train_samples and valid_samples (megatron-core sizes "
            "each prefix's share from them).")
    tokenizer = prepared.load_tokenizer()
    config = GPTDatasetConfig(
        random_seed=seed,
        sequence_length=seq_length,
        blend=(prefixes, weights),
        split=split,
        # megatron-core's BlendedDataset asks torch.distributed for the rank whenever it has
        # a cache path, so without a process group a blend's indices are built in memory
        path_to_cache=(None if weights is not None and not torch.distributed.is_initialized()
                       else cache_dir or prepared.cache_dir),
        tokenizer=tokenizer,
        reset_position_ids=False,
        reset_attention_mask=False,
        eod_mask_loss=False,
        create_attention_mask=False,
        num_dataset_builder_threads=1,
    )
    for prefix in prefixes:
        where = prepared.where if len(prefixes) == 1 else f"{prefix} ({prepared.where})"
        check_split(document_lengths(prefix), seq_length, config.split_matrix, split,
                    where=where)
    sizes = [train_samples, valid_samples, None if weights is None else 0]
    builder = BlendedMegatronDatasetBuilder(GPTDataset, sizes, lambda: True, config)
    train, valid, _ = builder.build()
    return train, valid


def fixed_validation_batches(
    valid_dataset: GPTDataset, batch_size: int, num_batches: int
) -> List[Dict[str, torch.Tensor]]:
    """The first ``num_batches * batch_size`` valid items, stacked into batches.

    The valid split's order is fixed by the prepared data and the dataset arguments, so
    every run that uses them evaluates on exactly the same tokens.

    Raises:
        SeesawConfigError: the valid split holds fewer items than requested.
    """
    for name, value in (("batch_size", batch_size), ("num_batches", num_batches)):
        _positive_or_none(name, value)
        if value is None:
            raise SeesawConfigError(f"{name} must be a positive integer.")
    needed = batch_size * num_batches
    if needed > len(valid_dataset):
        raise SeesawConfigError(
            f"validation needs {num_batches} batches x {batch_size} = {needed} sequences but "
            f"the valid split has {len(valid_dataset)}; lower num_batches or batch_size, or "
            "give valid a larger share of the split."
        )
    batches = []
    for start in range(0, needed, batch_size):
        items = [valid_dataset[index] for index in range(start, start + batch_size)]
        batches.append({key: torch.stack([item[key] for item in items])
                        for key in ("tokens", "labels", "loss_mask")})
    return batches
