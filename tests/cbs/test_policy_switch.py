"""A plan change between the adaptive schedule and the critical-batch guard (resumed with
``--allow-plan-change``): the new policy keeps the saved noise-scale estimate but drops the
other policy's decisions, so a stale adaptive floor cannot hold the guarded run's batch up
(issue 19, item 9)."""

from seesaw_ds.cbs import CriticalBatchGuard
from seesaw_ds.cbs.adaptive import AdaptiveGrowth
from seesaw_ds.config import CBSGuardSettings
from seesaw_ds.schedules import AdaptiveBatch, BatchLimit, CosineLR, Plan, SeesawBatch

BASE = CosineLR(total_tokens=4e6, warmup_tokens=4e5, warmup_start_factor=0.1,
                final_factor=0.1)


def _adaptive_state():
    policy = AdaptiveGrowth(AdaptiveBatch(batch_growth=2.0, ema_decay=0.0, min_samples=1))
    policy.observe(4, 3.0, 64, 1.5)
    policy.limits.append(BatchLimit(1e5, floor=32))  # an adaptive decision: batch >= 32
    return policy.state_dict()


def test_a_switch_to_the_guard_drops_the_adaptive_floor():
    ladder = Plan(BASE, SeesawBatch(batch_growth=2.0), 1e-3, 8, 128)
    saved = _adaptive_state()
    guard = CriticalBatchGuard(CBSGuardSettings(enabled=True, ema_decay=0.0, min_samples=1))
    guard.load_state_dict(saved)
    assert guard.limits == []
    assert guard.plan_for(ladder).phases == ladder.phases  # batch 8 until the first milestone
    assert guard.estimator.state_dict() == saved["estimator"]  # the measurements carry over


def test_a_switch_to_adaptive_drops_the_guard_caps_and_each_keeps_its_own():
    settings = CBSGuardSettings(enabled=True, ema_decay=0.0, min_samples=1)
    guard = CriticalBatchGuard(settings)
    guard.limits += [BatchLimit(1e6, cap=16), BatchLimit(2e6, cap=None)]  # hold, release
    adaptive = AdaptiveGrowth(AdaptiveBatch(batch_growth=2.0))
    adaptive.load_state_dict(guard.state_dict())
    assert [limit.cap for limit in adaptive.limits] == [None]  # only the release (a no-op)
    same = CriticalBatchGuard(settings)
    same.load_state_dict(guard.state_dict())
    assert same.limits == guard.limits
    again = AdaptiveGrowth(AdaptiveBatch(batch_growth=2.0))
    again.load_state_dict(_adaptive_state())
    assert again.limits == [BatchLimit(1e5, floor=32)]
