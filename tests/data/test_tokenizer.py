import pickle

import pytest

from seesaw_ds.data.corpus import Corpus, find_files
from seesaw_ds.data.tokenizer import TokenizerTrainConfig, load_tokenizer, train_tokenizer
from seesaw_ds.errors import SeesawConfigError


@pytest.fixture(scope="module")
def documents():
    return list(Corpus(find_files(None), max_bytes=150_000).documents())


def test_training_is_deterministic_and_round_trips_code(documents, tmp_path):
    first = train_tokenizer(documents, TokenizerTrainConfig(vocab_size=400))
    second = train_tokenizer(documents, TokenizerTrainConfig(vocab_size=400))
    assert first.sha256 == second.sha256
    assert first.vocab_size == 400 and 0 <= first.eod < 400
    code = "def f(x):\n\tif x:\n        return  x + 1  # done\n"
    ids = first.tokenize(code)
    assert all(0 <= i < 400 for i in ids)
    assert first.detokenize(ids) == code
    assert first.unique_identifiers["model_sha256"] == first.sha256
    path = str(tmp_path / "t.model")
    first.save(path)
    loaded = load_tokenizer(path)
    assert loaded.sha256 == first.sha256 and loaded.tokenize(code) == ids
    assert pickle.loads(pickle.dumps(loaded)).tokenize(code) == ids


def test_vocab_too_large_names_vocab_size_and_the_maximum(documents):
    with pytest.raises(SeesawConfigError, match=r"vocab_size = 100000 is too large.*<= \d+"):
        train_tokenizer(documents, TokenizerTrainConfig(vocab_size=100_000))


def test_vocab_too_small_names_vocab_size(documents):
    with pytest.raises(SeesawConfigError, match=r"vocab_size = 20 is too small.*>= \d+"):
        train_tokenizer(documents, TokenizerTrainConfig(vocab_size=20))
    with pytest.raises(SeesawConfigError, match="vocab_size"):
        TokenizerTrainConfig(vocab_size=0)


def test_load_errors_name_the_path(tmp_path):
    with pytest.raises(SeesawConfigError, match="missing.model"):
        load_tokenizer(str(tmp_path / "missing.model"))
    junk = tmp_path / "junk.model"
    junk.write_bytes(b"not a model")
    with pytest.raises(SeesawConfigError, match="junk.model.*not a sentencepiece"):
        load_tokenizer(str(junk))
