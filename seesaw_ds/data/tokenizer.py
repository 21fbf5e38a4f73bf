"""A sentencepiece BPE tokenizer: train one deterministically, or load a ``.model``.

:class:`SentencePieceTokenizer` exposes what megatron-core's ``GPTDataset`` reads from a
tokenizer: ``vocab_size``, ``eod``, ``unique_identifiers``, plus ``tokenize``/``detokenize``.

Note:
    Text round-trips exactly (code keeps its layout): identity normalization, no
    extra-whitespace removal, no dummy prefix, and newline and tab as user symbols
    (documents are trained line by line). One thread and a fixed seed make training
    deterministic.

Limitations:
    Characters outside ``character_coverage`` map to the unknown id (no byte fallback).
"""

from __future__ import annotations

import hashlib
import io
import os
import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Iterable, Iterator, List, Sequence

import sentencepiece as spm

from seesaw_ds.errors import SeesawConfigError

__all__ = ["TokenizerTrainConfig", "SentencePieceTokenizer", "train_tokenizer", "load_tokenizer"]

_TOO_HIGH = re.compile(r"Vocabulary size too high \((\d+)\)\. Please set it to a value <= (\d+)")
_TOO_LOW = re.compile(r"Vocabulary size is smaller than required_chars\. (\d+) vs (\d+)")


@dataclass(frozen=True)
class TokenizerTrainConfig:
    """Sentencepiece training options that matter for the result (recorded in the manifest)."""

    vocab_size: int = 2048
    seed: int = 1234
    character_coverage: float = 0.9995
    max_sentences: int = 2_000_000
    max_sentence_bytes: int = 16384

    def __post_init__(self) -> None:
        if isinstance(self.vocab_size, bool) or not isinstance(self.vocab_size, int) or (
                self.vocab_size < 8):
            raise SeesawConfigError(f"vocab_size = {self.vocab_size!r} must be an integer >= 8.")
        if not 0.0 < self.character_coverage <= 1.0:
            raise SeesawConfigError(
                f"character_coverage = {self.character_coverage} must be in (0, 1].")


class SentencePieceTokenizer:
    """A loaded sentencepiece model with the interface megatron-core datasets expect.

    ``eod`` is the model's ``</s>`` id (appended after every document).
    """

    def __init__(self, model_proto: bytes, model_path: str = "") -> None:
        self._proto = bytes(model_proto)
        self.model_path = model_path
        self._sp = spm.SentencePieceProcessor(model_proto=self._proto)
        self.sha256 = hashlib.sha256(self._proto).hexdigest()
        if self._sp.eos_id() < 0:
            raise SeesawConfigError(
                f"tokenizer_model: {model_path or 'the model'} has no </s> (eos) piece to use "
                "as end of document; train it with eos_id >= 0."
            )

    @property
    def vocab_size(self) -> int:
        return self._sp.vocab_size()

    @property
    def eod(self) -> int:
        return self._sp.eos_id()

    @property
    def unique_identifiers(self) -> "OrderedDict[str, object]":
        """Identity of the tokenizer for megatron-core's index-cache hash."""
        return OrderedDict(
            [("class", type(self).__name__), ("model_sha256", self.sha256),
             ("vocab_size", self.vocab_size)]
        )

    def tokenize(self, text: str) -> List[int]:
        return self._sp.encode(text)

    def tokenize_batch(self, texts: Sequence[str], num_threads: int = -1) -> List[List[int]]:
        """Ids of each text; ``num_threads`` (-1: sentencepiece's default, all cores) for a
        batch (``prepare``'s workers use 1 each)."""
        return self._sp.encode(list(texts), num_threads=num_threads)

    def detokenize(self, ids: Sequence[int]) -> str:
        return self._sp.decode([int(i) for i in ids])

    def save(self, path: str) -> None:
        """Write the model atomically (temp name, then ``os.replace``)."""
        tmp = f"{path}.tmp-{os.getpid()}"
        with open(tmp, "wb") as handle:
            handle.write(self._proto)
        os.replace(tmp, path)
        self.model_path = path

    def __getstate__(self) -> dict:
        return {"model_proto": self._proto, "model_path": self.model_path}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["model_proto"], state["model_path"])


def _training_lines(documents: Iterable[str], max_bytes: int) -> Iterator[str]:
    """Non-blank lines; a line longer than sentencepiece's ``max_bytes`` is cut into pieces
    that fit (at most 4 UTF-8 bytes a character), not dropped: a corpus of one huge line
    still trains."""
    piece = max(1, max_bytes // 4)
    for document in documents:
        for line in document.split("\n"):
            if not line.strip():
                continue
            if len(line) <= max_bytes:  # as before (sentencepiece skips it if too many bytes)
                yield line
                continue
            for start in range(0, len(line), piece):
                if line[start:start + piece].strip():
                    yield line[start:start + piece]


def train_tokenizer(
    documents: Iterable[str], config: TokenizerTrainConfig
) -> SentencePieceTokenizer:
    """Train a BPE model on the lines of ``documents`` (kept in memory; not saved).

    Raises:
        SeesawConfigError: ``vocab_size`` too large or too small for this corpus (the
            message gives the bound sentencepiece suggests).
    """
    spm.set_random_generator_seed(config.seed)
    buffer = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=_training_lines(documents, config.max_sentence_bytes),
            model_writer=buffer,
            model_type="bpe",
            vocab_size=config.vocab_size,
            character_coverage=config.character_coverage,
            num_threads=1,
            input_sentence_size=config.max_sentences,
            shuffle_input_sentence=True,
            max_sentence_length=config.max_sentence_bytes,
            normalization_rule_name="identity",
            remove_extra_whitespaces=False,
            add_dummy_prefix=False,
            allow_whitespace_only_pieces=True,
            split_digits=True,
            user_defined_symbols=["\n", "\t"],
            byte_fallback=False,
            unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
            minloglevel=2,
        )
    except RuntimeError as error:
        message = str(error)
        high, low = _TOO_HIGH.search(message), _TOO_LOW.search(message)
        if high:
            raise SeesawConfigError(
                f"vocab_size = {config.vocab_size} is too large for this corpus: sentencepiece "
                f"can build at most {high.group(2)} pieces; lower --vocab-size to <= "
                f"{high.group(2)} or add more text."
            ) from None
        if low:
            raise SeesawConfigError(
                f"vocab_size = {config.vocab_size} is too small for this corpus: it has "
                f"{low.group(2)} distinct characters and special pieces; raise --vocab-size "
                f"to >= {low.group(2)}."
            ) from None
        if "sentences_.empty()" in message:
            raise SeesawConfigError(
                "tokenizer training found no text: every input line is blank; check the "
                "inputs (and data.text_field for JSON lines).") from None
        raise SeesawConfigError(f"tokenizer training failed: {message}") from None
    return SentencePieceTokenizer(buffer.getvalue())


def load_tokenizer(path: str) -> SentencePieceTokenizer:
    """Load a sentencepiece ``.model`` file.

    Raises:
        SeesawConfigError: the file is missing or not a sentencepiece model.
    """
    try:
        with open(path, "rb") as handle:
            proto = handle.read()
    except OSError as error:
        raise SeesawConfigError(
            f"tokenizer_model: cannot read {path} ({error.strerror or error}); give an "
            "existing sentencepiece .model file."
        ) from None
    try:
        return SentencePieceTokenizer(proto, model_path=path)
    except (RuntimeError, TypeError, ValueError) as error:
        if isinstance(error, SeesawConfigError):
            raise
        raise SeesawConfigError(
            f"tokenizer_model: {path} is not a sentencepiece model ({error})."
        ) from None
