"""The pure pieces of `seesaw-ds cbs`: the LR rule, a branch's config, the decision rule on
synthetic losses, the alignment of branch budgets and the power-law fit."""

from __future__ import annotations

import math

import pytest

from seesaw_ds.cbs.branching import (branch_ds_config, branch_lr, critical_batch,
                                     parse_batches)
from seesaw_ds.cbs.fit import PowerLaw, fit_power_law
from seesaw_ds.cbs.measure import (Checkpoint, branch_tokens_aligned, nearest_checkpoints,
                                   plan_branches)
from seesaw_ds.config import plan_from_ds_config
from seesaw_ds.errors import SeesawConfigError

SEQ = 64


def _base(schedule="seesaw"):
    section = {"total_tokens": 2.0e5, "seq_length": SEQ, "batch_schedule": schedule,
               "lr_schedule": {"type": "cosine", "warmup_fraction": 0.1,
                               "warmup_start_factor": 0.1, "final_factor": 0.1}}
    if schedule in ("seesaw", "adaptive"):
        section["batch_growth"] = 2.0
    return {"train_batch_size": 8, "train_micro_batch_size_per_gpu": 2,
            "optimizer": {"type": "AdamW", "params": {"lr": 3e-3}}, "seesaw": section}


def test_critical_batch_is_the_largest_contiguous_match():
    losses = {8: 4.00, 16: 4.03, 32: 4.039, 64: 4.05, 128: 4.01}
    decision = critical_batch(losses, 0.01)  # threshold 4.04
    assert decision.batch == 32 and not decision.censored
    assert decision.reference == 4.0 and decision.threshold == pytest.approx(4.04)


def test_critical_batch_censored_when_the_largest_matches():
    decision = critical_batch({4: 3.0, 8: 2.99, 16: 3.02}, 0.01)
    assert (decision.batch, decision.censored) == (16, True)


def test_critical_batch_smallest_when_the_next_misses_or_is_nan():
    assert critical_batch({8: 4.0, 16: 4.1, 32: 4.0}, 0.01).batch == 8
    assert critical_batch({8: 4.0, 16: float("nan")}, 0.5).batch == 8
    assert critical_batch({8: 4.0, 16: 4.0}, 0.0).batch == 16  # equal loss matches at 0


def test_critical_batch_refuses_bad_input():
    with pytest.raises(ValueError):
        critical_batch({8: 4.0}, 0.01)
    with pytest.raises(ValueError):
        critical_batch({8: 4.0, 16: 4.0}, 1.5)


def test_branch_lr_keeps_lr_over_sqrt_batch():
    assert branch_lr(1e-3, 16, 64) == pytest.approx(2e-3)
    assert branch_lr(1e-3, 16, 4) == pytest.approx(5e-4)
    assert branch_lr(1e-3, 16, 64) / math.sqrt(64) == pytest.approx(1e-3 / math.sqrt(16))


def test_branch_config_is_a_constant_batch_run():
    base = _base("adaptive")
    base["seesaw"]["cbs_guard"] = {"enabled": True}
    config = branch_ds_config(base, 32, 7e-3)
    assert config["seesaw"]["batch_schedule"] == "constant"
    assert "batch_growth" not in config["seesaw"] and "cbs_guard" not in config["seesaw"]
    assert config["train_batch_size"] == 32 and config["optimizer"]["params"]["lr"] == 7e-3
    assert base["train_batch_size"] == 8 and base["seesaw"]["batch_growth"] == 2.0  # untouched


def test_plan_branches_start_at_the_rule_lr():
    base = _base()
    ckpt = Checkpoint("global_step100", 120_000)  # after Seesaw's first growth (8 -> 16)
    setting = plan_from_ds_config(base, 1).at_tokens(ckpt.tokens)
    assert setting.global_batch == 16
    branches = plan_branches(base, ckpt, [8, 16, 64], 4096, 1)
    assert branches.batch_ckpt == 16 and branches.stop_tokens == 124_096
    for batch, config in branches.configs.items():
        start = plan_from_ds_config(config, 1).at_tokens(ckpt.tokens)
        assert start.global_batch == batch
        assert start.lr == pytest.approx(setting.lr * math.sqrt(batch / 16), rel=1e-12)


