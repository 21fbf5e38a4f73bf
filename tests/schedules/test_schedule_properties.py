"""Property tests: every ``seesaw`` section we accept gives the schedule its semantics, or one
``SeesawConfigError``.

Sections are drawn at random (every base type, floors including 0, ``min_lr``, growth in
(1, 100], with and without a cap, every batch schedule) and go through the same parser and
plan builder as a user's config. For each accepted one:

- the noise temperature ``lr / sqrt(B)`` of every step stays within one milestone's fall
  (``lr_cut * sqrt(batch_growth)``, i.e. the growth factor for Seesaw) above the base's
  ``peak * f(t) / sqrt(B0)``, and never below it (the staircase lag, nothing dropped);
- the last step's LR is the base's for the final batch: ``lr / sqrt(B)`` on the path;
- the run trains the budget within one batch multiple of sequences;
- batches are multiples, never shrink (but for the short last step) and respect the cap,
  or ``AUTO_BATCH_BOUND x B0`` when there is none.
"""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seesaw_ds.config import parse_seesaw_section
from seesaw_ds.errors import SeesawConfigError
from seesaw_ds.schedules import BatchLimit, SeesawBatch
from seesaw_ds.schedules.batch_schedules import AUTO_BATCH_BOUND
from seesaw_ds.schedules.multiples import STAGE_LR_CEILING

PEAK = 1e-3
SEQ = 64
SETTINGS = settings(max_examples=150, deadline=None)


@st.composite
def lr_schedules(draw, total):
    kind = draw(st.sampled_from(["constant", "cosine", "linear", "wsd", "step",
                                 "inverse_sqrt"]))
    spec = {"type": kind}
    if draw(st.booleans()):
        spec["warmup_fraction"] = draw(st.sampled_from([0.01, 0.1, 0.3]))
        spec["warmup_start_factor"] = draw(st.sampled_from([0.0, 0.1]))
    if kind in ("cosine", "linear", "wsd"):
        spec["final_factor"] = draw(st.sampled_from([0.0, 0.001, 0.05, 0.1, 0.5, 0.9]))
    if kind == "wsd":
        spec["decay_fraction"] = draw(st.sampled_from([0.1, 0.2, 0.5]))
        spec["tail"] = draw(st.sampled_from(["linear", "cosine", "1-sqrt"]))
    if kind == "step":
        spec["milestone_fractions"] = draw(st.sampled_from([[0.5], [0.4, 0.8],
                                                            [0.35, 0.6, 0.9]]))
        spec["gamma"] = draw(st.sampled_from([0.1, 0.3, 0.5]))
    if kind == "inverse_sqrt":
        spec["timescale_tokens"] = draw(st.sampled_from([0.01, 0.1])) * total
    return spec


