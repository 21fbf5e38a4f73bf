"""The other batch schedules: constant, Megatron-style linear ramp, explicit steps and the
late switch, with their LR scaling and validation."""

import math

import pytest

from seesaw_ds.errors import SeesawConfigError
from seesaw_ds.schedules import (
    BATCH_SCHEDULES,
    ConstantBatch,
    ConstantLR,
    CosineLR,
    LateSwitchBatch,
    LinearRampBatch,
    Plan,
    StepBatch,
)

PEAK = 2e-3


def _megatron_rampup_batch(consumed, start, increment, final, ramp):
    """Megatron's RampupBatchsizeNumMicroBatchesCalculator, in tokens instead of samples."""
    if consumed > ramp:
        return final
    increments = (final - start) // increment
    per_increment = ramp / increments
    return min(final, start + increment * int(consumed / per_increment))


def test_registry_names():
    assert set(BATCH_SCHEDULES) == {"seesaw", "adaptive", "constant", "linear_ramp", "step",
                                    "late_switch"}


def test_constant_batch_follows_the_base():
    base = CosineLR(total_tokens=1e6, warmup_tokens=1e5, final_factor=0.1)
    plan = Plan(base, ConstantBatch(), PEAK, 32, 100)
    assert [(p.start_tokens, p.end_tokens, p.global_batch) for p in plan.phases] == [
        (0.0, 1e6, 32)
    ]
    for tokens in (0, 5e4, 1e5, 5.5e5, 1e6 - 3200):
        assert plan.at_tokens(tokens).lr == pytest.approx(PEAK * base.factor(tokens))
    # the last step takes only what remains: 1 token -> 1 sample, LR x sqrt(1 / 32)
    last = plan.at_tokens(999_999)
    assert last.global_batch == 1
    assert last.lr == pytest.approx(PEAK * base.factor(999_999) * math.sqrt(1 / 32))
    assert plan.megatron_step_schedule() == "0:32"


def test_linear_ramp_has_megatron_rampup_semantics():
    """Start at train_batch_size, + increment every ramp/num_increments tokens."""
    base = ConstantLR(total_tokens=1e6)
    plan = Plan(base, LinearRampBatch(final_batch=128, batch_increment=32, ramp_tokens=6e5),
                PEAK, 32, 100)
    assert [(p.start_tokens, p.global_batch) for p in plan.phases] == [
        (0.0, 32), (2e5, 64), (4e5, 96), (6e5, 128)
    ]
    steps = list(plan.iter_steps())
    for _, tokens, setting in steps[:-1]:
        assert setting.global_batch == _megatron_rampup_batch(tokens, 32, 32, 128, 6e5)
        assert setting.lr == PEAK  # lr_scaling 'none'
    _, last_start, last = steps[-1]
    assert last.global_batch == math.ceil((1e6 - last_start) / 100) < 128
    assert last_start + last.global_batch * 100 == 1e6
    assert plan.megatron_step_schedule() == "0:32 200000:64 400000:96 600000:128"


def test_linear_ramp_with_uneven_increment_spacing_and_sqrt_scaling():
    base = CosineLR(total_tokens=1e6, final_factor=0.0)
    ramp = LinearRampBatch(final_batch=64, batch_increment=16, ramp_tokens=5e5,
                           lr_scaling="sqrt")
    plan = Plan(base, ramp, PEAK, 16, 10)
    for _, tokens, setting in list(plan.iter_steps())[:-1]:
        batch = _megatron_rampup_batch(tokens, 16, 16, 64, 5e5)
        assert setting.global_batch == batch
        assert setting.lr == pytest.approx(PEAK * math.sqrt(batch / 16) * base.factor(tokens))


def test_step_batch():
    base = CosineLR(total_tokens=1e6)
    plan = Plan(base, StepBatch(batch_steps=((2e5, 64), (5e5, 256))), PEAK, 32, 100)
    assert [(p.start_tokens, p.global_batch) for p in plan.phases] == [
        (0.0, 32), (2e5, 64), (5e5, 256)
    ]
    assert plan.at_tokens(3e5).lr == pytest.approx(PEAK * base.factor(3e5))
    # an explicit 0 entry equal to the initial batch is accepted
    same = Plan(base, StepBatch(batch_steps=((0.0, 32), (2e5, 64), (5e5, 256))), PEAK, 32,
                100)
    assert same.phases == plan.phases


