"""The loader: one global sample order for every schedule, exact sharding, exact resume."""

import pytest
import torch

from dsa_common import tiny_config
from seesaw_ds.config import plan_from_ds_config
from seesaw_ds.deepspeed_adapter import GlobalSampleOrder, SeesawDataLoader, SeesawState


class IndexData(torch.utils.data.Dataset):
    """Items are their own index, so batches show exactly which samples were read."""

    def __init__(self, n=50):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, index):
        return {"index": torch.tensor(index)}


SCHEDULES = {
    "seesaw": {},
    "constant": {"batch_schedule": "constant"},
    "linear_ramp": {"batch_schedule": "linear_ramp", "final_batch": 32, "batch_increment": 8,
                    "ramp_tokens": 1500},
    "step": {"batch_schedule": "step", "batch_steps": [[1000, 16], [2000, 32]]},
    "late_switch": {"batch_schedule": "late_switch", "switch_batch": 32},
}


def run_stream(plan, dataset, dp, micro_first=False):
    """Replay all ranks' loaders step by step; return the global stream and per-step sizes."""
    loaders = [SeesawDataLoader(dataset, plan, r, dp, data_seed=7) for r in range(dp)]
    iters = [iter(loader) for loader in loaders]
    stream, sizes = [], []
    state = SeesawState(plan)
    while not state.finished:
        setting = state.setting
        step_samples = []
        for _ in range(setting.grad_accum):
            for it in iters:  # rank order inside a micro-batch slot
                batch = next(it)
                assert len(batch["index"]) == setting.micro_batch
                step_samples.extend(batch["index"].tolist())
        stream.extend(step_samples)
        sizes.append(len(step_samples))
        state.advance()
    for it in iters:
        with pytest.raises(StopIteration):
            next(it)
    return stream, sizes


def test_every_schedule_sees_the_same_global_stream():
    dataset = IndexData()
    streams = {}
    for name, section in SCHEDULES.items():
        plan = plan_from_ds_config(tiny_config(**section), 2)
        stream, sizes = run_stream(plan, dataset, 2)
        assert sizes == [s.global_batch for _, _, s in plan.iter_steps()]
        streams[name] = stream
    shortest = min(len(s) for s in streams.values())
    reference = streams["constant"][:shortest]
    for name, stream in streams.items():
        assert stream[:shortest] == reference, name
    order = GlobalSampleOrder(len(dataset), 7)
    assert reference == order.take(0, shortest)


def test_sharding_matches_one_rank_and_micro_batch_first():
    dataset = IndexData()
    # one batch_multiple for both rank counts: the plan (short last step included) is then
    # the same on 1 and 2 ranks, as the README says for resuming on another rank count
    two, _ = run_stream(plan_from_ds_config(tiny_config(batch_multiple=4), 2), dataset, 2)
    one, _ = run_stream(plan_from_ds_config(tiny_config(batch_multiple=4), 1), dataset, 1)
    mbf_config = tiny_config(growth_policy="micro_batch_first", max_micro_batch=8,
                             batch_multiple=4)
    mbf, _ = run_stream(plan_from_ds_config(mbf_config, 2), dataset, 2)
    assert two == one == mbf


def test_epochs_are_reshuffled_deterministically():
    order = GlobalSampleOrder(50, seed=7)
    first, second = order.take(0, 50), order.take(50, 50)
    assert sorted(first) == sorted(second) == list(range(50))
    assert first != second
    assert GlobalSampleOrder(50, seed=7).take(25, 60) == (first + second)[25:85]
    assert GlobalSampleOrder(50, seed=8).take(0, 50) != first
    assert GlobalSampleOrder(50, seed=7, shuffle=False).take(45, 10) == (
        list(range(45, 50)) + list(range(5))
    )


def test_resume_at_the_exact_sample():
    dataset = IndexData()
    plan = plan_from_ds_config(tiny_config(), 2)
    full = [b["index"].tolist() for b in SeesawDataLoader(dataset, plan, 1, 2, data_seed=7)]
    loader = SeesawDataLoader(dataset, plan, 1, 2, data_seed=7)
    it = iter(loader)
    head = [next(it)["index"].tolist() for _ in range(113)]  # mid-window (GAS 2 then 4)
    saved = loader.state_dict()
    resumed = SeesawDataLoader(dataset, plan, 1, 2, data_seed=7)
    resumed.load_state_dict(saved)
    assert len(resumed) == len(full) - 113
    assert head + [b["index"].tolist() for b in resumed] == full
    wrong_seed = SeesawDataLoader(dataset, plan, 1, 2, data_seed=8)
    with pytest.raises(Exception, match="seesaw.data_seed"):
        wrong_seed.load_state_dict(saved)


def test_loader_tied_to_the_clock_refuses_to_run_ahead():
    plan = plan_from_ds_config(tiny_config(), 1)
    state = SeesawState(plan)
    loader = SeesawDataLoader(IndexData(), plan, 0, 1, data_seed=7, state=state)
    it = iter(loader)
    for _ in range(plan.at_tokens(0).grad_accum):
        next(it)
    with pytest.raises(RuntimeError, match="engine.step"):
        next(it)  # the engine has not finished the first optimizer step


def test_torch_dataloader_workers_give_the_same_batches():
    dataset = IndexData()
    plan = plan_from_ds_config(tiny_config(total_tokens=600), 2)
    plain = [b["index"].tolist() for b in SeesawDataLoader(dataset, plan, 0, 2, data_seed=7)]
    workers = SeesawDataLoader(dataset, plan, 0, 2, data_seed=7, num_workers=1)
    assert [b["index"].tolist() for b in workers] == plain


def test_a_replaced_plan_is_followed_from_the_next_window():
    dataset = IndexData()
    plan = plan_from_ds_config(tiny_config(), 1)
    capped = plan_from_ds_config(tiny_config(max_batch=16), 1)
    state = SeesawState(plan)
    loader = SeesawDataLoader(dataset, plan, 0, 1, data_seed=7, state=state)
    stream, sizes = [], []
    it = iter(loader)
    while not state.finished:
        if state.step == 60:
            state.replace_plan(capped)
            loader.plan = capped
        window = [next(it)["index"].tolist() for _ in range(state.setting.grad_accum)]
        sizes.append(sum(len(b) for b in window))
        stream.extend(i for b in window for i in b)
        state.advance()
    with pytest.raises(StopIteration):
        next(it)
    assert max(sizes[:60]) == 16 and max(sizes[60:]) == 16
    assert sizes[-1] <= 16 and sum(sizes) == capped.trained_samples  # short last step
    assert stream == GlobalSampleOrder(len(dataset), 7).take(0, len(stream))
