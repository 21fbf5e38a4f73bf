"""prepare at scale: workers (output identical for any count), streamed and compressed inputs,
bounded memory, progress lines."""

from __future__ import annotations

import bz2
import gzip
import json
import os
import random
import subprocess
import sys
import textwrap

import numpy
import pytest

from seesaw_ds.data.corpus import Corpus, find_files, split_documents, split_stream
from seesaw_ds.data.prepare import prepare
from seesaw_ds.data.progress import PrepareProgress, format_line
from seesaw_ds.errors import SeesawConfigError

_QUIET = dict(progress=False, log=lambda message: None)


def _documents(count: int, seed: int = 0) -> list:
    rng = random.Random(seed)
    words = ["def", "class", "return", "the", "data", "token", "seesaw", "batch", "\u00e9t\u00e9",
             "42", "x = 1", "if", "else", "(", ")", ":"]
    return [" ".join(rng.choice(words) for _ in range(rng.randint(1, 120)))
            + ("\nsecond line" if i % 3 == 0 else "") for i in range(count)]


def _jsonl(documents) -> bytes:
    return "".join(json.dumps({"text": text, "id": i}) + "\n"
                   for i, text in enumerate(documents)).encode()


def _files(prefix):
    return [open(f"{prefix}.{suffix}", "rb").read() for suffix in ("bin", "idx")]


def test_one_and_two_workers_write_identical_files_equal_to_megatron_builders(tmp_path,
                                                                              tiny_prepared):
    documents = _documents(3000)
    path = tmp_path / "corpus.jsonl"
    path.write_bytes(_jsonl(documents))
    outputs = []
    for workers in (1, 2):
        prepared = prepare([str(path)], str(tmp_path / f"w{workers}"), workers=workers,
                           tokenizer_model=tiny_prepared.tokenizer_path, **_QUIET)
        outputs.append(_files(prepared.data_prefix))
    assert outputs[0] == outputs[1]
    # the same bytes megatron-core's own builder writes for these documents
    from seesaw_ds.data._megatron import DType, IndexedDatasetBuilder

    tokenizer = tiny_prepared.load_tokenizer()
    dtype = DType.optimal_dtype(tokenizer.vocab_size)
    reference = str(tmp_path / "reference")
    builder = IndexedDatasetBuilder(reference + ".bin", dtype=dtype)
    for text in documents:
        ids = tokenizer.tokenize(text) + [tokenizer.eod]
        builder.add_document(numpy.asarray(ids, dtype=dtype), [len(ids)])
    builder.finalize(reference + ".idx")
    assert outputs[0] == _files(reference)
    assert prepared.num_documents == len(documents)


def test_compressed_jsonl_and_text_are_read_in_place(tmp_path):
    documents = _documents(400, seed=1)
    plain = tmp_path / "plain.jsonl"
    plain.write_bytes(_jsonl(documents))
    (tmp_path / "c4-train.00000-of-01024.json.gz").write_bytes(gzip.compress(_jsonl(documents)))
    (tmp_path / "shard.jsonl.bz2").write_bytes(bz2.compress(_jsonl(documents)))
    text = "\n\n".join(documents).encode()
    (tmp_path / "book.txt.gz").write_bytes(gzip.compress(text))
    zstandard = pytest.importorskip("zstandard")
    (tmp_path / "shard.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(
        _jsonl(documents)))
    for name in ("c4-train.00000-of-01024.json.gz", "shard.jsonl.bz2", "shard.jsonl.zst",
                 "book.txt.gz"):
        corpus = Corpus(find_files([str(tmp_path / name)]))
        assert list(corpus.documents()) == documents, name
    found = [os.path.basename(source.path) for source in find_files([str(tmp_path)])]
    assert found == ["book.txt.gz", "c4-train.00000-of-01024.json.gz", "plain.jsonl",
                     "shard.jsonl.bz2", "shard.jsonl.zst"]
    broken = tmp_path / "broken.jsonl.gz"
    broken.write_bytes(gzip.compress(_jsonl(documents))[:-300])
    with pytest.raises(SeesawConfigError, match=r"broken.jsonl.gz cannot be read \(.*\); fix it"):
        list(Corpus(find_files([str(broken)])).documents())


def test_streamed_splitting_equals_whole_text_splitting_for_any_chunking():
    rng = random.Random(3)
    pieces = ["a", "b c", "\n", "\n\n", "\n \t\n", "\n\n\n", "<S>", "<", "S>", " ", "x\ny"]
    for _ in range(300):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 40)))
        cuts = sorted(rng.sample(range(len(text) + 1), min(len(text) + 1, rng.randint(0, 6))))
        chunks = [text[i:j] for i, j in zip([0] + cuts, cuts + [len(text)])]
        for separator in ("blank-line", "<S>", "file"):
            assert list(split_stream(iter(chunks), separator)) == split_documents(
                text, separator), (text, chunks, separator)


