"""Run Megatron-LM's ``tools/preprocess_data.py`` unchanged (``runpy``) on the installed
megatron-core, for ``bench/prepare_throughput.py``.

The checkout's ``megatron.core`` (main) imports triton and CUDA-only modules, so the script's
two megatron imports are served here instead: ``build_tokenizer`` is the checkout's own file
(``megatron/core/tokenizers/utils/build_tokenizer.py``) loaded over the installed
``megatron.core.tokenizers``, and ``_add_tokenizer_args`` adds the tokenizer flags that
function reads. Everything the benchmark measures (reading, the worker pool, per-document
tokenization, ``IndexedDatasetBuilder``) is the script's own code.

Usage: ``python bench/_megatron_preprocess.py MEGATRON_LM_DIR [preprocess_data.py flags]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import runpy
import sys
import types
import warnings


def _install(megatron_lm: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import megatron.core.tokenizers  # noqa: F401  (the installed one)
    utils = types.ModuleType("megatron.core.tokenizers.utils")
    utils.__path__ = []
    sys.modules.setdefault("megatron.core.tokenizers.utils", utils)
    path = os.path.join(megatron_lm, "megatron", "core", "tokenizers", "utils",
                        "build_tokenizer.py")
    spec = importlib.util.spec_from_file_location(
        "megatron.core.tokenizers.utils.build_tokenizer", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)

    def _add_tokenizer_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        group = parser.add_argument_group(title="tokenizer")
        group.add_argument("--tokenizer-type", required=True)
        group.add_argument("--tokenizer-model", default=None)
        group.add_argument("--vocab-file", default=None)
        group.add_argument("--merge-file", default=None)
        group.add_argument("--vocab-size", type=int, default=None)
        parser.set_defaults(special_tokens=None, chat_template=None, metadata_path=None,
                            tokenizer_sentencepiece_ignore_extra_whitespaces=False,
                            tokenizer_sentencepiece_legacy=False, pad_vocab_size=False)
        return parser

    training = types.ModuleType("megatron.training")
    training.__path__ = []
    arguments = types.ModuleType("megatron.training.arguments")
    arguments._add_tokenizer_args = _add_tokenizer_args
    sys.modules.setdefault("megatron.training", training)
    sys.modules["megatron.training.arguments"] = arguments


if __name__ == "__main__":
    megatron_lm = sys.argv[1]
    _install(megatron_lm)
    script = os.path.join(megatron_lm, "tools", "preprocess_data.py")
    sys.argv = [script] + sys.argv[2:]
    runpy.run_path(script, run_name="__main__")
