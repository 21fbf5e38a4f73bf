"""Property: a chain (``--max-ranks``) is never projected slower than the fastest fixed
layout on the starting allocation, whatever the throughput file and the relaunch cost."""

import json
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seesaw_ds.config import load_config_file, plan_from_ds_config
from seesaw_ds.layout import LayoutSearch, throughput_from_dict

REPO = Path(__file__).resolve().parents[2]


def _plan(growth: float, batch: int):
    config = load_config_file(REPO / "ds_configs" / "tiny_seesaw.json")
    config = json.loads(json.dumps(config))
    config["train_batch_size"] = batch
    config["seesaw"]["batch_growth"] = growth
    return plan_from_ds_config(config, 1)


@st.composite
def throughputs(draw):
    fixed = draw(st.floats(1e-4, 5e-2))
    per_sequence = draw(st.floats(1e-4, 2e-2))
    largest = draw(st.sampled_from([1, 2, 4, 8, 16, 32]))
    data = {"micro_batch_seconds": {str(m): fixed + per_sequence * m
                                    for m in (1, 2, 4, 8, 16, 32) if m <= largest},
            "optimizer_seconds": draw(st.floats(0, 0.05)),
            "gradient_bytes": draw(st.integers(10**6, 10**10)),
            "zero_stage": draw(st.sampled_from([0, 1, 2, 3])),
            "overlap_comm": draw(st.booleans())}
    intra = {"bus_bytes_per_second": draw(st.floats(1e9, 5e11)),
             "latency_seconds": draw(st.floats(0, 1e-4))}
    if draw(st.booleans()):
        data["network"] = {"intra_node": intra, "gpus_per_node": draw(st.sampled_from([2, 4, 8])),
                           "inter_node": {"nic_bytes_per_second": draw(st.floats(1e9, 5e10)),
                                          "nics_per_node": draw(st.sampled_from([1, 4, 8])),
                                          "latency_seconds": draw(st.floats(0, 1e-4))}}
    else:
        data["allreduce_bytes_per_second"] = intra["bus_bytes_per_second"]
        data["allreduce_latency_seconds"] = intra["latency_seconds"]
    return throughput_from_dict(data)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(throughput=throughputs(), relaunch=st.floats(0, 3000),
       ranks=st.sampled_from([1, 2, 4, 8]), grow=st.sampled_from([1, 2, 4, 8]),
       growth=st.sampled_from([1.1, 2.0]), batch=st.sampled_from([16, 32]),
       gpus_per_node=st.sampled_from([None, 4]))
def test_a_chain_is_never_slower_than_the_best_fixed_layout(
        throughput, relaunch, ranks, grow, growth, batch, gpus_per_node):
    search = LayoutSearch(_plan(growth, batch), throughput, gpus_per_node, relaunch)
    chain = search.project(ranks, ranks * grow)
    fixed = search.project(ranks)
    assert chain.seesaw.seconds <= fixed.seesaw.seconds * (1 + 1e-12)
    assert chain.seesaw_fixed.seconds == fixed.seesaw.seconds
    jobs = len(chain.seesaw.stages())
    assert chain.seesaw.seconds == sum(p.seconds for p in chain.seesaw.phases) + (
        jobs - 1) * relaunch
