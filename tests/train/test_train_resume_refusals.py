"""``--resume`` never starts over and never touches a run it cannot continue.

A doubtful ``latest`` (empty, missing, binary, naming a missing tag) with checkpoints
present, a damaged tag (truncated model file, garbage or ``{}`` sidecar, none at all), a bad
``--resume-tag``: each is one line naming the file and the fix, exit 2, before any process
group, and every file of the output dir keeps its bytes and modification time. In-process
(``seesaw_ds.train.main``) on a copy of the reference run's output.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch.distributed as dist

from seesaw_ds.train import main


def _snapshot(folder: Path):
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _tags(out: Path):
    return sorted((p.name for p in (out / "checkpoints").iterdir() if p.is_dir()),
                  key=lambda tag: int(tag.replace("global_step", "")))


def _latest(out):
    return out / "checkpoints" / "latest"


def _empty(out):
    _latest(out).write_text("")


def _missing(out):
    _latest(out).unlink()


def _nul_bytes(out):
    _latest(out).write_bytes(b"\0\0\0\0")


def _missing_tag(out):
    _latest(out).write_text("global_step999")


def _truncated_model(out):
    model = out / "checkpoints" / _tags(out)[-1] / "mp_rank_00_model_states.pt"
    model.write_bytes(model.read_bytes()[:4096])


def _garbage_sidecar(out):
    (out / "checkpoints" / _tags(out)[-1] / "seesaw_state.json").write_text("{{ not json")


def _empty_sidecar(out):
    (out / "checkpoints" / _tags(out)[-1] / "seesaw_state.json").write_text("{}")


def _no_sidecar(out):
    (out / "checkpoints" / _tags(out)[-1] / "seesaw_state.json").unlink()


def _no_model(out):
    (out / "checkpoints" / _tags(out)[-1] / "mp_rank_00_model_states.pt").unlink()


# name: (damage, extra arguments, what the one line must say; {dir} {old} {new} filled in)
CASES = {
    "empty latest": (_empty, [], ["{dir} has an empty 'latest' file", "{old}, {new}",
                                  "--resume-tag TAG", "--resume-tag {new} (the newest)"]),
    "missing latest": (_missing, [], ["{dir} has no 'latest' file", "--resume-tag {new}"]),
    "NUL bytes in latest": (_nul_bytes, [], ["'\\x00\\x00\\x00\\x00', not a tag name",
                                             "--resume-tag {new}"]),
    "latest naming a missing tag": (_missing_tag, [], ["naming 'global_step999', which is "
                                                       "not there", "--resume-tag {new}"]),
    "unknown --resume-tag": (lambda out: None, ["--resume-tag", "global_step7"],
                             ["--resume-tag global_step7: {dir}/global_step7 is not a "
                              "checkpoint", "{old}, {new}"]),
    "truncated model file": (_truncated_model, [], [
        "{dir}/{new}/mp_rank_00_model_states.pt is truncated or not a torch file",
        "--resume-tag {old}"]),
    "deleted model file": (_no_model, [], ["{dir}/{new} has no model file",
                                           "--resume-tag {old}"]),
    "garbage seesaw_state.json": (_garbage_sidecar, [], [
        "{dir}/{new}/seesaw_state.json is not readable JSON", "--resume-tag {old}"]),
    "{} seesaw_state.json": (_empty_sidecar, [], [
        "{dir}/{new}/seesaw_state.json has no 'state' object", "--resume-tag {old}"]),
    "missing seesaw_state.json": (_no_sidecar, [], [
        "{dir}/{new} has no seesaw_state.json", "--allow-missing-seesaw-state",
        "--resume-tag {old}"]),
}


@pytest.mark.parametrize("name", list(CASES))
def test_a_doubtful_resume_is_refused_and_touches_nothing(name, uninterrupted, tmp_path,
                                                          capsys, monkeypatch):
    monkeypatch.setenv("DS_ACCELERATOR", "cpu")
    monkeypatch.delenv("RANK", raising=False)
    damage, extra, needles = CASES[name]
    out = tmp_path / "out"
    shutil.copytree(uninterrupted["run"].out, out)
    old, new = _tags(out)
    damage(out)
    before = _snapshot(out)
    code = main(["--run-config", str(uninterrupted["run_path"]), "--deepspeed_config",
                 str(uninterrupted["ds_path"]), "--output-dir", str(out), "--no-progress",
                 "--resume", *extra])
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, captured.err
    assert lines[0].startswith("seesaw-ds train: error: ")
    for needle in needles:
        assert needle.format(dir=out / "checkpoints", old=old, new=new) in lines[0]
    assert "Traceback" not in captured.err + captured.out
    assert not dist.is_initialized()
    # steps.csv, curve.json, summary.json, every checkpoint file: same bytes, same mtime
    assert _snapshot(out) == before
    assert {"steps.csv", "curve.json", "summary.json"} <= set(before)


def test_resume_tag_and_allow_missing_state_need_resume(uninterrupted, tmp_path, capsys,
                                                        monkeypatch):
    monkeypatch.setenv("DS_ACCELERATOR", "cpu")
    for flag in (["--resume-tag", "global_step1"], ["--allow-missing-seesaw-state"]):
        code = main(["--run-config", str(uninterrupted["run_path"]), "--deepspeed_config",
                     str(uninterrupted["ds_path"]), "--output-dir", str(tmp_path / "o"),
                     *flag])
        err = capsys.readouterr().err
        assert code == 2 and f"{flag[0]} applies to --resume only: add --resume." in err


def test_a_budget_below_the_checkpoint_with_allow_plan_change_is_refused(
        uninterrupted, tmp_path, capsys, monkeypatch):
    """It used to exit 0 'finished' having trained nothing."""
    monkeypatch.setenv("DS_ACCELERATOR", "cpu")
    out = tmp_path / "out"
    shutil.copytree(uninterrupted["run"].out, out)
    ds = json.loads(uninterrupted["ds_path"].read_text())
    ds["seesaw"]["total_tokens"] = 5.0e4
    ds_path = tmp_path / "ds.json"
    ds_path.write_text(json.dumps(ds))
    before = _snapshot(out)
    code = main(["--run-config", str(uninterrupted["run_path"]), "--deepspeed_config",
                 str(ds_path), "--output-dir", str(out), "--resume", "--allow-plan-change"])
    err = capsys.readouterr().err
    tokens = uninterrupted["run"].summary["tokens"]
    assert code == 2
    assert (f"has trained {tokens:,} tokens, at or past the new seesaw.total_tokens = "
            f"50,000: nothing would train. Raise seesaw.total_tokens above {tokens:,}") in err
    assert _snapshot(out) == before


@pytest.mark.parametrize("occupied", ["file", "under a file"])
def test_an_output_dir_that_cannot_be_a_directory_is_refused(occupied, tmp_path, capsys,
                                                            monkeypatch):
    monkeypatch.setenv("DS_ACCELERATOR", "cpu")
    from train_common import ds_config, run_config

    blocker = tmp_path / "taken"
    blocker.write_text("a file")
    out = blocker if occupied == "file" else blocker / "run"
    run_path, ds_path = tmp_path / "run.yaml", tmp_path / "ds.json"
    run_path.write_text(json.dumps(run_config(tmp_path / "data", 1e4)))
    ds_path.write_text(json.dumps(ds_config(6.4e4)))
    code = main(["--run-config", str(run_path), "--deepspeed_config", str(ds_path),
                 "--output-dir", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert f"output_dir (--output-dir) = {out}: {blocker} is a file, not a directory" in err
    assert blocker.read_text() == "a file"


def test_an_unwritable_output_dir_is_refused(tmp_path, capsys, monkeypatch):
    """(Root may write anywhere, so the permission answer is simulated.)"""
    import os

    from train_common import ds_config, run_config

    monkeypatch.setenv("DS_ACCELERATOR", "cpu")
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: False if str(path) == str(locked)
                        else real_access(path, mode))
    run_path, ds_path = tmp_path / "run.yaml", tmp_path / "ds.json"
    run_path.write_text(json.dumps(run_config(tmp_path / "data", 1e4)))
    ds_path.write_text(json.dumps(ds_config(6.4e4)))
    code = main(["--run-config", str(run_path), "--deepspeed_config", str(ds_path),
                 "--output-dir", str(locked / "run")])
    err = capsys.readouterr().err
    assert code == 2 and err == (f"seesaw-ds train: error: output_dir (--output-dir) = "
                                 f"{locked / 'run'}: {locked} is not writable by this user: "
                                 "choose a writable path.\n")


def test_errors_are_printed_by_rank_0_only(uninterrupted, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DS_ACCELERATOR", "cpu")
    out = tmp_path / "out"
    shutil.copytree(uninterrupted["run"].out, out)
    _empty(out)
    argv = ["--run-config", str(uninterrupted["run_path"]), "--deepspeed_config",
            str(uninterrupted["ds_path"]), "--output-dir", str(out), "--resume"]
    import seesaw_ds.train as train_module

    waits = []
    monkeypatch.setattr(train_module.time, "sleep", waits.append)
    monkeypatch.setenv("RANK", "1")  # as torchrun sets it, before any process group
    # another rank waits for rank 0's line (the launcher ends it then); still running, it
    # names itself
    assert main(argv) == 2 and waits == [train_module.OTHER_RANK_GRACE_SECONDS]
    assert capsys.readouterr().err.startswith("seesaw-ds train: error (rank 1): ")
    monkeypatch.setenv("RANK", "0")
    assert main(argv) == 2 and capsys.readouterr().err.count("\n") == 1
