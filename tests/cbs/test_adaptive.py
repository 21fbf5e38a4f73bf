"""The adaptive schedule: the offline plan is Seesaw's envelope; online, the batch grows one
rung at a time whenever ``safety_factor x B_simple`` allows, with ``lr / sqrt(B)`` on the
base path under the LR ceiling; decisions survive a state round trip exactly."""

import math

import pytest

from seesaw_ds.cbs.adaptive import AdaptiveGrowth
from seesaw_ds.config import parse_seesaw_section
from seesaw_ds.errors import SeesawConfigError
from seesaw_ds.schedules import AdaptiveBatch, CosineLR, Plan, SeesawBatch

PEAK = 1e-3
BASE = CosineLR(total_tokens=4e6, warmup_tokens=4e5, warmup_start_factor=0.1,
                final_factor=0.1)


def _plan(**options):
    schedule = AdaptiveBatch(batch_growth=2.0, ema_decay=0.0, min_samples=1, **options)
    return Plan(BASE, schedule, PEAK, 8, 128)


def _feed(policy, b_simple, times=3):
    for _ in range(times):
        policy.observe(4, 1 + b_simple / 4, 64, 1 + b_simple / 64)


def test_the_offline_plan_is_the_seesaw_envelope():
    adaptive = _plan()
    seesaw = Plan(BASE, SeesawBatch(batch_growth=2.0), PEAK, 8, 128)
    assert adaptive.phases == seesaw.phases
    assert adaptive.lr_ceiling == 2.0  # the default, chosen on the frontier sweep
    assert adaptive.batch_schedule.safety_factor == 0.25
    assert adaptive.summary()["batch_schedule"] == "adaptive"


def test_growth_waits_for_the_estimate_then_takes_one_rung_per_step():
    ladder = _plan(safety_factor=1.0)
    policy = AdaptiveGrowth(ladder.batch_schedule)
    assert policy.decide(ladder, 1e5, current=8).reason == "estimate not ready"
    _feed(policy, b_simple=12.0)  # 16 > 12: no growth
    assert not policy.decide(ladder, 1e5, current=8).changed
    _feed(policy, b_simple=100.0)  # 16, 32, 64 fit; one rung per step
    first = policy.decide(ladder, 1e5, current=8)
    assert first.changed and first.floor == 16
    second = policy.decide(ladder, 1.1e5, current=16)
    assert second.changed and second.floor == 32
    third = policy.decide(ladder, 1.2e5, current=32)
    assert third.floor == 64
    assert not policy.decide(ladder, 1.3e5, current=64).changed  # 128 > 100
    plan = policy.plan_for(ladder)
    assert [plan.at_tokens(t).global_batch for t in (0.5e5, 1e5, 1.1e5, 1.2e5, 3e5)] == [
        8, 16, 32, 64, 64]


def test_raised_batches_keep_the_noise_temperature_on_the_path_under_the_ceiling():
    ladder = _plan(safety_factor=1.0, lr_ceiling=2.0)
    policy = AdaptiveGrowth(ladder.batch_schedule)
    _feed(policy, b_simple=1000.0)
    batch = 8
    for step in range(3):  # 8 -> 16 -> 32 -> 64 during warmup
        batch = policy.decide(ladder, 1e5 + step, current=batch).floor
    plan = policy.plan_for(ladder)
    for tokens in (2e5, 3.9e5, 1.5e6):
        setting = plan.at_tokens(tokens)
        assert setting.global_batch == 64
        on_path = PEAK * BASE.factor(tokens) * math.sqrt(64 / 8)
        assert setting.lr == pytest.approx(min(on_path, 2.0 * PEAK))
    # early in warmup the path is below the ceiling, at the peak it is capped
    assert plan.at_tokens(2e5).lr == pytest.approx(PEAK * BASE.factor(2e5) * math.sqrt(8))
    assert plan.at_tokens(4e5).lr == pytest.approx(2.0 * PEAK)


