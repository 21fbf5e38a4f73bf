"""A user's own loop, model and data on 2 CPU ranks: exact against the plan, or one line.

One ``user_loop_worker.py`` job runs every case (a tiny LM and token datasets written in
the worker, not the package's GPT or loader): our loader; the public batch sampler in the
user's ``DataLoader`` (workers, own collate, kwargs forward, ZeRO 2) stopped, saved and
resumed; an iterable dataset stopped, saved and resumed by skipping, and one read as a
global stream (the same batches as our loader); a plain
``DistributedSampler`` loader whose epoch ends in a short micro-batch (refused at that
step); ``micro_batch_first`` through the sampler, and refused at ``initialize`` without
``training_data``; a loop that runs past the plan's end (refused, or warned on request).
"""

import shutil

import pytest

from dsa_common import HERE, run_job, tiny_config
from seesaw_ds.config import plan_from_ds_config
from seesaw_ds.deepspeed_adapter import GlobalSampleOrder

pytestmark = pytest.mark.skipif(
    shutil.which("deepspeed") is None, reason="needs deepspeed"
)

DP, TOKENS, SAVE_STEP = 2, 1504, 31  # batch 16 by step 29, 32 at 32, short last step 34
BASE = tiny_config(0, "sgd", total_tokens=TOKENS)
SAMPLER = tiny_config(2, "sgd", total_tokens=TOKENS)
MBF = tiny_config(1, "sgd", total_tokens=TOKENS, growth_policy="micro_batch_first",
                  max_micro_batch=8)
N_SAMPLES, DATA_SEED = 150, BASE["seesaw"]["data_seed"]


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    work = tmp_path_factory.mktemp("user_loop")
    ckpt_s, ckpt_i = str(work / "ckpt_sampler"), str(work / "ckpt_iterable")
    cases = [
        {"name": "ours", "config": BASE, "data": "ours"},
        {"name": "sampler", "config": SAMPLER, "data": "sampler", "call": "kwargs",
         "stop_at_step": SAVE_STEP, "save_dir": ckpt_s},
        {"name": "sampler_resume", "config": SAMPLER, "data": "sampler", "call": "kwargs",
         "resume_from": ckpt_s},
        {"name": "iterable", "config": BASE, "data": "iterable", "stop_at_step": SAVE_STEP,
         "save_dir": ckpt_i},
        {"name": "iterable_resume", "config": BASE, "data": "iterable", "resume_from": ckpt_i},
        {"name": "iterable_global", "config": BASE, "data": "global_stream"},
        {"name": "wrong_micro", "config": BASE, "data": "distributed_sampler",
         "dataset_size": 41, "drop_last": False, "expect_error": True},
        {"name": "mbf_sampler", "config": MBF, "data": "sampler_default"},
        {"name": "mbf_refused", "config": MBF, "data": "distributed_sampler",
         "expect_error": True},
        {"name": "past_end", "config": BASE, "data": "distributed_sampler",
         "expect_error": True},
        {"name": "past_end_warn", "config": BASE, "data": "distributed_sampler",
         "past_end": "warn", "extra_steps": 2},
    ]
    return run_job({"cases": cases}, work, worker=HERE / "user_loop_worker.py")


def plan_steps(config):
    plan = plan_from_ds_config(config, DP)
    return plan, list(plan.iter_steps())


def ranks_of(job, name):
    return [job.case(name, rank) for rank in range(DP)]


