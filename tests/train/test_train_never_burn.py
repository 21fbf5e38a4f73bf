"""Runs that must not burn their budget or lose a checkpoint (real 2-rank jobs).

- a diverged run (peak LR 1e6: NaN loss) stops ``divergence.max_bad_steps`` steps after the
  first bad one, exit non-zero, no checkpoint of diverged weights, the last good one named,
  strict JSON outputs;
- a tag without ``seesaw_state.json`` accepted with ``--allow-missing-seesaw-state`` is
  still checked, from the model file's Seesaw state;
- a damaged model file of the right size, and a disk that fills during a save, are one line
  from rank 0 naming the file, exit 2, with every earlier checkpoint intact;
- a changed weight decay / betas applies on resume (it used to be silently ignored).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess

import pytest

from train_common import (
    REFERENCE_CHECKPOINT,
    REPO,
    job_env,
    run_config,
    train,
    train_command,
    write_configs,
)


def _attempt(run_path, ds_path, out, *extra):
    """Launch a 2-rank job (torchrun) that may fail: (exit status, log)."""
    proc = subprocess.run(train_command(run_path, ds_path, out, *extra), cwd=str(REPO),
                          env=job_env(), capture_output=True, text=True, timeout=600)
    return proc.returncode, proc.stdout + proc.stderr


def _strict_json(path):
    def refuse(constant):
        raise AssertionError(f"{path} holds a bare {constant}")

    return json.loads(path.read_text(), parse_constant=refuse)


def _snapshot(folder):
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _error_lines(log):
    return [line for line in log.splitlines() if line.startswith("seesaw-ds train: error:")]


def _ds_with(ds_path, tmp_path, **params):
    ds = json.loads(ds_path.read_text())
    ds["optimizer"]["params"].update(params)
    path = tmp_path / "ds_changed.json"
    path.write_text(json.dumps(ds))
    return path


def _mid(full):
    return next(int(r["step"]) for r in full.rows if int(r["tokens"]) >= REFERENCE_CHECKPOINT)


def _copy_stopped_at_mid(uninterrupted, out):
    """The reference run's output as if it had stopped at its mid-run checkpoint."""
    full = uninterrupted["run"]
    shutil.copytree(full.out, out)
    mid = _mid(full)
    shutil.rmtree(out / "checkpoints" / full.latest_tag())
    (out / "checkpoints" / "latest").write_text(f"global_step{mid}")
    (out / "summary.json").unlink()
    return mid


def test_a_diverged_run_stops_without_publishing_diverged_weights(uninterrupted, tmp_path):
    run_path, ds_path = write_configs(
        tmp_path / "nan", run_config(uninterrupted["prepared"], 2.0e3, 1.0e3),
        json.loads(_ds_with(uninterrupted["ds_path"], tmp_path, lr=1e6).read_text()))
    out = tmp_path / "nan_run"
    code, log = _attempt(run_path, ds_path, out)
    assert code != 0
    with open(out / "steps.csv", encoding="utf-8") as handle:
        losses = [float(line.split(",")[-1]) for line in handle.readlines()[1:]]
    first_bad = next(i for i, loss in enumerate(losses) if not math.isfinite(loss))
    assert len(losses) == first_bad + 3  # stopped at the 3rd bad step in a row (default)
    assert not any(math.isfinite(loss) for loss in losses[first_bad:])
    good = (out / "checkpoints" / "latest").read_text()
    steps = sorted(int(p.name.replace("global_step", ""))
                   for p in (out / "checkpoints").iterdir() if p.is_dir())
    assert good == f"global_step{steps[-1]}" and steps[-1] <= first_bad  # no NaN weights
    [line] = [line for line in log.splitlines() if "diverged at step" in line]  # rank 0 only
    assert line == (
        f"seesaw-ds train: diverged at step {len(losses)}: 3 bad steps in a row (steps "
        f"{first_bad + 1}-{len(losses)}; last: loss nan), divergence.max_bad_steps = 3; last "
        f"good checkpoint: {out / 'checkpoints' / good} (continue it with --resume "
        f"--resume-tag {good}, e.g. with a lower peak LR and --allow-plan-change).")
    summary = _strict_json(out / "summary.json")
    assert summary["divergence"]["diverged"] and summary["divergence"]["bad_in_a_row"] == 3
    assert summary["divergence"]["last_good_checkpoint"] == good and not summary["finished"]
    _strict_json(out / "curve.json")


def test_a_tag_without_seesaw_state_is_checked_from_its_model_file(uninterrupted, tmp_path):
    out = tmp_path / "no_sidecar"
    shutil.copytree(uninterrupted["run"].out, out)
    tag = uninterrupted["run"].latest_tag()
    (out / "checkpoints" / tag / "seesaw_state.json").unlink()
    before = _snapshot(out)
    code, log = _attempt(uninterrupted["run_path"],
                         _ds_with(uninterrupted["ds_path"], tmp_path, lr=2e-3), out,
                         "--resume", "--allow-missing-seesaw-state")
    assert code != 0 and f"{os.sep}seesaw_ds{os.sep}" not in log  # no traceback of ours
    # The plan's fingerprint holds each phase's absolute LR (a peak LR change is a plan
    # change), so the scheduler state inside the checkpoint refuses it as DeepSpeed loads.
    assert _error_lines(log) == [  # once: rank 0 only
        "seesaw-ds train: error: the checkpoint followed a different Seesaw plan than this "
        "config builds (phases differ): resume with the seesaw section and optimizer lr the "
        "run started with, or continue on the new plan on purpose with allow_plan_change "
        "(seesaw_ds.train --allow-plan-change)."]
    assert _snapshot(out) == before