def test_the_staircase_takes_over_once_it_passes_the_floor():
    ladder = _plan(safety_factor=1.0)
    policy = AdaptiveGrowth(ladder.batch_schedule)
    _feed(policy, b_simple=20.0)
    assert policy.decide(ladder, 1e5, current=8).floor == 16
    plan = policy.plan_for(ladder)
    late = [p for p in ladder.phases if p.global_batch == 32][0].start_tokens
    setting = plan.at_tokens(late)
    assert setting.global_batch == 32
    assert setting.lr == pytest.approx(ladder.at_tokens(late).lr)  # Seesaw's own LR


def test_growth_stops_at_the_cap():
    ladder = Plan(BASE, AdaptiveBatch(batch_growth=2.0, max_batch=24, ema_decay=0.0,
                                      min_samples=1), PEAK, 8, 128)
    policy = AdaptiveGrowth(ladder.batch_schedule)
    _feed(policy, b_simple=1e6)
    assert policy.decide(ladder, 1e5, current=8).floor == 16
    assert policy.decide(ladder, 1.1e5, current=16).floor == 24
    assert policy.decide(ladder, 1.2e5, current=24).reason == "at the largest batch"


def test_state_round_trip_rebuilds_the_same_plan():
    ladder = _plan(safety_factor=1.0)
    policy = AdaptiveGrowth(ladder.batch_schedule)
    _feed(policy, b_simple=100.0)
    policy.decide(ladder, 1e5, current=8)
    policy.decide(ladder, 2e5, current=16)
    restored = AdaptiveGrowth(ladder.batch_schedule)
    restored.load_state_dict(policy.state_dict())
    assert restored.limits == policy.limits
    assert restored.plan_for(ladder).phases == policy.plan_for(ladder).phases
    assert restored.estimator.estimate() == policy.estimator.estimate()


def test_the_section_parses_adaptive_options():
    section = parse_seesaw_section({
        "total_tokens": 4e6, "seq_length": 128, "batch_schedule": "adaptive",
        "batch_growth": 2.0, "adaptive": {"safety_factor": 0.25, "lr_ceiling": 1.5},
        "lr_schedule": {"type": "cosine", "final_factor": 0.1}})
    schedule = section.build_batch_schedule()
    assert isinstance(schedule, AdaptiveBatch)
    assert (schedule.safety_factor, schedule.lr_ceiling) == (0.25, 1.5)


@pytest.mark.parametrize("options, field", [
    ({"safty_factor": 0.5}, "seesaw.adaptive.safty_factor"),
    ({"safety_factor": 0.0}, "seesaw.adaptive.safety_factor"),
    ({"lr_ceiling": 0.5}, "seesaw.adaptive.lr_ceiling"),
    ({"min_samples": 0}, "seesaw.adaptive.min_samples"),
    ({"ema_decay": 1.0}, "seesaw.adaptive.ema_decay"),
])
def test_bad_adaptive_options_name_the_field(options, field):
    with pytest.raises(SeesawConfigError, match=field):
        parse_seesaw_section({
            "total_tokens": 4e6, "seq_length": 128, "batch_schedule": "adaptive",
            "adaptive": options, "lr_schedule": {"type": "cosine", "final_factor": 0.1}})


def test_plan_cli_shows_the_envelope_and_says_what_is_decided_online(tmp_path):
    import json
    import subprocess
    import sys

    config = {"train_batch_size": 32, "train_micro_batch_size_per_gpu": 4,
              "optimizer": {"type": "AdamW", "params": {"lr": 3e-3}},
              "seesaw": {"total_tokens": 2.8e6, "seq_length": 128, "batch_multiple": 4,
                         "batch_schedule": "adaptive", "batch_growth": 1.1,
                         "adaptive": {"safety_factor": 0.5},
                         "lr_schedule": {"type": "cosine", "warmup_fraction": 0.1,
                                         "final_factor": 0.1}}}
    path = tmp_path / "adaptive.json"
    path.write_text(json.dumps(config))
    out = subprocess.run([sys.executable, "-m", "seesaw_ds.cli.main", "plan", str(path)],
                         capture_output=True, text=True, check=True).stdout
    assert "ratio 0.613" in out  # the Seesaw envelope's steps
    assert "decided online" in out and "0.5 x B_simple" in out
