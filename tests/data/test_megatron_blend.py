"""Existing Megatron data: prefixes written by megatron-core's own IndexedDatasetBuilder,
one or a weighted blend, checked against the tokenizer and built into GPT datasets."""

from __future__ import annotations

import numpy
import pytest

from seesaw_ds.data._megatron import IndexedDatasetBuilder
from seesaw_ds.data.gpt_data import build_gpt_datasets
from seesaw_ds.data.megatron_blend import open_blend, parse_blend
from seesaw_ds.errors import SeesawConfigError

EOD = 2  # the tiny tokenizer's </s>
A_IDS, B_IDS = (3, 200), (200, 500)  # disjoint id ranges: a sample tells its prefix


def write_prefix(prefix, ids_range, documents=400, seed=0, dtype=numpy.uint16):
    """A Megatron dataset written by megatron-core's builder, as preprocess_data writes it."""
    rng = numpy.random.default_rng(seed)
    builder = IndexedDatasetBuilder(f"{prefix}.bin", dtype=dtype)
    for _ in range(documents):
        ids = rng.integers(*ids_range, size=int(rng.integers(20, 200))).tolist() + [EOD]
        builder.add_document(numpy.asarray(ids, dtype=dtype), [len(ids)])
    builder.finalize(f"{prefix}.idx")
    return str(prefix)


def test_parse_blend_follows_megatron_data_path():
    assert parse_blend(["/d/a"]) == (["/d/a"], None)
    assert parse_blend([0.3, "/d/a", "0.7", "/d/b"]) == (["/d/a", "/d/b"], [0.3, 0.7])
    assert parse_blend(["/d/a", "/d/b"]) == (["/d/a", "/d/b"], None)
    with pytest.raises(SeesawConfigError, match=r"data.paths = \[0.3, '/d/a', 0.7\]: 0.3 is "
                       r"not a prefix"):
        parse_blend([0.3, "/d/a", 0.7])
    with pytest.raises(SeesawConfigError, match=r"weights \[-1, 2\] must be numbers >= 0"):
        parse_blend([-1, "/d/a", 2, "/d/b"])


def test_a_weighted_blend_of_two_prefixes_gives_samples_in_the_weights(tmp_path,
                                                                       tiny_prepared):
    a = write_prefix(tmp_path / "a_text_document", A_IDS, seed=1)
    b = write_prefix(tmp_path / "b_text_document", B_IDS, seed=2)
    blend = open_blend([0.25, a, 0.75, b], tiny_prepared.tokenizer_path, None,
                       str(tmp_path / "cache"))
    assert blend.vocab_size == 512 and blend.eod == EOD
    train, valid = build_gpt_datasets(blend, 64, split="90,10,0", train_samples=2000,
                                      valid_samples=64)
    assert len(train) == 2000 and len(valid) == 64
    sources = []
    for index in range(len(train)):
        ids = set(train[index]["tokens"].tolist()) - {EOD}
        in_a = all(A_IDS[0] <= i < A_IDS[1] for i in ids)
        in_b = all(B_IDS[0] <= i < B_IDS[1] for i in ids)
        assert in_a != in_b  # every sample comes whole from one prefix
        sources.append("a" if in_a else "b")
    assert abs(sources.count("a") - 500) <= 1  # megatron's blend keeps the error under 1
    # the first 100 samples already follow the weights (interleaved, not a then b)
    assert abs(sources[:100].count("a") - 25) <= 1


def test_vocabulary_mismatches_are_refused_with_one_line(tmp_path, tiny_prepared):
    model = tiny_prepared.tokenizer_path
    wide = write_prefix(tmp_path / "wide", A_IDS, documents=20, dtype=numpy.int32)
    with pytest.raises(SeesawConfigError) as refused:
        open_blend([wide], model, None, str(tmp_path / "cache"))
    assert str(refused.value) == (
        f"data.paths: {wide}.idx stores int32 token ids (written for a vocabulary of 65500 "
        f"or more) but data.tokenizer_model {model} has 512 ids (uint16): the data was "
        "tokenized with another tokenizer; give the one that wrote it.")
    large = write_prefix(tmp_path / "large", (3, 600), documents=20)
    with pytest.raises(SeesawConfigError, match=r"large.bin holds token id 599, outside "
                       r"data.tokenizer_model .*'s vocabulary of 512 \(the model's embedding"):
        open_blend([1, str(tmp_path / "large"), 1, wide], model, None, str(tmp_path))
    with pytest.raises(SeesawConfigError, match=r"missing.bin does not exist"):
        open_blend([str(tmp_path / "missing")], model, None, str(tmp_path))
    with pytest.raises(SeesawConfigError, match=r"set exactly one of data.tokenizer_model"):
        open_blend([wide], None, None, str(tmp_path))


def test_hf_tokenizer_is_local_only(tmp_path):
    pytest.importorskip("transformers")
    with pytest.raises(SeesawConfigError, match=r"data.hf_tokenizer = 'no-such-org/no-such-tok"
                       r"enizer' is not a tokenizer folder nor one in the local Hugging Face "
                       r"cache \(nothing is downloaded\)"):
        open_blend([str(tmp_path / "x")], None, "no-such-org/no-such-tokenizer", str(tmp_path))


def test_a_local_hf_tokenizer_folder_gives_vocabulary_and_eod(tmp_path):
    pytest.importorskip("transformers")
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    vocab = {("<unk>" if i == 0 else "</s>" if i == EOD else f"w{i}"): i for i in range(512)}
    fast = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel(
        vocab, unk_token="<unk>")), unk_token="<unk>", eos_token="</s>")
    fast.save_pretrained(tmp_path / "hf")
    prefix = write_prefix(tmp_path / "a_text_document", A_IDS, documents=50)
    blend = open_blend([prefix], None, str(tmp_path / "hf"), str(tmp_path / "cache"))
    assert (blend.vocab_size, blend.eod) == (512, EOD)
    train, _ = build_gpt_datasets(blend, 64, split="90,10,0")
    assert len(train) > 50 and int(train[0]["tokens"].max()) < blend.vocab_size
