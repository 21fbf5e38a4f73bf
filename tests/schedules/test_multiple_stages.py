"""Batch-multiple stages (``seesaw.batch_multiple_stages``): a chain of jobs whose rank count
grows rounds each stage's batches to its own multiple, with the LR corrected, and every
job lays out only the stages its rank count divides."""

import dataclasses
import math

import pytest

from seesaw_ds.config import parse_seesaw_section, plan_from_ds_config
from seesaw_ds.errors import SeesawConfigError
from seesaw_ds.schedules import CosineLR, LateSwitchBatch, Plan, SeesawBatch
from seesaw_ds.schedules.multiples import multiple_at, parse_multiple_stages

PEAK = 3e-3
TOTAL = 3.3e9
STAGES = [{"from_tokens": 1.5e9, "multiple": 10}, {"from_tokens": 2.5e9, "multiple": 24}]


def _base():
    return CosineLR(total_tokens=TOTAL, warmup_tokens=3.3e8, warmup_start_factor=0.1,
                    final_factor=0.1)


def _plans(stages=STAGES, **layout):
    plain = Plan(_base(), SeesawBatch(batch_growth=1.1), PEAK, 128, 1024, batch_multiple=8)
    staged = Plan(_base(), SeesawBatch(batch_growth=1.1), PEAK, 128, 1024, batch_multiple=8,
                  multiple_stages=stages, **layout)
    return plain, staged


def _temperature(setting):
    return setting.lr / math.sqrt(setting.global_batch)


def test_each_stage_rounds_up_to_its_multiple_and_keeps_lr_over_sqrt_b():
    plain, staged = _plans()
    assert staged.multiple_stages == ((0.0, 8), (1.5e9, 10), (2.5e9, 24))
    previous = 0
    for phase in staged.phases:
        multiple = multiple_at(staged.multiple_stages, phase.start_tokens)
        assert phase.global_batch % multiple == 0
        assert phase.global_batch >= previous  # monotone
        previous = phase.global_batch
    for _, tokens, setting in staged.iter_steps():
        reference = plain.at_tokens(tokens)
        assert setting.global_batch >= reference.global_batch
        assert setting.global_batch < reference.global_batch + multiple_at(
            staged.multiple_stages, tokens)
        assert _temperature(setting) == pytest.approx(_temperature(reference), rel=1e-9)
    # before the first stage boundary nothing changes
    early = [p for p in staged.phases if p.start_tokens < 1.5e9]
    assert early == [dataclasses.replace(p, end_tokens=min(p.end_tokens, 1.5e9))
                     for p in plain.phases if p.start_tokens < 1.5e9]
    # the same budget: the last step takes the rest, rounded to the last stage's multiple
    assert staged.total_tokens <= staged.trained_tokens < staged.total_tokens + 24 * 1024
    assert staged.trained_tokens % 1024 == 0


def test_a_rank_count_lays_out_only_the_stages_it_divides():
    _, staged = _plans(micro_batch=1, dp_size=10)
    assert staged.first_runnable_tokens() == 1.5e9
    with pytest.raises(SeesawConfigError, match="--stop-at-tokens"):
        staged.at_tokens(0)
    with pytest.raises(SeesawConfigError, match="batch-multiple stage 8"):
        staged.check_runnable(1.0e9, 2.0e9)
    staged.check_runnable(1.5e9, 2.5e9)  # the 10-rank job's span
    assert staged.at_tokens(2.0e9).global_batch % 10 == 0
    with pytest.raises(SeesawConfigError, match="batch-multiple stage 24"):
        staged.check_runnable(1.5e9, None)
    # a rank count that divides no stage is refused when the plan is built
    with pytest.raises(SeesawConfigError, match="every stage"):
        _plans(micro_batch=1, dp_size=7)


