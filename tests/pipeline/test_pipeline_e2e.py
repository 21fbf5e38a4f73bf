"""End to end on a tiny corpus: prepare -> 2-rank training (torchrun, gloo, real DeepSpeed,
megatron-core datasets, sentencepiece) -> checkpoint -> resume -> summary; the resumed run
equals the uninterrupted one step for step."""

import csv
import json
import os
import subprocess
import sys

import pytest

from seesaw_ds.config import load_config_file, plan_from_ds_config
from seesaw_ds.data.testing import TINY_MAX_BYTES, TINY_SPLIT, TINY_VOCAB, make_tiny_prepared
from seesaw_ds.distributed import free_port

SEQ = 64


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    prepared = make_tiny_prepared(root / "data")
    run_config = root / "run.yaml"
    run_config.write_text(
        "model: {shape: micro}\n"
        f"data: {{prepared_dir: {prepared.out_dir}, vocab_size: {TINY_VOCAB}, "
        f"max_bytes: {TINY_MAX_BYTES}, split: '{TINY_SPLIT}'}}\n"
        "eval: {interval_tokens: 16384, batches: 2, batch_size: 8}\n"
        "checkpoint: {interval_tokens: 32768}\n"
        "seed: 3\n")
    ds_config = {
        "train_batch_size": 8, "train_micro_batch_size_per_gpu": 2,
        "gradient_clipping": 1.0, "steps_per_print": 1000,
        "optimizer": {"type": "AdamW", "params": {"lr": 3e-3, "betas": [0.9, 0.95],
                                                  "weight_decay": 0.0, "torch_adam": True}},
        "zero_optimization": {"stage": 1},
        "seesaw": {"total_tokens": 65536, "seq_length": SEQ, "batch_growth": 2.0,
                   "lr_schedule": {"type": "cosine", "warmup_fraction": 0.1,
                                   "warmup_start_factor": 0.1, "final_factor": 0.1}},
    }
    ds_path = root / "ds.json"
    ds_path.write_text(json.dumps(ds_config))
    return root, run_config, ds_path


