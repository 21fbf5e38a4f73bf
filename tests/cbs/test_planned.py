"""A schedule planned offline from a fitted critical-batch curve: exact rungs and starts,
``lr / sqrt(B)`` on the base path, and ``seesaw-ds plan --cbs-curve``."""

import json
import math

import pytest

from seesaw_ds.cbs.fit import PowerLaw
from seesaw_ds.cbs.planned import planned_batch_steps, planned_ds_config
from seesaw_ds.cli.main import main
from seesaw_ds.config import plan_from_ds_config

CURVE = PowerLaw(a=0.01, b=1.0)  # B*(t) = t / 100: batch 16 at 1,600 tokens, 32 at 3,200


def _config():
    return {"train_batch_size": 8, "train_micro_batch_size_per_gpu": 2,
            "optimizer": {"type": "AdamW", "params": {"lr": 1e-3}},
            "seesaw": {"total_tokens": 10_000, "seq_length": 16, "batch_schedule": "seesaw",
                       "batch_growth": 2.0,
                       "lr_schedule": {"type": "cosine", "warmup_fraction": 0.1,
                                       "final_factor": 0.1}}}


def test_rungs_start_where_the_scaled_curve_reaches_them():
    assert planned_batch_steps(CURVE, 8, 10_000, 8) == [(1600, 16), (3200, 32), (6400, 64)]
    assert planned_batch_steps(CURVE, 8, 10_000, 8, safety=0.5) == [(3200, 16), (6400, 32)]
    assert planned_batch_steps(CURVE, 8, 10_000, 4, growth=1.1) == [
        (1200, 12), (1600, 16), (2000, 20), (2400, 24), (2800, 28), (3200, 32), (3600, 36),
        (4000, 40), (4400, 44), (4800, 48), (5200, 52), (5600, 56), (6000, 60), (6800, 68),
        (7600, 76), (8400, 84), (9200, 92)]  # rungs of one multiple until x1.1 is larger
    assert planned_batch_steps(CURVE, 8, 10_000, 8, max_batch=32) == [(1600, 16), (3200, 32)]
    assert planned_batch_steps(PowerLaw(50.0, 0.0), 8, 10_000, 8) == []  # flat: no growth


def test_the_planned_config_keeps_lr_over_sqrt_batch_on_the_base_path():
    config = planned_ds_config(_config(), CURVE, 1)
    section = config["seesaw"]
    assert section["batch_schedule"] == "step" and section["lr_scaling"] == "sqrt"
    assert section["batch_steps"] == [[1600, 16], [3200, 32], [6400, 64]]
    assert "batch_growth" not in section
    plan = plan_from_ds_config(config, 1)
    for tokens, batch in ((1000, 8), (2000, 16), (5000, 32), (7000, 64)):
        setting = plan.at_tokens(tokens)
        assert setting.global_batch == batch
        assert setting.lr / math.sqrt(batch) == pytest.approx(
            plan.base_lr_at(tokens) / math.sqrt(8), rel=1e-12)


def test_plan_cli_prints_the_planned_steps(tmp_path, capsys):
    config_path, curve_path = tmp_path / "ds.json", tmp_path / "cbs.json"
    config_path.write_text(json.dumps(_config()))
    curve_path.write_text(json.dumps({"fit": CURVE.to_dict()}))
    assert main(["plan", str(config_path), "--dp-size", "1", "--cbs-curve",
                 str(curve_path)]) == 0
    out = capsys.readouterr().out
    assert '"batch_steps": [[1600, 16], [3200, 32], [6400, 64]], "lr_scaling": "sqrt"' in out
    assert main(["plan", str(config_path), "--cbs-curve", str(tmp_path / "none.json")]) == 2
    assert "--cbs-curve" in capsys.readouterr().err
