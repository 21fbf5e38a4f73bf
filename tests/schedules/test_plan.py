"""The plan: lookups, tiling, step counts against a brute-force loop, layouts and exports."""

import collections
import math
import re

import pytest

from seesaw_ds.errors import SeesawConfigError
from seesaw_ds.schedules import (
    ConstantBatch,
    CosineLR,
    LateSwitchBatch,
    LinearRampBatch,
    Plan,
    SeesawBatch,
    StepBatch,
    StepDecayLR,
    WSDLR,
    build_plan,
    layout_batch,
)

PEAK = 1e-3


def _plans():
    cosine = CosineLR(total_tokens=2e6, warmup_tokens=2e5, warmup_start_factor=0.1,
                      final_factor=0.1)
    return {
        "seesaw_1.1": Plan(cosine, SeesawBatch(batch_growth=1.1), PEAK, 16, 64),
        "seesaw_rounded": Plan(cosine, SeesawBatch(batch_growth=1.3), PEAK, 16, 64,
                               micro_batch=2, dp_size=4),
        "seesaw_cap": Plan(cosine, SeesawBatch(batch_growth=2.0, max_batch=64), PEAK, 16, 64),
        "seesaw_step_base": Plan(StepDecayLR(total_tokens=1e6, milestones=(3e5, 6e5, 9e5)),
                                 SeesawBatch(batch_growth=2.0, max_batch=256), PEAK, 8, 16),
        "seesaw_wsd": Plan(WSDLR(total_tokens=2e6, decay_tokens=5e5, tail="1-sqrt"),
                           SeesawBatch(batch_growth=1.5), PEAK, 24, 32, batch_multiple=8),
        "constant": Plan(cosine, ConstantBatch(), PEAK, 16, 64),
        "ramp": Plan(cosine, LinearRampBatch(final_batch=64, batch_increment=16,
                                             ramp_tokens=1e6), PEAK, 16, 64),
        "step": Plan(cosine, StepBatch(batch_steps=((3e5, 32), (1.1e6, 96))), PEAK, 16, 64),
        "late": Plan(cosine, LateSwitchBatch(switch_fraction=0.7, switch_batch=64,
                                             lr_scaling="sqrt"), PEAK, 16, 64),
    }


PLANS = _plans()


@pytest.mark.parametrize("name", sorted(PLANS))
def test_phases_tile_the_run(name):
    plan = PLANS[name]
    assert plan.phases[0].start_tokens == 0.0
    for before, after in zip(plan.phases, plan.phases[1:]):
        assert before.end_tokens == after.start_tokens
    assert plan.phases[-1].end_tokens == plan.total_tokens
    assert all(phase.end_tokens > phase.start_tokens for phase in plan.phases)


@pytest.mark.parametrize("name", sorted(PLANS))
def test_steps_per_phase_matches_a_brute_force_step_loop(name):
    plan = PLANS[name]
    counts = collections.Counter()
    tokens_seen = 0
    previous_start = -1
    for step, start, setting in plan.iter_steps():
        assert start == tokens_seen and start > previous_start
        phase = plan.phases[setting.phase_index]
        assert phase.start_tokens <= start < phase.end_tokens
        counts[setting.phase_index] += 1
        tokens_seen += setting.global_batch * plan.seq_length
        previous_start = start
    assert plan.steps_per_phase() == [counts[i] for i in range(len(plan.phases))]
    assert plan.optimizer_steps == sum(counts.values()) == step + 1
    assert plan.trained_tokens == tokens_seen >= plan.total_tokens
    # the last step starts before the end, so at most one batch is overshot
    last_batch = plan.at_tokens(previous_start).global_batch
    assert tokens_seen - plan.total_tokens < last_batch * plan.seq_length


