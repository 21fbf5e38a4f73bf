"""``seesaw-ds calibrate`` on this CPU: a real measurement whose file ``plan`` accepts."""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "seesaw_ds.cli.main", *args],
                          capture_output=True, text=True, cwd=REPO, timeout=300)


def test_calibrate_writes_a_throughput_file_plan_reads(tmp_path):
    out = tmp_path / "tp.json"
    result = _cli("calibrate", "--run-config", "launch/run_configs/tiny.yaml",
                  "--deepspeed_config", "ds_configs/tiny_seesaw.json", "--out", str(out),
                  "--micro", "1", "2", "4", "--repeats", "2")
    assert result.returncode == 0, result.stderr
    assert "calibrate" in result.stderr  # the progress bar
    data = json.loads(out.read_text())
    assert sorted(data["micro_batch_seconds"], key=int) == ["1", "2", "4"]
    assert all(value > 0 for value in data["micro_batch_seconds"].values())
    assert data["gradient_bytes"] == 4 * 1_312_128  # the tiny GPT in fp32
    assert data["allreduce_bytes_per_second"] > 0 and data["allreduce_latency_seconds"] >= 0
    assert data["device"] == "cpu" and data["allreduce_source"].startswith("gloo loopback")
    plan = _cli("plan", "ds_configs/tiny_seesaw.json", "--throughput", str(out), "--ranks", "2",
                "--json")
    assert plan.returncode == 0, plan.stderr
    projection = json.loads(plan.stdout)
    assert projection["projected_seconds"] > 0 and projection["baseline_projected_seconds"] > 0


def test_calibrate_bad_config_is_one_line(tmp_path):
    result = _cli("calibrate", "--run-config", "launch/run_configs/tiny.yaml",
                  "--deepspeed_config", str(tmp_path / "missing.json"), "--out",
                  str(tmp_path / "tp.json"))
    assert result.returncode == 2
    assert "missing.json" in result.stderr and "Traceback" not in result.stderr


def test_calibrate_reads_only_the_model_of_an_unresolved_launch_template():
    from seesaw_ds.calibrate import _model_of

    assert _model_of(str(REPO / "launch/run_configs/paper_150m.yaml")) == ("150m", 32128)
    assert _model_of(str(REPO / "launch/run_configs/tiny.yaml")) == ("tiny", 2048)
