"""The frontier sweep's pure pieces: every cell's config builds the plan it names, and the
aggregation (mean +- SE, paired gaps, the frontier view) is right on hand-made runs."""

import math

import pytest

from seesaw_ds.config import plan_from_ds_config
from seesaw_ds.report.frontier import (
    SCHEDULES,
    VARIANTS,
    Cell,
    aggregate,
    beyond_cosine_frontier,
    ds_config_of,
    frontier_report,
    paired_gaps,
)


@pytest.mark.parametrize("schedule", SCHEDULES + VARIANTS)
@pytest.mark.parametrize("b0", [8, 128])
def test_every_cell_config_builds_its_plan_on_equal_tokens(schedule, b0):
    cell = Cell(schedule, b0, 1)
    config = ds_config_of(cell, 1e6)
    plan = plan_from_ds_config(config, dp_size=1)
    data_seed = 1234 if schedule.endswith("_fd") else 1235
    assert plan.initial_batch == b0 and config["seesaw"]["data_seed"] == data_seed
    assert 1e6 <= plan.trained_tokens < 1e6 + 4 * 128
    expected = {"cosine": "constant", "cosine_wd": "constant", "cosine_fd": "constant",
                "late_switch": "late_switch"}.get(
        schedule, "adaptive" if schedule.startswith("adaptive") else "seesaw")
    assert plan.batch_schedule.type_name == expected
    assert ("cbs_guard" in config["seesaw"]) == schedule.startswith("seesaw_guard")
    weight_decay = config["optimizer"]["params"]["weight_decay"]
    assert weight_decay == (0.1 if "_wd" in schedule else 0.0)
    scaling = plan.optimizer_scaling
    assert scaling.keep_weight_decay_timescale == schedule.endswith("_tau")
    assert scaling.keep_beta2_half_life == schedule.endswith("_b2")
    assert Cell.parse(cell.label()) == cell


def _runs():
    losses = {("cosine", 8): (4.00, 4.02), ("seesaw", 8): (3.99, 4.03),
              ("cosine", 16): (4.10, 4.12), ("seesaw", 16): (4.20, 4.22)}
    steps = {("cosine", 8): 1000, ("seesaw", 8): 600, ("cosine", 16): 500,
             ("seesaw", 16): 300}
    return [{"schedule": s, "b0": b, "seed": seed, "final_val_loss": loss,
             "optimizer_steps": steps[(s, b)], "tokens": 10**6}
            for (s, b), pair in losses.items() for seed, loss in enumerate(pair)]


def test_aggregate_gives_mean_and_standard_error():
    rows = {(r["schedule"], r["b0"]): r for r in aggregate(_runs())}
    row = rows[("cosine", 8)]
    assert row["loss"] == pytest.approx(4.01) and row["seeds"] == 2
    assert row["loss_se"] == pytest.approx(0.01)  # stdev 0.01414 / sqrt 2


def test_paired_gaps_and_the_frontier_view():
    gaps = {(g["schedule"], g["b0"]): g for g in paired_gaps(_runs(), ("cosine", 8))}
    seesaw = gaps[("seesaw", 8)]
    assert seesaw["gap"] == pytest.approx((3.99 / 4.00 + 4.03 / 4.02) / 2 - 1)
    assert seesaw["steps_ratio"] == pytest.approx(0.6)
    report = frontier_report(_runs())
    assert report["best_cosine"]["b0"] == 8
    assert report["fewest_steps_at_best_loss"]["schedule"] == "seesaw"
    beyond = {(r["schedule"], r["b0"]) for r in beyond_cosine_frontier(aggregate(_runs()))}
    assert beyond == {("seesaw", 8), ("seesaw", 16)}  # no cosine point dominates them
    assert math.isnan(aggregate(_runs()[:1])[0]["loss_se"])
