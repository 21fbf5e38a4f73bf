"""Layout choice and wall-clock projection (pure, no torch), on the shipped paper configs."""

import glob
import os
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from seesaw_ds.config import load_config_file, plan_from_ds_config
from seesaw_ds.errors import SeesawConfigError
from seesaw_ds.layout import (DEFAULT_RELAUNCH_SECONDS, LayoutSearch, best_layout,
                              load_throughput, throughput_from_dict)
from seesaw_ds.schedules import Plan
from seesaw_ds.schedules.multiples import multiple_at

REPO = Path(__file__).resolve().parents[2]
GPU_LIKE = REPO / "bench" / "records" / "throughput_gpu_like.json"
PAPER = sorted(glob.glob(str(REPO / "ds_configs" / "*m_b*_seesaw.json")))


def _h100(size):
    return load_throughput(REPO / "bench" / "records" / f"throughput_h100_{size}.json")


def _linear(c0=0.006, c1=0.0037, sizes=(1, 2, 4, 8, 16), **over):
    data = {"micro_batch_seconds": {str(m): c0 + c1 * m for m in sizes},
            "optimizer_seconds": 0.0025, "allreduce_latency_seconds": 2e-5,
            "allreduce_bytes_per_second": 4e10, "gradient_bytes": 400_000_000}
    data.update(over)
    return throughput_from_dict(data)


def GPU_LIKE_TP():
    return load_throughput(GPU_LIKE)


def _plan(name):
    return plan_from_ds_config(load_config_file(REPO / "ds_configs" / f"{name}.json"), 1)


def test_throughput_interpolates_and_models_a_ring():
    tp = throughput_from_dict({"micro_batch_seconds": {"2": 0.2, "4": 0.3, "8": 0.7},
                               "optimizer_seconds": 0.05, "allreduce_latency_seconds": 0.001,
                               "allreduce_bytes_per_second": 1e9, "gradient_bytes": 10**9})
    assert tp.max_micro_batch == 8
    assert tp.micro_seconds(4) == 0.3
    assert tp.micro_seconds(6) == pytest.approx(0.5)
    assert tp.micro_seconds(1) == pytest.approx(0.15)  # along the first two points
    assert tp.allreduce_seconds(1) == 0.0
    # 4 ranks: 6 hops x 1 ms + 6/4 x 1 GB / (1 GB/s)
    assert tp.allreduce_seconds(4) == pytest.approx(0.006 + 1.5)
    assert tp.step_seconds(4, 3, 4) == pytest.approx(3 * 0.3 + 1.506 + 0.05)
    with pytest.raises(ValueError):
        tp.micro_seconds(9)


@pytest.mark.parametrize("data, field", [
    ({"micro_batch_seconds": {"1": 0.1}}, "optimizer_seconds"),
    ({"micro_batch_seconds": {"x": 0.1}, "optimizer_seconds": 0, "gradient_bytes": 1,
      "allreduce_latency_seconds": 0, "allreduce_bytes_per_second": 1}, "'x'"),
    ({"micro_batch_seconds": {"1": -1}, "optimizer_seconds": 0, "gradient_bytes": 1,
      "allreduce_latency_seconds": 0, "allreduce_bytes_per_second": 1}, "micro_batch_seconds"),
    ({"micro_batch_seconds": {"1": 1}, "optimizer_seconds": 0, "gradient_bytes": 1,
      "allreduce_latency_seconds": 0, "allreduce_bytes_per_second": 0},
     "allreduce_bytes_per_second"),
])
def test_bad_throughput_names_the_field(data, field):
    with pytest.raises(SeesawConfigError, match=field):
        throughput_from_dict(data)


def test_best_layout_exact_and_without_padding():
    tp = _linear()
    # 144 on 8 ranks: 18 per rank, micro <= 16 -> 9 x 2 (no padding)
    layout = best_layout(144, tp, [8])
    assert (layout.ranks, layout.micro_batch, layout.grad_accum) == (8, 9, 2)
    assert layout.step_seconds == pytest.approx(2 * (0.006 + 9 * 0.0037)
                                                + tp.allreduce_seconds(8) + 0.0025)
    assert best_layout(144, tp, [7]) is None  # 144 is not a multiple of 7
    assert best_layout(128, tp, [8, 16], min_per_rank=16).ranks == 8


def test_growing_chain_150m_b128_with_free_relaunches_uses_stages():
    search = LayoutSearch(_plan("150m_b128_seesaw"), load_throughput(GPU_LIKE),
                          relaunch_seconds=0)
    data = search.project(8, 64).to_dict()
    ranks = [stage["ranks"] for stage in data["stages"]]
    assert ranks[0] == 8 and ranks[-1] == 64 and ranks == sorted(set(ranks))
    assert data["baseline"]["ranks"] == 8 and data["baseline"]["steps"] == 25178
    assert data["time_ratio"] == pytest.approx(0.612, abs=0.002)  # relaunches free
    # each later job rounds its batches to its own rank count
    assert [s["multiple"] for s in data["batch_multiple_stages"]] == ranks[1:]
    assert [s["from_tokens"] for s in data["batch_multiple_stages"]] == [
        s["start_tokens"] for s in data["stages"][1:]]
    assert data["time_ratio"] < search.project(8).ratio


