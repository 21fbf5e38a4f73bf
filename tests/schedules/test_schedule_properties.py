"""Property tests: Seesaw invariants over random bases, growths and rounding multiples."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seesaw_ds.schedules import WSDLR, CosineLR, LinearLR, Plan, SeesawBatch

PEAK = 1e-3
SEQ = 64
SETTINGS = settings(max_examples=50, deadline=None)


@st.composite
def bases(draw):
    steps_of_b0 = draw(st.integers(200, 3000))  # budget in steps of the largest B0 used
    total = float(steps_of_b0 * 256 * SEQ)
    warmup = draw(st.sampled_from([0.0, 0.05, 0.1, 0.3])) * total
    start = draw(st.sampled_from([0.0, 0.1]))
    floor = draw(st.sampled_from([0.0, 0.01, 0.1, 0.5]))
    kind = draw(st.sampled_from(["cosine", "linear", "wsd"]))
    if kind == "cosine":
        return CosineLR(total_tokens=total, warmup_tokens=warmup, warmup_start_factor=start,
                        final_factor=floor)
    if kind == "linear":
        return LinearLR(total_tokens=total, warmup_tokens=warmup, warmup_start_factor=start,
                        final_factor=floor)
    decay = draw(st.floats(0.1, 1.0)) * (total - warmup)
    tail = draw(st.sampled_from(["linear", "cosine", "1-sqrt"]))
    return WSDLR(total_tokens=total, warmup_tokens=warmup, warmup_start_factor=start,
                 decay_tokens=decay, final_factor=floor, tail=tail)


@st.composite
def seesaw_plans(draw, with_cap=False):
    """(plan, base, schedule, growth, multiple, initial); ``with_cap`` None draws it."""
    base = draw(bases())
    growth = draw(st.floats(1.05, 4.0, exclude_max=True))
    multiple = draw(st.sampled_from([1, 8, 16]))
    initial = multiple * draw(st.integers(1, 256 // multiple))
    cap = None
    if with_cap is None:
        with_cap = draw(st.booleans())
    if with_cap:
        cap = multiple * draw(st.integers(initial // multiple, 4 * initial // multiple))
    schedule = SeesawBatch(batch_growth=growth, max_batch=cap)
    plan = Plan(base, schedule, PEAK, initial, SEQ, batch_multiple=multiple)
    return plan, base, schedule, growth, multiple, initial


def _nearest_multiple(value, multiple):
    return multiple * max(1, math.floor(value / multiple + 0.5))


@SETTINGS
@given(seesaw_plans())
def test_seesaw_phase_starts_keep_lr_over_sqrt_batch_on_the_base_path(drawn):
    plan, base, schedule, growth, multiple, initial = drawn
    staircase = [phase for phase in plan.phases if not phase.follows_base]
    milestones = schedule.milestones(base)
    assert staircase[0].start_tokens == base.decay_start_tokens
    assert [p.start_tokens for p in staircase[1:]] == milestones[: len(staircase) - 1]
    for k, phase in enumerate(staircase):
        ideal = initial * growth**k
        batch = _nearest_multiple(ideal, multiple)
        assert phase.global_batch == batch
        setting = plan.at_tokens(phase.start_tokens)
        correction = math.sqrt(batch / ideal)  # rounding: the batch is not exactly B0 g^k
        assert setting.lr == pytest.approx(PEAK * growth ** (-k / 2) * correction, rel=1e-9)
        # the correction cancels in lr / sqrt(B): exactly the base path at the milestone
        assert setting.lr / math.sqrt(batch) == pytest.approx(
            PEAK * base.factor(phase.start_tokens) / math.sqrt(initial), rel=1e-7
        )


@SETTINGS
@given(seesaw_plans())
def test_batches_grow_monotonically_in_multiples_and_phases_tile(drawn):
    plan, base, _, _, multiple, initial = drawn
    batches = [phase.global_batch for phase in plan.phases]
    assert batches[0] == initial
    assert all(b2 >= b1 for b1, b2 in zip(batches, batches[1:]))
    assert all(batch % multiple == 0 for batch in batches)
    assert plan.phases[0].start_tokens == 0.0
    assert plan.phases[-1].end_tokens == base.total_tokens
    assert all(a.end_tokens == b.start_tokens for a, b in zip(plan.phases, plan.phases[1:]))
    assert all(phase.start_tokens < phase.end_tokens for phase in plan.phases)


@SETTINGS
@given(seesaw_plans(with_cap=None))
def test_plans_are_deterministic_and_step_counts_are_exact(drawn):
    plan, base, schedule, _, multiple, initial = drawn
    again = Plan(base, schedule, PEAK, initial, SEQ, batch_multiple=multiple)
    assert again.phases == plan.phases
    assert again.fingerprint() == plan.fingerprint()
    counts = [0] * len(plan.phases)
    for _, _, setting in plan.iter_steps():
        counts[setting.phase_index] += 1
    assert counts == plan.steps_per_phase()


@SETTINGS
@given(seesaw_plans(with_cap=True))
def test_after_the_cap_lr_over_sqrt_batch_follows_the_base(drawn):
    plan, base, schedule, _, _, initial = drawn
    assert max(phase.global_batch for phase in plan.phases) <= schedule.max_batch
    for phase in plan.phases:
        if not phase.follows_base or phase.start_tokens < base.decay_start_tokens:
            continue
        assert phase is plan.phases[-1] and phase.global_batch == schedule.max_batch
        for fraction in (0.0, 0.5, 0.99):
            tokens = phase.start_tokens + fraction * (phase.end_tokens - phase.start_tokens)
            setting = plan.at_tokens(tokens)
            assert setting.lr / math.sqrt(schedule.max_batch) == pytest.approx(
                PEAK * base.factor(tokens) / math.sqrt(initial), rel=1e-9
            )
