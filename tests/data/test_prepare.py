import argparse
import json
import os

import pytest

from seesaw_ds.cli import prepare_cmd
from seesaw_ds.data.prepare import check_prepared, load_prepared, prepare
from seesaw_ds.data.tokenizer import load_tokenizer
from seesaw_ds.data.testing import TINY_MAX_BYTES, TINY_VOCAB, make_tiny_prepared
from seesaw_ds.errors import SeesawConfigError

_QUIET = dict(progress=False, log=lambda message: None)


def _outputs(prepared):
    return [prepared.tokenizer_path, prepared.data_prefix + ".bin", prepared.data_prefix + ".idx"]


def test_prepare_writes_outputs_and_manifest(tiny_prepared):
    for path in _outputs(tiny_prepared) + [tiny_prepared.manifest_path]:
        assert os.path.isfile(path), path
    manifest = json.load(open(tiny_prepared.manifest_path))
    assert manifest["params"]["tokenizer"]["trained"]["vocab_size"] == TINY_VOCAB
    assert manifest["params"]["max_bytes"] == TINY_MAX_BYTES
    assert manifest["input_fingerprint"]["num_files"] > 100
    assert manifest["outputs"]["num_tokens"] == tiny_prepared.num_tokens > 10_000
    assert tiny_prepared.vocab_size == TINY_VOCAB and not tiny_prepared.reused
    assert not [name for name in os.listdir(tiny_prepared.out_dir) if ".tmp-" in name]
    assert load_prepared(tiny_prepared.out_dir) == tiny_prepared.__class__(
        **{**tiny_prepared.__dict__, "reused": True})


def test_second_run_reuses_and_changed_params_are_refused_unless_forced(tmp_path):
    first = make_tiny_prepared(tmp_path, max_bytes=60_000)
    mtimes = [os.stat(path).st_mtime_ns for path in _outputs(first)]
    messages = []
    again = make_tiny_prepared(tmp_path, max_bytes=60_000, log=messages.append)
    assert again.reused and "reusing" in messages[0]
    assert [os.stat(path).st_mtime_ns for path in _outputs(again)] == mtimes
    assert again.num_tokens == first.num_tokens
    # another option: one line naming it, both values and the fix; nothing touched
    with pytest.raises(SeesawConfigError) as refused:
        make_tiny_prepared(tmp_path, max_bytes=50_000)
    assert str(refused.value) == (
        f"prepare: {tmp_path} holds data prepared with max_bytes = 60000, this run asks for "
        "50000; pass --force to rebuild it (runs reading it will see other data), or choose "
        "another output folder.")
    with pytest.raises(SeesawConfigError, match=r"with vocab_size = 512, this run asks for 256;"
                       r" pass --force-prepare"):
        check_prepared(None, str(tmp_path), vocab_size=256, max_bytes=60_000,
                       force_flag="--force-prepare")
    with pytest.raises(SeesawConfigError, match=r"with tokenizer_model = None, this run asks "
                       r"for 'loaded, sha256 [0-9a-f]{12}'"):
        check_prepared(None, str(tmp_path), max_bytes=60_000,
                       tokenizer_model=first.tokenizer_path)
    assert [os.stat(path).st_mtime_ns for path in _outputs(first)] == mtimes
    assert check_prepared(None, str(tmp_path), vocab_size=TINY_VOCAB, max_bytes=60_000)
    assert not check_prepared(None, str(tmp_path), max_bytes=50_000, force=True)
    changed = make_tiny_prepared(tmp_path, max_bytes=50_000, force=True)
    assert not changed.reused and changed.num_tokens < first.num_tokens
    assert json.load(open(changed.manifest_path))["params"]["max_bytes"] == 50_000


def test_check_prepared_defaults_are_prepares():
    import inspect

    from seesaw_ds.data import prepare as module

    ours = {name: p.default for name, p in inspect.signature(module._request).parameters.items()
            if p.default is not inspect.Parameter.empty}
    theirs = {name: p.default for name, p in inspect.signature(prepare).parameters.items()
              if name in ours}
    assert ours == theirs and len(ours) == 9