@pytest.mark.parametrize("name", sorted(PLANS))
def test_batch_and_lr_come_from_the_same_lookup(name):
    plan = PLANS[name]
    for _, start, setting in plan.iter_steps():
        phase = plan.phases[setting.phase_index]
        expected_lr = PEAK * phase.lr_multiplier
        if phase.follows_base:
            expected_lr *= plan.base.factor(start)
        if start + phase.global_batch * plan.seq_length > plan.total_tokens:
            # the last step takes only the remaining samples, rounded up to the multiple
            left = math.ceil((plan.total_tokens - start) / plan.seq_length)
            last = min(phase.global_batch, math.ceil(left / plan.batch_multiple)
                       * plan.batch_multiple)
            assert setting.global_batch == last
            expected_lr *= math.sqrt(last / phase.global_batch)
        else:
            assert setting.global_batch == phase.global_batch
            assert setting.micro_batch == phase.micro_batch
            assert setting.grad_accum == phase.grad_accum
        assert setting.lr == pytest.approx(expected_lr, rel=1e-12)
        assert setting.micro_batch * setting.grad_accum * plan.dp_size == setting.global_batch
        assert setting.global_batch % plan.batch_multiple == 0


def test_at_tokens_at_boundaries_and_outside_the_run():
    plan = PLANS["step"]
    assert plan.at_tokens(0).global_batch == 16
    assert plan.at_tokens(3e5 - 1).global_batch == 16
    assert plan.at_tokens(3e5).global_batch == 32  # a phase owns its start
    assert plan.at_tokens(1.1e6).global_batch == 96
    assert plan.at_tokens(-10).phase_index == 0
    assert plan.at_tokens(1e12).phase_index == len(plan.phases) - 1
    assert plan.at_samples(3e5 / 64).global_batch == 32
    assert plan.is_finished(2e6) and not plan.is_finished(2e6 - 1)


def test_min_lr_floors_every_step():
    base = CosineLR(total_tokens=1e6, final_factor=0.0)
    plan = Plan(base, ConstantBatch(), 1e-3, 8, 16, min_lr=2e-4)
    assert plan.at_tokens(0).lr == pytest.approx(1e-3)
    assert plan.at_tokens(999_999).lr == pytest.approx(2e-4)
    assert min(setting.lr for _, _, setting in plan.iter_steps()) == pytest.approx(2e-4)


def test_baseline_steps_and_saving_of_the_constant_batch_plan():
    plan = PLANS["constant"]
    assert plan.baseline_optimizer_steps == math.ceil(2e6 / (16 * 64))
    assert plan.optimizer_steps == plan.baseline_optimizer_steps
    assert plan.continuous_limit_saving() == pytest.approx(0.0, abs=1e-12)


def test_plans_are_deterministic():
    again = _plans()
    for name, plan in PLANS.items():
        assert again[name].phases == plan.phases
        assert again[name].fingerprint() == plan.fingerprint()


def test_megatron_step_schedule_format_and_semantics():
    for name, plan in PLANS.items():
        text = plan.megatron_step_schedule()
        assert re.fullmatch(r"0:\d+( \d+:\d+)*", text), (name, text)
        entries = [tuple(int(x) for x in item.split(":")) for item in text.split()]
        assert entries[0] == (0, plan.initial_batch)
        thresholds = [tokens for tokens, _ in entries]
        assert thresholds == sorted(set(thresholds))
        assert all(tokens % plan.seq_length == 0 for tokens in thresholds)
        # Megatron semantics: the batch at a step is the last entry at or below its tokens
        steps = list(plan.iter_steps())
        for _, start, setting in steps[:-1]:  # the short last step is ours, not Megatron's
            batch = [b for tokens, b in entries if tokens <= start][-1]
            assert batch == setting.global_batch, (name, start)


def test_megatron_step_schedule_rounds_thresholds_up_to_whole_samples():
    base = CosineLR(total_tokens=1e6)
    plan = Plan(base, StepBatch(batch_steps=((1000.5, 16), (5000, 32))), PEAK, 8, 100)
    assert plan.megatron_step_schedule() == "0:8 1100:16 5000:32"


