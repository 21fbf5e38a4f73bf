"""Base LR schedules: factors at chosen tokens from the formulas, the closed-form inverses
against the base-class bisection, and validation naming the field."""

import math
import signal
from dataclasses import dataclass

import pytest

from seesaw_ds.errors import SeesawConfigError
from seesaw_ds.schedules import (
    LR_SCHEDULES,
    WSDLR,
    ConstantLR,
    CosineLR,
    InverseSqrtLR,
    LinearLR,
    LRSchedule,
    StepDecayLR,
)

# ---- factors at chosen tokens -------------------------------------------------------------


def test_constant_warms_up_linearly_then_holds_the_peak():
    schedule = ConstantLR(total_tokens=1000, warmup_tokens=100, warmup_start_factor=0.1)
    assert schedule.factor(0) == pytest.approx(0.1)
    assert schedule.factor(50) == pytest.approx(0.55)
    assert schedule.factor(100) == 1.0
    assert schedule.factor(999) == 1.0


def test_warmup_defaults_to_starting_from_zero():
    schedule = CosineLR(total_tokens=1000, warmup_tokens=200)
    assert schedule.factor(0) == 0.0
    assert schedule.factor(50) == pytest.approx(0.25)


def test_cosine_with_warmup_and_floor():
    schedule = CosineLR(total_tokens=1000, warmup_tokens=100, warmup_start_factor=0.1,
                        final_factor=0.1)
    assert schedule.factor(0) == pytest.approx(0.1)
    assert schedule.factor(25) == pytest.approx(0.1 + 0.9 * 0.25)
    assert schedule.factor(100) == pytest.approx(1.0)
    # a quarter of the decay: cos(pi/4) = sqrt(2)/2
    assert schedule.factor(325) == pytest.approx(0.1 + 0.9 * (2 + math.sqrt(2)) / 4)
    assert schedule.factor(550) == pytest.approx(0.1 + 0.9 * 0.5)
    assert schedule.factor(1000) == pytest.approx(0.1)
    assert schedule.factor(5000) == pytest.approx(0.1)  # clamped past the end


def test_cosine_to_zero_without_warmup():
    schedule = CosineLR(total_tokens=4.0)
    assert schedule.factor(0) == 1.0
    assert schedule.factor(1) == pytest.approx((2 + math.sqrt(2)) / 4)
    assert schedule.factor(2) == pytest.approx(0.5)
    assert schedule.factor(4) == pytest.approx(0.0, abs=1e-15)


def test_linear_decay():
    schedule = LinearLR(total_tokens=1000, final_factor=0.2)
    assert schedule.factor(0) == 1.0
    assert schedule.factor(250) == pytest.approx(0.8)
    assert schedule.factor(1000) == pytest.approx(0.2)
    warm = LinearLR(total_tokens=1000, warmup_tokens=200, final_factor=0.0)
    assert warm.factor(100) == pytest.approx(0.5)
    assert warm.factor(600) == pytest.approx(0.5)
    assert warm.factor(800) == pytest.approx(0.25)


@pytest.mark.parametrize(
    "tail, quarter, half",
    [
        ("linear", 0.75, 0.5),
        ("cosine", (2 + math.sqrt(2)) / 4, 0.5),
        ("1-sqrt", 0.5, 1 - math.sqrt(0.5)),
    ],
)
def test_wsd_tails(tail, quarter, half):
    # warmup [0, 100), stable [100, 800], tail (800, 1000]
    schedule = WSDLR(total_tokens=1000, warmup_tokens=100, decay_tokens=200,
                     final_factor=0.1, tail=tail)
    assert schedule.factor(50) == pytest.approx(0.5)
    assert schedule.factor(100) == 1.0
    assert schedule.factor(799) == 1.0
    assert schedule.factor(800) == 1.0
    assert schedule.factor(850) == pytest.approx(0.1 + 0.9 * quarter)
    assert schedule.factor(900) == pytest.approx(0.1 + 0.9 * half)
    assert schedule.factor(1000) == pytest.approx(0.1)


