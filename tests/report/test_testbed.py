"""The frontier testbed's cells, choices and judgement (seesaw_ds/report/testbed.py): configs
that plan, choices made from the tuning seeds only, and paired 95% intervals."""

from __future__ import annotations

import math

import pytest

from seesaw_ds.cbs.fit import PowerLaw
from seesaw_ds.config import plan_from_ds_config
from seesaw_ds.report import testbed
from seesaw_ds.report.testbed import Cell


def _run(schedule, b0, lr, seed, loss, steps, batch=None):
    return {"schedule": schedule, "b0": b0, "peak_lr": lr, "seed": seed,
            "final_val_loss": loss, "optimizer_steps": steps,
            "final_global_batch": batch or b0}


def test_cell_label_round_trip_and_bad_label():
    cell = Cell("planned_x0.5", 16, 0.004, 3)
    assert Cell.parse(cell.label()) == cell and cell.safety == 0.5
    assert cell.family == "planned" and Cell("seesaw", 4, 1e-3, 0).safety is None
    assert cell.name == "planned_x0.5_b16_lr0.004_s3"
    with pytest.raises(ValueError, match="schedule@B0/lrLR/sSEED"):
        Cell.parse("seesaw@16/s1")


def test_cell_configs_plan_the_testbed():
    cosine = plan_from_ds_config(testbed.ds_config_of(Cell("cosine", 16, 4e-3, 0)), 1)
    seesaw = plan_from_ds_config(testbed.ds_config_of(Cell("seesaw", 16, 4e-3, 0)), 1)
    assert cosine.phases[-1].global_batch == 16
    assert cosine.optimizer_steps == math.ceil(testbed.TOKENS / (16 * testbed.SEQ))
    assert seesaw.phases[-1].global_batch > 16 and seesaw.optimizer_steps < cosine.optimizer_steps
    curve = PowerLaw(2.0, 0.25)  # 2 x t^0.25: the rung 24 (16 x 1.5) at 12^4 tokens
    config = testbed.ds_config_of(Cell("planned_x1", 16, 4e-3, 0), curve)
    steps = config["seesaw"]["batch_steps"]
    assert steps[0] == [20736, 24] and config["seesaw"]["lr_scaling"] == "sqrt"
    plan = plan_from_ds_config(config, 1)
    assert plan.at_tokens(30000).global_batch == 24
    with pytest.raises(ValueError, match="critical-batch curve"):
        testbed.ds_config_of(Cell("planned_x1", 16, 4e-3, 0))
    adaptive = testbed.ds_config_of(Cell("adaptive_x0.5", 4, 1e-3, 0))
    schedule = plan_from_ds_config(adaptive, 1).batch_schedule
    assert (schedule.safety_factor, schedule.confidence, schedule.probe_samples) == (
        0.5, 0.9, 1)
    with pytest.raises(ValueError, match="unknown schedule"):
        testbed.ds_config_of(Cell("wsd", 4, 1e-3, 0))


def _tuning_runs():
    runs = []
    for b0, lrs in testbed.LR_GRID.items():
        for i, lr in enumerate(lrs):
            for seed in testbed.TUNE_SEEDS:
                # the middle LR wins at every B0; B0 16 is the best cosine
                loss = 4.0 + 0.01 * abs(i - 1) + (0.0 if b0 == 16 else 0.02)
                runs.append(_run("cosine", b0, lr, seed, loss, 1000))
    return runs


def test_choices_come_from_the_tuning_seeds_only():
    runs = _tuning_runs()
    # a judged seed where another LR looks better must not move the choice
    runs.append(_run("cosine", 16, 2e-3, 0, 3.0, 1000))
    lrs = testbed.choose_cosine_lrs(runs)
    assert lrs == {4: 2e-3, 16: 4e-3, 64: 8e-3}
    assert testbed.best_b0(runs, lrs) == 16
    assert testbed.choose_cosine_lrs(runs[1:]) is None  # a tuning cell missing
    assert testbed.choose_safety(runs, "planned", lrs, 16) is None  # not run yet
    for safety, gap in ((0.5, 0.001), (1.0, 0.002), (2.0, 0.01)):
        for seed in testbed.TUNE_SEEDS:
            runs.append(_run(testbed.grown_name("planned", safety), 16, 4e-3, seed,
                             4.0 * (1 + gap), 500))
    choice = testbed.choose_safety(runs, "planned", lrs, 16)
    assert choice["safety"] == 1.0  # the largest within +0.3%
    assert math.isclose(choice["tuning_gaps"]["2"], 0.01)
    for safety, gap in ((0.25, 0.006), (0.5, 0.004), (1.0, 0.02)):
        for seed in testbed.TUNE_SEEDS:
            runs.append(_run(testbed.grown_name("adaptive", safety), 16, 4e-3, seed,
                             4.0 * (1 + gap), 500))
    # none within +0.3%: the smallest gap
    assert testbed.choose_safety(runs, "adaptive", lrs, 16)["safety"] == 0.5


