"""The adaptive schedule end to end (2 ranks): the batch grows above Seesaw's envelope as
soon as ``safety_factor x B_simple`` allows, every step follows the plan rebuilt from the
saved decisions, and a SIGKILL + ``--resume`` ends bit for bit like the uninterrupted run."""

from __future__ import annotations

import json

import pytest

from seesaw_ds.schedules import BatchLimit
from train_common import (
    comparable,
    ds_config,
    plan_of,
    planned_batches,
    run_config,
    train,
    train_and_kill,
    write_configs,
)

TOTAL = 1.0e5
EVAL = 5.0e4
CHECKPOINT = 3.0e4


def _adaptive_config():
    config = ds_config(TOTAL, schedule="adaptive")
    config["seesaw"].update(batch_growth=2.0, max_batch=96, adaptive={
        "safety_factor": 1e6, "ema_decay": 0.0, "min_samples": 1})
    return config


@pytest.fixture(scope="module")
def adaptive(prepared_dir, train_root):
    run_path, ds_path = write_configs(train_root / "adaptive",
                                      run_config(prepared_dir, EVAL, CHECKPOINT),
                                      _adaptive_config())
    run = train(run_path, ds_path, train_root / "adaptive_run")
    return {"run": run, "run_path": run_path, "ds_path": ds_path}


def test_adaptive_grows_past_the_envelope_and_follows_its_decisions(adaptive):
    run = adaptive["run"]
    rows, policy = run.rows, run.summary["cbs_guard"]
    envelope = plan_of(adaptive["ds_path"])
    batches = [int(r["global_batch"]) for r in rows]
    assert policy["measurements"] >= 1 and policy["b_simple"] is not None
    assert [d["floor"] for d in policy["decisions"]] == [16, 32, 64, 96]  # a rung a step
    assert max(batches) == 96 and max(planned_batches(envelope)) == 64
    limits = [BatchLimit.from_list(limit) for limit in policy["limits"]]
    followed = envelope.with_batch_limits(limits)
    assert batches == planned_batches(followed)
    assert run.summary["optimizer_steps"] == followed.optimizer_steps == len(rows)
    for row, (_, _, setting) in zip(rows, followed.iter_steps()):
        assert float(row["lr"]) == pytest.approx(setting.lr, rel=1e-9)
        assert float(row["lr"]) <= 2 * 3e-3 * (1 + 1e-12)  # the default LR ceiling (2 x peak)
    assert max(float(r["lr"]) for r in rows) > 3e-3  # a lifted batch raised the LR past peak
    assert len(rows) < envelope.optimizer_steps


def test_adaptive_run_resumes_to_the_uninterrupted_result(adaptive, train_root):
    full = adaptive["run"]
    last_decision = full.summary["cbs_guard"]["decisions"][-1]["step"]
    out = train_root / "adaptive_killed"
    killed_at = train_and_kill(adaptive["run_path"], adaptive["ds_path"], out,
                               past_step=last_decision + 1)
    tag_dir = out / "checkpoints" / f"global_step{killed_at}"
    saved = json.loads((tag_dir / "cbs_guard.json").read_text())
    assert saved["guard"]["limits"]
    resumed = train(adaptive["run_path"], adaptive["ds_path"], out, "--resume")
    assert resumed.rows == full.rows
    assert comparable(resumed.summary) == comparable(full.summary)
