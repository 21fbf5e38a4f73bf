"""Off the paper's recipe: each config that used to give a silently wrong schedule now gives
the right one or one clear error (issue: "Correct off the paper's recipe")."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from seesaw_ds.config import load_config_file, parse_seesaw_section, plan_from_ds_config
from seesaw_ds.errors import SeesawConfigError
from seesaw_ds.schedules import CosineLR, LateSwitchBatch, Plan, SeesawBatch

REPO = Path(__file__).resolve().parents[2]
PEAK = 3e-3


def _path(plan, tokens):
    return plan.peak_lr * plan.base.factor(tokens) / math.sqrt(plan.initial_batch)


def _temperature(setting):
    return setting.lr / math.sqrt(setting.global_batch)


def _paper_150m_section(**lr_changes):
    config = load_config_file(str(REPO / "ds_configs" / "150m_b128_seesaw.json"))
    config["seesaw"]["lr_schedule"].update(lr_changes)
    return config


# ---- decay to zero: never drop the remaining decay --------------------------------------------

def test_cosine_to_zero_with_a_cap_keeps_the_decay_to_the_end():
    """Used to: after growth stopped the LR stayed constant, lr/sqrt(B) ~640x the base's at
    99.9% of tokens. Now the LR takes every decay the batch does not."""
    base = CosineLR(total_tokens=3.3e9, warmup_tokens=3.3e8, warmup_start_factor=0.1)
    plan = Plan(base, SeesawBatch(batch_growth=2.0, max_batch=128 * 64), PEAK, 128, 1024)
    for fraction in (0.5, 0.9, 0.99, 0.999):
        tokens = fraction * base.total_tokens
        ratio = _temperature(plan.at_tokens(tokens)) / _path(plan, tokens)
        assert 1.0 - 1e-9 <= ratio <= 2.0 + 1e-9, (fraction, ratio)
    steps = list(plan.iter_steps())
    _, start, last = steps[-1]
    assert _temperature(last) == pytest.approx(_path(plan, start), rel=1e-9)
    assert last.lr < 0.01 * PEAK  # the base is near 0 at the end, so is the LR


def test_growth_that_stops_because_a_step_no_longer_fits_hands_the_decay_to_the_lr():
    base = CosineLR(total_tokens=1e7, final_factor=0.0)
    plan = Plan(base, SeesawBatch(batch_growth=2.0, max_batch=8 * 2**12), PEAK, 8, 128)
    last = plan.phases[-1]
    assert last.follows_base and last.global_batch < 8 * 2**12
    for tokens in (last.start_tokens, 0.5 * (last.start_tokens + 1e7)):
        assert _temperature(plan.at_tokens(tokens)) == pytest.approx(_path(plan, tokens))


def test_decay_past_the_automatic_bound_without_max_batch_is_one_clear_error():
    config = _paper_150m_section(final_factor=0.0)
    with pytest.raises(SeesawConfigError) as error:
        plan_from_ds_config(config, dp_size=8)
    message = str(error.value)
    assert "seesaw.max_batch" in message and "final_factor" in message and "64 x" in message


# ---- min_lr is a floor of the base, before the transform ---------------------------------------

def test_min_lr_plans_like_the_same_final_factor():
    """Used to: cosine to 0 with min_lr = 0.1 x peak grew the batch to 69,040 on the 150M
    B=128 config and ended lr/sqrt(B) at 0.043 of the floored base's."""
    floored = _paper_150m_section(final_factor=0.0)
    floored["seesaw"]["min_lr"] = 0.1 * floored["optimizer"]["params"]["lr"]
    reference = _paper_150m_section()  # final_factor 0.1
    plan = plan_from_ds_config(floored, dp_size=8)
    same = plan_from_ds_config(reference, dp_size=8)
    assert max(p.global_batch for p in plan.phases) == max(p.global_batch for p in same.phases)
    assert max(p.global_batch for p in plan.phases) <= 16 * math.ceil(128 * 10 / 16)
    _, start, last = list(plan.iter_steps())[-1]
    assert last.lr >= 0.1 * plan.peak_lr * (1 - 1e-12)
    assert _temperature(last) == pytest.approx(_path(plan, start), rel=1e-6)
    assert plan.base.factor(start) == pytest.approx(0.1)


# ---- growth at the extremes ------------------------------------------------------------------

def test_growth_close_to_one_follows_the_base_to_the_end():
    """Used to: 1.0001 with cosine stalled at the 10,000-milestone limit (63% of tokens) and
    kept 0.58 x peak to the end."""
    config = _paper_150m_section()
    config["seesaw"]["batch_growth"] = 1.0001
    plan = plan_from_ds_config(config, dp_size=8)
    assert plan.phases[-1].end_tokens == plan.total_tokens
    top = max(p.global_batch for p in plan.phases)
    assert 1200 <= top <= 1296  # B0 / final_factor = 1280, in multiples of 16
    _, start, last = list(plan.iter_steps())[-1]
    assert _temperature(last) == pytest.approx(_path(plan, start), rel=1e-9)
    # close to the continuous limit, as a growth near 1 should be
    ratio = plan.optimizer_steps / plan.baseline_optimizer_steps
    assert ratio == pytest.approx(1 - plan.continuous_limit_saving(), abs=0.01)


