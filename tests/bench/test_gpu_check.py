"""``bench/gpu_check.sh`` without a GPU: it says so, runs the CPU fallback end to end (tiny
shape, real DeepSpeed engines, cosine and Seesaw checked step by step against the plan) and
writes its JSON summary."""

import json
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
    env.pop("DS_ACCELERATOR", None)  # the script sets it when no GPU is found
    result = subprocess.run(["bash", "bench/gpu_check.sh", "--out", str(out)], cwd=REPO,
                            env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    assert "no NVIDIA GPU found" in result.stdout and "CPU fallback" in result.stdout
    summary = json.loads(out.read_text())
    assert summary["gpu_found"] is False and summary["shape"] == "tiny"
    assert summary["plan_followed"] is True
    for name in ("cosine", "seesaw"):
        run = summary["runs"][name]
        assert run["every_step_batch_and_lr_equal_plan"] and not run["mismatches"]
        assert run["steps"] == run["planned_steps"] and run["tokens_per_second"] > 0
    assert summary["runs"]["seesaw"]["steps"] < summary["runs"]["cosine"]["steps"]
    assert set(summary["micro_batch_throughput"]) == {"1", "2", "4"}
    assert all(v["mfu"] is None for v in summary["micro_batch_throughput"].values())
    assert summary["ab_overhead"]["ratio"] > 0 and len(summary["ab_overhead"]["ratios"]) == 2
