"""The Seesaw batch schedule: milestones, batches and LRs against the paper's rule, computed
here from the formulas (never copied from the code's output)."""

import math
import warnings

import pytest

from seesaw_ds.errors import SeesawConfigError
from seesaw_ds.schedules import (
    ConstantLR,
    CosineLR,
    LinearLR,
    Plan,
    SeesawBatch,
    SeesawStabilityWarning,
    StepDecayLR,
    round_to_multiple,
)

PEAK = 3e-3


def _nearest_multiple(value, multiple):
    """Round half up to a multiple, at least one multiple (the documented rounding)."""
    count = math.floor(value / multiple + 0.5)
    return multiple * max(1, count)


def _cosine_inverse(level, total, warmup=0.0, floor=0.0):
    """Token where warmup-then-cosine-to-`floor` first reaches `level` (derived by hand)."""
    relative = (level - floor) / (1.0 - floor)
    return warmup + (total - warmup) * math.acos(2.0 * relative - 1.0) / math.pi


def _seesaw_phases(plan):
    """The staircase phases (the ones that do not follow the base)."""
    return [phase for phase in plan.phases if not phase.follows_base]


def test_round_to_multiple():
    assert round_to_multiple(140.8, 1) == 141
    assert round_to_multiple(140.5, 1) == 141  # halves round up
    assert round_to_multiple(140.49, 1) == 140
    assert round_to_multiple(12, 8) == 16
    assert round_to_multiple(11.9, 8) == 8
    assert round_to_multiple(3, 8) == 8  # never below one multiple
    assert round_to_multiple(0.1, 16) == 16
    assert round_to_multiple(48, 16) == 48


def test_milestones_are_where_the_cosine_falls_by_powers_of_the_growth():
    base = CosineLR(total_tokens=1e9, warmup_tokens=1e8, warmup_start_factor=0.1,
                    final_factor=0.1)
    growth = 1.1
    milestones = SeesawBatch(batch_growth=growth).milestones(base)
    # 1.1^-24 = 0.1015 > 0.1 >= 1.1^-25: 24 milestones above the floor
    assert len(milestones) == 24
    for k, tokens in enumerate(milestones, start=1):
        expected = _cosine_inverse(growth**-k, 1e9, 1e8, 0.1)
        assert tokens == pytest.approx(expected, rel=1e-9, abs=1e-3)
        assert base.factor(tokens) == pytest.approx(growth**-k, rel=1e-8)


def test_doubling_without_rounding_is_the_exact_staircase():
    """g = 2, B0 = 64, multiple 1: B_k = 64 * 2^k and LR = peak * 2^(-k/2) exactly."""
    base = CosineLR(total_tokens=2**30, final_factor=0.0)
    plan = Plan(base, SeesawBatch(batch_growth=2.0, max_batch=2**22), PEAK, 64, 128)
    staircase = _seesaw_phases(plan)
    assert staircase[0].start_tokens == 0.0
    assert len(staircase) >= 8
    for k, phase in enumerate(staircase):
        if k > 0:
            assert phase.start_tokens == pytest.approx(_cosine_inverse(2.0**-k, 2**30))
        setting = plan.at_tokens(phase.start_tokens)
        assert setting.global_batch == 64 * 2**k
        assert setting.lr == pytest.approx(PEAK * 2 ** (-k / 2), rel=1e-12)
        # noise temperature on the base path: lr / sqrt(B) = peak * f(t_k) / sqrt(B0)
        assert setting.lr / math.sqrt(setting.global_batch) == pytest.approx(
            PEAK * base.factor(phase.start_tokens) / math.sqrt(64), rel=1e-7
        )
        # constant within the phase (a staircase), whatever the base does meanwhile
        middle = 0.5 * (phase.start_tokens + phase.end_tokens)
        assert plan.at_tokens(middle).lr == setting.lr


@pytest.mark.parametrize("growth, initial, multiple", [(1.1, 128, 1), (1.1, 128, 8),
                                                       (1.5, 48, 16), (3.0, 8, 8)])
