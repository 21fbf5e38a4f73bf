"""The user's data path without an engine: the public batch sampler, the iterable loader,
the shape-only sample count and the micro-batch check ``initialize`` runs."""

import pytest
import torch

from dsa_common import tiny_config
from seesaw_ds.config import plan_from_ds_config
from seesaw_ds.deepspeed_adapter import (GlobalSampleOrder, PlanBatchSampler,
                                         PlanIterableLoader, SeesawDataLoader)
from seesaw_ds.deepspeed_adapter.data_contract import first_micro_batch_change, samples_in_call
from seesaw_ds.errors import SeesawConfigError

DP = 2


class Ids(torch.utils.data.Dataset):
    def __init__(self, n=50):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, index):
        return {"id": torch.tensor(index)}


def mbf_plan():
    config = tiny_config(growth_policy="micro_batch_first", max_micro_batch=8)
    return plan_from_ds_config(config, DP)


PLANS = {"seesaw": lambda: plan_from_ds_config(tiny_config(), DP), "micro_batch_first": mbf_plan}


def ours(plan, dataset, rank):
    return [b["id"].tolist() for b in SeesawDataLoader(dataset, plan, rank, DP, data_seed=7)]


@pytest.mark.parametrize("name", sorted(PLANS))
def test_batch_sampler_in_a_user_dataloader_gives_our_loaders_batches(name):
    plan, dataset = PLANS[name](), Ids()
    for rank in range(DP):
        sampler = PlanBatchSampler(dataset, plan, rank, DP, data_seed=7)
        loader = torch.utils.data.DataLoader(  # the user's collate: a plain list of ids
            dataset, batch_sampler=sampler, collate_fn=lambda items: [int(i["id"]) for i in items])
        assert len(loader) == len(sampler) == sum(s.grad_accum for _, _, s in plan.iter_steps())
        assert list(loader) == ours(plan, dataset, rank)
    if name == "micro_batch_first":
        assert {len(b) for b in ours(plan, dataset, 0)} != {plan.micro_batch}


def test_batch_sampler_resumes_at_a_saved_position_and_checks_the_order():
    plan, dataset = PLANS["seesaw"](), Ids()
    full = ours(plan, dataset, 1)
    sampler = PlanBatchSampler(dataset, plan, 1, DP, data_seed=7)
    steps = list(plan.iter_steps())
    k = 20
    sampler.set_position(steps[k][1] // plan.seq_length)
    skipped = sum(s.grad_accum for _, _, s in steps[:k])
    assert list(sampler) == full[skipped:]
    # the saved position is the indexed loader's, in both directions
    loader = SeesawDataLoader(dataset, plan, 1, DP, data_seed=7)
    loader.load_state_dict(sampler.state_dict())
    assert loader.position == sampler.position
    other = PlanBatchSampler(dataset, plan, 1, DP, data_seed=8)
    with pytest.raises(SeesawConfigError, match="seesaw.data_seed is 8 but the checkpoint"):
        other.load_state_dict(sampler.state_dict())


def global_stream(plan, dataset):
    """What an iterable over the run's global sample order yields."""
    order = GlobalSampleOrder(len(dataset), 7)
    return [dataset[order[i]] for i in range(plan.trained_samples)]


@pytest.mark.parametrize("name", sorted(PLANS))
def test_iterable_global_stream_gives_our_loaders_batches(name):
    plan, dataset = PLANS[name](), Ids()
    stream = global_stream(plan, dataset)
    for rank in range(DP):
        loader = PlanIterableLoader(stream, plan, rank, DP, stream="global")
        assert [b["id"].tolist() for b in loader] == ours(plan, dataset, rank)


def test_iterable_rank_stream_draws_the_plan_sizes_and_resumes_by_skipping():
    plan = PLANS["micro_batch_first"]()
    per_rank = plan.trained_samples // DP
    samples = [{"id": torch.tensor(i)} for i in range(per_rank)]
    sizes = [len(b["id"]) for b in PlanIterableLoader(samples, plan, 0, DP)]
    assert sizes == [s.micro_batch for _, _, s in plan.iter_steps() for _ in range(s.grad_accum)]
    full = [b["id"].tolist() for b in PlanIterableLoader(samples, plan, 0, DP)]
    steps = list(plan.iter_steps())
    k = 17
    resumed = PlanIterableLoader(samples, plan, 0, DP)
    resumed.load_state_dict({"kind": "iterable", "consumed_samples": steps[k][1] // 4,
                             "micro": 0, "stream": "rank", "dp_size": DP})
    tail = [b["id"].tolist() for b in resumed]
    assert resumed.skipped == steps[k][1] // 4 // DP
    assert tail == full[sum(s.grad_accum for _, _, s in steps[:k]):]
    with pytest.raises(SeesawConfigError, match="resume with the same kind of training_data"):
        SeesawDataLoader(Ids(), plan, 0, DP).load_state_dict(resumed.state_dict())


def test_iterable_that_runs_out_is_refused_naming_the_step():
    plan = PLANS["seesaw"]()
    samples = [{"id": torch.tensor(i)} for i in range(9)]  # per-rank micro-batch 2
    needs = plan.trained_samples // DP
    with pytest.raises(SeesawConfigError,
                       match=r"ran out on rank 0 after 9 samples, at the step from sample 16 "
                             rf"\(micro-batch 1 of 2\); the plan needs {needs} on this rank"):
        list(PlanIterableLoader(samples, plan, 0, DP))


def test_samples_in_call_reads_dimension_zero_of_the_first_tensor():
    x = torch.zeros(3, 5)
    assert samples_in_call((x,), {}) == 3
    assert samples_in_call(({"ids": torch.zeros(4, 2), "y": x},), {}) == 4
    assert samples_in_call((), {"input_ids": torch.zeros(6, 1)}) == 6
    assert samples_in_call(([torch.zeros(2)],), {}) == 2
    assert samples_in_call(("text", 3), {}) is None


def test_first_micro_batch_change():
    assert first_micro_batch_change(PLANS["seesaw"]()) is None
    plan = mbf_plan()
    step, micro = first_micro_batch_change(plan)
    settings = [s for _, _, s in plan.iter_steps()]
    assert micro == settings[step].micro_batch != plan.micro_batch
    assert all(s.micro_batch == plan.micro_batch for s in settings[:step])
