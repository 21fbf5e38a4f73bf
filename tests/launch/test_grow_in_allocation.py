"""``launch/grow_in_allocation.py``: one allocation, the run relaunched on 1 -> 2 -> 3 of its
ranks at the stage boundaries (no queued job between stages), resuming from the checkpoint
through ``seesaw-ds universal``. Every step's batch and LR are the plan's, each step ran on
its stage's rank count, and the record counts time and GPU-hours (used and held)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "train"))

from train_common import REPO, SEQ, ds_config, job_env, run_config, write_configs  # noqa: E402

from seesaw_ds.errors import SeesawConfigError  # noqa: E402

TOTAL = 4.0e4
EVAL = 2.0e4


def _driver():
    spec = importlib.util.spec_from_file_location("grow_in_allocation",
                                                  REPO / "launch" / "grow_in_allocation.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _stage_start():
    from seesaw_ds.config import plan_from_ds_config

    plan = plan_from_ds_config(ds_config(TOTAL, stage=1), 2)
    return next(p.start_tokens for p in plan.phases if p.global_batch > plan.initial_batch)


def test_stages_are_checked_before_anything_runs():
    driver = _driver()
    assert driver.parse_stages(["0:1", "2e4:2"]) == [(0.0, 1), (2e4, 2)]
    for bad, field in ((["1:1"], "start with 0"), (["0:2", "5:1"], "shrink"),
                       (["0:x"], "START_TOKENS:RANKS")):
        with pytest.raises(SeesawConfigError, match=field):
            driver.parse_stages(bad)
    command = driver.stage_command(16, ["--resume"], "srun", 8, 29500)
    assert command[:4] == ["srun", "--nodes=2", "--ntasks-per-node=1", "--gpus-per-node=8"]
    assert "--nnodes 2 --nproc_per_node 8 --rdzv_backend c10d" in command[-1]
    with pytest.raises(SeesawConfigError, match="whole nodes"):
        driver.stage_command(12, [], "srun", 8)


def test_one_allocation_grows_one_two_three_ranks(tmp_path):
    from seesaw_ds.config import plan_from_ds_config

    stage_start = _stage_start()
    config = ds_config(TOTAL, stage=1)
    config["train_micro_batch_size_per_gpu"] = 1
    config["seesaw"].update(batch_multiple=2, growth_policy="micro_batch_first",
                            max_micro_batch=4,
                            batch_multiple_stages=[{"from_tokens": stage_start, "multiple": 3}])
    run_path, ds_path = write_configs(tmp_path, run_config(tmp_path / "data", EVAL), config)
    out = tmp_path / "run"
    middle = stage_start / 2
    record = _driver().run_stages(str(run_path), str(ds_path), str(out),
                                  [(0.0, 1), (middle, 2), (stage_start, 3)], env=job_env(),
                                  log=lambda *_: None)
    assert [s["ranks"] for s in record["stages"]] == [1, 2, 3]
    assert record["allocation_ranks"] == 3
    assert record["stages"][0]["convert_seconds"] == 0
    assert all(s["convert_seconds"] > 0 for s in record["stages"][1:])  # ZeRO-1: universal
    used = sum(s["ranks"] * s["train_seconds"] + s["convert_seconds"] for s in record["stages"])
    assert record["gpu_hours_used"] == pytest.approx(used / 3600)
    assert record["gpu_hours_held"] == pytest.approx(3 * record["total_seconds"] / 3600)
    assert record["gpu_hours_used"] < record["gpu_hours_held"]
    assert json.loads((out / "launch" / "grow_in_allocation.json").read_text()) == record

    import csv

    with open(out / "steps.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    plan = plan_from_ds_config(config, 1)
    planned = list(plan.iter_steps())
    assert len(rows) == len(planned)
    seen = set()
    for row, (step, tokens, setting) in zip(rows, planned):
        assert int(row["step"]) == step + 1
        assert int(row["tokens"]) == tokens + setting.global_batch * SEQ
        assert int(row["global_batch"]) == setting.global_batch
        assert float(row["lr"]) == pytest.approx(setting.lr, rel=1e-9)
        # the first step at or past a stage start runs on that stage's ranks
        ranks = 1 if tokens < middle else 2 if tokens < stage_start else 3
        ranks_here = setting.global_batch // (int(row["micro_batch"]) * int(row["grad_accum"]))
        assert ranks_here == ranks
        seen.add(ranks)
    assert seen == {1, 2, 3}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 3 and summary["finished"] is True
    assert summary["tokens"] == plan.trained_tokens
