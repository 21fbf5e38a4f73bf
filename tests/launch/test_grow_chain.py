"""``launch/grow_chain.py``: the SLURM chain a growing run submits, checked with a fake
``sbatch`` that records its arguments and answers job ids."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from seesaw_ds.config import plan_from_ds_config
from seesaw_ds.errors import SeesawConfigError

REPO = Path(__file__).resolve().parents[2]
TP = REPO / "bench" / "records" / "throughput_gpu_like.json"

_SBATCH = """#!/usr/bin/env bash
n=$(( $(cat "$FAKE_LOG" 2>/dev/null | grep -c '^sbatch') + 101 ))
{ echo sbatch; printf '%s\\n' "$@"; echo --; } >> "$FAKE_LOG"
echo "$n"
"""


def _jobs(log: str):
    jobs, current = [], None
    for line in log.splitlines():
        if line == "sbatch":
            current = []
        elif line == "--":
            jobs.append(current)
        else:
            current.append(line)
    return jobs


def test_chain_grows_nodes_with_the_batch_and_converts_between_jobs(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text(_SBATCH)
    (bin_dir / "sbatch").chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
               FAKE_LOG=str(tmp_path / "sbatch.log"), SEESAW_RESULTS=str(tmp_path / "res"))
    result = subprocess.run(
        [sys.executable, "launch/grow_chain.py", "150m", "128", "seesaw", "--throughput",
         str(TP), "--ranks", "8", "--max-ranks", "64", "--gpus-per-node", "8",
         "--relaunch-seconds", "0", "--submit"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    ranks = [8, 16, 24, 32, 40, 48, 56, 64]
    assert " -> ".join(map(str, ranks)) + " ranks" in result.stdout
    assert "ratio 0.672" in result.stdout  # ZeRO-1 from the config
    jobs = _jobs((tmp_path / "sbatch.log").read_text())
    assert len(jobs) == len(ranks)  # training jobs only: each converts on its own allocation
    train = [job for job in jobs if "launch/slurm_paper.sbatch" in job]
    assert [next(a for a in job if a.startswith("--nodes=")) for job in train] == [
        f"--nodes={r // 8}" for r in ranks]
    for index, job in enumerate(jobs):
        dependency = [a for a in job if a.startswith("--dependency=")]
        assert dependency == ([] if index == 0 else [f"--dependency=afterok:{100 + index}"])
    exports = [next(a for a in job if a.startswith("--export=")) for job in jobs]
    assert ["SEESAW_UNIVERSAL_FIRST=1" in e for e in exports] == [False] + [True] * (
        len(ranks) - 1)
    # every job asks for its projected time (twice, plus 30 min), not 24 h
    times = [next(a for a in job if a.startswith("--time=")) for job in train]
    hours = [int(t.split("=")[1].split(":")[0]) for t in times]
    assert all(h < 2 for h in hours) and len(times) == len(train), times
    config_path = tmp_path / "res" / "150m_b128_seesaw" / "launch" / "ds_config_chain.json"
    config = json.loads(config_path.read_text())
    assert config["seesaw"]["batch_multiple"] == 8
    assert [s["multiple"] for s in config["seesaw"]["batch_multiple_stages"]] == ranks[1:]
    assert config["train_micro_batch_size_per_gpu"] == 1
    # the same plan on every job's rank count; each job stops where the next starts and
    # can lay out every step of its own span
    plans = [plan_from_ds_config(config, r) for r in ranks]
    assert len({tuple(p.fingerprint()) for p in plans}) == 1
    stops = [float(job[job.index("--stop-at-tokens") + 1]) for job in train[:-1]]
    starts = [p.start_tokens for p in plans[0].phases]
    assert all(stop in starts for stop in stops) and stops == sorted(stops)
    assert "--stop-at-tokens" not in train[-1]
    spans = list(zip([0.0] + stops, stops + [None]))
    for plan, (start, stop) in zip(plans, spans):
        plan.check_runnable(start, stop)
    with pytest.raises(SeesawConfigError, match="--stop-at-tokens"):
        plans[2].check_runnable(0.0, None)  # 24 ranks cannot run the 8-rank stage


def test_chain_jobs_fit_the_nodes(tmp_path):
    spec = importlib.util.spec_from_file_location("grow_chain", REPO / "launch" / "grow_chain.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    _, _, projection, jobs = module.build_chain(
        "150m_b128_seesaw", str(REPO / "ds_configs" / "150m_b128_seesaw.json"), str(TP), 8, 64,
        6, str(tmp_path), 0.0)
    ranks = [stage["ranks"] for stage in projection["stages"]]
    assert all(r <= 6 or r % 6 == 0 for r in ranks) and ranks[-1] > 6


def test_a_dry_run_writes_nothing_and_counts_a_relaunch_by_default(tmp_path):
    env = dict(os.environ, SEESAW_RESULTS=str(tmp_path / "res"))
    result = subprocess.run(
        [sys.executable, "launch/grow_chain.py", "150m", "128", "seesaw", "--throughput",
         str(TP), "--ranks", "8", "--max-ranks", "64"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "res").exists() and "dry run" in result.stdout
    # 300 s per relaunch by default: 2 jobs (8 -> 16), not the 23 of free relaunches
    assert "2 jobs 8 -> 16 ranks" in result.stdout