def test_summary_is_consistent():
    plan = PLANS["seesaw_1.1"]
    summary = plan.summary()
    assert summary["optimizer_steps"] == plan.optimizer_steps
    assert summary["baseline_optimizer_steps"] == plan.baseline_optimizer_steps
    assert summary["step_saving"] == pytest.approx(
        1 - plan.optimizer_steps / plan.baseline_optimizer_steps
    )
    assert len(summary["phases"]) == len(plan.phases)
    assert sum(entry["steps"] for entry in summary["phases"]) == plan.optimizer_steps
    assert summary["megatron_step_batch_size_schedule"] == plan.megatron_step_schedule()


# ---- layout ---------------------------------------------------------------------------------


def test_layout_accumulation_keeps_the_micro_batch():
    assert layout_batch(96, 4, 2) == (2, 12)
    assert layout_batch(8, 1, 8) == (8, 1)
    assert layout_batch(96, 4, 2, max_micro_batch=8) == (2, 12)  # policy ignores the max


def test_layout_micro_batch_first():
    # per rank 24: the largest multiple of 2 up to 8 dividing 24 is 8
    assert layout_batch(96, 4, 2, 8, "micro_batch_first") == (8, 3)
    # per rank 40: 16, 14, 12 do not divide it; 10 does
    assert layout_batch(80, 2, 2, 16, "micro_batch_first") == (10, 4)
    # per rank 6 with micro 2, max 16: the whole per-rank batch in one micro-batch
    assert layout_batch(12, 2, 2, 16, "micro_batch_first") == (6, 1)
    # no max: falls back to accumulation
    assert layout_batch(96, 4, 2, None, "micro_batch_first") == (2, 12)


def test_layout_rejects_a_batch_that_does_not_split():
    with pytest.raises(SeesawConfigError, match="micro-batch x data-parallel"):
        layout_batch(100, 4, 2)


def test_plan_lays_out_every_phase_with_the_growth_policy():
    base = CosineLR(total_tokens=4e6, final_factor=0.0)
    plan = Plan(base, SeesawBatch(batch_growth=2.0, max_batch=512), PEAK, 16, 64,
                micro_batch=2, dp_size=2,
                growth_policy="micro_batch_first", max_micro_batch=8)
    for phase in plan.phases:
        per_rank = phase.global_batch // 2
        expected_micro = max(m for m in range(2, 9, 2) if per_rank % m == 0)
        assert phase.micro_batch == expected_micro
        assert phase.micro_batch * phase.grad_accum * 2 == phase.global_batch


@pytest.mark.parametrize("kwargs, field", [
    ({"peak_lr": 0.0}, "lr"),
    ({"initial_batch": 0}, "train_batch_size"),
    ({"initial_batch": 12.5}, "train_batch_size"),
    ({"seq_length": 0}, "seq_length"),
    ({"micro_batch": 0}, "train_micro_batch_size_per_gpu"),
    ({"dp_size": 0}, "data-parallel"),
    ({"min_lr": 2e-3}, "min_lr"),
    ({"min_lr": -1.0}, "min_lr"),
    ({"growth_policy": "greedy"}, "growth_policy"),
    ({"max_micro_batch": 1, "micro_batch": 2}, "max_micro_batch"),
    ({"batch_multiple": 6, "micro_batch": 4}, "batch_multiple"),
    ({"initial_batch": 24, "batch_multiple": 16}, "train_batch_size"),
    ({"initial_batch": 20, "micro_batch": 4, "dp_size": 2}, "train_batch_size"),
])
def test_plan_validation_names_the_field(kwargs, field):
    arguments = dict(base=CosineLR(total_tokens=1e6), batch_schedule=SeesawBatch(),
                     peak_lr=1e-3, initial_batch=32, seq_length=16)
    arguments.update(kwargs)
    with pytest.raises(SeesawConfigError) as error:
        Plan(**arguments)
    assert field in str(error.value)


def test_build_plan_is_plan():
    base = CosineLR(total_tokens=1e6)
    built = build_plan(base, SeesawBatch(), PEAK, 16, 64, micro_batch=2, dp_size=2)
    assert built.phases == Plan(base, SeesawBatch(), PEAK, 16, 64, micro_batch=2,
                                dp_size=2).phases