def test_a_damaged_model_file_of_the_right_size_is_one_line(uninterrupted, tmp_path):
    out = tmp_path / "garbage_model"
    shutil.copytree(uninterrupted["run"].out, out)
    tag = uninterrupted["run"].latest_tag()
    model = out / "checkpoints" / tag / "mp_rank_00_model_states.pt"
    data = bytearray(model.read_bytes())
    data[64:len(data) // 2] = bytes(len(data) // 2 - 64)  # zeros inside, zip end intact
    model.write_bytes(bytes(data))
    before = _snapshot(out)
    code, log = _attempt(uninterrupted["run_path"], uninterrupted["ds_path"], out, "--resume")
    assert code != 0
    [line] = _error_lines(log)
    assert line.startswith(f"seesaw-ds train: error: checkpoint {out / 'checkpoints' / tag} "
                           "could not be loaded: ")
    assert line.endswith("A file of it is damaged: restore it, or resume another tag with "
                         f"--resume-tag (its checkpoints: global_step{_mid(uninterrupted['run'])}"
                         f" (newest: --resume-tag global_step{_mid(uninterrupted['run'])})).")
    assert _snapshot(out) == before


def test_a_changed_weight_decay_and_betas_apply_on_resume(uninterrupted, tmp_path):
    full = uninterrupted["run"]
    out = tmp_path / "wd"
    mid = _copy_stopped_at_mid(uninterrupted, out)
    changed = train(uninterrupted["run_path"],
                    _ds_with(uninterrupted["ds_path"], tmp_path, weight_decay=0.5,
                             betas=[0.5, 0.9]),
                    out, "--resume", "--max-steps", str(mid + 2))
    assert ("seesaw: optimizer betas (0.9, 0.95) -> (0.5, 0.9), weight_decay 0.0 -> 0.5 from "
            f"the config (checkpoint global_step{mid} had the old values)") in changed.log
    assert changed.rows[:mid + 1] == full.rows[:mid + 1]  # step mid+1's loss: saved weights
    # step mid+2 runs on weights the new weight decay and betas updated
    assert changed.rows[mid + 1]["train_loss"] != full.rows[mid + 1]["train_loss"]


def _small_disk(tmp_path, size):
    mount = tmp_path / "small_disk"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    return mount


@pytest.fixture
def small_disk(tmp_path):
    """A 3 MiB tmpfs (room for one 2 MB checkpoint, not two); skipped without mount rights."""
    mount = _small_disk(tmp_path, "3m")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.fixture
def tiny_disk(tmp_path):
    """A 1 MiB tmpfs: not even one checkpoint fits."""
    mount = _small_disk(tmp_path, "1m")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def _checkpoints_on(tmp_path, run_config_data, checkpoints):
    config = dict(run_config_data, checkpoint=dict(run_config_data.get("checkpoint") or {},
                                                   dir=str(checkpoints)))
    path = tmp_path / "run_on_small_disk.yaml"
    path.write_text(json.dumps(config))
    return path


def test_a_save_that_cannot_fit_is_refused_before_writing(uninterrupted, tmp_path,
                                                          small_disk):
    full = uninterrupted["run"]
    out = tmp_path / "full_disk"
    mid = _copy_stopped_at_mid(uninterrupted, out)
    checkpoints = small_disk / "checkpoints"
    shutil.copytree(out / "checkpoints", checkpoints)
    shutil.rmtree(out / "checkpoints")
    run_path = _checkpoints_on(tmp_path, json.loads(uninterrupted["run_path"].read_text()),
                               checkpoints)
    before = _snapshot(checkpoints)
    code, log = _attempt(run_path, uninterrupted["ds_path"], out, "--resume")
    assert code != 0
    [line] = _error_lines(log)
    final = f"global_step{len(full.rows)}"
    assert line.startswith(f"seesaw-ds train: error: saving checkpoint {checkpoints / final} "
                           "failed: no space left on device (")
    assert f"; global_step{mid} took 1.9 MiB); 'latest' still names global_step{mid}, " \
           "untouched. Free space (or set checkpoint.dir elsewhere), then continue with " \
           "--resume." in line
    assert _snapshot(checkpoints) == before and not (checkpoints / final).exists()


def test_disk_full_during_a_save_is_named_on_every_rank_without_a_hang(uninterrupted,
                                                                       tmp_path, tiny_disk):
    checkpoints = tiny_disk / "checkpoints"
    run_path = _checkpoints_on(
        tmp_path, run_config(uninterrupted["prepared"], 1.0e5, 1.0e3), checkpoints)
    out = tmp_path / "tiny_disk_run"
    code, log = _attempt(run_path, uninterrupted["ds_path"], out, "--max-steps", "4")
    assert code != 0
    [line] = _error_lines(log)
    assert line.startswith(f"seesaw-ds train: error: saving checkpoint {checkpoints}"
                           "/global_step2 failed: no space left on device (0.0 MiB free in ")
    assert line.endswith("; no earlier checkpoint was published. Free space (or set "
                         "checkpoint.dir elsewhere), then continue with --resume.")
    assert os.listdir(checkpoints) == []  # the partial tag is removed
