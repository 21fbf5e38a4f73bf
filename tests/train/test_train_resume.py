"""prepare -> 2-rank Seesaw training -> mid-run checkpoint -> SIGKILL -> ``--resume``: the
resumed run is the uninterrupted one, bit for bit; cosine and Seesaw evaluate alike."""

from __future__ import annotations

import json
import math
import shutil

from train_common import (
    B0,
    REFERENCE_CHECKPOINT as CHECKPOINT,
    REFERENCE_EVAL as EVAL,
    REFERENCE_TOTAL as TOTAL,
    SEQ,
    comparable,
    ds_config,
    plan_of,
    planned_batches,
    train,
    train_and_kill,
    write_configs,
)


def _expected_eval_points(rows, interval):
    """(tokens, step) of curve.json: step 0, then the first step at or past each multiple
    of the interval (one point when a step passes several), and the last step."""
    points, next_eval = [(0, 0)], interval
    for row in rows:
        tokens, step = int(row["tokens"]), int(row["step"])
        if tokens >= next_eval or row is rows[-1]:
            points.append((tokens, step))
            next_eval = (math.floor(tokens / interval) + 1) * interval
    return points


def test_uninterrupted_run_follows_the_plan_and_writes_its_outputs(uninterrupted):
    run, ds_path = uninterrupted["run"], uninterrupted["ds_path"]
    assert "prepare: wrote" in run.log  # rank 0 prepared the corpus
    plan = plan_of(ds_path)
    rows, summary = run.rows, run.summary
    for key in ("schedule", "final_val_loss", "optimizer_steps", "tokens", "wall_seconds"):
        assert key in summary
    assert summary["schedule"] == "seesaw" and summary["finished"]
    assert summary["optimizer_steps"] == plan.optimizer_steps == len(rows)
    assert summary["tokens"] == plan.trained_tokens == int(rows[-1]["tokens"])
    assert summary["world_size"] == 2

    steps = list(plan.iter_steps())
    assert [int(r["global_batch"]) for r in rows] == planned_batches(plan)
    assert len({int(r["global_batch"]) for r in rows}) >= 3  # crosses Seesaw boundaries
    for row, (index, start_tokens, setting) in zip(rows, steps):
        assert int(row["step"]) == index + 1
        assert int(row["tokens"]) == start_tokens + setting.global_batch * SEQ
        assert int(row["micro_batch"]) == setting.micro_batch
        assert int(row["grad_accum"]) == setting.grad_accum
        assert float(row["lr"]) == float(f"{setting.lr:.10g}")

    curve = run.curve
    assert [(p["tokens"], p["step"]) for p in curve] == _expected_eval_points(rows, EVAL)
    assert curve[-1]["val_loss"] == summary["final_val_loss"]
    assert curve[-1]["val_loss"] < curve[0]["val_loss"]

    # One periodic checkpoint (the first step past CHECKPOINT tokens) and the final one.
    mid = next(int(r["step"]) for r in rows if int(r["tokens"]) >= CHECKPOINT)
    tags = sorted(p.name for p in (run.out / "checkpoints").iterdir() if p.is_dir())
    assert tags == sorted([f"global_step{mid}", f"global_step{len(rows)}"])
    assert run.latest_tag() == f"global_step{len(rows)}"
    saved = json.loads((run.out / "checkpoints" / f"global_step{mid}" /
                        "seesaw_state.json").read_text())
    assert saved["state"]["step"] == mid and saved["state"]["global_batch"] > B0


