"""Tokenize documents into a megatron-core indexed dataset (``PREFIX.bin`` + ``PREFIX.idx``).

Each document becomes one sequence of token ids followed by the tokenizer's ``eod`` id,
which is the layout megatron-core's ``GPTDataset`` splits and packs.

Note:
    Both files are written under temporary names and moved into place with ``os.replace``
    (``.bin`` first, then ``.idx``), so a crash never leaves a half-written pair behind
    the final names.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from itertools import islice
from typing import Iterable, Iterator, List, Optional

import numpy
from tqdm import tqdm

from seesaw_ds.data._megatron import (
    DType,
    IndexedDataset,
    IndexedDatasetBuilder,
    get_bin_path,
    get_idx_path,
)
from seesaw_ds.data.tokenizer import SentencePieceTokenizer

__all__ = ["IndexedStats", "write_indexed_dataset", "document_lengths"]


@dataclass(frozen=True)
class IndexedStats:
    """Size of a written indexed dataset; ``num_tokens`` counts the eod ids too."""

    num_documents: int
    num_tokens: int


def _chunks(items: Iterable[str], size: int) -> Iterator[List[str]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def write_indexed_dataset(
    documents: Iterable[str],
    tokenizer: SentencePieceTokenizer,
    prefix: str,
    total: Optional[int] = None,
    progress: bool = True,
    chunk_size: int = 64,
) -> IndexedStats:
    """Tokenize ``documents`` (appending eod to each) into ``prefix.bin``/``prefix.idx``.

    ``total`` (the document count, if known) sizes the progress bar.
    """
    dtype = DType.optimal_dtype(tokenizer.vocab_size)
    tmp_prefix = f"{prefix}.tmp-{os.getpid()}"
    builder = IndexedDatasetBuilder(get_bin_path(tmp_prefix), dtype=dtype)
    num_documents = num_tokens = 0
    bar = tqdm(total=total, desc="tokenize", unit="doc", disable=not progress)
    try:
        for chunk in _chunks(documents, chunk_size):
            for ids in tokenizer.tokenize_batch(chunk):
                ids.append(tokenizer.eod)
                builder.add_document(numpy.asarray(ids, dtype=dtype), [len(ids)])
                num_tokens += len(ids)
            num_documents += len(chunk)
            bar.update(len(chunk))
        builder.finalize(get_idx_path(tmp_prefix))
    except BaseException:
        builder.data_file.close()
        for path in (get_bin_path(tmp_prefix), get_idx_path(tmp_prefix)):
            if os.path.exists(path):
                os.remove(path)
        raise
    finally:
        bar.close()
    os.replace(get_bin_path(tmp_prefix), get_bin_path(prefix))
    os.replace(get_idx_path(tmp_prefix), get_idx_path(prefix))
    return IndexedStats(num_documents, num_tokens)


def document_lengths(prefix: str) -> numpy.ndarray:
    """Token count of every document (sequence) of the indexed dataset at ``prefix``.

    Note:
        The dataset object must outlive the copy: its ``__del__`` closes the memory map
        that ``sequence_lengths`` views (reading it afterwards crashes the process).
    """
    dataset = IndexedDataset(prefix, mmap=False)
    lengths = numpy.array(dataset.sequence_lengths, dtype=numpy.int64)
    del dataset
    return lengths
