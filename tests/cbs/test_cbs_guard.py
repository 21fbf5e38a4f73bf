"""The critical-batch guard: the estimator recovers a known noise scale (B_simple) and skips
non-finite measurements; the guard holds Seesaw's growth while the next batch passes
``safety_factor x B_simple``, re-judges every step and grows again once the estimate allows,
and the held plan keeps lr/sqrt(B) on the base path."""

import math
import random

import pytest

from seesaw_ds.cbs import CriticalBatchGuard, GradientNoiseScale
from seesaw_ds.config import CBSGuardSettings
from seesaw_ds.schedules import BatchLimit, CosineLR, Plan, SeesawBatch


def _mean_gradient_sq_norm(rng, true_gradient, noise_std, batch):
    """|mean of `batch` per-sample gradients|^2 with isotropic Gaussian per-sample noise."""
    total = 0.0
    for g in true_gradient:
        mean = g + rng.gauss(0.0, noise_std / math.sqrt(batch))
        total += mean * mean
    return total


def test_estimator_recovers_the_noise_scale_of_synthetic_gradients():
    rng = random.Random(0)
    dim, noise_std = 200, 3.0
    true_gradient = [0.1] * dim                      # |G|^2 = 2.0
    expected = dim * noise_std**2 / (0.01 * dim)     # tr(Sigma)/|G|^2 = 1800 / 2 = 900
    estimator = GradientNoiseScale(ema_decay=0.98)
    for _ in range(400):
        small = _mean_gradient_sq_norm(rng, true_gradient, noise_std, 64)
        big = _mean_gradient_sq_norm(rng, true_gradient, noise_std, 1024)
        estimate = estimator.update(64, small, 1024, big)
    assert estimate.b_simple == pytest.approx(expected, rel=0.15)
    assert estimate.grad_sq == pytest.approx(2.0, rel=0.15)


def test_estimator_has_no_ratio_before_its_pieces_are_positive():
    estimator = GradientNoiseScale(0.9)
    assert estimator.estimate().b_simple is None
    estimate = estimator.update(8, 1.0, 64, 2.0)  # big norm above small: noise estimate < 0
    assert estimate.b_simple is None
    with pytest.raises(ValueError):
        estimator.update(64, 1.0, 64, 1.0)


def test_estimator_skips_and_counts_non_finite_measurements():
    """Regression: one inf norm (an fp16 overflow step) used to leave the estimate None
    forever."""
    estimator = GradientNoiseScale(0.5)
    for _ in range(3):
        estimator.update(8, 1 + 100 / 8, 64, 1 + 100 / 64)
    before = estimator.estimate()
    for bad in (math.inf, math.nan):
        estimate = estimator.update(8, bad, 64, 1.0)
        assert estimate.b_simple == pytest.approx(before.b_simple)
    assert estimate.skipped == 2 and estimate.samples == 3
    estimate = estimator.update(8, 1 + 100 / 8, 64, 1 + 100 / 64)
    assert estimate.b_simple == pytest.approx(100.0) and estimate.samples == 4
    restored = GradientNoiseScale(0.5)
    restored.load_state_dict(estimator.state_dict())
    assert restored.estimate() == estimator.estimate()


def _plan():
    base = CosineLR(total_tokens=4e6, warmup_tokens=4e5, warmup_start_factor=0.1,
                    final_factor=0.1)
    return Plan(base, SeesawBatch(batch_growth=2.0), 1e-3, 32, 128, micro_batch=8,
                dp_size=1)


def _guard(**options):
    settings = dict(enabled=True, ema_decay=0.0, min_samples=1, safety_factor=1.0)
    settings.update(options)
    return CriticalBatchGuard(CBSGuardSettings(**settings))


def _feed(guard, b_simple, times=10):
    # Noise-free inputs that solve to |G|^2 = 1 and tr(Sigma) = b_simple exactly.
    for _ in range(times):
        guard.observe(8, 1 + b_simple / 8, 64, 1 + b_simple / 64)


def test_guard_lets_growth_through_below_the_critical_batch():
    plan = _plan()
    guard = _guard()
    _feed(guard, b_simple=1000.0)
    tokens = plan.phases[2].start_tokens  # the growth 32 -> 64 is due
    decision = guard.decide(plan, tokens, current=32)
    assert decision.cap is None and decision.wanted_batch == 64 and not decision.changed
    assert guard.limits == [] and guard.plan_for(plan).phases == plan.phases