@pytest.mark.parametrize("stages, match", [
    ([{"from_tokens": 2e9, "multiple": 10}, {"from_tokens": 1e9, "multiple": 24}],
     r"\[1\].from_tokens"),
    ([{"from_tokens": 4e9, "multiple": 10}], "below seesaw.total_tokens"),
    ([{"from_tokens": 1e9, "multiple": 0}], r"\[0\].multiple"),
    ([{"from_tokens": 1e9, "multiple": True}], r"\[0\].multiple"),
    ([{"from_tokens": 1e9, "multiple": 2.5}], r"\[0\].multiple"),
    ([{"from_tokens": float("nan"), "multiple": 4}], "from_tokens"),
    ([{"from_tokens": 1e9, "ranks": 4}], "exactly the keys"),
    ("16", "must be a list"),
])
def test_bad_stages_name_the_entry(stages, match):
    with pytest.raises(SeesawConfigError, match=match):
        parse_multiple_stages(stages, 8, TOTAL)


def test_written_batches_and_caps_must_be_multiples_of_every_stage():
    base = _base()
    with pytest.raises(SeesawConfigError, match="switch|multiple of seesaw.batch_multiple_stages"):
        Plan(base, LateSwitchBatch(switch_fraction=0.7, switch_batch=256), PEAK, 128, 1024,
             batch_multiple=8, multiple_stages=[{"from_tokens": 2.5e9, "multiple": 24}])
    plan = Plan(base, LateSwitchBatch(switch_fraction=0.7, switch_batch=384), PEAK, 128, 1024,
                batch_multiple=8, multiple_stages=[{"from_tokens": 2.5e9, "multiple": 24}])
    assert plan.at_tokens(3e9).global_batch == 384
    with pytest.raises(SeesawConfigError, match="seesaw.max_batch"):
        Plan(base, SeesawBatch(batch_growth=1.1, max_batch=1000), PEAK, 128, 1024,
             batch_multiple=8, multiple_stages=[{"from_tokens": 2.5e9, "multiple": 24}])


def _section(**changes):
    section = {"total_tokens": TOTAL, "seq_length": 1024, "batch_schedule": "seesaw",
               "batch_growth": 1.1, "batch_multiple": 8, "batch_multiple_stages": STAGES,
               "lr_schedule": {"type": "cosine", "warmup_fraction": 0.1,
                               "warmup_start_factor": 0.1, "final_factor": 0.1}}
    section.update(changes)
    return section


def test_config_key_builds_the_staged_plan_on_a_rank_count_that_misses_the_initial_batch():
    config = {"train_batch_size": 128, "train_micro_batch_size_per_gpu": 1,
              "optimizer": {"type": "AdamW", "params": {"lr": PEAK}}, "seesaw": _section()}
    plan = plan_from_ds_config(config, 10)  # 128 is not a multiple of 10
    assert plan.multiple_stages == ((0.0, 8), (1.5e9, 10), (2.5e9, 24))
    assert plan.summary()["batch_multiple_stages"] == STAGES
    assert plan.fingerprint() == plan_from_ds_config(config, 8).fingerprint()


@pytest.mark.parametrize("changes, match", [
    ({"cbs_guard": {"enabled": True}}, "online batch decisions"),
    ({"batch_schedule": "adaptive"}, "online batch decisions"),
    ({"batch_multiple_stages": [{"from_tokens": 5e9, "multiple": 4}]}, "from_tokens"),
])
def test_config_refuses_stages_it_cannot_honour(changes, match):
    with pytest.raises(SeesawConfigError, match=match):
        parse_seesaw_section(_section(**changes))