def test_undecodable_byte_offset_counts_from_the_file_start(tmp_path):
    path = tmp_path / "late.txt"
    path.write_bytes(b"fine text\n\n" * 200_000 + b"caf\xe9")  # past the first 1 MiB chunk
    with pytest.raises(SeesawConfigError, match=r"\(byte 0xe9 at offset 2200003\)"):
        list(Corpus(find_files([str(path)])).documents())


_MEMORY_SCRIPT = textwrap.dedent("""
    import resource, sys
    from seesaw_ds.data.corpus import Corpus, find_files
    from seesaw_ds.data.prepare import prepare
    path, out, model, mode = sys.argv[1:5]

    def peak_mb():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    if mode == "read":
        corpus = Corpus(find_files([path]))
        next(corpus.documents())
        before = peak_mb()
        count = sum(1 for _ in corpus.documents())
    else:
        import seesaw_ds.data.indexed, sentencepiece  # imports counted before
        before = peak_mb()
        count = prepare([path], out, tokenizer_model=model, workers=2, progress=False,
                        log=lambda message: None).num_documents
    print(count, before, peak_mb())
""")


def _peak_growth_mb(*args):
    result = subprocess.run([sys.executable, "-c", _MEMORY_SCRIPT, *map(str, args)],
                            capture_output=True, text=True, check=True)
    count, before, after = result.stdout.split()
    return int(count), float(after) - float(before)


def test_memory_stays_flat_reading_a_200_mb_file_and_preparing_a_20_mb_one(tmp_path,
                                                                           tiny_prepared):
    """Reading (the part whose memory used to grow with the file: it was read whole) is
    checked on a 200 MB single file; the whole prepare (reading, 2 workers, ordered merge,
    .idx) on a 20 MB one, to keep CI fast (the benchmark prepares 200 MB)."""
    paragraph = ("Seesaw grows the batch when it cuts the learning rate. " * 8 + "\n\n").encode()
    big = tmp_path / "big.txt"
    with open(big, "wb") as handle:
        for _ in range(200 * 2 ** 20 // (len(paragraph) * 1000) + 1):
            handle.write(paragraph * 1000)
    size_mb = big.stat().st_size / 2 ** 20
    count, growth = _peak_growth_mb(big, "-", "-", "read")
    assert size_mb >= 200 and count == big.stat().st_size // len(paragraph)
    assert growth < 20, f"reading a {size_mb:.0f} MB file grew peak memory by {growth:.0f} MB"
    big.unlink()
    jsonl = tmp_path / "medium.jsonl"
    record = (json.dumps({"text": paragraph.decode().strip()}) + "\n").encode()
    with open(jsonl, "wb") as handle:
        for _ in range(20 * 2 ** 20 // (len(record) * 1000) + 1):
            handle.write(record * 1000)
    count, growth = _peak_growth_mb(jsonl, tmp_path / "out", tiny_prepared.tokenizer_path,
                                    "prepare")
    assert count == jsonl.stat().st_size // len(record)
    assert growth < 10, f"preparing a 20 MB file grew peak memory by {growth:.0f} MB"


def test_progress_lines_without_a_terminal():
    clock = iter([0.0, 10.0, 31.0, 40.0, 62.0, 70.0]).__next__
    lines = []
    progress = PrepareProgress(100_000_000, bar=False, log=lines.append, interval=30.0,
                               clock=clock)
    for done in (10e6, 31e6, 40e6, 62e6):
        progress.update(int(done), int(done / 4))
    assert progress.close() == 70.0
    assert lines == [format_line(31_000_000, 100_000_000, 7_750_000, 31.0),
                     format_line(62_000_000, 100_000_000, 15_500_000, 62.0)]
    assert lines[0] == ("prepare: 31.0/100.0 MB (31%), 0.25M tokens/s, 1.00 MB/s, "
                        "ETA 0:01:09")


def test_bad_worker_count_is_refused(tmp_path):
    with pytest.raises(SeesawConfigError, match=r"workers = 0 must be a positive integer"):
        prepare(None, str(tmp_path), workers=0, **_QUIET)


def test_the_tokenizer_sample_is_drawn_from_all_inputs_not_the_first_lines():
    """With a sample of 200 lines out of 20,000, text that only the second half of the
    corpus holds still shapes the tokenizer (sentencepiece's reservoir over every line)."""
    from seesaw_ds.data.tokenizer import TokenizerTrainConfig, train_tokenizer

    first = ["abc bca cab"] * 10_000
    second = ["xyz zyx yzx"] * 10_000
    tokenizer = train_tokenizer(first + second, TokenizerTrainConfig(
        vocab_size=24, max_sentences=200, character_coverage=1.0))
    assert 0 not in tokenizer.tokenize("xyz zyx")  # no unknown piece: x, y, z were sampled
