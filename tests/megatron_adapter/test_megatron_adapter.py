"""The Megatron adapters follow the plan through megatron-core's own global accessors."""

from types import SimpleNamespace

import pytest
import torch
from megatron.core import num_microbatches_calculator as megatron_calculators

from seesaw_ds.errors import SeesawConfigError
from seesaw_ds.megatron_adapter import (
    SeesawParamScheduler,
    install_calculator,
    plan_from_megatron_args,
)
from seesaw_ds.schedules import CosineLR, Plan, SeesawBatch

SEQ = 128


def _plan(dp_size=2, micro=2):
    base = CosineLR(total_tokens=2e6, warmup_tokens=2e5, warmup_start_factor=0.1,
                    final_factor=0.1)
    return Plan(base, SeesawBatch(batch_growth=2.0), 3e-3, 32, SEQ, micro_batch=micro,
                dp_size=dp_size)


@pytest.fixture(autouse=True)
def _reset_megatron_calculator():
    yield
    megatron_calculators.destroy_num_microbatches_calculator()


def test_calculator_drives_megatron_global_accessors_along_the_plan():
    plan = _plan()
    install_calculator(plan)
    samples = 0
    for _, tokens, setting in plan.iter_steps():
        assert tokens == samples * SEQ
        megatron_calculators.update_num_microbatches(samples, consistency_check=True)
        assert megatron_calculators.get_current_global_batch_size() == setting.global_batch
        assert megatron_calculators.get_num_microbatches() == setting.global_batch // (2 * 2)
        assert megatron_calculators.get_micro_batch_size() == 2
        samples += megatron_calculators.get_current_global_batch_size()
    assert plan.phases[-1].global_batch == 256  # 32 x 2^3
    assert samples == plan.trained_samples  # the short last step included


def test_param_scheduler_sets_plan_lr_at_consumed_samples_and_resumes():
    plan = _plan()
    model = torch.nn.Linear(4, 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1.0)
    scheduler = SeesawParamScheduler(optimizer, plan, weight_decay=0.01)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(3e-4)  # warmup start 0.1 x peak
    samples = 0
    for step, tokens, setting in plan.iter_steps():
        assert optimizer.param_groups[0]["lr"] == pytest.approx(setting.lr, rel=1e-12)
        assert optimizer.param_groups[0]["weight_decay"] == 0.01
        scheduler.step(increment=setting.global_batch)
        samples += setting.global_batch
        if step == 300:
            saved = scheduler.state_dict()
            resumed = SeesawParamScheduler(
                torch.optim.AdamW(model.parameters(), lr=1.0), plan, 0.01
            )
            resumed.load_state_dict(saved)
            assert resumed.num_steps == samples
            assert resumed.optimizer.param_groups[0]["lr"] == optimizer.param_groups[0]["lr"]


def test_param_scheduler_refuses_a_checkpoint_of_another_plan():
    model = torch.nn.Linear(4, 1)
    saved = SeesawParamScheduler(torch.optim.SGD(model.parameters(), lr=1.0), _plan()).state_dict()
    other = Plan(CosineLR(total_tokens=2e6), SeesawBatch(batch_growth=1.5), 3e-3, 32, SEQ,
                 micro_batch=2, dp_size=2)
    with pytest.raises(SeesawConfigError, match="different seesaw plan"):
        SeesawParamScheduler(torch.optim.SGD(model.parameters(), lr=1.0), other).load_state_dict(saved)


def test_megatron_args_give_the_same_plan_on_any_data_parallel_size(tmp_path):
    config = tmp_path / "seesaw.yaml"
    config.write_text(
        "seesaw:\n  total_tokens: 2.0e6\n  seq_length: 128\n  batch_growth: 2.0\n"
        "  batch_multiple: 16\n"
        "  lr_schedule: {type: cosine, warmup_fraction: 0.1, final_factor: 0.1}\n"
    )
    plans = [
        plan_from_megatron_args(SimpleNamespace(
            seesaw_config=str(config), seq_length=128, lr=3e-3, global_batch_size=32,
            micro_batch_size=2, data_parallel_size=dp, rampup_batch_size=None))
        for dp in (1, 2, 8)
    ]
    assert plans[0].fingerprint() == plans[1].fingerprint() == plans[2].fingerprint()
    assert [p.at_tokens(1.9e6).grad_accum for p in plans] == [128, 64, 16]