def test_killed_run_resumes_to_the_uninterrupted_result(uninterrupted, train_root):
    full = uninterrupted["run"]
    out = train_root / "killed"
    killed_at = train_and_kill(uninterrupted["run_path"], uninterrupted["ds_path"], out)
    mid = next(int(r["step"]) for r in full.rows if int(r["tokens"]) >= CHECKPOINT)
    assert killed_at == mid
    assert not (out / "summary.json").exists()
    with open(out / "steps.csv", encoding="utf-8") as handle:
        assert len(handle.readlines()) - 1 > mid  # rows past the checkpoint, to be redone

    resumed = train(uninterrupted["run_path"], uninterrupted["ds_path"], out, "--resume")
    assert f"resumed from {out / 'checkpoints' / f'global_step{mid}'}" in resumed.log
    assert "prepare: reusing" in resumed.log
    assert resumed.rows == full.rows  # every column, exact strings: losses bitwise equal
    assert comparable(resumed.summary) == comparable(full.summary)
    drop_wall = [{k: v for k, v in p.items() if k != "wall_seconds"} for p in resumed.curve]
    assert drop_wall == [{k: v for k, v in p.items() if k != "wall_seconds"}
                         for p in full.curve]
    assert resumed.summary["wall_seconds"] > 0
    # The resumed run did not save the mid-run checkpoint a second time.
    tags = sorted(p.name for p in (out / "checkpoints").iterdir() if p.is_dir())
    assert tags == sorted([f"global_step{mid}", f"global_step{len(full.rows)}"])


def test_cosine_and_seesaw_see_the_same_validation_and_training_data(uninterrupted,
                                                                      train_root):
    seesaw = uninterrupted["run"]
    plan = plan_of(uninterrupted["ds_path"])
    warmup_steps = sum(1 for _, tokens, _ in plan.iter_steps()
                       if tokens < plan.base.warmup_tokens)
    run_path = uninterrupted["run_path"]
    _, ds_path = write_configs(train_root / "cosine", json.loads(run_path.read_text()),
                               ds_config(TOTAL, schedule="constant"))
    cosine = train(run_path, ds_path, train_root / "cosine_run", "--max-steps",
                   str(warmup_steps))
    # Same init, same held-out batches: the same step-0 validation loss, to the bit.
    assert cosine.curve[0]["step"] == seesaw.curve[0]["step"] == 0
    assert cosine.curve[0]["val_loss"] == seesaw.curve[0]["val_loss"]
    # Through warmup both schedules take the same LR and batch: with one global token
    # stream (a dataset sized by the token budget, not by the schedule) the same losses.
    assert cosine.rows == seesaw.rows[:warmup_steps]
    assert cosine.summary["schedule"] == "constant"


def _mtimes(tag_dir):
    return {p.name: p.stat().st_mtime_ns for p in sorted(tag_dir.iterdir())}


def _saves(log, tag):
    """How often the run wrote checkpoint ``tag`` (seesaw_ds.train logs each save)."""
    return log.count(f"checkpoint {tag} written")


def test_max_steps_after_a_periodic_save_then_resume_rewrites_and_trains_nothing(
        uninterrupted, train_root):
    full = uninterrupted["run"]
    mid = next(int(r["step"]) for r in full.rows if int(r["tokens"]) >= CHECKPOINT)
    out = train_root / "max_steps"
    stopped = train(uninterrupted["run_path"], uninterrupted["ds_path"], out,
                    "--max-steps", str(mid))
    assert stopped.rows == full.rows[:mid] and stopped.latest_tag() == f"global_step{mid}"
    assert _saves(stopped.log, f"global_step{mid}") == 1  # periodic save, not rewritten
    tag_dir = out / "checkpoints" / f"global_step{mid}"
    before = _mtimes(tag_dir)
    again = train(uninterrupted["run_path"], uninterrupted["ds_path"], out, "--resume",
                  "--max-steps", str(mid))
    assert f"resumed from {tag_dir}" in again.log
    assert again.rows == full.rows[:mid]  # no extra step
    assert _saves(again.log, f"global_step{mid}") == 0 and _mtimes(tag_dir) == before
    assert f"checkpoint global_step{mid} already published" in again.log
    assert again.summary["optimizer_steps"] == mid and not again.summary["finished"]


def test_resuming_a_finished_run_rewrites_nothing(uninterrupted, train_root):
    full = uninterrupted["run"]
    out = train_root / "finished"
    shutil.copytree(full.out, out)  # copy2: modification times kept
    tag_dir = out / "checkpoints" / full.latest_tag()
    before = _mtimes(tag_dir)
    again = train(uninterrupted["run_path"], uninterrupted["ds_path"], out, "--resume")
    assert f"resumed from {tag_dir}" in again.log
    assert _saves(again.log, full.latest_tag()) == 0 and _mtimes(tag_dir) == before
    assert again.rows == full.rows
    assert comparable(again.summary) == comparable(full.summary)
