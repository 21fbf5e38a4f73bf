"""The critical-batch-size guard end to end: a hold caps the batch and moves the decay into
the LR, survives SIGKILL + ``--resume`` bit for bit; room (or ``action: warn``) never holds;
the guard measures the same on ZeRO 0/1/2 with clipping on and off and does not perturb."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from seesaw_ds.cbs.probe import PROBE_EVERY
from seesaw_ds.schedules import BatchLimit
from train_common import (
    B0,
    HERE,
    REPO,
    SEQ,
    comparable,
    ds_config,
    free_port,
    job_env,
    plan_of,
    planned_batches,
    run_config,
    train,
    train_and_kill,
    write_configs,
)

TOTAL = 1.0e5
EVAL = 5.0e4
CHECKPOINT = 4.0e4  # tags at ~40k (before the hold) and ~80k (after it)
HOLD = {"ema_decay": 0.0, "safety_factor": 1e-6}


def _min_samples_past_first_growth() -> int:
    """Enough measurements that the first growth (8 -> 16) passes unjudged: the guard can
    only decide at a later growth, so it holds a grown batch."""
    from seesaw_ds.config import plan_from_ds_config

    batches = planned_batches(plan_from_ds_config(ds_config(TOTAL), 2))
    steps_before_growth = next(i for i, b in enumerate(batches) if b > B0)
    return math.ceil(steps_before_growth / PROBE_EVERY) + 1


@pytest.fixture(scope="module")
def held(prepared_dir, train_root):
    guard = dict(HOLD, min_samples=_min_samples_past_first_growth())
    run_path, ds_path = write_configs(train_root / "guard_hold",
                                      run_config(prepared_dir, EVAL, CHECKPOINT),
                                      ds_config(TOTAL, guard=guard))
    run = train(run_path, ds_path, train_root / "held")
    return {"run": run, "run_path": run_path, "ds_path": ds_path}


def test_guard_holds_the_batch_and_the_lr_follows_the_capped_plan(held):
    run = held["run"]
    rows, guard = run.rows, run.summary["cbs_guard"]
    plan = plan_of(held["ds_path"])
    uncapped = planned_batches(plan)
    held_at = guard["held_at"]
    assert guard["measurements"] >= 1 and guard["b_simple"] is not None
    assert held_at is not None and held_at > B0
    [decision] = guard["decisions"]
    step = decision["step"]  # the optimizer step after which the guard decided
    assert decision["cap"] == held_at == int(rows[step - 1]["global_batch"])
    assert decision["tokens"] == int(rows[step - 1]["tokens"])
    assert uncapped[step] > held_at  # the decision stopped a growth that was due
    batches = [int(r["global_batch"]) for r in rows]
    assert batches[:step] == uncapped[:step]
    assert set(batches[step:-1]) == {held_at} and batches[-1] <= held_at  # short last step

    capped = plan.with_batch_limits([BatchLimit(decision["tokens"], cap=held_at)])
    assert guard["limits"] == [[decision["tokens"], None, held_at]]
    assert batches == planned_batches(capped)
    assert run.summary["optimizer_steps"] == capped.optimizer_steps == len(rows)
    assert run.summary["tokens"] == capped.trained_tokens
    for row, (_, start_tokens, setting) in zip(rows, capped.iter_steps()):
        assert float(row["lr"]) == pytest.approx(setting.lr, rel=1e-9)
    # After the hold the LR is the base schedule scaled by sqrt(held / B0).
    for row in rows[step:-1]:  # the short last step is checked above
        start_tokens = int(row["tokens"]) - held_at * SEQ
        expected = plan.peak_lr * plan.base.factor(start_tokens) * math.sqrt(held_at / B0)
        assert float(row["lr"]) == pytest.approx(expected, rel=1e-9)


def test_held_run_resumes_to_the_uninterrupted_result(held, train_root):
    full = held["run"]
    decision_step = full.summary["cbs_guard"]["decisions"][0]["step"]
    out = train_root / "held_killed"
    killed_at = train_and_kill(held["run_path"], held["ds_path"], out, past_step=decision_step)
    tag_dir = out / "checkpoints" / f"global_step{killed_at}"
    saved = json.loads((tag_dir / "cbs_guard.json").read_text())
    assert saved["guard"]["limits"] == full.summary["cbs_guard"]["limits"]
    assert not (out / "summary.json").exists()

    resumed = train(held["run_path"], held["ds_path"], out, "--resume")
    assert f"resumed from {tag_dir}" in resumed.log
    assert resumed.rows == full.rows
    assert comparable(resumed.summary) == comparable(full.summary)


def _guarded_run(prepared_dir, train_root, name, stage, clip, **guard):
    run_path, ds_path = write_configs(
        train_root / name, run_config(prepared_dir, EVAL),
        ds_config(TOTAL, stage=stage, clip=clip,
                  guard={"ema_decay": 0.0, "min_samples": 1, **guard}))
    return train(run_path, ds_path, train_root / f"{name}_run"), plan_of(ds_path)


def test_guard_with_room_never_holds(prepared_dir, train_root):
    run, plan = _guarded_run(prepared_dir, train_root, "guard_room", stage=1, clip=1.0,
                             safety_factor=1e9)
    guard = run.summary["cbs_guard"]
    assert guard["held_at"] is None and guard["decisions"] == []
    assert guard["measurements"] >= len(run.rows) // PROBE_EVERY  # it did measure
    assert [int(r["global_batch"]) for r in run.rows] == planned_batches(plan)


def test_guard_action_warn_reports_without_holding(prepared_dir, train_root):
    run, plan = _guarded_run(prepared_dir, train_root, "guard_warn", stage=2, clip=0.0,
                             safety_factor=1e-6, action="warn")
    guard = run.summary["cbs_guard"]
    batches = planned_batches(plan)
    assert guard["held_at"] is None and guard["decisions"]
    for decision in guard["decisions"]:
        assert decision["reason"].startswith("warn: next batch")
        assert batches[decision["step"]] > batches[decision["step"] - 1]  # at a growth
    assert "[cbs_guard] warn" in run.log
    assert [int(r["global_batch"]) for r in run.rows] == batches


def test_guard_measures_alike_on_zero_0_1_2_with_and_without_clipping(prepared_dir,
                                                                       train_root):
    cases = [{"name": f"z{stage}_clip{clip:g}", "stage": stage, "clip": clip, "guard": True}
             for stage in (0, 1, 2) for clip in (1.0, 0.0)]
    cases += [{"name": "z0_clip1_off", "stage": 0, "clip": 1.0, "guard": False},
              {"name": "z1_clip0_off", "stage": 1, "clip": 0.0, "guard": False},
              {"name": "z2_clip1_off", "stage": 2, "clip": 1.0, "guard": False},
              {"name": "z3", "stage": 3, "clip": 1.0, "guard": True}]
    workdir = train_root / "guard_worker"
    workdir.mkdir()
    spec = {"prepared": str(prepared_dir), "split": "80,20,0", "out": str(workdir / "out"),
            "steps": 5, "cases": cases}
    (workdir / "spec.json").write_text(json.dumps(spec))
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
         "--master_port", str(free_port()), str(HERE / "guard_worker.py"),
         str(workdir / "spec.json")],
        cwd=str(REPO), env=job_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
    ranks = [json.loads((workdir / f"out.rank{r}.json").read_text()) for r in (0, 1)]
    results = ranks[0]
    for name, result in results.items():  # all-reduced: every rank feeds the guard alike
        assert result.get("measurements") == ranks[1][name].get("measurements"), name
    guarded = [c["name"] for c in cases if c["guard"] and c["stage"] < 3]
    for name in guarded:  # probes before steps 1 and 5: two (small, big) measurements each
        assert len(results[name]["measurements"]) == 2, name
        for small_batch, small_sq, big_batch, big_sq in results[name]["measurements"]:
            assert (small_batch, big_batch) == (2, 8) and small_sq > big_sq > 0
    # Step 1 starts from the same weights and data everywhere: one measurement, whether
    # read from ZeRO-0 .grad or from DeepSpeed's ZeRO-1/2 global norm.
    first = results["z0_clip1"]["measurements"][0]
    for name in guarded:
        assert results[name]["measurements"][0][1] == first[1]
        assert results[name]["measurements"][0][3] == pytest.approx(first[3], rel=1e-6)
    for clip in ("1", "0"):  # after 4 steps weights differ by clipping, not by ZeRO stage
        second = results[f"z0_clip{clip}"]["measurements"][1]
        for stage in (1, 2):
            assert results[f"z{stage}_clip{clip}"]["measurements"][1] == pytest.approx(
                second, rel=1e-4)
    # The probe never touches the training: per-micro-batch losses equal the guard-off run.
    for off in ("z0_clip1", "z1_clip0", "z2_clip1"):
        assert results[off]["losses"] == results[f"{off}_off"]["losses"]
    assert "cbs_guard needs ZeRO stage 0-2" in results["z3"]["refused"]