def test_clock_of_a_later_job_waits_for_its_checkpoint():
    from seesaw_ds.deepspeed_adapter.state import SeesawState

    _, on_two = _plans(micro_batch=1, dp_size=2)
    _, on_ten = _plans(micro_batch=1, dp_size=10)
    saved = SeesawState(on_two)
    while saved.consumed_tokens < 1.5e9:
        saved.advance()
    state = SeesawState(on_ten)
    assert state.waiting is not None  # token 0 is the 8-multiple stage: not for 10 ranks
    assert state.setting.global_batch % 10 == 0  # the engine starts on a layout it can run
    with pytest.raises(SeesawConfigError, match="--stop-at-tokens"):
        state.advance()  # a step before any checkpoint moved the clock is refused
    state.load_dict(saved.to_dict())
    assert state.waiting is None and state.consumed_samples == saved.consumed_samples
    assert state.setting.global_batch == saved.setting.global_batch
    assert state.setting.lr == saved.setting.lr


def test_plan_command_shows_the_stages_and_the_phases_another_job_runs(tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    config = {"train_batch_size": 128, "train_micro_batch_size_per_gpu": 1,
              "optimizer": {"type": "AdamW", "params": {"lr": PEAK}}, "seesaw": _section()}
    path = tmp_path / "staged.json"
    path.write_text(json.dumps(config))
    repo = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-m", "seesaw_ds.cli.main", "plan", str(path),
                             "--dp-size", "10"], capture_output=True, text=True, cwd=repo)
    assert result.returncode == 0, result.stderr
    assert "batch-multiple stages: x10 from 1.50B, x24 from 2.50B" in result.stdout
    first_row = result.stdout.splitlines()[2].split()
    assert first_row[4:6] == ["-", "-"]  # batch 128 at dp 10: another job's phase


def test_a_stage_inside_the_constant_phase_never_lifts_the_lr_above_the_peak():
    # issue 19, item 9: B0 = 8 rounded up to 12 by a stage in the constant-LR phase asked
    # for peak x sqrt(12/8) = 1.22 x peak for every step until the first milestone
    base = CosineLR(total_tokens=2e6, warmup_tokens=2e5, warmup_start_factor=0.1,
                    final_factor=0.1)
    stages = [{"from_tokens": 3e5, "multiple": 12}]
    staged = Plan(base, SeesawBatch(batch_growth=1.5), PEAK, 8, 64, batch_multiple=4,
                  multiple_stages=stages)
    settings = [setting for _, _, setting in staged.iter_steps()]
    assert max(setting.lr for setting in settings) == pytest.approx(PEAK, rel=1e-12)
    capped = staged.stage_lr_caps()
    assert capped and capped[0][1] == pytest.approx(math.sqrt(12 / 8))
    index = capped[0][0]
    assert staged.phases[index].global_batch == 12
    assert staged.phases[index].start_tokens == 3e5
    # where the cap does not bind, lr / sqrt(B) is the unstaged plan's
    plain = Plan(base, SeesawBatch(batch_growth=1.5), PEAK, 8, 64, batch_multiple=4)
    late = [(start, setting) for _, start, setting in staged.iter_steps()
            if setting.lr < PEAK * 0.9 and start < staged.last_step()["start_tokens"]]
    assert late
    for start, setting in late:
        reference = plain.at_tokens(start)
        assert _temperature(setting) == pytest.approx(_temperature(reference), rel=1e-9)
    summary = staged.summary()
    assert summary["stage_lr_caps"] == [{"phase": index,
                                         "uncapped_lr_factor": capped[0][1]}]
    assert summary["phases"][index]["lr_ceiling"] == 1.0


def test_the_table_says_where_a_stage_caps_the_lr():
    from seesaw_ds.report.table import format_plan_table

    base = CosineLR(total_tokens=2e6, warmup_tokens=2e5, warmup_start_factor=0.1,
                    final_factor=0.1)
    staged = Plan(base, SeesawBatch(batch_growth=1.5), PEAK, 8, 64, batch_multiple=4,
                  multiple_stages=[{"from_tokens": 3e5, "multiple": 12}])
    index = staged.stage_lr_caps()[0][0]
    assert (f"phase {index}: the batch-multiple stage rounds the batch up to 12; keeping "
            "lr / sqrt(B) would lift the LR to 1.22 x peak, so it is capped at the peak"
            ) in format_plan_table(staged)