def assert_follows_plan(records, config, first=0, count=None, indexed=True):
    """Every recorded step's batch, GAS, micro, LR and tokens are the plan's; the ranks'
    samples add up to the global batch (and are its slice of the global order)."""
    plan, steps = plan_steps(config)
    order = GlobalSampleOrder(N_SAMPLES, DATA_SEED)
    count = len(steps) - first if count is None else count
    assert [len(r["steps"]) for r in records] == [count] * DP
    for k in range(count):
        index, start, setting = steps[first + k]
        seen = [r["steps"][k] for r in records]
        for rec in seen:
            assert (rec["step"], rec["tokens"], rec["global_batch"], rec["grad_accum"],
                    rec["micro_batch"]) == (index, start, setting.global_batch,
                                            setting.grad_accum, setting.micro_batch)
            assert rec["lr"] == pytest.approx(setting.lr, rel=1e-9)
        assert sum(rec["samples"] for rec in seen) == setting.global_batch
        if indexed:
            ids = sorted(i for rec in seen for i in rec["ids"])
            assert ids == sorted(order.take(start // plan.seq_length, setting.global_batch))


def test_our_loader_follows_the_plan(job):
    records = ranks_of(job, "ours")
    assert_follows_plan(records, BASE)
    plan, steps = plan_steps(BASE)
    assert steps[-1][2].global_batch < steps[-2][2].global_batch  # the short last step ran
    assert records[0]["final_tokens"] == plan.trained_tokens
    assert records[0]["checked_forwards"] == sum(s.grad_accum for _, _, s in steps)


def test_public_sampler_in_the_users_dataloader_resumes_with_our_batches(job):
    first, resumed = ranks_of(job, "sampler"), ranks_of(job, "sampler_resume")
    assert_follows_plan(first, SAMPLER, 0, SAVE_STEP)
    assert_follows_plan(resumed, SAMPLER, SAVE_STEP)
    for rank in range(DP):
        ours = [s["ids"] for s in job.case("ours", rank)["steps"]]
        assert [s["ids"] for s in first[rank]["steps"] + resumed[rank]["steps"]] == ours


def test_iterable_dataset_draws_the_plan_sizes_and_resumes_by_skipping(job):
    first, resumed = ranks_of(job, "iterable"), ranks_of(job, "iterable_resume")
    assert_follows_plan(first, BASE, 0, SAVE_STEP, indexed=False)
    assert_follows_plan(resumed, BASE, SAVE_STEP, indexed=False)
    plan = plan_from_ds_config(BASE, DP)
    for rank in range(DP):  # this rank's shard, in order, exactly once, across the resume
        ids = [i for s in first[rank]["steps"] + resumed[rank]["steps"] for i in s["ids"]]
        assert ids == list(range(rank, plan.trained_samples, DP))


def test_iterable_global_stream_reproduces_our_loader(job):
    records = ranks_of(job, "iterable_global")
    assert_follows_plan(records, BASE)
    for rank in range(DP):
        assert ([s["ids"] for s in records[rank]["steps"]]
                == [s["ids"] for s in job.case("ours", rank)["steps"]])


def test_a_loader_giving_the_wrong_micro_batch_is_refused_at_that_step(job):
    # 41 samples on 2 ranks: DistributedSampler pads to 21 per rank, so the 11th batch of 2
    # holds 1 sample: optimizer step 5 (GAS 2), its first micro-batch
    for rank, result in enumerate(ranks_of(job, "wrong_micro")):
        assert result["error"] == (
            f"seesaw: optimizer step 5 (micro-batch 1 of 2) got 1 samples on rank {rank} but "
            "the plan's micro-batch is 2: build your DataLoader with batch_sampler="
            "engine.seesaw.batch_sampler(dataset) (or use the loader from "
            "seesaw_ds.initialize(training_data=...)); if dimension 0 of the first tensor is "
            "not the sample count, pass sample_count=fn to seesaw_ds.initialize.")
        assert len(result["steps"]) == 5 and result["final_step"] == 5
    assert_follows_plan(ranks_of(job, "wrong_micro"), BASE, 0, 5, indexed=False)


def test_micro_batch_first_runs_through_the_sampler_and_is_refused_without_it(job):
    plan, steps = plan_steps(MBF)
    assert {s.micro_batch for _, _, s in steps} == {4, 6, 8}  # 6: the short last step
    assert_follows_plan(ranks_of(job, "mbf_sampler"), MBF)
    for result in ranks_of(job, "mbf_refused"):
        assert result["error"] == (
            "seesaw.growth_policy = 'micro_batch_first' changes the per-GPU micro-batch from "
            "train_micro_batch_size_per_gpu = 2 to 4 at optimizer step 0, which a DataLoader "
            "of your own cannot follow: pass training_data= (then feed your DataLoader with "
            "batch_sampler=engine.seesaw.batch_sampler()), or use growth_policy "
            "'accumulation'.")
        assert "final_step" not in result  # refused before any engine was built


def test_a_step_after_the_plans_end_raises_or_warns_on_request(job):
    plan, steps = plan_steps(BASE)
    for result in ranks_of(job, "past_end"):
        assert result["error"] == (
            f"seesaw: engine(batch) after the end of the plan: {plan.trained_tokens} of "
            f"{TOKENS} tokens are consumed in {len(steps)} optimizer steps; stop the loop "
            "when engine.seesaw.finished is True (or pass past_end='warn' to "
            "seesaw_ds.initialize to train on at the last setting).")
    assert_follows_plan(ranks_of(job, "past_end"), BASE, indexed=False)
    warned = ranks_of(job, "past_end_warn")
    assert [r["final_step"] for r in warned] == [len(steps) + 2] * DP
    # the warning, once per rank (the worker catches the errors without printing them)
    assert job.log.count("seesaw: engine(batch) after the end of the plan") == DP
