"""Train on data someone already tokenized for Megatron-LM: ``.bin``/``.idx`` prefixes, one or
a weighted blend, with the tokenizer that wrote them.

``paths`` follows Megatron-LM's ``--data-path``: ``[w1, prefix1, w2, prefix2, ...]`` (a
weighted blend), ``[prefix1, prefix2, ...]`` (blended by size) or ``[prefix]``. The
tokenizer is our sentencepiece ``.model`` file (``tokenizer_model``) or a Hugging Face
tokenizer name or folder (``hf_tokenizer``; needs ``transformers``; read from the local
files or cache only, never downloaded).

Note:
    :func:`open_blend` checks everything cheap before training starts: every ``.bin`` and
    ``.idx`` exists, the token dtype each ``.idx`` records is the one megatron-core writes
    for this tokenizer's vocabulary (uint16 below 65500 ids, int32 above), and the first
    and last ids of every ``.bin`` (up to a million each) are below the vocabulary size the
    model is built with. A mismatch is one :class:`SeesawConfigError` line.
"""

from __future__ import annotations

import os
import struct
from collections import OrderedDict
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy

from seesaw_ds.data.indexed import index_dtype
from seesaw_ds.errors import SeesawConfigError

__all__ = ["parse_blend", "HFTokenizer", "load_blend_tokenizer", "MegatronBlend", "open_blend",
           "idx_dtype"]

_IDX_DTYPES = {1: numpy.uint8, 2: numpy.int8, 3: numpy.int16, 4: numpy.int32, 5: numpy.int64,
               6: numpy.float64, 7: numpy.float32, 8: numpy.uint16}
_SAMPLE_TOKENS = 1_000_000


def _number(value) -> Optional[float]:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def parse_blend(paths: Sequence) -> Tuple[List[str], Optional[List[float]]]:
    """``(prefixes, weights)`` of a Megatron-style ``paths`` list (weights None: by size).

    Raises:
        SeesawConfigError: not a list of prefixes, or of alternating weight, prefix.
    """
    usage = ("must be a list of Megatron data prefixes, [prefix] or [weight1, prefix1, "
             "weight2, prefix2, ...] (a prefix names PREFIX.bin and PREFIX.idx)")
    if not isinstance(paths, (list, tuple)) or not paths:
        raise SeesawConfigError(f"data.paths = {paths!r} {usage}.")
    weighted = len(paths) % 2 == 0 and _number(paths[0]) is not None
    if weighted:
        weights = [_number(value) for value in paths[0::2]]
        prefixes = list(paths[1::2])
        if any(weight is None or weight < 0 for weight in weights) or sum(weights) <= 0:
            raise SeesawConfigError(
                f"data.paths = {paths!r}: weights {paths[0::2]!r} must be numbers >= 0 with a "
                f"positive sum; it {usage}.")
    else:
        weights, prefixes = None, list(paths)
    for prefix in prefixes:
        if not isinstance(prefix, str) or not prefix or _number(prefix) is not None:
            raise SeesawConfigError(f"data.paths = {paths!r}: {prefix!r} is not a prefix; it "
                                    f"{usage}.")
    return [os.path.abspath(os.path.expanduser(prefix)) for prefix in prefixes], weights


class HFTokenizer:
    """A Hugging Face tokenizer with what megatron-core's ``GPTDataset`` reads: ``vocab_size``
    (``len(tokenizer)``, added tokens included), ``eod`` (its eos id), ``unique_identifiers``."""

    def __init__(self, name_or_path: str) -> None:
        try:
            from transformers import AutoTokenizer
        except ImportError:
            raise SeesawConfigError(
                f"data.hf_tokenizer = {name_or_path!r} needs transformers: pip install "
                "'seesaw-ds[hf]' (or give a sentencepiece model as data.tokenizer_model)."
            ) from None
        try:
            self._tokenizer = AutoTokenizer.from_pretrained(name_or_path, local_files_only=True)
        except (OSError, ValueError) as error:
            raise SeesawConfigError(
                f"data.hf_tokenizer = {name_or_path!r} is not a tokenizer folder nor one in the "
                f"local Hugging Face cache (nothing is downloaded): {str(error).splitlines()[0]}"
            ) from None
        self.name = name_or_path
        if self._tokenizer.eos_token_id is None:
            raise SeesawConfigError(
                f"data.hf_tokenizer = {name_or_path!r} has no eos token to end documents with; "
                "use the tokenizer the data was prepared with.")

    @property
    def vocab_size(self) -> int:
        return len(self._tokenizer)

    @property
    def eod(self) -> int:
        return int(self._tokenizer.eos_token_id)

    @property
    def unique_identifiers(self) -> "OrderedDict[str, object]":
        return OrderedDict([("class", type(self).__name__), ("name", self.name),
                            ("vocab_size", self.vocab_size)])

    def tokenize(self, text: str) -> List[int]:
        return self._tokenizer(text, add_special_tokens=False)["input_ids"]

    def detokenize(self, ids: Sequence[int]) -> str:
        return self._tokenizer.decode([int(i) for i in ids])


