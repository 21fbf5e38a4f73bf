"""The critical-batch guard: the estimator recovers a known noise scale; the guard holds
Seesaw's growth exactly when the next batch passes it, and the held plan keeps lr/sqrt(B) on
the base path."""

import math
import random

import pytest

from seesaw_ds.cbs import CriticalBatchGuard, GradientNoiseScale
from seesaw_ds.cbs.guard import capped_plan
from seesaw_ds.config import CBSGuardSettings
from seesaw_ds.schedules import CosineLR, Plan, SeesawBatch


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
    assert estimate.b_noise == pytest.approx(expected, rel=0.15)
    assert estimate.grad_sq == pytest.approx(2.0, rel=0.15)


def test_estimator_has_no_ratio_before_its_pieces_are_positive():
    estimator = GradientNoiseScale(0.9)
    assert estimator.estimate().b_noise is None
    estimate = estimator.update(8, 1.0, 64, 2.0)  # big norm above small: noise estimate < 0
    assert estimate.b_noise is None
    with pytest.raises(ValueError):
        estimator.update(64, 1.0, 64, 1.0)


def _plan():
    base = CosineLR(total_tokens=4e6, warmup_tokens=4e5, warmup_start_factor=0.1,
                    final_factor=0.1)
    return Plan(base, SeesawBatch(batch_growth=2.0), 1e-3, 32, 128, micro_batch=8,
                dp_size=1)


def _feed(guard, b_noise, times=10):
    # Noise-free inputs that solve to |G|^2 = 1 and tr(Sigma) = b_noise exactly.
    for _ in range(times):
        guard.observe(8, 1 + b_noise / 8, 64, 1 + b_noise / 64)


def test_guard_lets_growth_through_below_the_critical_batch():
    plan = _plan()
    guard = CriticalBatchGuard(CBSGuardSettings(enabled=True, ema_decay=0.5, min_samples=3))
    _feed(guard, b_noise=1000.0)
    tokens = plan.phases[2].start_tokens  # the growth 32 -> 64 is due
    new_plan, decision = guard.apply(plan, tokens, last_batch=32)
    assert decision.hold_at is None and decision.next_batch == 64
    assert decision.reason == "below the critical batch"
    assert new_plan is plan


def test_guard_waits_for_enough_measurements():
    guard = CriticalBatchGuard(CBSGuardSettings(enabled=True, min_samples=5))
    _feed(guard, b_noise=10.0, times=4)
    plan = _plan()
    assert guard.decide(plan, plan.phases[2].start_tokens, 32).reason == "estimate not ready"
    assert guard.decide(plan, 1.0e6, 32).reason == "no growth at this step"


def test_guard_holds_the_batch_past_the_critical_batch_and_moves_decay_into_lr():
    plan = _plan()
    tokens = plan.phases[3].start_tokens  # the growth 64 -> 128 is due
    assert plan.at_tokens(tokens).global_batch == 128
    guard = CriticalBatchGuard(CBSGuardSettings(enabled=True, ema_decay=0.5, min_samples=3,
                                                safety_factor=1.0))
    _feed(guard, b_noise=100.0)  # a step of 64 done, next planned batch 128 > 100: hold
    assert guard.decide(plan, plan.phases[2].start_tokens, 32).reason == "below the critical batch"
    held, decision = guard.apply(plan, tokens, last_batch=64)
    assert decision.hold_at == 64 and decision.next_batch == 128
    assert max(p.global_batch for p in held.phases) == 64
    assert held.at_tokens(tokens).global_batch == 64
    # Until the milestone where the batch would have grown, nothing changes...
    assert held.at_tokens(2.5e6) == plan.at_tokens(2.5e6)
    # ...from there on the batch stays and lr / sqrt(B) follows the base path.
    growth_at = plan.phases[3].start_tokens
    assert plan.phases[3].global_batch == 128 and held.phases[3].global_batch == 64
    for later in (growth_at, 3.5e6, 3.9e6):
        setting = held.at_tokens(later)
        assert setting.global_batch == 64
        assert setting.lr / math.sqrt(64) == pytest.approx(
            1e-3 * plan.base.factor(later) / math.sqrt(32), rel=1e-12)
    assert held.optimizer_steps > plan.optimizer_steps
    again, second = guard.apply(held, tokens + 1e5, last_batch=64)
    assert second.reason == "already held" and again is held


def test_guard_in_warn_mode_reports_without_capping():
    plan = _plan()
    guard = CriticalBatchGuard(CBSGuardSettings(enabled=True, ema_decay=0.5, min_samples=1,
                                                action="warn"))
    _feed(guard, b_noise=50.0)
    new_plan, decision = guard.apply(plan, plan.phases[2].start_tokens, last_batch=32)
    assert decision.hold_at is None and decision.reason.startswith("warn")
    assert new_plan is plan


def test_guard_state_round_trips():
    guard = CriticalBatchGuard(CBSGuardSettings(enabled=True, ema_decay=0.5, min_samples=1))
    _feed(guard, b_noise=100.0)
    guard.apply(_plan(), _plan().phases[3].start_tokens, last_batch=64)
    restored = CriticalBatchGuard(CBSGuardSettings(enabled=True, ema_decay=0.5, min_samples=1))
    restored.load_state_dict(guard.state_dict())
    assert restored.held_at == 64
    assert restored.estimator.estimate() == guard.estimator.estimate()


def test_capped_plan_refuses_non_seesaw_schedules():
    from seesaw_ds.schedules import ConstantBatch

    plan = Plan(_plan().base, ConstantBatch(), 1e-3, 32, 128, micro_batch=8)
    with pytest.raises(TypeError):
        capped_plan(plan, 32)
