"""The micro-batch of every phase (issue 14, item 7): under ``micro_batch_first`` the plan keeps
one steady micro-batch where the batches allow it, never shrinks it during a run (the short
last step aside), and gives a reason for every micro-batch other than the configured one.
Checked on every shipped config on 1, 2, 8 and 64 ranks."""

import glob
import os

import pytest

from seesaw_ds.config import load_config_file, parse_seesaw_section, plan_from_ds_config
from seesaw_ds.errors import SeesawConfigError
from seesaw_ds.report.table import format_plan_table
from seesaw_ds.schedules import CosineLR, Plan, SeesawBatch
from seesaw_ds.schedules.micro_batches import steady_micro_batches

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHIPPED = sorted(glob.glob(os.path.join(REPO, "ds_configs", "*.json")))
RANKS = (1, 2, 8, 64)


def _plan(path, ranks):
    config = load_config_file(path)
    config.pop("gradient_accumulation_steps", None)  # written for one rank count
    try:
        return plan_from_ds_config(config, ranks)
    except SeesawConfigError as error:  # a rank count the config cannot split: one line
        assert "multiple" in str(error) or "divisible" in str(error)
        return None


def _trained(plan):
    """(phase index, phase) of every phase that trains a step."""
    return [(index, phase) for index, (phase, steps) in
            enumerate(zip(plan.phases, plan.steps_per_phase())) if steps]


@pytest.mark.parametrize("path", SHIPPED, ids=os.path.basename)
def test_shipped_configs_keep_a_steady_micro_batch_on_1_2_8_64_ranks(path):
    planned = 0
    for ranks in RANKS:
        plan = _plan(path, ranks)
        if plan is None:
            continue
        planned += 1
        configured = plan.micro_batch
        reasons = dict(plan.micro_batch_reasons)
        trained = _trained(plan)
        micros = [phase.micro_batch for _, phase in trained]
        assert micros == sorted(micros), (ranks, micros)  # never shrinks: no swing
        for index, phase in trained:
            per_rank = phase.global_batch // ranks
            assert per_rank % phase.micro_batch == 0
            assert phase.micro_batch % configured == 0
            assert phase.micro_batch <= (plan.max_micro_batch or configured)
            assert phase.micro_batch * phase.grad_accum == per_rank
        # every change, and a first micro-batch other than the configured one, has a reason
        previous = configured
        for index, phase in trained:
            if phase.micro_batch != previous:
                assert index in reasons, (ranks, index)
                assert str(phase.micro_batch) in reasons[index]
            previous = phase.micro_batch
        last = plan.last_step()
        if last["micro_batch"]:
            assert last["micro_batch"] <= plan.phases[last["phase"]].micro_batch
    assert planned >= 1


def test_150m_on_8_ranks_no_longer_swings_16_6_10_2():
    plan = _plan(os.path.join(REPO, "ds_configs", "150m_b128_seesaw.json"), 8)
    assert {phase.micro_batch for _, phase in _trained(plan)} == {2}  # the configured one
    # the plan says why max_micro_batch 16 is not used (phase 2: per-rank batch 18)
    (index, reason), = plan.micro_batch_reasons
    assert index == 2 and "max_micro_batch 16 is not reached" in reason and " 18 " in reason
    assert plan.optimizer_steps == 15367  # the batches (and steps) are unchanged


def test_a_larger_first_micro_batch_is_stated_in_the_table():
    plan = _plan(os.path.join(REPO, "ds_configs", "150m_b128_seesaw.json"), 1)
    assert {phase.micro_batch for _, phase in _trained(plan)} == {16}
    table = format_plan_table(plan)
    assert ("phase 0: micro-batch 16 from the first step, not the configured 2 "
            "(train_micro_batch_size_per_gpu)") in table


def test_a_growing_micro_batch_says_where_and_why():
    # per-rank batches 8, 16, 32, ...: the micro-batch grows 8 -> 16 once every later batch
    # is a multiple of 16, and never comes back down
    base = CosineLR(total_tokens=4e6, final_factor=0.0)
    plan = Plan(base, SeesawBatch(batch_growth=2.0, max_batch=512), 1e-3, 16, 64,
                micro_batch=2, dp_size=2, growth_policy="micro_batch_first", max_micro_batch=16)
    micros = [phase.micro_batch for _, phase in _trained(plan)]
    assert micros == [8] + [16] * (len(micros) - 1) and len(micros) > 2
    reasons = dict(plan.micro_batch_reasons)
    assert reasons[0].startswith("micro-batch 8 from the first step, not the configured 2")
    assert reasons[1] == ("micro-batch 8 -> 16 at phase 1: every per-rank batch from here on "
                          "(first 16) is a multiple of 16")


def test_steady_choice_is_the_largest_micro_batch_every_later_batch_allows():
    # per-rank 16, 18, 20, 22, 24: greedy gave 16, 6, 10, 2, 12; steady gives 2 then 2, ...
    assert steady_micro_batches([16, 18, 20, 22, 24], [True] * 5, 2, 16) == [2, 2, 2, 2, 12]
    # a phase with no step does not hold the phases before it back
    assert steady_micro_batches([16, 18, 32], [True, False, True], 2, 16) == [16, 2, 16]
    # a phase another job runs (None) is skipped
    assert steady_micro_batches([16, None, 32], [True, True, True], 2, 16) == [16, None, 16]


def test_micro_batch_first_without_max_micro_batch_is_refused():
    base = CosineLR(total_tokens=1e6)
    with pytest.raises(SeesawConfigError, match="needs seesaw.max_micro_batch"):
        Plan(base, SeesawBatch(), 1e-3, 32, 16, micro_batch=2,
             growth_policy="micro_batch_first")
    with pytest.raises(SeesawConfigError, match="needs seesaw.max_micro_batch"):
        parse_seesaw_section({"total_tokens": 1e6, "seq_length": 16,
                              "growth_policy": "micro_batch_first"})
