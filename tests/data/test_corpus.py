import os
import sysconfig

import pytest

from seesaw_ds.data.corpus import Corpus, find_files, stdlib_files
from seesaw_ds.errors import SeesawConfigError


def _write(path, text=None, data=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    if data is not None:
        path.write_bytes(data)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def test_stdlib_corpus_is_sorted_and_skips_site_packages_and_tests():
    root = sysconfig.get_paths()["stdlib"]
    files = stdlib_files()
    rel = [os.path.relpath(path, root) for path in files]
    assert files == stdlib_files()
    assert rel == sorted(rel) and len(files) > 100
    assert all(path.endswith(".py") for path in files)
    parts = {part for path in rel for part in path.split(os.sep)[:-1]}
    assert not parts & {"site-packages", "test", "tests", "__pycache__"}
    assert len(stdlib_files(include_tests=True)) > len(files)


def test_default_inputs_use_stdlib_and_max_bytes_caps_the_text():
    corpus = Corpus(find_files(None), max_bytes=50_000)
    documents = list(corpus.documents())
    assert sum(len(doc.encode()) for doc in documents) == 50_000
    assert documents[0] == open(stdlib_files()[0], encoding="utf-8").read()


def test_globs_directories_and_jsonl_text_field(tmp_path):
    _write(tmp_path / "a.txt", "alpha")
    _write(tmp_path / "sub" / "b.md", "beta")
    _write(tmp_path / "sub" / "skip.bin", "x")
    _write(tmp_path / "c.jsonl", '{"body": "gamma"}\n\n{"body": "delta"}\n')
    files = find_files([str(tmp_path / "*.txt"), str(tmp_path / "sub"), str(tmp_path / "c.jsonl")])
    assert [os.path.basename(source.path) for source in files] == ["a.txt", "b.md", "c.jsonl"]
    assert [source.explicit for source in files] == [False, False, True]
    assert list(Corpus(files, text_field="body").documents()) == [
        "alpha", "beta", "gamma", "delta"]


def test_jsonl_wrong_field_names_path_line_and_field(tmp_path):
    path = _write(tmp_path / "c.jsonl", '{"body": "gamma"}\n')
    with pytest.raises(SeesawConfigError, match=r"c\.jsonl:1 .*'text'.*--text-field"):
        list(Corpus(find_files([str(path)])).documents())


def test_glob_without_match_names_the_pattern(tmp_path):
    pattern = str(tmp_path / "nothing*.txt")
    with pytest.raises(SeesawConfigError, match="no files matched.*nothing"):
        find_files([pattern])


def test_missing_and_unsupported_explicit_paths(tmp_path):
    with pytest.raises(SeesawConfigError, match="does not exist"):
        find_files([str(tmp_path / "missing.txt")])
    path = _write(tmp_path / "data.csv", "a,b")
    with pytest.raises(SeesawConfigError, match="data.csv.*not a supported"):
        find_files([str(path)])


def test_non_utf8_is_an_error_when_named_and_skipped_from_a_glob(tmp_path):
    bad = _write(tmp_path / "bad.txt", data=b"caf\xe9 latin-1")
    _write(tmp_path / "good.txt", "fine")
    with pytest.raises(SeesawConfigError, match=f"{bad}.*not valid UTF-8"):
        Corpus(find_files([str(bad)])).scan()
    corpus = Corpus(find_files([str(tmp_path / "*.txt")]))
    with pytest.warns(UserWarning, match="skipping .*bad.txt"):
        stats = corpus.scan()
    assert stats.num_documents == 1 and stats.skipped == [str(bad)]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files without permission bits")
def test_unreadable_named_file_is_an_error(tmp_path):
    path = _write(tmp_path / "secret.txt", "hidden")
    path.chmod(0)
    try:
        with pytest.raises(SeesawConfigError, match="secret.txt.*cannot be read"):
            Corpus(find_files([str(path)])).scan()
    finally:
        path.chmod(0o644)


def test_empty_corpus_names_the_files(tmp_path):
    _write(tmp_path / "empty.txt", "")
    _write(tmp_path / "blank.md", "  \n\n")
    with pytest.raises(SeesawConfigError, match="corpus is empty.*blank.md"):
        Corpus(find_files([str(tmp_path)])).scan()


def test_bad_max_bytes_and_text_field():
    with pytest.raises(SeesawConfigError, match="max_bytes"):
        Corpus([], max_bytes=0)
    with pytest.raises(SeesawConfigError, match="text_field"):
        Corpus([], text_field="")
