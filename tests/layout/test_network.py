"""The network model: two levels, ZeRO stages, ring fits for any rank count, nccl-tests."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from seesaw_ds.errors import SeesawConfigError
from seesaw_ds.layout import load_throughput, throughput_from_dict
from seesaw_ds.layout.nccl_tests import parse_all_reduce_perf
from seesaw_ds.layout.network import Link, fit_ring, network_from_dict

REPO = Path(__file__).resolve().parents[2]
DATA = Path(__file__).resolve().parent / "data"
# nccl-tests' all_reduce_perf format (header, one line per rank, size rows); the numbers are
# consistent with the public 8 x H100 NVLink ring (~360 GB/s busbw) and a 2-node NDR run, not
# a copy of one machine's log
ONE_NODE = DATA / "all_reduce_perf_1node_8gpu.txt"
TWO_NODES = DATA / "all_reduce_perf_2node_16gpu.txt"

TWO_LEVEL = {"gpus_per_node": 8,
             "intra_node": {"bus_bytes_per_second": 4e11, "latency_seconds": 1e-5},
             "inter_node": {"nic_bytes_per_second": 5e10, "nics_per_node": 8,
                            "latency_seconds": 2e-5}}


def _tp(**over):
    data = {"micro_batch_seconds": {"1": 0.03, "2": 0.05}, "optimizer_seconds": 0.08,
            "gradient_bytes": 10**9, "network": TWO_LEVEL}
    data.update(over)
    return throughput_from_dict(data)


def test_inside_and_across_nodes():
    net = network_from_dict(TWO_LEVEL)
    assert net.link(8) == Link(4e11, 1e-5)
    assert net.link(9) == Link(4e11, 2e-5)  # 8 NICs x 50 GB/s, capped by NVLink's 400
    slow = network_from_dict({**TWO_LEVEL, "inter_node": {"nic_bytes_per_second": 5e10,
                                                          "nics_per_node": 1}})
    assert slow.link(16).bus_bytes_per_second == 5e10
    # ring all-reduce: 2 (r-1)/r n / bw + 2 (r-1) a
    assert net.all_reduce(8, 1e9) == pytest.approx(2 * 7 / 8 * 1e9 / 4e11 + 14 * 1e-5)
    # no latency given across nodes: the ring still pays the hops inside a node
    assert slow.all_reduce(16, 1e9) == pytest.approx(2 * 15 / 16 * 1e9 / 5e10 + 30 * 1e-5)
    assert net.reduce_scatter(16, 1e9) == pytest.approx(15 / 16 * 1e9 / 4e11 + 15 * 2e-5)
    assert net.all_reduce(1, 1e9) == 0.0


def test_zero_stages_follow_deepspeed():
    tp = _tp()
    net, m, g = tp.network, 0.03, 10**9
    rs, ar = net.reduce_scatter(8, g), net.all_reduce(8, g)
    # stage 0: one all-reduce per step, the whole optimizer step
    assert tp.step_seconds(1, 4, 8) == pytest.approx(4 * m + ar + 0.08)
    # stage 1: reduce + all-gather once per step, optimizer / ranks
    assert tp.with_zero(1).step_seconds(1, 4, 8) == pytest.approx(4 * m + 2 * rs + 0.01)
    # stage 2: the gradients are reduced on every micro-batch
    assert tp.with_zero(2).step_seconds(1, 4, 8) == pytest.approx(4 * m + 4 * rs + rs + 0.01)
    # stage 3: per micro-batch, parameters gathered twice and gradients reduce-scattered
    assert tp.with_zero(3).step_seconds(1, 4, 8) == pytest.approx(4 * m + 4 * 3 * rs + 0.01)
    # overlap hides a reduction behind the backward (2/3 of the micro-batch)
    hidden = tp.with_zero(2, overlap_comm=True).step_seconds(1, 4, 8)
    assert hidden == pytest.approx(4 * m + 4 * max(0, rs - 0.02) + rs + 0.01)
    with pytest.raises(SeesawConfigError, match="stage"):
        tp.with_zero(4)


def test_the_flat_format_still_loads_and_means_one_ring():
    tp = load_throughput(REPO / "bench" / "records" / "throughput_gpu_like.json")
    assert tp.network.inter is None and tp.zero_stage == 0
    assert tp.allreduce_seconds(64) == pytest.approx(
        2 * 63 * 2e-5 + 2 * 63 / 64 * 433640448 / 4e10)


@pytest.mark.parametrize("field, value, message", [
    ("inter_node", {"nic_bytes_per_second": 5e10}, "nic_bytes_per_second and nics_per_node"),
    ("gpus_per_node", 0, "gpus_per_node"),
    ("intra_node", {"bus_bytes_per_second": -1}, "intra_node.bus_bytes_per_second"),
])
def test_bad_network_names_the_field(field, value, message):
    with pytest.raises(SeesawConfigError, match=message):
        _tp(network={**TWO_LEVEL, field: value})


@pytest.mark.parametrize("ranks", [2, 4, 8, 64])
def test_ring_fit_recovers_latency_and_bus_bandwidth_at_any_rank_count(ranks):
    latency, busbw = 3e-6, 3.7e11
    times = {n: 2 * (ranks - 1) / ranks * n / busbw + 2 * (ranks - 1) * latency
             for n in (2**10, 2**16, 2**20, 2**24, 2**28)}
    fitted = fit_ring(times, ranks)
    assert fitted[0] == pytest.approx(latency, rel=1e-6)
    assert fitted[1] == pytest.approx(busbw, rel=1e-6)
    # the old 2-rank formula read 8-rank timings as a 1.75x slower link, 7x the latency
    if ranks == 8:
        from seesaw_ds.calibrate import fit_alpha_beta

        assert fit_alpha_beta(times, 8) == pytest.approx(fitted)
        two = fit_ring(times, 2)
        assert fitted[1] / two[1] == pytest.approx(1.75) and two[0] / fitted[0] == pytest.approx(7)


def test_nccl_tests_output_one_node_and_two():
    one = parse_all_reduce_perf(ONE_NODE.read_text())
    assert (one.ranks, one.nodes, len(one.times)) == (8, 1, 16)
    assert one.times[8589934592] == pytest.approx(41108.56e-6)
    assert one.bus_bytes_per_second == pytest.approx(3.6e11, rel=0.03)
    assert one.latency_seconds == pytest.approx(1.5e-6, rel=0.05)
    assert one.reported_peak_busbw == pytest.approx(367.51e9)
    two = parse_all_reduce_perf(TWO_NODES.read_text())
    assert (two.ranks, two.nodes, two.gpus_per_node) == (16, 2, 8)
    assert two.bus_bytes_per_second == pytest.approx(3.4e11, rel=0.03)
    assert two.latency_seconds == pytest.approx(4e-6, rel=0.05)
    with pytest.raises(SeesawConfigError, match="Rank N"):
        parse_all_reduce_perf("size count\n8 2 float sum -1 1.0 0 0 0")


def test_calibrate_takes_the_network_from_nccl_tests(tmp_path):
    out = tmp_path / "tp.json"
    result = subprocess.run(
        [sys.executable, "-m", "seesaw_ds.cli.main", "calibrate", "--run-config",
         "launch/run_configs/tiny.yaml", "--deepspeed_config", "ds_configs/tiny_seesaw.json",
         "--out", str(out), "--micro", "1", "2", "--repeats", "1", "--no-progress",
         "--nccl-tests", str(ONE_NODE), str(TWO_NODES)],
        capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())
    assert "allreduce_bytes_per_second" not in data
    tp = load_throughput(out)
    assert tp.network.gpus_per_node == 8
    assert tp.network.intra.bus_bytes_per_second == pytest.approx(3.6e11, rel=0.03)
    assert tp.network.inter.bus_bytes_per_second == pytest.approx(3.4e11, rel=0.03)