def test_guard_waits_for_enough_measurements():
    guard = _guard(min_samples=5)
    _feed(guard, b_simple=10.0, times=4)
    plan = _plan()
    assert guard.decide(plan, plan.phases[2].start_tokens, 32).reason == "estimate not ready"
    assert guard.decide(plan, 1.0e6, 32).reason == "no growth due"


def test_guard_holds_past_the_critical_batch_and_moves_decay_into_lr():
    plan = _plan()
    tokens = plan.phases[3].start_tokens  # the growth 64 -> 128 is due
    assert plan.at_tokens(tokens).global_batch == 128
    guard = _guard()
    _feed(guard, b_simple=100.0)  # a step of 64 done, next planned batch 128 > 100: hold
    decision = guard.decide(plan, tokens, current=64)
    assert decision.cap == 64 and decision.wanted_batch == 128 and decision.changed
    held = guard.plan_for(plan)
    assert held.batch_limits == (BatchLimit(tokens, cap=64),)
    # Before the decision nothing changes...
    assert held.at_tokens(2.5e6) == plan.at_tokens(2.5e6)
    # ...from there on the batch stays and lr / sqrt(B) follows the base path.
    for later in (tokens, 3.5e6, 3.9e6):
        setting = held.at_tokens(later)
        assert setting.global_batch == 64
        assert setting.lr / math.sqrt(64) == pytest.approx(
            1e-3 * plan.base.factor(later) / math.sqrt(32), rel=1e-12)
    assert held.optimizer_steps > plan.optimizer_steps
    # the next step re-judges with the same estimate: still held, nothing new
    again = guard.decide(plan, tokens + 1e5, current=64)
    assert again.cap == 64 and not again.changed and len(guard.limits) == 1


def test_a_hold_is_lifted_when_the_estimate_grows_and_growth_continues_on_the_path():
    """Regression: a hold used to be permanent although the estimate grows ~5x over a run."""
    plan = _plan()
    tokens = plan.phases[3].start_tokens
    guard = _guard()
    _feed(guard, b_simple=100.0)
    guard.decide(plan, tokens, current=64)
    _feed(guard, b_simple=1000.0)  # the noise scale has risen
    later = tokens + 2e5
    decision = guard.decide(plan, later, current=64)
    assert decision.cap is None and decision.changed
    resumed = guard.plan_for(plan)
    assert resumed.batch_limits == (BatchLimit(tokens, cap=64), BatchLimit(later, cap=None))
    assert resumed.at_tokens(tokens + 1e5).global_batch == 64
    setting = resumed.at_tokens(later)
    ladder = plan.at_tokens(later)  # back on the Seesaw staircase
    assert (setting.lr, setting.global_batch) == (ladder.lr, ladder.global_batch)
    # the staircase keeps lr / sqrt(B) on the base path at its milestone, within one growth
    ratio = (setting.lr / math.sqrt(setting.global_batch)) / (
        1e-3 * plan.base.factor(later) / math.sqrt(32))
    assert 1.0 <= ratio <= 2.0


def test_a_rising_estimate_grows_the_batch_only_as_far_as_it_allows():
    base = CosineLR(total_tokens=4e6, final_factor=0.05)
    plan = Plan(base, SeesawBatch(batch_growth=2.0, max_batch=512), 1e-3, 32, 128)
    late = plan.phases[4].start_tokens  # the ladder wants 512 here
    assert plan.at_tokens(late).global_batch == 512
    guard = _guard()
    _feed(guard, b_simple=40.0)
    assert guard.decide(plan, plan.phases[1].start_tokens, current=32).cap == 32
    _feed(guard, b_simple=200.0)  # 64 and 128 fit, 256 does not
    decision = guard.decide(plan, late, current=32)
    assert decision.cap == 128 and decision.changed
    assert guard.plan_for(plan).at_tokens(late).global_batch == 128


def test_guard_in_warn_mode_reports_without_capping():
    plan = _plan()
    guard = _guard(action="warn")
    _feed(guard, b_simple=50.0)
    decision = guard.decide(plan, plan.phases[2].start_tokens, current=32)
    assert decision.cap is None and decision.reason.startswith("warn")
    assert guard.limits == []


def test_guard_state_round_trips():
    guard = _guard()
    _feed(guard, b_simple=100.0)
    guard.decide(_plan(), _plan().phases[3].start_tokens, current=64)
    restored = _guard()
    restored.load_state_dict(guard.state_dict())
    assert restored.held_at == 64 and restored.limits == guard.limits
    assert restored.estimator.estimate() == guard.estimator.estimate()
    assert restored.plan_for(_plan()).phases == guard.plan_for(_plan()).phases
