"""A chain whose second job runs on a rank count that does not divide the initial batch
(``seesaw.batch_multiple_stages``): 2 ranks up to the stage boundary, ``seesaw-ds
universal``, then ``--resume`` on 3 ranks. Every step's batch and LR are the plan's (batches
of the second stage rounded up to multiples of 3, LR corrected), the token clock and data
position continue, and the losses match the same plan trained on 1 rank throughout (ZeRO-1,
fp32: only the reduction order differs)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from train_common import REPO, SEQ, ds_config, job_env, run_config, train, write_configs

TOTAL = 4.0e4
EVAL = 1.0e4


def _config(stage_start):
    config = ds_config(TOTAL, stage=1)
    config["train_micro_batch_size_per_gpu"] = 1
    config["seesaw"].update(batch_multiple=2, growth_policy="micro_batch_first",
                            max_micro_batch=4,
                            batch_multiple_stages=[{"from_tokens": stage_start, "multiple": 3}])
    return config


def _stage_start():
    from seesaw_ds.config import plan_from_ds_config

    plain = ds_config(TOTAL, stage=1)
    plan = plan_from_ds_config(plain, 2)
    return next(p.start_tokens for p in plan.phases if p.global_batch > plan.initial_batch)


@pytest.fixture(scope="module")
def chain(train_root, prepared_dir):
    from seesaw_ds.config import plan_from_ds_config

    folder = train_root / "grow_stages"
    stage_start = _stage_start()
    config = _config(stage_start)
    run_path, ds_path = write_configs(folder, run_config(prepared_dir, EVAL), config)
    reference = train(run_path, ds_path, folder / "one_rank", nproc=1)
    out = folder / "chain"
    # a 3-rank job from the start is refused before any process group: 8 is not a multiple
    refused = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "3",
         "--master_port", "29911", "-m", "seesaw_ds.train", "--run-config", str(run_path),
         "--deepspeed_config", str(ds_path), "--output-dir", str(folder / "refused"),
         "--no-progress"], cwd=str(REPO), env=job_env(), capture_output=True, text=True,
        timeout=600)
    first = train(run_path, ds_path, out, "--stop-at-tokens", str(stage_start), nproc=2)
    first_rows = len(first.rows)
    convert = subprocess.run([sys.executable, "-m", "seesaw_ds.cli.main", "universal",
                              str(out / "checkpoints")], cwd=str(REPO), env=job_env(),
                             capture_output=True, text=True, timeout=600)
    assert convert.returncode == 0, convert.stderr[-3000:]
    second = train(run_path, ds_path, out, "--resume", nproc=3)
    return {"plan": plan_from_ds_config(config, 1), "stage_start": stage_start,
            "reference": reference, "first_rows": first_rows, "second": second,
            "refused": refused}


def test_three_ranks_from_the_start_is_one_clear_error(chain):
    refused = chain["refused"]
    assert refused.returncode != 0
    errors = [line for line in (refused.stdout + refused.stderr).splitlines()
              if line.startswith("seesaw-ds train: error:")]
    assert errors and len(set(errors)) == 1
    assert "--stop-at-tokens" in errors[0] and "batch-multiple stage 2" in errors[0]


def test_the_chain_follows_the_staged_plan_and_the_one_rank_losses(chain):
    plan, second, reference = chain["plan"], chain["second"], chain["reference"]
    rows, ref_rows = second.rows, reference.rows
    planned = list(plan.iter_steps())
    assert len(rows) == len(ref_rows) == len(planned)
    first = chain["first_rows"]
    assert 0 < first < len(planned)
    for index, (row, ref, (step, tokens, setting)) in enumerate(zip(rows, ref_rows, planned)):
        assert int(row["step"]) == step + 1
        assert int(row["tokens"]) == tokens + setting.global_batch * SEQ
        assert int(row["global_batch"]) == setting.global_batch == int(ref["global_batch"])
        assert float(row["lr"]) == pytest.approx(setting.lr, rel=1e-9)
        assert float(row["train_loss"]) == pytest.approx(float(ref["train_loss"]), rel=2e-5)
        ranks = 2 if index < first else 3
        assert int(row["micro_batch"]) * int(row["grad_accum"]) * ranks == setting.global_batch
        if tokens >= chain["stage_start"]:
            assert setting.global_batch % 3 == 0
    # the second stage really rounds: 16 -> 18, with the LR raised by sqrt(18 / 16)
    assert {int(r["global_batch"]) for r in rows[first:]} >= {18}
    assert int(rows[first - 1]["global_batch"]) == 8
    summary = second.summary
    assert summary["world_size"] == 3 and summary["finished"] is True
    assert summary["tokens"] == reference.summary["tokens"] == plan.trained_tokens
    for point, ref in zip(second.curve, reference.curve):
        assert point["val_loss"] == pytest.approx(ref["val_loss"], rel=2e-5)
