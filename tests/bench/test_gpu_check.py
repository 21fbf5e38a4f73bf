"""``bench/gpu_check.sh`` without a GPU: it says so and runs its CPU fallback end to end, the
same code path as on a GPU: the paper launch script (``launch/single_node.sh`` ->
``deepspeed --module seesaw_ds.train``) checked step by step against the plan, a SIGKILL and
``--resume`` (bitwise identical on CPU), a guard run, calibration and A/B; Megatron-LM is
skipped with its reason. One JSON and the jobs' logs."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "train"))
from train_common import job_env  # noqa: E402


def test_gpu_check_cpu_fallback(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the fallback path is not taken")
    out = tmp_path / "gpu_check.json"
    env = dict(job_env(), PYTHON=sys.executable)
    env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")])
    env.pop("DS_ACCELERATOR", None)  # the script sets it when no GPU is found
    result = subprocess.run(["bash", "bench/gpu_check.sh", "--out", str(out), "--work",
                             str(tmp_path / "work")], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=900)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    assert "no NVIDIA GPU found" in result.stdout and "CPU fallback" in result.stdout
    summary = json.loads(out.read_text())
    assert summary["gpu_found"] is False and summary["shape"] == "micro"
    assert summary["checks"]["ok"] is True

    product = summary["product"]
    assert "launch/single_node.sh" in product["launch"]
    plain = product["plain"]
    assert plain["every_step_equals_plan"] and not plain["mismatches"]
    assert plain["steps"] == plain["planned_steps"] == product["planned_steps"] == 26
    assert plain["batch_changes"] >= 3 and plain["batches"][0] == 8
    assert plain["optimizer_lr_equals_plan"] and plain["optimizer_lr_rows"] == 26
    resumed = product["kill_resume"]
    assert resumed["checkpoint_step"] > resumed["killed_after_batch_change_at"]
    assert resumed["losses_bitwise_identical"] and resumed["rows"] == 26
    assert product["guard"]["finished"] and product["guard"]["every_step_equals_plan"]

    assert "needs CUDA" in summary["megatron"]["skipped"]
    throughput = summary["calibration"]["micro_batch_throughput"]
    assert set(throughput) == {"1", "2"}
    assert all(row["mfu"] is None and row["tokens_per_second"] > 0
               for row in throughput.values())
    ab = summary["ab_overhead"]
    assert ab["ratio"] > 0 and len(ab["ratios"]) == 2
    assert ab["loss_sync"]["ratio_per_step_over_per_micro"] > 0
    logs = out.with_suffix(".logs")
    assert {"plain.0.log", "killed.0.log", "killed.1.log", "guard.0.log"} <= {
        p.name for p in logs.iterdir()}
    assert "resumed from" in (logs / "killed.1.log").read_text()
