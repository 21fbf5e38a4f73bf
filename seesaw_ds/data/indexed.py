"""Tokenize documents into a megatron-core indexed dataset (``PREFIX.bin`` + ``PREFIX.idx``).

Each document becomes one sequence of token ids followed by the tokenizer's ``eod`` id,
which is the layout megatron-core's ``GPTDataset`` splits and packs. The files are the ones
megatron-core's ``IndexedDatasetBuilder`` writes for the same documents, byte for byte.

Tokenization runs in ``workers`` processes (:mod:`seesaw_ds.data.parallel`); chunks of
documents are written back in input order, so the output is identical for any ``workers``.

Note:
    Memory is bounded whatever the corpus size: the token ids go straight to ``.bin``, and
    the per-document lengths to a temporary file from which ``.idx`` is written at the end
    in blocks (megatron-core's builder keeps a Python list of them: ~40 bytes a document).
    Both files are written under temporary names and moved into place with ``os.replace``
    (``.bin`` first, then ``.idx``), so a crash never leaves a half-written pair behind
    the final names.
"""

from __future__ import annotations

import os
import struct
from itertools import chain
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, List, Optional

import numpy

from seesaw_ds.data.parallel import ordered_map
from seesaw_ds.data.tokenizer import SentencePieceTokenizer

__all__ = ["IndexedStats", "write_indexed_dataset", "document_lengths", "index_dtype",
           "CHUNK_TEXT_BYTES"]

_INDEX_HEADER = b"MMIDIDX\x00\x00"  # megatron-core's indexed_dataset._INDEX_HEADER, version 1
_DTYPE_CODES = {numpy.uint8: 1, numpy.int8: 2, numpy.int16: 3, numpy.int32: 4, numpy.int64: 5,
                numpy.float64: 6, numpy.float32: 7, numpy.uint16: 8}
_BLOCK = 1 << 20  # documents per block when writing .idx
CHUNK_TEXT_BYTES = 256 * 1024  # text per task sent to a worker
_CHUNK_DOCUMENTS = 4096


@dataclass(frozen=True)
class IndexedStats:
    """Size of a written indexed dataset; ``num_tokens`` counts the eod ids too."""

    num_documents: int
    num_tokens: int


def index_dtype(vocab_size: int):
    """The token dtype megatron-core uses for ``vocab_size`` (``DType.optimal_dtype``)."""
    return numpy.uint16 if vocab_size is not None and vocab_size < 65500 else numpy.int32


def _chunks(documents: Iterable[str], max_bytes: int) -> Iterator[List[str]]:
    chunk: List[str] = []
    size = 0
    for document in documents:
        chunk.append(document)
        size += len(document)
        if size >= max_bytes or len(chunk) >= _CHUNK_DOCUMENTS:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


class _Encoder:
    """Picklable task for a worker: a chunk of texts -> (flat ids with eod, lengths)."""

    def __init__(self, tokenizer: SentencePieceTokenizer, dtype) -> None:
        self.tokenizer, self.dtype = tokenizer, dtype

    def __call__(self, texts: List[str]):
        ids = self.tokenizer.tokenize_batch(texts, num_threads=1)
        eod = self.tokenizer.eod
        for sequence in ids:
            sequence.append(eod)
        lengths = numpy.fromiter(map(len, ids), dtype=numpy.int32, count=len(ids))
        flat = numpy.array(list(chain.from_iterable(ids)), dtype=self.dtype)
        return flat, lengths


def _write_index(idx_path: str, lengths_path: str, count: int, dtype) -> None:
    """``.idx`` as megatron-core's ``_IndexWriter`` writes it, reading the lengths in blocks."""
    itemsize = numpy.dtype(dtype).itemsize
    with open(idx_path, "wb") as out, open(lengths_path, "rb") as lengths_file:
        out.write(_INDEX_HEADER)
        out.write(struct.pack("<Q", 1))
        out.write(struct.pack("<B", _DTYPE_CODES[dtype]))
        out.write(struct.pack("<Q", count))  # sequences
        out.write(struct.pack("<Q", count + 1))  # document indices
        while block := lengths_file.read(4 * _BLOCK):
            out.write(block)
        lengths_file.seek(0)
        offset = 0
        while block := lengths_file.read(4 * _BLOCK):
            lengths = numpy.frombuffer(block, dtype=numpy.int32).astype(numpy.int64)
            pointers = numpy.empty_like(lengths)
            pointers[0] = offset
            numpy.cumsum(lengths[:-1] * itemsize, out=pointers[1:])
            pointers[1:] += offset
            offset += int(lengths.sum()) * itemsize
            out.write(pointers.tobytes())
        for start in range(0, count + 1, _BLOCK):
            out.write(numpy.arange(start, min(start + _BLOCK, count + 1), dtype=numpy.int64)
                      .tobytes())


def write_indexed_dataset(
    documents: Iterable[str],
    tokenizer: SentencePieceTokenizer,
    prefix: str,
    workers: int = 1,
    on_chunk: Optional[Callable[[int, int], None]] = None,
    chunk_bytes: int = CHUNK_TEXT_BYTES,
) -> IndexedStats:
    """Tokenize ``documents`` (appending eod to each) into ``prefix.bin``/``prefix.idx``.

    ``workers`` processes tokenize (1: this process); ``on_chunk(documents, tokens)`` is
    called after each written chunk with the running totals (progress reports).
    """
    dtype = index_dtype(tokenizer.vocab_size)
    tmp_prefix = f"{prefix}.tmp-{os.getpid()}"
    bin_path, idx_path = f"{tmp_prefix}.bin", f"{tmp_prefix}.idx"
    lengths_path = f"{tmp_prefix}.lengths"
    num_documents = num_tokens = 0
    try:
        with open(bin_path, "wb") as bin_file, open(lengths_path, "wb") as lengths_file:
            results = ordered_map(_Encoder(tokenizer, dtype), _chunks(documents, chunk_bytes),
                                  workers)
            for flat, lengths in results:
                bin_file.write(flat.tobytes())
                lengths_file.write(lengths.tobytes())
                num_documents += len(lengths)
                num_tokens += len(flat)
                if on_chunk is not None:
                    on_chunk(num_documents, num_tokens)
        _write_index(idx_path, lengths_path, num_documents, dtype)
    except BaseException:
        for path in (bin_path, idx_path):
            if os.path.exists(path):
                os.remove(path)
        raise
    finally:
        if os.path.exists(lengths_path):
            os.remove(lengths_path)
    os.replace(bin_path, f"{prefix}.bin")
    os.replace(idx_path, f"{prefix}.idx")
    return IndexedStats(num_documents, num_tokens)


def document_lengths(prefix: str) -> numpy.ndarray:
    """Token count of every document (sequence) of the indexed dataset at ``prefix``: a
    read-only int32 memory map of the ``.idx`` (nothing is copied, so a C4-sized index of
    hundreds of millions of documents costs no memory)."""
    with open(f"{prefix}.idx", "rb") as handle:
        header = handle.read(len(_INDEX_HEADER) + 8 + 1 + 8)
    if header[:len(_INDEX_HEADER)] != _INDEX_HEADER:
        raise ValueError(f"{prefix}.idx is not a megatron-core index")
    (count,) = struct.unpack("<Q", header[-8:])
    if count == 0:
        return numpy.zeros(0, dtype=numpy.int32)
    return numpy.memmap(f"{prefix}.idx", dtype=numpy.int32, mode="r",
                        offset=len(_INDEX_HEADER) + 8 + 1 + 8 + 8, shape=(count,))