@pytest.mark.parametrize("growth", [10.0, 11.0, 100.0])
def test_growth_the_base_never_reaches_is_one_clear_error(growth):
    config = _paper_150m_section()
    config["seesaw"]["batch_growth"] = growth
    with pytest.raises(SeesawConfigError, match="seesaw.batch_growth .* never applies"):
        plan_from_ds_config(config, dp_size=8)


def test_growth_just_below_the_final_factor_grows_once_and_follows_the_base():
    config = _paper_150m_section()
    config["seesaw"]["batch_growth"] = 9.0
    plan = plan_from_ds_config(config, dp_size=8)
    assert sorted({p.global_batch for p in plan.phases}) == [128, 1152]
    _, start, last = list(plan.iter_steps())[-1]
    assert _temperature(last) == pytest.approx(_path(plan, start), rel=1e-9)


@pytest.mark.parametrize("field, value", [
    ("batch_growth", math.inf), ("batch_growth", math.nan), ("lr_cut", math.inf),
    ("seq_length", math.nan), ("seq_length", math.inf), ("min_lr", math.nan),
    ("max_batch", math.inf), ("data_seed", math.nan),
])
def test_non_finite_numbers_are_one_clear_error(field, value):
    section = dict(_paper_150m_section()["seesaw"])
    section[field] = value
    with pytest.raises(SeesawConfigError, match=f"seesaw.{field}"):
        parse_seesaw_section(section)


def test_non_finite_seq_length_exits_2_from_the_cli(tmp_path):
    config = _paper_150m_section()
    config["seesaw"]["seq_length"] = math.nan
    path = tmp_path / "nan.json"
    path.write_text(json.dumps(config))  # json writes NaN, as a user's file may hold it
    result = subprocess.run([sys.executable, "-m", "seesaw_ds.cli.main", "plan", str(path)],
                            capture_output=True, text=True, env=dict(os.environ))
    assert result.returncode == 2
    assert "seesaw.seq_length" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_number_yaml_read_as_text_gets_a_hint():
    section = dict(_paper_150m_section()["seesaw"])
    section["min_lr"] = "1e-4"
    with pytest.raises(SeesawConfigError, match="read as text"):
        parse_seesaw_section(section)


# ---- equal tokens ----------------------------------------------------------------------------

def test_tiny_cosine_and_seesaw_train_the_same_budget():
    """Used to: Seesaw trained 2,830,336 tokens against cosine's 2,801,664 (+1.02%)."""
    trained = {}
    for name in ("tiny_cosine", "tiny_seesaw"):
        config = load_config_file(str(REPO / "ds_configs" / f"{name}.json"))
        plan = plan_from_ds_config(config, dp_size=2)
        within = plan.batch_multiple * plan.seq_length
        assert plan.total_tokens <= plan.trained_tokens < plan.total_tokens + within
        assert sum(s.global_batch for _, _, s in plan.iter_steps()) * plan.seq_length == (
            plan.trained_tokens)
        trained[name] = plan.trained_tokens
    assert abs(trained["tiny_seesaw"] - trained["tiny_cosine"]) < 4 * 128


# ---- late switch -----------------------------------------------------------------------------

@pytest.mark.parametrize("scaling, expected_temperature_ratio", [("none", 0.5), ("sqrt", 1.0)])
def test_late_switch_lr_scaling_meanings(scaling, expected_temperature_ratio):
    """'none' lowers lr/sqrt(B) by sqrt(B2/B1) at the switch (the annealing the switch is
    for); 'sqrt' keeps it on the base path (only the steps change)."""
    base = CosineLR(total_tokens=1e7, final_factor=0.1)
    plan = Plan(base, LateSwitchBatch(switch_fraction=0.7, switch_batch=64,
                                      lr_scaling=scaling), PEAK, 16, 100)
    tokens = 0.8e7
    assert plan.at_tokens(tokens).global_batch == 64
    assert _temperature(plan.at_tokens(tokens)) / _path(plan, tokens) == pytest.approx(
        expected_temperature_ratio)
    assert _temperature(plan.at_tokens(0.5e7)) == pytest.approx(_path(plan, 0.5e7))


@pytest.mark.parametrize("switch_batch", [8, 16])
def test_late_switch_to_a_batch_not_above_the_initial_one_is_refused(switch_batch):
    base = CosineLR(total_tokens=1e7)
    with pytest.raises(SeesawConfigError, match="seesaw.switch_batch .* must exceed"):
        Plan(base, LateSwitchBatch(switch_batch=switch_batch), PEAK, 16, 100)


def test_inverse_sqrt_with_a_tiny_milestone_level_is_a_finite_plan():
    """Regression (found by the property test in CI): growth 1.0001 with lr_cut 1.125 over an
    inverse-sqrt base asked for a level whose square underflows to 0 (ZeroDivisionError)."""
    section = parse_seesaw_section({
        "total_tokens": 204800.0, "seq_length": 64, "batch_multiple": 1,
        "lr_schedule": {"type": "inverse_sqrt", "timescale_tokens": 2048.0},
        "batch_schedule": "seesaw", "batch_growth": 1.0001, "lr_cut": 1.1250562485938203})
    plan = section.build_plan(1e-3, 1, micro_batch=1, dp_size=1)
    assert plan.phases[-1].end_tokens == 204800.0 and plan.phases[-1].follows_base