def test_growing_chain_on_whole_nodes_and_with_relaunch_cost():
    search = LayoutSearch(_plan("150m_b128_seesaw"), load_throughput(GPU_LIKE), gpus_per_node=8,
                          relaunch_seconds=0)
    data = search.project(8, 64).to_dict()
    assert [stage["ranks"] for stage in data["stages"]] == [8, 16, 24, 32, 40, 48, 56, 64]
    assert data["time_ratio"] == pytest.approx(0.671, abs=0.002)
    free = LayoutSearch(_plan("150m_b128_seesaw"), load_throughput(GPU_LIKE),
                        relaunch_seconds=0).project(8, 64)
    costly = LayoutSearch(_plan("150m_b128_seesaw"), load_throughput(GPU_LIKE),
                          relaunch_seconds=300).project(8, 64)
    # a relaunch cost buys fewer, larger jobs, and is counted in the projected time
    assert 1 < len(costly.seesaw.stages()) < len(free.seesaw.stages())
    assert costly.seesaw.seconds == pytest.approx(
        sum(p.seconds for p in costly.seesaw.phases) + 300 * (len(costly.seesaw.stages()) - 1))
    assert costly.ratio < 1.0


def test_layout_realises_every_batch_and_keeps_the_noise_temperature_on_the_base_path():
    plan = _plan("150m_b128_seesaw")
    projection = LayoutSearch(plan, load_throughput(GPU_LIKE), relaunch_seconds=0).project(8, 64)
    laid = projection.seesaw.plan
    assert laid.staged
    data = projection.to_dict()
    q = data["batch_multiple"]
    assert plan.initial_batch % q == 0
    for phase in data["phases"]:
        assert phase["ranks"] * phase["micro_batch"] * phase["grad_accum"] == phase["global_batch"]
        multiple = multiple_at(laid.multiple_stages, phase["start_tokens"])
        assert phase["global_batch"] % multiple == 0 and multiple % phase["ranks"] == 0
    # lr / sqrt(B) at each milestone = peak * base factor / sqrt(B0), whatever the rounding
    unstaged = Plan(laid.base, laid.batch_schedule, laid.peak_lr, laid.initial_batch,
                    laid.seq_length, batch_multiple=q)
    for phase in unstaged.phases[1:]:
        if phase.follows_base:
            continue
        lr = unstaged.at_tokens(phase.start_tokens).lr
        expected = plan.peak_lr * plan.base.factor(phase.start_tokens) / math.sqrt(
            plan.initial_batch)
        assert lr / math.sqrt(phase.global_batch) == pytest.approx(expected, rel=1e-6)
    # and the stages change batches (rounded up to each job's rank count), never lr / sqrt(B)
    for phase in laid.phases:
        for tokens in (phase.start_tokens, (phase.start_tokens + phase.end_tokens) / 2):
            staged, plain = laid.at_tokens(tokens), unstaged.at_tokens(tokens)
            assert staged.global_batch >= plain.global_batch
            assert staged.lr / math.sqrt(staged.global_batch) == pytest.approx(
                plain.lr / math.sqrt(plain.global_batch), rel=1e-9)
    assert sum(p["steps"] for p in data["phases"]) == data["optimizer_steps"]
    assert data["projected_seconds"] == pytest.approx(sum(p["seconds"] for p in data["phases"]))


@pytest.mark.parametrize("relaunch", [600, 900])
def test_a_costly_relaunch_never_projects_slower_than_the_fixed_layout(relaunch):
    # issue 17: single-multiple chains grew greedily and ignored the relaunch cost, and the
    # non-growing layout was no candidate: 600 s projected 1.005, 900 s 1.015
    search = LayoutSearch(_plan("150m_b128_seesaw"), load_throughput(GPU_LIKE),
                          relaunch_seconds=relaunch)
    chain = search.project(8, 64)
    fixed = search.project(8)
    assert chain.seesaw.seconds <= fixed.seesaw.seconds
    assert chain.ratio == pytest.approx(0.892, abs=0.001) and len(chain.seesaw.stages()) == 1