@st.composite
def batch_options(draw, initial, multiple, total):
    kind = draw(st.sampled_from(["seesaw", "seesaw", "seesaw", "constant", "linear_ramp",
                                 "step", "late_switch"]))
    options = {"batch_schedule": kind}
    larger = initial + multiple * draw(st.integers(1, 8))
    if kind == "seesaw":
        options["batch_growth"] = draw(st.one_of(
            st.floats(1.0001, 1.01), st.floats(1.01, 3.0), st.floats(3.0, 100.0)))
        if draw(st.booleans()):
            options["max_batch"] = multiple * draw(st.integers(initial // multiple,
                                                               100 * initial // multiple))
        if draw(st.integers(0, 4)) == 0:  # a stable ablation: lr_cut above sqrt(growth)
            options["lr_cut"] = math.sqrt(options["batch_growth"]) * draw(st.floats(1, 2))
    elif kind == "linear_ramp":
        options.update(final_batch=larger, batch_increment=multiple,
                       ramp_tokens=draw(st.sampled_from([0.1, 0.5])) * total)
    elif kind == "step":
        options["batch_steps"] = [[draw(st.sampled_from([0.2, 0.5])) * total, larger]]
    elif kind == "late_switch":
        options.update(switch_batch=larger, switch_fraction=draw(st.sampled_from([0.5, 0.7])))
    if kind in ("linear_ramp", "step", "late_switch"):
        options["lr_scaling"] = draw(st.sampled_from(["none", "sqrt"]))
    return options


@st.composite
def sections(draw):
    multiple = draw(st.sampled_from([1, 4, 16]))
    initial = multiple * draw(st.integers(1, 64 // multiple))
    total = float(draw(st.integers(50, 4000)) * 64 * SEQ)
    section = {"total_tokens": total, "seq_length": SEQ, "batch_multiple": multiple,
               "lr_schedule": draw(lr_schedules(total))}
    section.update(draw(batch_options(initial, multiple, total)))
    if draw(st.integers(0, 3)) == 0:
        section["min_lr"] = PEAK * draw(st.sampled_from([0.01, 0.1, 0.3]))
    return section, initial


def _plan_or_refusal(section, initial):
    try:
        parsed = parse_seesaw_section(section)
        return parsed.build_plan(PEAK, initial, micro_batch=1, dp_size=1)
    except SeesawConfigError:
        return None


def _steps(plan):
    return list(plan.iter_steps())


def _path(plan, tokens):
    """The base's noise temperature ``peak * f(t) / sqrt(B0)``."""
    return PEAK * plan.base.factor(tokens) / math.sqrt(plan.initial_batch)


@SETTINGS
@given(sections())
def test_every_accepted_section_keeps_the_noise_temperature_on_the_base_path(drawn):
    section, initial = drawn
    plan = _plan_or_refusal(section, initial)
    if plan is None:
        return
    schedule = plan.batch_schedule
    steps = _steps(plan)
    for _, start, setting in steps:
        temperature = setting.lr / math.sqrt(setting.global_batch)
        if setting.lr == plan.min_lr and plan.min_lr > 0:
            continue  # clamped at the absolute floor (only the short last step can be)
        if _path(plan, start) == 0.0:  # warmup from 0: the first step has LR 0
            assert temperature == 0.0
            continue
        ratio = temperature / _path(plan, start)
        if isinstance(schedule, SeesawBatch):
            assert 1 - 1e-9 <= ratio <= schedule.decay_per_milestone * (1 + 1e-9), (
                start, ratio)
        elif getattr(schedule, "lr_scaling", "none") == "sqrt":
            assert ratio == pytest.approx(1.0, rel=1e-9)
        else:  # the LR follows the base, a larger batch lowers the temperature
            phase_batch = plan.phases[setting.phase_index].global_batch
            assert ratio == pytest.approx(math.sqrt(initial / phase_batch), rel=1e-9)


@SETTINGS
@given(sections())
def test_every_accepted_section_ends_on_the_base_and_trains_the_budget(drawn):
    section, initial = drawn
    plan = _plan_or_refusal(section, initial)
    if plan is None:
        return
    steps = _steps(plan)
    _, last_start, last = steps[-1]
    if isinstance(plan.batch_schedule, SeesawBatch):
        # the batch has stopped growing: the last phase's LR takes every remaining decay and
        # ends where the base ends for the final batch
        final = plan.phases[-1]
        assert final.follows_base
        end_lr = final.lr_at(plan.total_tokens, PEAK, plan.base)
        assert end_lr / math.sqrt(final.global_batch) == pytest.approx(
            _path(plan, plan.total_tokens), rel=1e-9)
        if last.phase_index == len(plan.phases) - 1 and last.lr > plan.min_lr:
            assert last.lr / math.sqrt(last.global_batch) == pytest.approx(
                _path(plan, last_start), rel=1e-9)
    trained = sum(setting.global_batch for _, _, setting in steps) * SEQ
    assert trained == plan.trained_tokens
    assert plan.total_tokens <= trained < plan.total_tokens + plan.batch_multiple * SEQ
    assert len(steps) == plan.optimizer_steps


@SETTINGS
@given(sections())
def test_every_accepted_section_has_bounded_monotone_multiples(drawn):
    section, initial = drawn
    plan = _plan_or_refusal(section, initial)
    if plan is None:
        return
    batches = [setting.global_batch for _, _, setting in _steps(plan)]
    assert all(batch % plan.batch_multiple == 0 and batch > 0 for batch in batches)
    assert all(b2 >= b1 for b1, b2 in zip(batches[:-1], batches[1:-1]))
    bound = plan.batch_schedule.largest_batch(initial)
    if isinstance(plan.batch_schedule, SeesawBatch) and bound is None:
        bound = AUTO_BATCH_BOUND * initial
    assert max(batches) <= bound
    assert plan.phases[0].start_tokens == 0.0
    assert plan.phases[-1].end_tokens == plan.total_tokens
    assert all(a.end_tokens == b.start_tokens for a, b in zip(plan.phases, plan.phases[1:]))
    assert all(phase.start_tokens < phase.end_tokens for phase in plan.phases)


@SETTINGS
@given(sections())
def test_plans_are_deterministic_and_step_counts_are_exact(drawn):
    section, initial = drawn
    plan = _plan_or_refusal(section, initial)
    if plan is None:
        return
    again = _plan_or_refusal(section, initial)
    assert again.phases == plan.phases
    counts = [0] * len(plan.phases)
    for _, _, setting in plan.iter_steps():
        counts[setting.phase_index] += 1
    assert counts == plan.steps_per_phase()


def test_the_property_draws_accept_most_sections():
    """Guard against a vacuous property: refusals must stay the exception."""
    accepted = []

    @settings(max_examples=200, deadline=None)
    @given(sections())
    def count(drawn):
        accepted.append(_plan_or_refusal(*drawn) is not None)

    count()
    assert sum(accepted) >= 0.5 * len(accepted)


@st.composite
def limited_plans(draw):
    """A random Seesaw (or adaptive) plan and random online limits on it."""
    section, initial = draw(sections())
    section.update(batch_schedule=draw(st.sampled_from(["seesaw", "adaptive"])),
                   batch_growth=draw(st.floats(1.05, 3.0)))
    for key in ("final_batch", "batch_increment", "ramp_tokens", "batch_steps",
                "switch_batch", "switch_fraction", "lr_scaling", "lr_cut"):
        section.pop(key, None)
    if section["batch_schedule"] == "adaptive":
        section["adaptive"] = {"lr_ceiling": draw(st.sampled_from([1.0, 1.5, 4.0]))}
    plan = _plan_or_refusal(section, initial)
    if plan is None:
        return None
    multiple, total = plan.batch_multiple, plan.total_tokens
    starts = sorted(draw(st.lists(st.floats(0.0, 0.99), min_size=1, max_size=4)))
    limits = []
    for fraction in starts:
        floor = draw(st.one_of(st.none(), st.integers(1, 8).map(lambda k: k * multiple)))
        cap = draw(st.one_of(st.none(), st.integers(1, 8).map(lambda k: k * multiple)))
        if floor is not None and cap is not None and floor > cap:
            floor, cap = cap, floor
        limits.append(BatchLimit(fraction * total, floor=floor, cap=cap))
    return plan, limits


@settings(max_examples=40, deadline=None)
@given(limited_plans())
def test_online_limits_clamp_the_batch_and_keep_the_lr_rule(drawn):
    if drawn is None:
        return
    ladder, limits = drawn
    limited = ladder.with_batch_limits(limits)
    assert limited.phases[0].start_tokens == 0.0
    assert all(a.end_tokens == b.start_tokens for a, b in zip(limited.phases,
                                                              limited.phases[1:]))
    ceiling = ladder.lr_ceiling
    for _, start, setting in list(limited.iter_steps())[:-1]:
        wanted = ladder.at_tokens(start)
        active = [limit for limit in limits if limit.start_tokens <= start]
        expected = active[-1].clamp(wanted.global_batch) if active else wanted.global_batch
        assert setting.global_batch == expected
        if expected == wanted.global_batch:
            assert setting.lr == pytest.approx(wanted.lr, rel=1e-12)
        else:  # lr / sqrt(B) on the base path, under the ceiling
            on_path = PEAK * limited.base.factor(start) * math.sqrt(expected / ladder.initial_batch)
            bound = math.inf if ceiling is None else ceiling * PEAK
            assert setting.lr == pytest.approx(max(limited.min_lr, min(on_path, bound)),
                                               rel=1e-12)
    # nothing before the first limit changes
    first = limits[0].start_tokens
    for _, start, setting in ladder.iter_steps():
        if start >= first:
            break
        same = limited.at_tokens(start)
        assert (same.lr, same.global_batch) == (setting.lr, setting.global_batch)


@st.composite
def staged_sections(draw):
    """A random section plus random batch-multiple stages (a growing chain of jobs)."""
    section, initial = draw(sections())
    fractions = sorted(set(draw(st.lists(st.sampled_from([0.2, 0.45, 0.6, 0.8, 0.95]),
                                         min_size=1, max_size=3))))
    section["batch_multiple_stages"] = [
        {"from_tokens": fraction * section["total_tokens"],
         "multiple": draw(st.sampled_from([1, 2, 3, 5, 6, 8, 24]))} for fraction in fractions]
    return section, initial


@SETTINGS
@given(staged_sections())
def test_stages_round_each_batch_to_its_stage_and_keep_the_temperature(drawn):
    section, initial = drawn
    staged = _plan_or_refusal(section, initial)
    if staged is None:
        return
    plain = _plan_or_refusal(dict(section, batch_multiple_stages=None), initial)
    assert plain is not None  # stages alone never turn an accepted section into a refusal
    steps = _steps(staged)
    multiples = staged.multiple_stages
    for index, (_, start, setting) in enumerate(steps):
        multiple = [m for t, m in multiples if t <= start][-1]
        assert setting.global_batch % multiple == 0, (start, setting.global_batch, multiple)
        reference = plain.at_tokens(start)
        is_last = index == len(steps) - 1
        if not is_last:  # rounded up, and never below the phase before (a finer stage)
            before = staged.phases[setting.phase_index - 1].global_batch \
                if setting.phase_index else 0
            assert reference.global_batch <= setting.global_batch < \
                max(reference.global_batch, before) + multiple
            if setting.lr > staged.min_lr and reference.lr > plain.min_lr:
                # lr / sqrt(B) kept, but a rounded batch never lifts the LR above the peak
                wanted = reference.lr * math.sqrt(setting.global_batch / reference.global_batch)
                if setting.global_batch != reference.global_batch:
                    wanted = min(wanted, staged.peak_lr * STAGE_LR_CEILING)
                assert setting.lr == pytest.approx(wanted, rel=1e-9, abs=1e-300)
    batches = [setting.global_batch for _, _, setting in steps]
    assert all(b2 >= b1 for b1, b2 in zip(batches[:-1], batches[1:-1]))
    trained = sum(batches) * SEQ
    assert trained == staged.trained_tokens
    last_multiple = [m for t, m in multiples if t <= steps[-1][1]][-1]
    assert staged.total_tokens <= trained < staged.total_tokens + last_multiple * SEQ


@SETTINGS
@given(sections(), st.sampled_from([(1, 1), (1, 4), (2, 2), (4, 1)]),
       st.sampled_from([2, 8, 16, 64]))
def test_micro_batch_first_never_shrinks_the_micro_batch_and_explains_each_change(
        drawn, layout, max_micro):
    """Every step's micro-batch divides its per-rank batch, is a multiple of the configured
    one and at most max_micro_batch; over the run it never shrinks (the short last step
    aside, which never takes a larger one), and each change has a reason."""
    section, initial = drawn
    dp, micro = layout
    multiple = section["batch_multiple"]
    if multiple % (dp * micro) or max_micro < micro:
        return
    section = dict(section, growth_policy="micro_batch_first", max_micro_batch=max_micro)
    try:
        plan = parse_seesaw_section(section).build_plan(PEAK, initial, micro, dp)
    except SeesawConfigError:
        return
    steps = _steps(plan)
    reasons = dict(plan.micro_batch_reasons)
    previous = micro
    for index, (_, _, setting) in enumerate(steps):
        per_rank = setting.global_batch // dp
        assert per_rank % setting.micro_batch == 0 and setting.micro_batch % micro == 0
        assert setting.micro_batch <= max_micro
        assert setting.micro_batch * setting.grad_accum == per_rank
        if index == len(steps) - 1:
            assert setting.micro_batch <= plan.phases[setting.phase_index].micro_batch
            break
        if setting.micro_batch != previous:
            assert setting.micro_batch > previous or index == 0
            assert setting.phase_index in reasons
        previous = setting.micro_batch