def test_megatron_args_reject_a_mismatched_sequence_length(tmp_path):
    config = tmp_path / "seesaw.json"
    config.write_text('{"seesaw": {"total_tokens": 1e6, "seq_length": 128}}')
    args = SimpleNamespace(seesaw_config=str(config), seq_length=256, lr=1e-3,
                           global_batch_size=8, micro_batch_size=1, data_parallel_size=1)
    with pytest.raises(SeesawConfigError, match="seq_length"):
        plan_from_megatron_args(args)


def _replay_megatron_iterations(plan, scheduler, optimizer, failed_updates=()):
    """train()'s order: update the calculator at the consumed samples, step with the LR in
    the param groups, scheduler.step only after a successful update, consumed += batch."""
    consumed, used = 0, []
    for iteration in range(plan.optimizer_steps):
        megatron_calculators.update_num_microbatches(consumed, consistency_check=True)
        used.append((megatron_calculators.get_current_global_batch_size(),
                     optimizer.param_groups[0]["lr"]))
        increment = megatron_calculators.get_num_microbatches() * plan.micro_batch * plan.dp_size
        if iteration not in failed_updates:
            scheduler.step(increment=increment)
        consumed += increment
    return used


def test_lr_stays_on_the_plan_after_a_skipped_update():
    plan = _plan()
    calculator = install_calculator(plan)
    optimizer = torch.optim.AdamW(torch.nn.Linear(4, 1).parameters(), lr=1.0)
    scheduler = SeesawParamScheduler(optimizer, plan)
    calculator.follow(scheduler.set_consumed_samples)
    used = _replay_megatron_iterations(plan, scheduler, optimizer, failed_updates={10, 200})
    expected = [(setting.global_batch, setting.lr) for _, _, setting in plan.iter_steps()]
    assert used == expected  # exact: batch and LR from the same consumed-sample count


def test_without_following_the_calculator_a_skipped_update_shifts_the_lr():
    plan = _plan()
    install_calculator(plan)
    optimizer = torch.optim.AdamW(torch.nn.Linear(4, 1).parameters(), lr=1.0)
    scheduler = SeesawParamScheduler(optimizer, plan)
    used = _replay_megatron_iterations(plan, scheduler, optimizer, failed_updates={10})
    expected = [(setting.global_batch, setting.lr) for _, _, setting in plan.iter_steps()]
    off = [i for i, (a, b) in enumerate(zip(used, expected)) if a != b]
    assert off[0] == 11 and len(off) >= 40  # the defect the follower removes (warmup here)


def test_a_tensor_lr_is_filled_in_place():
    plan = _plan()
    weight = torch.nn.Parameter(torch.zeros(2))
    lr = torch.tensor(0.0, dtype=torch.float64)
    optimizer = torch.optim.AdamW([{"params": [weight], "lr": lr, "max_lr": 3e-3}], lr=0.0)
    scheduler = SeesawParamScheduler(optimizer, plan)
    for samples in (0, 6400, 40000):
        scheduler.set_consumed_samples(samples)
        assert optimizer.param_groups[0]["lr"] is lr
        assert lr.item() == plan.at_samples(samples).lr


def test_calculator_takes_only_the_remaining_samples_on_a_short_last_step():
    base = CosineLR(total_tokens=2e6 + 5 * SEQ, warmup_tokens=2e5)
    plan = Plan(base, SeesawBatch(batch_growth=2.0), 3e-3, 32, SEQ, micro_batch=2, dp_size=2)
    *_, (_, before_tokens, before), (_, tokens, last) = plan.iter_steps()
    phase_batch = plan.phases[plan.phase_index_at(tokens)].global_batch
    assert 0 < last.global_batch < phase_batch
    install_calculator(plan)
    megatron_calculators.update_num_microbatches(tokens // SEQ, consistency_check=True)
    assert megatron_calculators.get_current_global_batch_size() == last.global_batch
    assert megatron_calculators.get_num_microbatches() == last.global_batch // 4
    megatron_calculators.update_num_microbatches(before_tokens // SEQ, consistency_check=True)
    assert megatron_calculators.get_current_global_batch_size() == before.global_batch
