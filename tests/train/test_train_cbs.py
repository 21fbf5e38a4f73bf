"""`seesaw-ds cbs` end to end: a tiny one-rank run with checkpoints, branches at two batches
from the checkpoint nearest 9,000 tokens (`--at-tokens`; each branch a real
`python -m seesaw_ds.train` job),
the JSON record, the figure, and a rerun that trains nothing (every branch's summary is
there). Three process launches in all: the slow part is importing DeepSpeed."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys

from seesaw_ds.data.testing import make_tiny_prepared
from train_common import REPO, SEQ, ds_config, job_env, run_config, write_configs

TOTAL = 2.4e4          # 47 steps of 8 x 64 tokens
CHECKPOINT = 1.0e4     # checkpoints at 10,240 and 20,480 tokens (and the final one)
# rounded up to 12,288: 24 steps at batch 8, 12 at batch 16; the branches pass 20,000
# tokens, where the base run's saved state had its next checkpoint (a branch saves none)
BRANCH = 1.2e4
BRANCH_ALIGNED = 12288


def _cbs(run_path, ds_path, base_out, out):
    command = [sys.executable, "-m", "seesaw_ds.cli.main", "cbs", "--run-config",
               str(run_path), "--deepspeed_config", str(ds_path), "--base-output-dir",
               str(base_out), "--out", str(out), "--batches", "8,16", "--branch-tokens",
               str(BRANCH), "--tolerance", "0.5", "--at-tokens", "9e3"]
    proc = subprocess.run(command, cwd=str(REPO), env=job_env(), capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def test_cbs_branches_decide_fit_plot_and_resume(tmp_path):
    prepared = tmp_path / "data"
    make_tiny_prepared(str(prepared))
    config = ds_config(TOTAL)  # Seesaw, growth 2
    run_path, ds_path = write_configs(tmp_path / "cfg", run_config(prepared, 1.0e4, CHECKPOINT),
                                      config)
    base = tmp_path / "base"
    command = [sys.executable, "-m", "seesaw_ds.train", "--run-config", str(run_path),
               "--deepspeed_config", str(ds_path), "--output-dir", str(base), "--no-progress"]
    proc = subprocess.run(command, cwd=str(REPO), env=job_env(), capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with open(base / "steps.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    next_step = {int(a["tokens"]): b for a, b in zip(rows, rows[1:])}

    out = tmp_path / "cbs"
    log = _cbs(run_path, ds_path, base, out)
    record = json.loads((out / "cbs.json").read_text())
    assert record["branch_tokens"] == BRANCH_ALIGNED and record["batches"] == [8, 16]
    assert [c["tokens"] for c in record["checkpoints"]] == [10240]
    for row in record["checkpoints"]:
        # the base's batch and LR of the next step; lr / sqrt(B) kept on each branch
        base_step = next_step[row["tokens"]]
        assert row["base_batch"] == int(base_step["global_batch"])
        assert math.isclose(row["base_lr"], float(base_step["lr"]), rel_tol=1e-8)
        for batch in (8, 16):
            assert math.isclose(row["branch_lrs"][str(batch)] / math.sqrt(batch),
                                row["base_lr"] / math.sqrt(row["base_batch"]), rel_tol=1e-12)
        for batch in (8, 16):
            branch = out / f"t{row['tokens']}" / f"B{batch}"
            curve = json.loads((branch / "curve.json").read_text())
            assert curve[-1]["tokens"] == row["tokens"] + BRANCH_ALIGNED
            assert row["losses"][str(batch)] == curve[-1]["val_loss"]
            steps = [r for r in (branch / "steps.csv").read_text().splitlines()[1:]
                     if int(r.split(",")[1]) > row["tokens"]]
            assert len(steps) == BRANCH_ALIGNED // (batch * SEQ)
            assert all(int(r.split(",")[3]) == batch for r in steps)
            assert math.isclose(float(steps[0].split(",")[2]), row["branch_lrs"][str(batch)],
                                rel_tol=1e-8)
            assert not (branch / "checkpoints").exists()
        # a tolerance of 50% makes batch 16 match: censored at the largest batch tried
        assert row["critical_batch"] == 16 and row["censored"]
    assert record["fit"]["b"] == 0.0 and math.isclose(record["fit"]["a"], 16.0)
    assert (out / "cbs.png").stat().st_size > 0

    again = _cbs(run_path, ds_path, base, out)
    assert again.count("done before") == 2
    assert json.loads((out / "cbs.json").read_text())["checkpoints"] == record["checkpoints"]
