"""A damaged prepared folder is one error naming the file and the fix, before training."""

from __future__ import annotations

import dataclasses
import shutil

import numpy
import pytest

from seesaw_ds.data.prepare import load_prepared
from seesaw_ds.data.verify import verify_prepared
from seesaw_ds.errors import SeesawConfigError


def _copy(tiny_prepared, tmp_path):
    shutil.copytree(tiny_prepared.out_dir, tmp_path / "data")
    return load_prepared(str(tmp_path / "data"))


def _idx(prepared):
    return prepared.data_prefix + ".idx"


def _garbage_idx(prepared):
    with open(_idx(prepared), "r+b") as handle:
        size = len(handle.read())
        handle.seek(0)
        handle.write(numpy.random.default_rng(0).bytes(size))


def _swapped_lengths(prepared):  # same size, header intact: lengths no longer add up
    data = bytearray(open(_idx(prepared), "rb").read())
    data[34:38], data[38:42] = data[38:42], data[34:38]
    data[34] ^= 0x01
    open(_idx(prepared), "wb").write(bytes(data))


def _out_of_vocabulary(prepared):
    tokens = numpy.memmap(prepared.data_prefix + ".bin", dtype=numpy.uint16, mode="r+")
    tokens[123] = prepared.vocab_size + 7
    tokens.flush()


@pytest.mark.parametrize("damage, needle", [
    (_garbage_idx, ".idx is not a megatron-core index (bad header)"),
    (_swapped_lengths, ".idx has sequence lengths and offsets that disagree"),
    (_out_of_vocabulary, ".bin holds token id 519 at token 123, outside the vocabulary of "
                         "512"),
])
def test_damage_is_named_with_the_fix(damage, needle, tiny_prepared, tmp_path):
    prepared = _copy(tiny_prepared, tmp_path)
    verify_prepared(prepared)  # intact: passes, and caches its verdict
    damage(prepared)  # the manifest's sizes still match
    assert load_prepared(prepared.out_dir) == dataclasses.replace(prepared)
    with pytest.raises(SeesawConfigError) as error:
        verify_prepared(prepared)
    assert needle in str(error.value)
    assert str(error.value).endswith(f"prepare it again with `seesaw-ds prepare --out "
                                     f"{prepared.out_dir} --force` (same inputs and options).")


def test_a_corpus_of_one_huge_line_trains_a_tokenizer():
    """A 21 MB single line used to end in sentencepiece's INTERNAL '!sentences_.empty()'."""
    from seesaw_ds.data.tokenizer import TokenizerTrainConfig, train_tokenizer

    syllables = ["ka", "lo", "mi", "nu", "pe", "ra", "so", "ti"]
    words = " ".join(syllables[i % 8] + syllables[(i * 3) % 7] + syllables[(i * 5) % 8]
                     for i in range(80_000))  # ~0.5 MB, one line
    tokenizer = train_tokenizer([words], TokenizerTrainConfig(vocab_size=100,
                                                              max_sentence_bytes=4096))
    assert tokenizer.detokenize(tokenizer.tokenize("kalomi rasoti")) == "kalomi rasoti"
