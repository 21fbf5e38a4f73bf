"""Plain text in: .txt files split into documents, any encoding, one multi-MB file end to end."""

from __future__ import annotations

import re

import pytest

from seesaw_ds.cli.main import main as cli_main
from seesaw_ds.data.corpus import Corpus, find_files, split_documents, stdlib_files
from seesaw_ds.data.prepare import prepare
from seesaw_ds.errors import SeesawConfigError

_QUIET = dict(progress=False, log=lambda message: None)
_DOCSTRING = re.compile(r'"""(.*?)"""', re.S)


def docstring_paragraphs(min_bytes: int) -> list:
    """One-line paragraphs from the stdlib's docstrings (deterministic), until ``min_bytes``;
    every 50th carries a Latin-1 accent."""
    paragraphs, size = [], 0
    for path in stdlib_files(include_tests=True):
        with open(path, encoding="utf-8", errors="replace") as handle:
            text = handle.read()
        for doc in _DOCSTRING.findall(text):
            for block in re.split(r"\n\s*\n", doc):
                line = " ".join(block.split())
                if len(line) < 40:
                    continue
                line = line.encode("latin-1", errors="replace").decode("latin-1")
                if len(paragraphs) % 50 == 0:
                    line += " Caf\u00e9 cr\u00e8me, na\u00efve."
                paragraphs.append(line)
                size += len(line) + 2
                if size >= min_bytes:
                    return paragraphs
    raise AssertionError("the stdlib holds fewer docstrings than asked for")


@pytest.fixture(scope="module")
def latin1_text(tmp_path_factory):
    paragraphs = docstring_paragraphs(2_500_000)
    path = tmp_path_factory.mktemp("plain") / "book.txt"
    separators = ["\n\n", "\n\n\n", "\n  \n", "\r\n\r\n"]
    body = "".join(p + separators[i % len(separators)] for i, p in enumerate(paragraphs))
    path.write_bytes(body.encode("latin-1"))
    return path, paragraphs


def test_split_documents_paragraphs_file_and_literal_separators():
    text = "one\nline two\n\n\nthree\n \t\nfour\r\n\r\nfive\n\n"
    assert split_documents(text) == ["one\nline two", "three", "four", "five"]
    assert split_documents(text, "file") == [text.strip("\r\n")]
    assert split_documents("a<|endoftext|>b<|endoftext|>", "<|endoftext|>") == ["a", "b"]
    assert split_documents("a\n\nb\n\n\nc", r"\n\n\n") == ["a\n\nb", "c"]


def test_a_multi_megabyte_latin1_file_becomes_its_paragraphs(latin1_text, tmp_path,
                                                              tiny_prepared):
    path, paragraphs = latin1_text
    assert path.stat().st_size > 2_500_000 and len(paragraphs) > 10_000
    with pytest.raises(SeesawConfigError, match=r"is not valid UTF-8 \(byte 0x[0-9a-f]{2} at "
                       r"offset \d+\); give its encoding with --encoding"):
        prepare([str(path)], str(tmp_path / "utf8"),
                tokenizer_model=tiny_prepared.tokenizer_path, **_QUIET)
    corpus = Corpus(find_files([str(path)]), encoding="latin-1")
    assert list(corpus.documents()) == paragraphs  # exact text, one document each
    prepared = prepare([str(path)], str(tmp_path / "latin1"), encoding="latin-1",
                       tokenizer_model=tiny_prepared.tokenizer_path, **_QUIET)
    assert prepared.num_documents == len(paragraphs)
    from seesaw_ds.data.gpt_data import build_gpt_datasets

    train, valid = build_gpt_datasets(prepared, 64, split="98,2,0")
    assert len(valid) > 100 and len(train) > 50 * len(valid) / 2


def test_encoding_errors_replace_reads_the_same_file_as_utf8(latin1_text):
    path, paragraphs = latin1_text
    documents = list(Corpus(find_files([str(path)]), encoding_errors="replace").documents())
    assert len(documents) == len(paragraphs)
    assert documents[0].endswith(" Caf\ufffd cr\ufffdme, na\ufffdve.")
    assert documents[1] == paragraphs[1] or "\ufffd" in documents[1]


def test_prepare_cli_options_and_their_errors(tmp_path, capsys, tiny_prepared):
    text = tmp_path / "notes.txt"
    text.write_text("first doc, line one\nline two<SEP>second doc\n\nstill second<SEP>",
                    encoding="cp1252")
    out = tmp_path / "out"
    code = cli_main(["prepare", str(text), "--out", str(out), "--doc-separator", "<SEP>",
                     "--encoding", "cp1252", "--tokenizer-model", tiny_prepared.tokenizer_path,
                     "--no-progress"])
    assert code == 0
    import json

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["outputs"]["num_documents"] == 2
    assert manifest["params"]["encoding"] == "cp1252"
    assert manifest["params"]["doc_separator"] == "<SEP>"
    capsys.readouterr()
    code = cli_main(["prepare", str(text), "--out", str(out), "--encoding", "klingon"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "encoding = 'klingon'" in err[0]