def test_rounded_batches_and_the_lr_correction(growth, initial, multiple):
    base = CosineLR(total_tokens=3.3e9, warmup_tokens=3.3e8, warmup_start_factor=0.1,
                    final_factor=0.1)
    plan = Plan(base, SeesawBatch(batch_growth=growth), PEAK, initial, 1024,
                batch_multiple=multiple)
    milestones = SeesawBatch(batch_growth=growth).milestones(base)
    staircase = _seesaw_phases(plan)
    assert staircase[0].start_tokens == base.warmup_tokens
    assert [phase.start_tokens for phase in staircase[1:]] == milestones[: len(staircase) - 1]
    previous = 0
    for k, phase in enumerate(staircase):
        ideal = initial * growth**k
        expected_batch = _nearest_multiple(ideal, multiple)
        assert phase.global_batch == expected_batch
        assert phase.global_batch >= previous
        previous = phase.global_batch
        lr = plan.at_tokens(phase.start_tokens).lr
        assert lr == pytest.approx(
            PEAK * growth ** (-k / 2) * math.sqrt(expected_batch / ideal), rel=1e-12
        )
        assert lr / math.sqrt(expected_batch) == pytest.approx(
            PEAK * base.factor(phase.start_tokens) / math.sqrt(initial), rel=1e-7
        )


def test_warmup_phase_has_the_initial_batch_and_follows_the_base():
    base = CosineLR(total_tokens=1e8, warmup_tokens=1e7, warmup_start_factor=0.1,
                    final_factor=0.1)
    plan = Plan(base, SeesawBatch(batch_growth=2.0), PEAK, 32, 256)
    warmup = plan.phases[0]
    assert (warmup.start_tokens, warmup.end_tokens) == (0.0, 1e7)
    assert warmup.global_batch == 32 and warmup.follows_base
    for tokens in (0, 2.5e6, 5e6, 9.99e6):
        setting = plan.at_tokens(tokens)
        assert setting.global_batch == 32
        assert setting.lr == pytest.approx(PEAK * (0.1 + 0.9 * tokens / 1e7))
    assert plan.at_tokens(1e7).lr == pytest.approx(PEAK)


def test_explicit_lr_cut_moves_the_milestones_and_divides_the_lr():
    """lr_cut c = 2 with growth 2: milestones where the base falls by c*sqrt(g) = 2*sqrt(2);
    the LR is divided by 2 (not sqrt 2) at each."""
    base = CosineLR(total_tokens=1e9, final_factor=0.0)
    schedule = SeesawBatch(batch_growth=2.0, lr_cut=2.0, max_batch=2**20)
    fall = 2.0 * math.sqrt(2.0)
    plan = Plan(base, schedule, PEAK, 64, 1024)
    staircase = _seesaw_phases(plan)
    assert len(staircase) >= 6
    for k, phase in enumerate(staircase):
        if k > 0:
            assert phase.start_tokens == pytest.approx(_cosine_inverse(fall**-k, 1e9))
        assert phase.global_batch == 64 * 2**k
        assert plan.at_tokens(phase.start_tokens).lr == pytest.approx(PEAK / 2**k)


