"""SeesawLRScheduler: DeepSpeed's interface, token clock, exact LR per step, state round trip."""

import pytest
import torch

from dsa_common import tiny_config
from seesaw_ds.config import plan_from_ds_config
from seesaw_ds.deepspeed_adapter import SeesawLRScheduler, SeesawState
from seesaw_ds.errors import SeesawConfigError


def _plan(dp=2, **section):
    return plan_from_ds_config(tiny_config(**section), dp)


def _optimizer(lrs=(0.05,)):
    groups = [{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": lr} for lr in lrs]
    return torch.optim.SGD(groups, lr=lrs[0])


def test_lr_follows_the_plan_step_by_step():
    plan = _plan()
    optimizer = _optimizer()
    scheduler = SeesawLRScheduler(optimizer, plan)
    for index, start_tokens, setting in plan.iter_steps():
        assert scheduler.state.step == index
        assert scheduler.state.consumed_tokens == start_tokens
        assert optimizer.param_groups[0]["lr"] == setting.lr
        assert scheduler.get_last_lr() == [setting.lr]
        scheduler.step()
    assert scheduler.state.finished
    assert scheduler.state.step == plan.optimizer_steps


def test_lr_and_batch_change_on_the_same_step():
    plan = _plan()
    scheduler = SeesawLRScheduler(_optimizer(), plan)
    changes = []
    previous = scheduler.state.setting
    while not scheduler.state.finished:
        scheduler.step()
        now = scheduler.state.setting
        # growths only: the short last step (and the finished state after it) are not cuts
        if now.global_batch > previous.global_batch and not scheduler.state.finished:
            changes.append((scheduler.state.step, previous.lr, now.lr, now.global_batch))
        previous = now
    assert [c[0] for c in changes] == [55, 64, 67]
    for _, before, after, _ in changes:
        assert after == pytest.approx(before / 2 ** 0.5, rel=0.2)  # the staircase LR cut


def test_param_group_ratios_survive():
    plan = _plan()
    optimizer = _optimizer(lrs=(0.05, 0.025))
    scheduler = SeesawLRScheduler(optimizer, plan)
    for _ in range(60):
        scheduler.step()
    lr = scheduler.state.setting.lr
    assert [g["lr"] for g in optimizer.param_groups] == [lr, lr * 0.5]


def test_state_dict_round_trip_and_plan_check():
    plan = _plan()
    first = SeesawLRScheduler(_optimizer(), plan)
    for _ in range(57):
        first.step()
    saved = first.state_dict()
    second = SeesawLRScheduler(_optimizer(), _plan())
    second.load_state_dict(saved)
    assert second.state.consumed_samples == first.state.consumed_samples
    assert second.get_last_lr() == first.get_last_lr()
    other = SeesawLRScheduler(_optimizer(), _plan(batch_growth=4.0))
    with pytest.raises(SeesawConfigError, match="different Seesaw plan"):
        other.load_state_dict(saved)


def test_resume_on_one_rank_keeps_the_clock_and_rederives_gas():
    two = SeesawState(_plan(dp=2))
    for _ in range(56):
        two.advance()
    one = SeesawState(_plan(dp=1))
    one.load_dict(two.to_dict())
    assert one.consumed_tokens == two.consumed_tokens
    assert one.setting.global_batch == two.setting.global_batch == 16
    assert one.setting.lr == two.setting.lr
    assert (two.setting.grad_accum, one.setting.grad_accum) == (4, 8)


def test_different_rounding_on_another_rank_count_names_batch_multiple():
    config = tiny_config(batch_growth=1.5)
    two = SeesawState(plan_from_ds_config(config, 2))
    config_one = tiny_config(batch_growth=1.5)
    one = SeesawState(plan_from_ds_config(config_one, 1))
    if one.plan.fingerprint() == two.plan.fingerprint():  # pragma: no cover
        pytest.skip("this schedule rounds identically on 1 and 2 ranks")
    with pytest.raises(SeesawConfigError, match="seesaw.batch_multiple = 4"):
        one.load_dict(two.to_dict())
    config_one["seesaw"]["batch_multiple"] = 4
    SeesawState(plan_from_ds_config(config_one, 1)).load_dict(two.to_dict())