def test_input_change_is_refused_unless_forced_and_loaded_tokenizer(tmp_path, tiny_prepared):
    text = tmp_path / "in" / "a.txt"
    text.parent.mkdir()
    text.write_text("import os\nprint(os.getcwd())\n" * 50)
    out = tmp_path / "out"
    first = prepare([str(text)], str(out), tokenizer_model=tiny_prepared.tokenizer_path, **_QUIET)
    assert first.vocab_size == TINY_VOCAB
    assert load_tokenizer(first.tokenizer_path).sha256 == tiny_prepared.load_tokenizer().sha256
    text.write_text("import sys\n" * 80)
    with pytest.raises(SeesawConfigError, match=r"with input files = 1 file, 1450 bytes, "
                       r"sha256 [0-9a-f]{12}, this run asks for 1 file, 880 bytes, "):
        prepare([str(text)], str(out), tokenizer_model=tiny_prepared.tokenizer_path, **_QUIET)
    second = prepare([str(text)], str(out), tokenizer_model=tiny_prepared.tokenizer_path,
                     force=True, **_QUIET)
    assert not second.reused and second.num_tokens != first.num_tokens
    with pytest.raises(SeesawConfigError, match="vocab_size = 100 disagrees"):
        prepare([str(text)], str(out), vocab_size=100,
                tokenizer_model=tiny_prepared.tokenizer_path, **_QUIET)


def test_no_files_matched_names_the_glob(tmp_path):
    with pytest.raises(SeesawConfigError, match=r"no files matched.*nope\*\.txt"):
        prepare([str(tmp_path / "nope*.txt")], str(tmp_path / "out"), **_QUIET)


def test_empty_corpus_names_the_path(tmp_path):
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(SeesawConfigError, match="corpus is empty.*empty.txt"):
        prepare([str(tmp_path / "empty.txt")], str(tmp_path / "out"), **_QUIET)
    assert not (tmp_path / "out").exists()


def test_vocab_too_large_names_vocab_size(tmp_path):
    (tmp_path / "small.txt").write_text("tiny corpus with few words\n" * 20)
    with pytest.raises(SeesawConfigError, match=r"vocab_size = 5000 is too large.*<= \d+"):
        prepare([str(tmp_path / "small.txt")], str(tmp_path / "out"), vocab_size=5000, **_QUIET)


def test_unreadable_named_file_names_the_path(tmp_path):
    bad = tmp_path / "latin1.txt"
    bad.write_bytes(b"caf\xe9\n")
    with pytest.raises(SeesawConfigError, match=f"{bad}.*not valid UTF-8"):
        prepare([str(bad)], str(tmp_path / "out"), **_QUIET)


def test_bad_tokenizer_model_and_out_dir(tmp_path):
    with pytest.raises(SeesawConfigError, match="tokenizer_model.*missing.model"):
        prepare(None, str(tmp_path / "out"), tokenizer_model=str(tmp_path / "missing.model"))
    (tmp_path / "file").write_text("x")
    with pytest.raises(SeesawConfigError, match="out_dir.*not a directory"):
        prepare(None, str(tmp_path / "file"))
    with pytest.raises(SeesawConfigError, match="run `seesaw-ds prepare"):
        load_prepared(str(tmp_path))


def _cli(argv):
    parser = argparse.ArgumentParser()
    prepare_cmd.add_parser(parser.add_subparsers())
    args = parser.parse_args(["prepare", *argv])
    return args.run(args)


def test_cli_prepare_reuses_fixture_and_checks_seq_length(tiny_prepared, capsys):
    argv = ["--out", tiny_prepared.out_dir, "--vocab-size", str(TINY_VOCAB),
            "--max-bytes", str(TINY_MAX_BYTES), "--no-progress"]
    assert _cli(argv + ["--seq-length", "64", "--split", "80,20,0"]) == 0
    out = capsys.readouterr().out
    assert "reusing" in out and "train and" in out
    with pytest.raises(SeesawConfigError, match="valid split"):
        _cli(argv + ["--seq-length", "64"])
    with pytest.raises(SeesawConfigError, match="--max-bytes"):
        _cli(["--out", tiny_prepared.out_dir, "--max-bytes", "0"])


def test_cli_refuses_other_options_exit_2_and_force_rebuilds(tmp_path, capsys):
    from seesaw_ds.cli.main import main

    make_tiny_prepared(tmp_path, max_bytes=60_000)
    argv = ["prepare", "--out", str(tmp_path), "--vocab-size", str(TINY_VOCAB), "--no-progress"]
    assert main(argv + ["--max-bytes", "50000"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"seesaw-ds: error: prepare: {tmp_path} holds data prepared with max_bytes "
                   "= 60000, this run asks for 50000; pass --force to rebuild it (runs reading "
                   "it will see other data), or choose another output folder."]
    assert main(argv + ["--max-bytes", "50000", "--force"]) == 0
    assert "wrote" in capsys.readouterr().out
    assert load_prepared(str(tmp_path)).num_tokens < make_tiny_prepared(
        tmp_path / "b", max_bytes=60_000).num_tokens