def test_lr_cut_below_sqrt_growth_warns_or_raises_when_strict():
    with pytest.warns(SeesawStabilityWarning, match="lr_cut"):
        SeesawBatch(batch_growth=4.0, lr_cut=1.0)
    with pytest.warns(SeesawStabilityWarning):
        SeesawBatch(batch_growth=2.0, lr_cut=2**0.25)
    with pytest.raises(SeesawConfigError, match="lr_cut"):
        SeesawBatch(batch_growth=4.0, lr_cut=1.5, strict=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        SeesawBatch(batch_growth=4.0, lr_cut=2.0, strict=True)  # exactly sqrt(g): fine
        SeesawBatch(batch_growth=2.0, lr_cut=math.sqrt(2.0))
        SeesawBatch(batch_growth=2.0)


@pytest.mark.parametrize("kwargs, field", [
    ({"batch_growth": 1.0}, "batch_growth"),
    ({"batch_growth": 0.5}, "batch_growth"),
    ({"batch_growth": "2"}, "batch_growth"),
    ({"batch_growth": 2.0, "lr_cut": 0.9}, "lr_cut"),
])
def test_bad_seesaw_arguments(kwargs, field):
    with pytest.raises(SeesawConfigError, match=field):
        SeesawBatch(**kwargs)


def test_max_batch_caps_growth_then_the_lr_follows_the_base():
    base = CosineLR(total_tokens=1e9, final_factor=0.0)
    plan = Plan(base, SeesawBatch(batch_growth=2.0, max_batch=256), PEAK, 64, 1024)
    batches = [phase.global_batch for phase in plan.phases]
    assert batches == [64, 128, 256, 256]
    cap = plan.phases[-1]
    assert cap.follows_base and cap.end_tokens == 1e9
    # the cap starts at the third milestone (where the batch would have become 512)
    assert cap.start_tokens == pytest.approx(_cosine_inverse(2.0**-3, 1e9))
    multiplier = math.sqrt(256 / 64)
    for fraction in (0.0, 0.3, 0.7, 0.99):
        tokens = cap.start_tokens + fraction * (cap.end_tokens - cap.start_tokens)
        setting = plan.at_tokens(tokens)
        assert setting.global_batch == 256
        assert setting.lr == pytest.approx(PEAK * multiplier * base.factor(tokens))
        assert setting.lr / math.sqrt(256) == pytest.approx(
            PEAK * base.factor(tokens) / math.sqrt(64)
        )


def test_max_batch_validation():
    base = CosineLR(total_tokens=1e9)
    with pytest.raises(SeesawConfigError, match="max_batch"):
        Plan(base, SeesawBatch(batch_growth=2.0, max_batch=64), PEAK, 128, 1024)
    with pytest.raises(SeesawConfigError, match="max_batch"):
        Plan(base, SeesawBatch(batch_growth=2.0, max_batch=300), PEAK, 128, 1024,
             batch_multiple=64)
    # equal to the starting batch: no growth at all, the LR follows the base
    plan = Plan(base, SeesawBatch(batch_growth=2.0, max_batch=128), PEAK, 128, 1024)
    assert {phase.global_batch for phase in plan.phases} == {128}
    assert plan.at_tokens(5e8).lr == pytest.approx(PEAK * base.factor(5e8))


def test_coincident_milestones_apply_at_once():
    """Step decay by 0.1 under growth 2: at 3e5 the base (0.1) has crossed 2^-1, 2^-2 and
    2^-3 but not 2^-4, so the batch grows x8 in one phase; at 6e5 (0.01) the count reaches
    6 (2^-6 = 0.0156 >= 0.01 > 2^-7), at 9e5 (0.001) 9."""
    base = StepDecayLR(total_tokens=1e6, milestones=(3e5, 6e5, 9e5), gamma=0.1)
    plan = Plan(base, SeesawBatch(batch_growth=2.0, max_batch=4096), 1.0, 8, 16)
    starts = [phase.start_tokens for phase in plan.phases]
    assert starts == [0.0, 3e5, 6e5, 9e5]
    for phase, base_level in zip(plan.phases[:-1], (1.0, 0.1, 0.01)):
        k = math.floor(math.log(1 / base_level) / math.log(2) + 1e-9)
        assert phase.global_batch == 8 * 2**k
        assert phase.lr_multiplier == pytest.approx(2 ** (-k / 2))
    assert [phase.global_batch for phase in plan.phases] == [8, 64, 512, 4096]
    # the last phase follows the base: lr / sqrt(B) ends exactly on the base's path
    last = plan.phases[-1]
    assert last.follows_base
    assert plan.at_tokens(9.2e5).lr / math.sqrt(4096) == pytest.approx(0.001 / math.sqrt(8))


def test_step_decay_by_exactly_the_growth_is_not_shifted_by_rounding():
    """Regression: a base halving under growth 2 lands exactly on 2^-k; a last-bit rounding
    of sqrt(2) * sqrt(2) used to push every milestone one step late (the first halving was
    skipped and the batch doubled one milestone after the base halved)."""
    base = StepDecayLR(total_tokens=2**17, milestones=(2**15, 2**16, 3 * 2**15), gamma=0.5)
    for schedule in (SeesawBatch(batch_growth=2.0),
                     SeesawBatch(batch_growth=2.0, lr_cut=math.sqrt(2.0))):
        plan = Plan(base, schedule, 1.0, 16, 1)
        assert [(phase.start_tokens, phase.global_batch) for phase in plan.phases] == [
            (0.0, 16), (2**15, 32), (2**16, 64), (3 * 2**15, 128)
        ]
        for k, phase in enumerate(plan.phases):
            assert plan.at_tokens(phase.start_tokens).lr == pytest.approx(2 ** (-k / 2))


def test_cap_on_coincident_milestones_leaves_no_empty_phase():
    """Regression: the cap used to be appended after the coincident milestones' phase at the
    same token, leaving a zero-length phase and a duplicate Megatron threshold."""
    base = StepDecayLR(total_tokens=1e6, milestones=(3e5, 6e5, 9e5), gamma=0.1)
    plan = Plan(base, SeesawBatch(batch_growth=2.0, max_batch=48), 1.0, 8, 16,
                batch_multiple=8)
    assert [(p.start_tokens, p.global_batch, p.follows_base) for p in plan.phases] == [
        (0.0, 8, False), (3e5, 48, True)
    ]
    assert all(phase.end_tokens > phase.start_tokens for phase in plan.phases)
    assert plan.megatron_step_schedule() == "0:8 300000:48"
    # after the cap: lr / sqrt(B) on the base path
    setting = plan.at_tokens(7e5)
    assert setting.lr / math.sqrt(48) == pytest.approx(base.factor(7e5) / math.sqrt(8))


def test_cosine_to_zero_without_a_cap_is_refused_naming_the_fix():
    base = CosineLR(total_tokens=1e7, final_factor=0.0)
    with pytest.raises(SeesawConfigError, match="max_batch.*final_factor"):
        Plan(base, SeesawBatch(batch_growth=2.0), PEAK, 8, 128)


def test_cosine_to_zero_gives_a_finite_plan():
    base = CosineLR(total_tokens=1e7, final_factor=0.0)
    plan = Plan(base, SeesawBatch(batch_growth=2.0, max_batch=8 * 2**12), PEAK, 8, 128)
    assert 1 < len(plan.phases) < 20
    # growth stops once one step of the next batch would not fit in the tokens left
    for phase in plan.phases[1:]:
        assert base.total_tokens - phase.start_tokens >= phase.global_batch * 128
    steps = list(plan.iter_steps())
    assert len(steps) == plan.optimizer_steps < plan.baseline_optimizer_steps
    assert all(math.isfinite(setting.lr) and setting.lr > 0 for _, _, setting in steps)


def test_constant_and_linear_bases():
    # a constant base never decays: Seesaw is the constant-batch run
    plan = Plan(ConstantLR(total_tokens=1e6), SeesawBatch(batch_growth=2.0), PEAK, 16, 64)
    assert [(p.start_tokens, p.global_batch) for p in plan.phases] == [(0.0, 16)]
    # a linear base to 0: milestones at 1 - 2^-k of the run
    base = LinearLR(total_tokens=1e9)
    milestones = SeesawBatch(batch_growth=2.0).milestones(base)
    for k, tokens in enumerate(milestones[:10], start=1):
        assert tokens == pytest.approx((1 - 2.0**-k) * 1e9)


def test_effective_lr_cut_and_fall_per_milestone():
    assert SeesawBatch(batch_growth=1.1).effective_lr_cut == pytest.approx(math.sqrt(1.1))
    assert SeesawBatch(batch_growth=1.1).decay_per_milestone == pytest.approx(1.1)
    with pytest.warns(SeesawStabilityWarning):
        ablation = SeesawBatch(batch_growth=4.0, lr_cut=1.0)
    assert ablation.decay_per_milestone == pytest.approx(2.0)