def test_plan_branches_refuses_a_branch_past_the_budget_and_a_bad_batch():
    base = _base()
    with pytest.raises(SeesawConfigError, match="past the run's seesaw.total_tokens"):
        plan_branches(base, Checkpoint("global_step9", 199_000), [8, 16], 4096, 1)
    with pytest.raises(SeesawConfigError, match="batch 9 cannot run: train_batch_size = 9"):
        plan_branches(base, Checkpoint("global_step9", 50_000), [8, 9], 4096, 1)


def test_branch_tokens_aligned_to_every_batch():
    assert branch_tokens_aligned(1000, [8, 12], SEQ) == 24 * SEQ
    assert branch_tokens_aligned(10_000, [8, 16], 64) == 10 * 16 * 64
    assert branch_tokens_aligned(16 * 64, [8, 16], 64) == 16 * 64


def test_parse_batches():
    assert parse_batches("16, 8,32,8") == [8, 16, 32]
    for bad in ("8", "a,b", "0,8"):
        with pytest.raises(SeesawConfigError, match="--batches"):
            parse_batches(bad)


def test_power_law_fit_recovers_exact_curve():
    truth = PowerLaw(0.5, 0.4)
    fit = fit_power_law([(t, truth(t)) for t in (1e4, 3e4, 1e5, 4e5)])
    assert fit.a == pytest.approx(0.5, rel=1e-9) and fit.b == pytest.approx(0.4, rel=1e-9)
    flat = fit_power_law([(5e4, 16), (5e4, 64)])
    assert flat.b == 0.0 and flat.a == pytest.approx(32.0)
    assert PowerLaw.from_dict(fit.to_dict()) == fit


def test_the_logged_setting_after_a_checkpoint_wins_over_the_plan(tmp_path):
    from seesaw_ds.cbs.measure import base_setting_after

    steps = tmp_path / "steps.csv"
    steps.write_text("step,tokens,lr,global_batch,micro_batch,grad_accum,train_loss\n"
                     "1,512,0.001,8,2,4,5.0\n2,1536,0.002,16,2,8,4.9\n")
    assert base_setting_after(str(steps), 512) == (0.002, 16)
    assert base_setting_after(str(steps), 1536) is None
    assert base_setting_after(str(tmp_path / "none.csv"), 512) is None
    branches = plan_branches(_base(), Checkpoint("global_step1", 50_000), [8, 32], 4096, 1,
                             used=(0.002, 16))
    assert (branches.lr_ckpt, branches.batch_ckpt) == (0.002, 16)
    assert branches.lrs == {8: pytest.approx(0.002 / math.sqrt(2)),
                            32: pytest.approx(0.002 * math.sqrt(2))}


def test_cbs_cli_refuses_a_run_without_checkpoints_in_one_line(tmp_path, capsys):
    import json

    from seesaw_ds.cli.main import main

    run, ds = tmp_path / "run.json", tmp_path / "ds.json"
    run.write_text(json.dumps({"model": {"shape": "micro"}, "output_dir": str(tmp_path / "o")}))
    ds.write_text(json.dumps(_base()))
    args = ["cbs", "--run-config", str(run), "--deepspeed_config", str(ds), "--out",
            str(tmp_path / "cbs"), "--branch-tokens", "4096"]
    assert main(args + ["--batches", "8,16"]) == 2
    assert "cbs: no checkpoint in" in capsys.readouterr().err
    assert main(args + ["--batches", "8"]) == 2
    assert "--batches" in capsys.readouterr().err
    assert main(args + ["--batches", "8,16", "--tolerance", "2"]) == 2
    assert "--tolerance" in capsys.readouterr().err


def test_at_tokens_picks_the_nearest_checkpoint_once_each():
    found = [Checkpoint(f"global_step{i}", 62_500 * i) for i in range(1, 9)]
    chosen = nearest_checkpoints(found, [6e4, 2.5e5, 2.6e5, 1e7])
    assert [c.tokens for c in chosen] == [62_500, 250_000, 500_000]