def load_blend_tokenizer(tokenizer_model: Optional[str], hf_tokenizer: Optional[str]):
    """Exactly one of a sentencepiece model file and a Hugging Face tokenizer."""
    if (tokenizer_model is None) == (hf_tokenizer is None):
        raise SeesawConfigError(
            "data.paths needs the tokenizer the data was written with: set exactly one of "
            "data.tokenizer_model (a sentencepiece .model) and data.hf_tokenizer (a Hugging "
            "Face tokenizer name or folder).")
    if tokenizer_model is not None:
        from seesaw_ds.data.tokenizer import load_tokenizer

        return load_tokenizer(tokenizer_model)
    return HFTokenizer(hf_tokenizer)


def idx_dtype(prefix: str):
    """The token dtype recorded in ``prefix.idx`` (its header, read without megatron-core)."""
    with open(f"{prefix}.idx", "rb") as handle:
        header = handle.read(9 + 8 + 1)
    if len(header) < 18 or header[:9] != b"MMIDIDX\x00\x00":
        raise SeesawConfigError(f"data.paths: {prefix}.idx is not a megatron-core index file.")
    (version,) = struct.unpack("<Q", header[9:17])
    code = header[17]
    if version != 1 or code not in _IDX_DTYPES:
        raise SeesawConfigError(
            f"data.paths: {prefix}.idx has version {version}, dtype code {code}: not a "
            "megatron-core index this version reads.")
    return _IDX_DTYPES[code]


def _sampled_max(prefix: str, dtype) -> int:
    data = numpy.memmap(f"{prefix}.bin", dtype=dtype, mode="r")
    if len(data) == 0:
        return -1
    head, tail = data[:_SAMPLE_TOKENS], data[-_SAMPLE_TOKENS:]
    return int(max(head.max(), tail.max()))


def _check_prefix(prefix: str, tokenizer, tokenizer_name: str) -> None:
    for suffix in (".bin", ".idx"):
        if not os.path.isfile(prefix + suffix):
            raise SeesawConfigError(
                f"data.paths: {prefix}{suffix} does not exist; a prefix names PREFIX.bin and "
                "PREFIX.idx (Megatron-LM's --output-prefix plus _text_document).")
    vocab = tokenizer.vocab_size
    dtype, expected = idx_dtype(prefix), index_dtype(vocab)
    if dtype != expected:
        written = "below 65500" if dtype == numpy.uint16 else "of 65500 or more"
        raise SeesawConfigError(
            f"data.paths: {prefix}.idx stores {numpy.dtype(dtype).name} token ids (written "
            f"for a vocabulary {written}) but {tokenizer_name} has {vocab} ids "
            f"({numpy.dtype(expected).name}): the data was tokenized with another tokenizer; "
            "give the one that wrote it.")
    largest = _sampled_max(prefix, dtype)
    if largest >= vocab:
        raise SeesawConfigError(
            f"data.paths: {prefix}.bin holds token id {largest}, outside {tokenizer_name}'s "
            f"vocabulary of {vocab} (the model's embedding size): the data was tokenized with "
            "another tokenizer; give the one that wrote it.")


@dataclass(frozen=True)
class MegatronBlend:
    """Existing Megatron data and its tokenizer, as ``build_gpt_datasets`` takes them."""

    prefixes: Tuple[str, ...]
    weights: Optional[Tuple[float, ...]]
    tokenizer_model: Optional[str]
    hf_tokenizer: Optional[str]
    cache_dir: str
    vocab_size: int
    eod: int

    @property
    def blend(self) -> Tuple[List[str], Optional[List[float]]]:
        return list(self.prefixes), None if self.weights is None else list(self.weights)

    @property
    def where(self) -> str:
        return "data.paths"

    def load_tokenizer(self):
        return load_blend_tokenizer(self.tokenizer_model, self.hf_tokenizer)


def open_blend(paths: Sequence, tokenizer_model: Optional[str], hf_tokenizer: Optional[str],
               cache_dir: str) -> MegatronBlend:
    """Parse and check ``paths`` against the tokenizer (module note); cheap.

    Raises:
        SeesawConfigError: a bad list, a missing file, no or two tokenizers, a vocabulary
            that does not fit the data.
    """
    prefixes, weights = parse_blend(paths)
    tokenizer = load_blend_tokenizer(tokenizer_model, hf_tokenizer)
    name = (f"data.tokenizer_model {tokenizer_model}" if tokenizer_model is not None
            else f"data.hf_tokenizer {hf_tokenizer!r}")
    for prefix in prefixes:
        _check_prefix(prefix, tokenizer, name)
    return MegatronBlend(tuple(prefixes), None if weights is None else tuple(weights),
                         tokenizer_model, hf_tokenizer, os.path.abspath(cache_dir),
                         tokenizer.vocab_size, tokenizer.eod)