def test_step_batch_sqrt_scaling():
    base = ConstantLR(total_tokens=1e6)
    plan = Plan(base, StepBatch(batch_steps=((5e5, 128),), lr_scaling="sqrt"), PEAK, 32, 100)
    assert plan.at_tokens(0).lr == pytest.approx(PEAK)
    assert plan.at_tokens(6e5).lr == pytest.approx(PEAK * 2.0)


def test_late_switch_at_a_fraction_of_the_tokens():
    base = CosineLR(total_tokens=1e6, final_factor=0.1)
    plan = Plan(base, LateSwitchBatch(switch_fraction=0.75, switch_batch=128), PEAK, 32, 100)
    assert [(p.start_tokens, p.global_batch) for p in plan.phases] == [(0.0, 32), (7.5e5, 128)]
    assert plan.at_tokens(7.5e5 - 1).global_batch == 32
    assert plan.at_tokens(8e5).lr == pytest.approx(PEAK * base.factor(8e5))
    # mean of B0 / B over tokens: 0.75 * 1 + 0.25 * 1/4
    assert plan.continuous_limit_saving() == pytest.approx(1 - (0.75 + 0.25 / 4))
    scaled = Plan(base, LateSwitchBatch(switch_batch=128, lr_scaling="sqrt"), PEAK, 32, 100)
    assert scaled.phases[1].start_tokens == pytest.approx(0.7e6)  # default fraction 0.7
    assert scaled.at_tokens(9e5).lr == pytest.approx(PEAK * 2.0 * base.factor(9e5))


@pytest.mark.parametrize("schedule, field", [
    (LinearRampBatch(final_batch=32, batch_increment=16, ramp_tokens=1e5), "final_batch"),
    (LinearRampBatch(final_batch=72, batch_increment=16, ramp_tokens=1e5), "final_batch"),
    (LinearRampBatch(final_batch=64, batch_increment=12, ramp_tokens=1e5), "batch_increment"),
    (LinearRampBatch(final_batch=64, batch_increment=16, ramp_tokens=2e6), "ramp_tokens"),
    (LinearRampBatch(final_batch=64, batch_increment=16, ramp_tokens=0), "ramp_tokens"),
    (LinearRampBatch(final_batch=64, batch_increment=16, ramp_tokens=1e5,
                     lr_scaling="linear"), "lr_scaling"),
    (StepBatch(batch_steps=()), "batch_steps"),
    (StepBatch(batch_steps=((5e5, 64), (2e5, 128))), "batch_steps[1]"),
    (StepBatch(batch_steps=((1e6, 64),)), "batch_steps[0]"),
    (StepBatch(batch_steps=((1e5, 64), (1e5, 128))), "batch_steps[1]"),  # not increasing
    (StepBatch(batch_steps=((1e5, 60),)), "batch_steps[0]"),
    (StepBatch(batch_steps=((0, 64), (1e5, 128))), "batch_steps"),
    (LateSwitchBatch(switch_fraction=1.0, switch_batch=64), "switch_fraction"),
    (LateSwitchBatch(switch_fraction=0.0, switch_batch=64), "switch_fraction"),
    (LateSwitchBatch(switch_batch=0), "switch_batch"),
    (LateSwitchBatch(switch_batch=70), "switch_batch"),
])
def test_bad_batch_schedules_name_the_field(schedule, field):
    with pytest.raises(SeesawConfigError) as error:
        Plan(CosineLR(total_tokens=1e6), schedule, PEAK, 32, 100, batch_multiple=16)
    assert field in str(error.value)


def test_a_linear_ramp_of_too_many_increments_is_one_error_before_any_phase_is_built():
    """The fuzz found a ramp of ~10**9 increments that built phases until memory ran out."""
    base = ConstantLR(total_tokens=1e12)
    ramp = LinearRampBatch(final_batch=32 + 10**9, batch_increment=1, ramp_tokens=1e11)
    with pytest.raises(SeesawConfigError, match="seesaw.batch_increment = 1 makes 1,000,000,000 "
                                                "batch changes"):
        Plan(base, ramp, PEAK, 32, 100)