def test_judge_pairs_by_seed_with_t_intervals_and_checks_the_target():
    lrs = {4: 2e-3, 16: 4e-3, 64: 8e-3}
    runs = []
    for seed in testbed.JUDGE_SEEDS:
        for b0, loss in ((4, 4.05), (16, 4.00), (64, 4.10)):
            runs.append(_run("cosine", b0, lrs[b0], seed, loss + 0.001 * seed, 1000 * 16 // b0))
        # ours at B0 16: 0.4 of the best cosine's steps, gap -0.1% +- a little
        runs.append(_run("seesaw", 16, 4e-3, seed, (4.00 + 0.001 * seed) * (
            1 - 0.001 + 0.0002 * (seed - 2)), 400, 160))
        # ours at B0 64: clearly worse
        runs.append(_run("seesaw", 64, 8e-3, seed, 4.2, 100, 640))
    result = testbed.judge(runs, lrs)
    assert result["best_cosine"]["b0"] == 16
    rows = {(r["schedule"], r["b0"]): r for r in result["rows"]}
    good = rows[("seesaw", 16)]["vs_best"]
    assert good["pairs"] == 5 and math.isclose(good["steps_ratio"], 0.4)
    half = 2.776 * 0.0002 * math.sqrt(2.5) / math.sqrt(5)
    assert math.isclose(good["gap"]["mean"], -0.001, abs_tol=1e-12)
    assert math.isclose(good["gap"]["high"], -0.001 + half, rel_tol=1e-6)
    assert good["verdict"] == "lower loss" and rows[("seesaw", 16)]["meets_target"]
    assert rows[("seesaw", 64)]["vs_best"]["verdict"] == "higher loss"
    assert not rows[("seesaw", 64)]["meets_target"]
    assert result["target"]["met_by"] == ["seesaw@16"]
    assert result["fewest_steps_noninferior"]["schedule"] == "seesaw"
    # seesaw@64 (100 steps, 4.2) is dominated by no cosine: none has <= 100 steps
    assert result["not_dominated_by_cosine"] == ["seesaw@16", "seesaw@64"]
    table = testbed.format_judgement(result)
    assert "| seesaw | 16 | 0.004 | 5 |" in table and table.count("| yes |") == 1


def test_an_lr_on_the_grid_edge_extends_the_grid_until_interior():
    runs = []
    for b0, lrs in testbed.LR_GRID.items():
        for i, lr in enumerate(lrs):
            for seed in testbed.TUNE_SEEDS:  # B0 4: the largest LR best; others: the middle
                loss = 4.0 - 0.01 * i if b0 == 4 else 4.0 + 0.01 * abs(i - 1)
                runs.append(_run("cosine", b0, lr, seed, loss, 1000))
    lrs = testbed.choose_cosine_lrs(runs)
    assert lrs[4] == 4e-3
    extra = testbed.lr_extensions(runs, lrs)
    assert [(c.b0, c.peak_lr) for c in extra] == [(4, 8e-3)] * len(testbed.TUNE_SEEDS)
    for cell in extra:  # 8e-3 is worse: 4e-3 is now an interior optimum
        runs.append(_run("cosine", 4, cell.peak_lr, cell.seed, 4.05, 1000))
    assert testbed.choose_cosine_lrs(runs[:-1]) is None  # an extension cell missing
    lrs = testbed.choose_cosine_lrs(runs)
    assert lrs[4] == 4e-3 and testbed.lr_extensions(runs, lrs) == []


def test_a_diverged_run_counts_against_its_schedule():
    lrs = {4: 2e-3, 16: 4e-3, 64: 8e-3}
    runs = [_run("cosine", b0, lrs[b0], s, 4.0 + 0.01 * s + (0 if b0 == 16 else 0.1), 100)
            for s in testbed.JUDGE_SEEDS for b0 in testbed.B0S]
    runs += [_run("planned_x2", 16, 4e-3, s, 3.9, 40) for s in testbed.JUDGE_SEEDS]
    runs[-1] = dict(runs[-1], final_val_loss=None, diverged=True)  # one seed diverged
    result = testbed.judge(runs, lrs)
    row = next(r for r in result["rows"] if r["schedule"] == "planned_x2")
    assert row["diverged"] == 1 and math.isinf(row["loss"]["mean"])
    assert math.isinf(row["vs_best"]["gap"]["high"]) and not row["meets_target"]
    assert row["vs_best"]["verdict"] == "higher loss" and result["target"]["met_by"] == []
    assert "(1 diverged)" in testbed.format_judgement(result)


def test_stage_two_picks_the_smallest_gap_within_half_the_steps_on_tuning_seeds():
    lrs = {4: 4e-3, 16: 8e-3, 64: 8e-3}
    runs = [_run("cosine", 16, 8e-3, s, 4.0, 1000) for s in testbed.TUNE_SEEDS]
    for schedule, loss, steps in (("planned_x1", 4.010, 450), ("adaptive_x1", 4.004, 520),
                                  ("adaptive_x2", 4.020, 300)):
        runs += [_run(schedule, 4, 4e-3, s, loss, steps) for s in testbed.TUNE_SEEDS]
    cells = testbed.target_tuning_cells(lrs)
    assert {(c.schedule, c.b0, c.peak_lr) for c in cells} == {
        (s, 4, 4e-3) for s in testbed.TARGET_CANDIDATES}
    choice = testbed.choose_target_candidate(runs, lrs, 16)
    # adaptive_x1 has the smallest gap but 0.52 of the steps: not eligible
    assert choice["schedule"] == "planned_x1" and choice["b0"] == 4
    assert math.isclose(choice["tuning"]["adaptive_x1"]["steps_ratio"], 0.52)
    slow = [dict(r, optimizer_steps=900) if r["schedule"] != "cosine" else r for r in runs]
    assert testbed.choose_target_candidate(slow, lrs, 16)["schedule"] is None
