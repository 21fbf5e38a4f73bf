"""Oracles from the Seesaw paper's logs (arXiv 2510.14717) and the continuous limit.

150M model, B0 = 128 sequences of 1024 tokens, 3.3e9 tokens, linear warmup over 10% of the
tokens from 0.1x, cosine to 0.1x, batch growth 1.1, batches rounded to 1: the authors log
25,178 baseline and 15,524 Seesaw optimizer steps (a 38.3-38.4% reduction in every cell).
"""

import math

import pytest

from seesaw_ds.config import plan_from_ds_config
from seesaw_ds.schedules import CosineLR, Plan, SeesawBatch


def _paper_base(total_tokens):
    return CosineLR(total_tokens=total_tokens, warmup_tokens=0.1 * total_tokens,
                    warmup_start_factor=0.1, final_factor=0.1)


def _paper_plan(total_tokens=3.3e9, initial_batch=128):
    return Plan(_paper_base(total_tokens), SeesawBatch(batch_growth=1.1), 3e-3, initial_batch,
                1024, micro_batch=1, dp_size=1, batch_multiple=1)


def test_150m_step_counts_match_the_authors_logs():
    plan = _paper_plan()
    assert plan.baseline_optimizer_steps == 25_178  # ceil(3.3e9 / (128 * 1024))
    assert plan.optimizer_steps == pytest.approx(15_524, rel=5e-3)


@pytest.mark.parametrize("tokens, batches", [
    (3.3e9, (128, 256, 512)), (6.6e9, (128, 256, 512)), (13.2e9, (256, 512, 1024)),
])
def test_step_reduction_is_about_38_percent_in_every_cell(tokens, batches):
    for batch in batches:
        plan = _paper_plan(tokens, batch)
        saving = 1 - plan.optimizer_steps / plan.baseline_optimizer_steps
        assert saving == pytest.approx(0.3835, abs=5e-3), (tokens, batch)


def test_continuous_limit_for_the_paper_setting():
    """1 - time-average of the LR factor with warmup counted at 1:
    mean = 0.1 * 1 + 0.9 * (0.1 + 0.9 * 1/2) = 0.595, saving 0.405."""
    expected = 1 - (0.1 + 0.9 * (0.1 + 0.9 * 0.5))
    assert expected == pytest.approx(0.405)
    assert _paper_plan().continuous_limit_saving() == pytest.approx(expected, rel=5e-3)
    # the realized (discrete, g = 1.1) saving approaches the limit from below
    plan = _paper_plan()
    assert 1 - plan.optimizer_steps / plan.baseline_optimizer_steps < expected


def test_continuous_limit_is_one_half_for_cosine_to_zero_without_warmup():
    # a cap far above the batch the plan can reach leaves the integral uncapped
    plan = Plan(CosineLR(total_tokens=1e9, final_factor=0.0),
                SeesawBatch(batch_growth=1.1, max_batch=64 * 10**5), 1e-3, 64, 1024)
    assert plan.continuous_limit_saving() == pytest.approx(0.5, rel=5e-3)


def test_the_paper_run_from_a_deepspeed_config():
    config = {
        "train_batch_size": 128,
        "train_micro_batch_size_per_gpu": 1,
        "optimizer": {"type": "AdamW", "params": {"lr": 3e-3, "betas": [0.9, 0.95]}},
        "seesaw": {
            "total_tokens": "3.3B", "seq_length": 1024, "batch_schedule": "seesaw",
            "batch_growth": 1.1, "batch_multiple": 1,
            "lr_schedule": {"type": "cosine", "warmup_fraction": 0.1,
                            "warmup_start_factor": 0.1, "final_factor": 0.1},
        },
    }
    plan = plan_from_ds_config(config, dp_size=1)
    reference = _paper_plan()
    assert plan.baseline_optimizer_steps == 25_178
    assert plan.optimizer_steps == reference.optimizer_steps
    assert [p.global_batch for p in plan.phases] == [p.global_batch for p in reference.phases]
    assert plan.peak_lr == 3e-3
    # the first growth is to round(128 * 1.1) = 141 where the cosine reaches 1/1.1
    first = plan.phases[2]
    assert first.global_batch == 141
    relative = (1 / 1.1 - 0.1) / 0.9
    expected_start = 3.3e8 + 2.97e9 * math.acos(2 * relative - 1) / math.pi
    assert first.start_tokens == pytest.approx(expected_start, rel=1e-9)