def test_step_decay_multiplies_at_each_milestone():
    schedule = StepDecayLR(total_tokens=1000, warmup_tokens=100, milestones=(400, 700),
                           gamma=0.1)
    assert schedule.factor(50) == pytest.approx(0.5)
    assert schedule.factor(399.9) == 1.0
    assert schedule.factor(400) == pytest.approx(0.1)
    assert schedule.factor(699.9) == pytest.approx(0.1)
    assert schedule.factor(700) == pytest.approx(0.01)
    assert schedule.factor(999) == pytest.approx(0.01)


def test_inverse_sqrt():
    classic = InverseSqrtLR(total_tokens=10_000, warmup_tokens=100)
    assert classic.factor(50) == pytest.approx(0.5)
    assert classic.factor(100) == 1.0
    assert classic.factor(400) == pytest.approx(math.sqrt(100 / 400))
    assert classic.factor(10_000) == pytest.approx(0.1)
    explicit = InverseSqrtLR(total_tokens=10_000, timescale_tokens=400)
    assert explicit.factor(0) == 1.0
    assert explicit.factor(1200) == pytest.approx(0.5)


def test_registry_names():
    assert set(LR_SCHEDULES) == {"constant", "cosine", "linear", "wsd", "step", "inverse_sqrt"}


# ---- inverses: closed form vs bisection ---------------------------------------------------

SCHEDULES = [
    ConstantLR(total_tokens=1e6, warmup_tokens=1e5),
    CosineLR(total_tokens=1e6, final_factor=0.0),
    CosineLR(total_tokens=3.3e9, warmup_tokens=3.3e8, warmup_start_factor=0.1,
             final_factor=0.1),
    LinearLR(total_tokens=1e6, warmup_tokens=2e5, final_factor=0.05),
    LinearLR(total_tokens=1e6),
    WSDLR(total_tokens=1e6, warmup_tokens=1e4, decay_tokens=2e5, tail="linear"),
    WSDLR(total_tokens=1e6, decay_tokens=3e5, final_factor=0.1, tail="cosine"),
    WSDLR(total_tokens=1e6, warmup_tokens=5e4, decay_tokens=2e5, final_factor=0.02,
          tail="1-sqrt"),
    StepDecayLR(total_tokens=1e6, warmup_tokens=1e5, milestones=(3e5, 6e5, 9e5), gamma=0.1),
    StepDecayLR(total_tokens=1e6, milestones=(2.5e5, 5e5), gamma=0.5),
    InverseSqrtLR(total_tokens=1e6, warmup_tokens=1e4),
    InverseSqrtLR(total_tokens=1e6, timescale_tokens=5e4),
]
LEVELS = [1.5, 1.0, 0.999, 0.9, 0.75, 0.5, 0.3, 0.25, 0.12, 0.1, 0.05, 0.01, 0.002, 1e-4, 0.0]


@pytest.mark.parametrize("schedule", SCHEDULES, ids=lambda s: f"{s.type_name}")
def test_closed_form_inverse_matches_bisection(schedule):
    """Within 1e-2 tokens at every level strictly between the floor and the peak.

    Exactly at the floor (``level == final_factor``) the comparison is ill-posed in floating
    point: the cosine is flat there (a zero slope: the last ~10 of 3.3e9 tokens all evaluate
    to 0.1) and a linear decay ends at 0.05000000000000004, not 0.05. There the closed form
    must return the end of training, the analytic answer.
    """
    floor = getattr(schedule, "final_factor", None)
    for level in LEVELS:
        closed = schedule.first_tokens_at_or_below(level)
        bisected = LRSchedule._bisect_level(schedule, level)
        if level >= 1.0:
            assert closed == bisected == schedule.decay_start_tokens
            continue
        if level == floor:
            assert closed == pytest.approx(schedule.total_tokens, rel=1e-12)
            assert schedule.factor(schedule.total_tokens) == pytest.approx(level, abs=1e-12)
            continue
        assert (closed is None) == (bisected is None), (level, closed, bisected)
        if closed is None:
            assert schedule.factor(schedule.total_tokens) > level
            continue
        assert abs(closed - bisected) <= 1e-2, (level, closed, bisected)
        # and it is the first crossing: at or below there, above just before it
        assert schedule.factor(closed) <= level * (1 + 1e-9) + 1e-12
        if closed > schedule.decay_start_tokens:
            assert schedule.factor(closed - 1.0) > level


