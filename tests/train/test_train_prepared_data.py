"""``seesaw_ds.train`` never rebuilds a prepared folder built with other options: one line
naming the option and ``--force-prepare``, exit 2, before any process group (in-process)."""

from __future__ import annotations

import json
import os

import torch.distributed as dist

from seesaw_ds.data.testing import TINY_MAX_BYTES, make_tiny_prepared
from seesaw_ds.train import _prepare_data, _validate, main, parse_args
from train_common import ds_config, run_config


def test_other_max_bytes_is_refused_before_any_process_group(tmp_path, capsys):
    prepared = make_tiny_prepared(tmp_path / "data", max_bytes=TINY_MAX_BYTES // 4)
    mtime = os.stat(prepared.data_prefix + ".bin").st_mtime_ns
    run_path, ds_path = tmp_path / "run.yaml", tmp_path / "ds.json"
    run_path.write_text(json.dumps(run_config(tmp_path / "data", 1e4)))  # max_bytes 400000
    ds_path.write_text(json.dumps(ds_config(6.4e4)))
    argv = ["--run-config", str(run_path), "--deepspeed_config", str(ds_path),
            "--output-dir", str(tmp_path / "out"), "--no-progress"]
    assert main(argv) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"seesaw-ds train: error: prepare: {tmp_path / 'data'} holds data prepared with "
        f"max_bytes = {TINY_MAX_BYTES // 4}, this run asks for {TINY_MAX_BYTES}; pass "
        "--force-prepare to rebuild it (runs reading it will see other data), or choose "
        "another output folder."]
    assert not dist.is_initialized() and not (tmp_path / "out").exists()
    assert os.stat(prepared.data_prefix + ".bin").st_mtime_ns == mtime
    # --force-prepare passes validation, and rank 0's prepare rebuilds the folder
    run, _, _ = _validate(parse_args(argv + ["--force-prepare"]))
    rebuilt = _prepare_data(run, log=lambda message: None, force=True)
    assert not rebuilt.reused and rebuilt.num_tokens > prepared.num_tokens
    assert _prepare_data(run, log=lambda message: None).reused


def test_progress_bar_only_on_a_terminal(monkeypatch, caplog):
    """On a terminal the tqdm bar; in a log file (not a tty) no bar, so no carriage-return
    lines (the ``seesaw_ds`` logger's plain lines stand in)."""
    import logging
    import sys
    from types import SimpleNamespace

    from seesaw_ds.train import _Session

    caplog.set_level(logging.INFO, logger="seesaw_ds")
    plan = SimpleNamespace(total_tokens=1000.0)
    session = SimpleNamespace(args=SimpleNamespace(no_progress=False), plan=plan, name="seesaw",
                              hook=SimpleNamespace(consumed_tokens=0), progress=None)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    _Session.open_progress(session)
    assert session.progress is None
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    _Session.open_progress(session)
    assert session.progress is not None and session.progress.total == 1000
    session.progress.close()