def test_relaunch_cost_is_counted_in_time_and_gpu_hours():
    search = LayoutSearch(_plan("150m_b128_seesaw"), load_throughput(GPU_LIKE),
                          relaunch_seconds=60)
    chain = search.project(8, 64).seesaw
    stages = chain.stages()
    assert len(stages) > 1
    assert chain.seconds == pytest.approx(sum(p.seconds for p in chain.phases)
                                          + 60 * (len(stages) - 1))
    assert chain.gpu_seconds == pytest.approx(
        sum(p.seconds * p.layout.ranks for p in chain.phases)
        + 60 * sum(s["ranks"] for s in stages[1:]))
    assert LayoutSearch(_plan("150m_b128_seesaw"), GPU_LIKE_TP()).relaunch_seconds == \
        DEFAULT_RELAUNCH_SECONDS > 0


def test_cosine_config_projects_to_ratio_one():
    projection = LayoutSearch(_plan("150m_b128_cosine"), load_throughput(GPU_LIKE)).project(8)
    assert projection.ratio == pytest.approx(1.0)


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "seesaw_ds.cli.main", *args],
                          capture_output=True, text=True, cwd=REPO)


def test_plan_cli_json_keys_and_table(tmp_path):
    config = str(REPO / "ds_configs" / "150m_b128_seesaw.json")
    result = _cli("plan", config, "--throughput", str(GPU_LIKE), "--ranks", "8",
                  "--max-ranks", "64", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    for key in ("projected_seconds", "baseline_projected_seconds", "time_ratio", "stages",
                "batch_multiple", "batch_multiple_stages", "relaunch_seconds", "phases",
                "gpu_hours", "baseline_gpu_hours", "equal_resource_time_ratio", "comparisons"):
        assert key in data
    assert set(data["phases"][0]) >= {"ranks", "micro_batch", "grad_accum", "step_seconds"}
    # --max-ranks without --relaunch-seconds counts the documented default, never 0
    assert data["relaunch_seconds"] == DEFAULT_RELAUNCH_SECONDS == 300
    labels = [row["label"] for row in data["comparisons"]]
    assert labels == ["seesaw, fixed 8", "cosine, fixed 8", "seesaw, fixed 64",
                      "cosine, fixed 64", "seesaw, chain 8 -> <= 64"]
    seesaw8, cosine8 = data["comparisons"][:2]
    assert data["equal_resource_time_ratio"] == pytest.approx(
        seesaw8["seconds"] / cosine8["seconds"])
    assert cosine8["gpu_hours"] == pytest.approx(data["baseline_gpu_hours"])
    assert cosine8["gpu_hours"] == pytest.approx(8 * cosine8["seconds"] / 3600)
    assert data["comparisons"][-1]["gpu_hours"] == pytest.approx(data["gpu_hours"])
    table = _cli("plan", config, "--throughput", str(GPU_LIKE), "--ranks", "8")
    # the config's ZeRO-1 shards the optimizer step and splits the all-reduce
    assert table.returncode == 0 and "time ratio 0.898" in table.stdout
    assert "headline (same fixed allocation, 8 ranks): Seesaw / cosine time 0.898" in table.stdout


def test_plan_cli_bad_input_one_line(tmp_path):
    bad = tmp_path / "tp.json"
    bad.write_text(json.dumps({"micro_batch_seconds": {"1": 0.1}}))
    config = str(REPO / "ds_configs" / "150m_b128_seesaw.json")
    result = _cli("plan", config, "--throughput", str(bad), "--ranks", "8")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "optimizer_seconds" in result.stderr
    result = _cli("plan", config, "--throughput", str(GPU_LIKE))
    assert result.returncode == 2 and "--ranks" in result.stderr
    result = _cli("plan", config, "--ranks", "8")
    assert result.returncode == 2 and "--throughput" in result.stderr


def test_per_size_files_with_zero_1_equal_resource_figures():
    from seesaw_ds.layout import zero_of_config

    sizes = {os.path.basename(p).split("_")[0] for p in PAPER}
    assert sizes == {"150m", "300m", "600m"}
    config = load_config_file(REPO / "ds_configs" / "150m_b128_seesaw.json")
    tp = zero_of_config(_h100("150m"), config)
    assert tp.zero_stage == 1 and tp.network.gpus_per_node == 8
    search = LayoutSearch(plan_from_ds_config(config, 1), tp)
    assert search.project(8).ratio == pytest.approx(0.959, abs=0.001)
    assert search.project(64).ratio == pytest.approx(0.798, abs=0.001)
    # 512 GPUs: rank counts must divide the initial batch 128, and the projection says so
    wide = search.project(512)
    assert wide.baseline.start_ranks == 128 and wide.seesaw.start_ranks <= 128
    # the 600M file is its own: cosine on 8 GPUs takes about 5 h (not the 150M file's 2 h)
    big = LayoutSearch(_plan("600m_b256_seesaw"), _h100("600m")).project(8)
    assert big.baseline.seconds / 3600 == pytest.approx(5.0, abs=0.2)
