"""Opt-in AdamW timescales through batch changes: ``keep_weight_decay_timescale`` gives every
step the base run's decoupled weight decay per token, ``keep_beta2_half_life`` the base
run's second-moment half-life in samples. Math, the scheduler on a real torch AdamW, and the
config keys."""

import math

import pytest
import torch

from seesaw_ds.config import parse_seesaw_section
from seesaw_ds.deepspeed_adapter.scheduler import SeesawLRScheduler
from seesaw_ds.deepspeed_adapter.state import SeesawState
from seesaw_ds.errors import SeesawConfigError
from seesaw_ds.schedules import CosineLR, Plan, SeesawBatch
from seesaw_ds.schedules.optimizer_scaling import (OptimizerScaling, beta2_for_batch,
                                                   half_life_samples, weight_decay_factor)

PEAK, WD, BETAS, B0 = 3e-3, 0.1, (0.9, 0.95), 8


def test_math():
    # the batch grows 4x and the LR 2x (lr / sqrt(B) on the base path): wd x sqrt(4)
    assert weight_decay_factor(2 * PEAK, PEAK, 4 * B0, B0) == pytest.approx(2.0)
    assert weight_decay_factor(0.0, PEAK, 4 * B0, B0) == 1.0
    assert beta2_for_batch(0.95, 3 * B0, B0) == pytest.approx(0.95 ** 3)
    assert half_life_samples(beta2_for_batch(0.95, 3 * B0, B0), 3 * B0) == pytest.approx(
        half_life_samples(0.95, B0))
    assert half_life_samples(0.5, 10) == pytest.approx(10.0)


def _plan(**keys):
    base = CosineLR(total_tokens=2e6, warmup_tokens=2e5, warmup_start_factor=0.1,
                    final_factor=0.1)
    return Plan(base, SeesawBatch(batch_growth=1.5), PEAK, B0, 128, batch_multiple=2,
                optimizer_scaling=OptimizerScaling(**keys))


def _scheduler(plan, weight_decay=WD):
    decayed, plain = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(2))
    optimizer = torch.optim.AdamW([{"params": [decayed], "weight_decay": weight_decay},
                                   {"params": [plain], "weight_decay": 0.0}],
                                  lr=PEAK, betas=BETAS)
    return SeesawLRScheduler(optimizer, SeesawState(plan)), optimizer


def _walk(scheduler):
    """(state, groups) before every optimizer step of the plan."""
    state = scheduler.state
    while not state.finished:
        yield state, scheduler.optimizer.param_groups
        scheduler.step()


def test_off_by_default_weight_decay_and_betas_stay_the_configs():
    scheduler, _ = _scheduler(_plan())
    batches = set()
    for state, groups in _walk(scheduler):
        batches.add(state.setting.global_batch)
        assert groups[0]["weight_decay"] == WD and tuple(groups[0]["betas"]) == BETAS
    assert len(batches) > 3  # the batch did grow


def test_weight_decay_per_token_is_the_base_runs_at_every_step():
    scheduler, _ = _scheduler(_plan(keep_weight_decay_timescale=True))
    plan, seen = scheduler.state.plan, set()
    for state, groups in _walk(scheduler):
        setting = state.setting
        base_lr = plan.base_lr_at(state.consumed_tokens)
        per_token = setting.lr * groups[0]["weight_decay"] / setting.global_batch
        assert per_token == pytest.approx(base_lr * WD / B0, rel=1e-12)
        assert groups[1]["weight_decay"] == 0.0  # a no-decay group stays so
        assert tuple(groups[0]["betas"]) == BETAS
        phase = plan.phases[setting.phase_index]
        if phase.follows_base and setting.global_batch == phase.global_batch:
            assert groups[0]["weight_decay"] == pytest.approx(
                WD * math.sqrt(setting.global_batch / B0), rel=1e-12)
        seen.add(setting.global_batch)
    assert max(seen) > 4 * B0


def test_beta2_half_life_in_samples_is_the_base_runs_at_every_step():
    scheduler, _ = _scheduler(_plan(keep_beta2_half_life=True))
    for state, groups in _walk(scheduler):
        beta1, beta2 = groups[0]["betas"]
        assert beta1 == BETAS[0] and groups[0]["weight_decay"] == WD
        assert half_life_samples(beta2, state.setting.global_batch) == pytest.approx(
            half_life_samples(BETAS[1], B0), rel=1e-12)


def test_torch_adamw_applies_the_scaled_decay():
    scheduler, optimizer = _scheduler(_plan(keep_weight_decay_timescale=True))
    state = scheduler.state
    while state.setting.global_batch < 4 * B0:
        scheduler.step()
    group = optimizer.param_groups[0]
    before = group["params"][0].detach().clone()
    group["params"][0].grad = torch.zeros(3)
    optimizer.param_groups[1]["params"][0].grad = torch.zeros(2)
    optimizer.step()
    expected = before * (1 - state.setting.lr * group["weight_decay"])
    assert torch.allclose(group["params"][0].detach(), expected, rtol=0, atol=1e-7)
    assert group["weight_decay"] > WD * 1.5


def test_resume_scales_from_the_configs_values_not_the_loaded_ones():
    plan = _plan(keep_weight_decay_timescale=True, keep_beta2_half_life=True)
    scheduler, _ = _scheduler(plan)
    for _ in range(400):
        scheduler.step()
    saved = scheduler.state_dict()
    expected = [dict(group) for group in scheduler.optimizer.param_groups]
    # a fresh job whose optimizer groups came back scaled (torch restores group values)
    fresh, optimizer = _scheduler(plan, weight_decay=expected[0]["weight_decay"])
    fresh.load_state_dict(saved)
    for group, want in zip(optimizer.param_groups, expected):
        assert group["weight_decay"] == pytest.approx(want["weight_decay"], rel=1e-12)
        assert tuple(group["betas"]) == pytest.approx(tuple(want["betas"]), rel=1e-12)


def _section(**keys):
    return {"total_tokens": 2e6, "seq_length": 128, "batch_growth": 1.5, **keys,
            "lr_schedule": {"type": "cosine", "warmup_fraction": 0.1, "final_factor": 0.1}}


def test_config_keys():
    parsed = parse_seesaw_section(_section(keep_weight_decay_timescale=True))
    assert parsed.optimizer_scaling == OptimizerScaling(keep_weight_decay_timescale=True)
    plan = parsed.build_plan(PEAK, B0, 2, 1)
    assert plan.optimizer_scaling.keep_weight_decay_timescale
    with pytest.raises(SeesawConfigError, match="keep_beta2_half_life = 'yes' must be true"):
        parse_seesaw_section(_section(keep_beta2_half_life="yes"))


def test_megatron_refuses_the_keys():
    from seesaw_ds.megatron_adapter.args import megatron_section

    with pytest.raises(SeesawConfigError, match="DeepSpeed-only"):
        megatron_section(parse_seesaw_section(_section(keep_beta2_half_life=True)))


def test_an_optimizer_without_betas_is_refused_for_beta2():
    param = torch.nn.Parameter(torch.ones(2))
    optimizer = torch.optim.SGD([param], lr=PEAK)
    with pytest.raises(SeesawConfigError, match="optimizer with betas"):
        SeesawLRScheduler(optimizer, SeesawState(_plan(keep_beta2_half_life=True)))