def test_inverse_values_from_formulas():
    cosine = CosineLR(total_tokens=1000, warmup_tokens=100, final_factor=0.1)
    # half way down the cosine (level 0.55) is half way through the decay
    assert cosine.first_tokens_at_or_below(0.55) == pytest.approx(550)
    assert cosine.first_tokens_at_or_below(0.1) == pytest.approx(1000)
    assert cosine.first_tokens_at_or_below(0.09) is None
    linear = LinearLR(total_tokens=1000, final_factor=0.2)
    assert linear.first_tokens_at_or_below(0.6) == pytest.approx(500)
    wsd = WSDLR(total_tokens=1000, decay_tokens=200, tail="1-sqrt")
    assert wsd.first_tokens_at_or_below(0.5) == pytest.approx(800 + 0.25 * 200)
    step = StepDecayLR(total_tokens=1000, milestones=(400, 700), gamma=0.1)
    assert step.first_tokens_at_or_below(0.5) == 400
    assert step.first_tokens_at_or_below(0.05) == 700
    assert step.first_tokens_at_or_below(0.001) is None
    inverse = InverseSqrtLR(total_tokens=10_000, warmup_tokens=100)
    assert inverse.first_tokens_at_or_below(0.5) == pytest.approx(400)
    assert inverse.first_tokens_at_or_below(0.05) is None
    assert ConstantLR(total_tokens=10).first_tokens_at_or_below(0.9) is None


@dataclass(frozen=True)
class _HalfCosineWithoutInverse(LRSchedule):
    """A schedule with no closed-form inverse: the base class bisects."""

    def _decay(self, tokens):
        return 0.5 * (1 + math.cos(math.pi * self._decay_fraction(tokens)))


def test_bisection_terminates_on_huge_token_counts():
    """At 2e13 tokens adjacent floats are 4e-3 apart, more than the bisection tolerance:
    the loop must still stop (it used to spin forever)."""

    def _timeout(signum, frame):
        raise TimeoutError("bisection did not terminate")

    previous = signal.signal(signal.SIGALRM, _timeout)
    signal.alarm(10)
    try:
        schedule = _HalfCosineWithoutInverse(total_tokens=2e13)
        found = schedule.first_tokens_at_or_below(0.5)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert found == pytest.approx(1e13, abs=1.0)


# ---- validation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "build, field",
    [
        (lambda: CosineLR(total_tokens=0), "total_tokens"),
        (lambda: CosineLR(total_tokens=-5), "total_tokens"),
        (lambda: CosineLR(total_tokens=100, warmup_tokens=100), "warmup"),
        (lambda: CosineLR(total_tokens=100, warmup_tokens=-1), "warmup_tokens"),
        (lambda: CosineLR(total_tokens=100, final_factor=1.5), "final_factor"),
        (lambda: LinearLR(total_tokens=100, final_factor=-0.1), "final_factor"),
        (lambda: CosineLR(total_tokens=100, warmup_tokens=10, warmup_start_factor=2.0),
         "warmup_start_factor"),
        (lambda: WSDLR(total_tokens=100, decay_tokens=0), "decay_tokens"),
        (lambda: WSDLR(total_tokens=100, warmup_tokens=50, decay_tokens=60), "decay_tokens"),
        (lambda: WSDLR(total_tokens=100, decay_tokens=10, tail="exp"), "tail"),
        (lambda: StepDecayLR(total_tokens=100, milestones=(50,), gamma=1.0), "gamma"),
        (lambda: StepDecayLR(total_tokens=100, milestones=(60, 50)), "milestones"),
        (lambda: StepDecayLR(total_tokens=100, milestones=(100,)), "milestones"),
        (lambda: StepDecayLR(total_tokens=100, warmup_tokens=20, milestones=(10,)),
         "milestones"),
        (lambda: InverseSqrtLR(total_tokens=100), "timescale_tokens"),
    ],
)
def test_bad_schedule_arguments_raise_one_error_naming_the_field(build, field):
    with pytest.raises(SeesawConfigError) as error:
        build()
    assert field in str(error.value)