def _train(run_config, ds_path, out_dir, *extra):
    env = dict(os.environ, DS_ACCELERATOR="cpu", OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_port", str(free_port()), "-m", "seesaw_ds.train",
           "--run-config", str(run_config), "--deepspeed_config", str(ds_path),
           "--output-dir", str(out_dir), "--no-progress", *extra]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def _rows(out_dir):
    with open(os.path.join(out_dir, "steps.csv"), encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_train_checkpoint_resume_matches_the_uninterrupted_run(setup):
    root, run_config, ds_path = setup
    full, split = root / "full", root / "split"
    _train(run_config, ds_path, full)
    summary = json.loads((full / "summary.json").read_text())
    for key in ("schedule", "final_val_loss", "optimizer_steps", "tokens", "wall_seconds"):
        assert key in summary
    plan = plan_from_ds_config(load_config_file(ds_path), 2)
    planned = list(plan.iter_steps())
    rows = _rows(full)
    assert summary["finished"] and summary["optimizer_steps"] == len(planned) == len(rows)
    assert [int(row["global_batch"]) for row in rows] == [s.global_batch for _, _, s in planned]
    assert {int(row["global_batch"]) for row in rows} >= {8, 16}  # crosses a batch boundary
    assert summary["tokens"] == plan.trained_tokens
    curve = json.loads((full / "curve.json").read_text())
    assert curve[0]["tokens"] == 0 and curve[-1]["step"] == summary["optimizer_steps"]
    largest_step = max(p.global_batch for p in plan.phases) * SEQ
    for k, point in enumerate(curve[1:-1], start=1):  # the first step boundary past k x 16384
        assert 16384 * k <= point["tokens"] < 16384 * k + largest_step

    # Stop after the first periodic checkpoint (past the 8 -> 16 boundary), then resume.
    stop_at = next(int(r["step"]) for r in rows if int(r["tokens"]) >= 32768) + 2
    _train(run_config, ds_path, split, "--max-steps", str(stop_at))
    latest = (split / "checkpoints" / "latest").read_text().strip()
    assert os.path.isfile(split / "checkpoints" / latest / "seesaw_state.json")
    resumed = _train(run_config, ds_path, split, "--resume")
    assert "resumed from" in resumed.stdout
    assert [r["train_loss"] for r in _rows(split)] == [r["train_loss"] for r in rows]
    resumed_summary = json.loads((split / "summary.json").read_text())
    assert resumed_summary["final_val_loss"] == summary["final_val_loss"]
    assert resumed_summary["optimizer_steps"] == summary["optimizer_steps"]


def test_bad_run_config_exits_2_with_one_line_before_any_work(setup, tmp_path):
    root, _, ds_path = setup
    bad = tmp_path / "bad.yaml"
    bad.write_text("modle: {shape: micro}\n")
    result = subprocess.run(
        [sys.executable, "-m", "seesaw_ds.train", "--run-config", str(bad),
         "--deepspeed_config", str(ds_path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "modle" in result.stderr and "Did you mean 'model'" in result.stderr
    assert "Traceback" not in result.stderr


def _guarded_config(ds_path, tmp_path, **guard):
    config = json.loads(ds_path.read_text())
    config["seesaw"]["cbs_guard"] = {"enabled": True, "ema_decay": 0.5, "min_samples": 1,
                                     **guard}
    path = tmp_path / "guarded.json"
    path.write_text(json.dumps(config))
    return path


def test_cbs_guard_holds_the_batch_and_moves_the_decay_into_the_lr(setup, tmp_path):
    root, run_config, ds_path = setup
    guarded = _guarded_config(ds_path, tmp_path, safety_factor=1e-6)
    out = tmp_path / "held"
    _train(run_config, guarded, out)
    summary = json.loads((out / "summary.json").read_text())
    decision = summary["cbs_guard"]["decisions"][0]
    assert summary["cbs_guard"]["held_at"] == decision["cap"] == 8  # at the first growth
    rows = _rows(out)
    assert {int(row["global_batch"]) for row in rows} == {8}
    # After the hold the LR follows the base schedule scaled by sqrt(8 / 8): the cosine.
    plan = plan_from_ds_config(load_config_file(ds_path), 2)
    for row in rows[:-1]:  # the short last step takes only the remaining samples
        if int(row["step"]) > decision["step"] + 1:
            tokens_before = int(row["tokens"]) - 8 * SEQ
            expected = plan.peak_lr * plan.base.factor(tokens_before)
            assert float(row["lr"]) == pytest.approx(expected, rel=1e-6)
    assert summary["optimizer_steps"] == plan.baseline_optimizer_steps


def test_cbs_guard_with_room_never_holds(setup, tmp_path):
    root, run_config, ds_path = setup
    out = tmp_path / "free"
    _train(run_config, _guarded_config(ds_path, tmp_path, safety_factor=1e9), out)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["cbs_guard"]["held_at"] is None
    plan = plan_from_ds_config(load_config_file(ds_path), 2)
    assert [int(r["global_batch"]) for r in _rows(out)] == [
        s.global_batch for _, _, s in plan.iter_steps()]


def test_cbs_guard_refuses_zero_stage_3(setup, tmp_path):
    root, run_config, ds_path = setup
    config = json.loads(_guarded_config(ds_path, tmp_path).read_text())
    config["zero_optimization"] = {"stage": 3}
    path = tmp_path / "zero3.json"
    path.write_text(json.dumps(config))
    env = dict(os.environ, DS_ACCELERATOR="cpu", OMP_NUM_THREADS="1")
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
         "--master_port", str(free_port()), "-m", "seesaw_ds.train", "--run-config",
         str(run_config), "--deepspeed_config", str(path), "--output-dir",
         str(tmp_path / "z3"), "--no-progress"],
        env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode != 0
    assert "cbs_guard needs ZeRO stage 0-2" in result.stderr
