"""Is a prepared folder still what ``prepare`` wrote? Checked before training reads it.

The manifest only records file sizes, so a damaged ``.idx`` of the right size, or a ``.bin``
holding token ids past the vocabulary, used to surface mid-run as a traceback (an index
error in the embedding, or a crash in megatron-core's reader). This reads the ``.idx``
header and arrays itself (megatron-core's ``MMIDIDX`` format, version 1), checks them
against the ``.bin`` size and the manifest, and scans the ``.bin`` for the largest token id.

The verdict is cached (``cache/verified.json``: size and modification time of both files),
so an unchanged folder is scanned once; the scan reads the ``.bin`` once (about 1 s/GB).
"""

from __future__ import annotations

import json
import os
from typing import Optional

import numpy

from seesaw_ds.atomic_files import write_json_atomic
from seesaw_ds.data.prepare import PreparedData
from seesaw_ds.errors import SeesawConfigError

__all__ = ["verify_prepared"]

_MAGIC = b"MMIDIDX\x00\x00"
_DTYPES = {1: numpy.uint8, 2: numpy.int8, 3: numpy.int16, 4: numpy.int32, 5: numpy.int64,
           6: numpy.float64, 7: numpy.float32, 8: numpy.uint16}
_CACHE_NAME = "verified.json"
_CHUNK = 1 << 24  # tokens per scan chunk


def _stamp(path: str) -> list:
    stat = os.stat(path)
    return [stat.st_size, stat.st_mtime_ns]


def _damaged(path: str, what: str, prepared: PreparedData) -> SeesawConfigError:
    return SeesawConfigError(
        f"data: {path} {what}: the prepared data is damaged; prepare it again with "
        f"`seesaw-ds prepare --out {prepared.out_dir} --force` (same inputs and options).")


def _index_problem(idx: bytes, bin_size: int, prepared: PreparedData) -> Optional[str]:
    header = len(_MAGIC) + 8 + 1 + 8 + 8
    if len(idx) < header or idx[:len(_MAGIC)] != _MAGIC:
        return "is not a megatron-core index (bad header)"
    version = int.from_bytes(idx[9:17], "little")
    code = idx[17]
    sequences = int.from_bytes(idx[18:26], "little")
    documents = int.from_bytes(idx[26:34], "little")
    if version != 1 or code not in _DTYPES:
        return f"has an unknown version {version} or dtype code {code}"
    if len(idx) != header + 12 * sequences + 8 * documents:
        return (f"has {len(idx)} bytes, not the {header + 12 * sequences + 8 * documents} its "
                f"header implies")
    lengths = numpy.frombuffer(idx, numpy.int32, sequences, header)
    pointers = numpy.frombuffer(idx, numpy.int64, sequences, header + 4 * sequences)
    docs = numpy.frombuffer(idx, numpy.int64, documents, header + 12 * sequences)
    itemsize = numpy.dtype(_DTYPES[code]).itemsize
    expected = numpy.concatenate([[0], numpy.cumsum(lengths[:-1], dtype=numpy.int64)]) \
        * itemsize if sequences else pointers
    if (lengths < 0).any() or not numpy.array_equal(pointers, expected):
        return "has sequence lengths and offsets that disagree"
    if int(lengths.sum(dtype=numpy.int64)) * itemsize != bin_size:
        return "does not match the size of its .bin"
    if documents < 1 or docs[0] != 0 or docs[-1] != sequences or (numpy.diff(docs) < 0).any():
        return "has a broken document index"
    if sequences != prepared.num_documents or int(lengths.sum()) != prepared.num_tokens:
        return (f"holds {sequences} documents / {int(lengths.sum())} tokens, the manifest "
                f"{prepared.num_documents} / {prepared.num_tokens}")
    return None


def verify_prepared(prepared: PreparedData, write_cache: bool = True) -> None:
    """Raise one :class:`SeesawConfigError` naming the damaged file and the fix, unless the
    ``.idx`` matches its ``.bin`` and the manifest and every token id is below
    ``prepared.vocab_size``. ``write_cache``: remember a good verdict (one writer only)."""
    idx_path, bin_path = prepared.data_prefix + ".idx", prepared.data_prefix + ".bin"
    cache = os.path.join(prepared.cache_dir, _CACHE_NAME)
    stamps = {"idx": _stamp(idx_path), "bin": _stamp(bin_path)}
    try:
        with open(cache, encoding="utf-8") as handle:
            if json.load(handle) == stamps:
                return
    except (OSError, ValueError):
        pass
    with open(idx_path, "rb") as handle:
        idx = handle.read()
    problem = _index_problem(idx, stamps["bin"][0], prepared)
    if problem is not None:
        raise _damaged(idx_path, problem, prepared)
    tokens = numpy.memmap(bin_path, dtype=_DTYPES[idx[17]], mode="r")
    for start in range(0, len(tokens), _CHUNK):
        chunk = tokens[start:start + _CHUNK]
        top = int(chunk.max())
        if top >= prepared.vocab_size or int(chunk.min()) < 0:
            where = start + int(numpy.argmax((chunk >= prepared.vocab_size) | (chunk < 0)))
            raise _damaged(bin_path, f"holds token id {int(tokens[where])} at token {where}, "
                           f"outside the vocabulary of {prepared.vocab_size}", prepared)
    del tokens
    if write_cache:
        os.makedirs(prepared.cache_dir, exist_ok=True)
        write_json_atomic(cache, stamps)
