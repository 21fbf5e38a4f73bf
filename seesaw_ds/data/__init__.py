"""Data preparation: corpus -> sentencepiece tokenizer -> megatron-core indexed dataset.

Names are exported lazily: ``import seesaw_ds.data`` stays cheap, and megatron-core
(a few seconds to import) loads only when a dataset name is first used. The
``prepare`` function is not re-exported (it shares its module's name): use
``from seesaw_ds.data.prepare import prepare``.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "Corpus": "corpus",
    "SourceFile": "corpus",
    "find_files": "corpus",
    "stdlib_files": "corpus",
    "SentencePieceTokenizer": "tokenizer",
    "TokenizerTrainConfig": "tokenizer",
    "train_tokenizer": "tokenizer",
    "load_tokenizer": "tokenizer",
    "write_indexed_dataset": "indexed",
    "split_stream": "corpus",
    "MegatronBlend": "megatron_blend",
    "open_blend": "megatron_blend",
    "PreparedData": "prepare",
    "load_prepared": "prepare",
    "build_gpt_datasets": "gpt_data",
    "check_split": "gpt_data",
    "fixed_validation_batches": "gpt_data",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
