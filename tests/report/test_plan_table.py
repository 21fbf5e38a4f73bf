"""``seesaw-ds plan``: the table and ``--json`` agree with the plan's own steps (the short last
step as it trains, no row for a phase without a step), online decisions are marked (and
``--megatron`` says so), and ``--peak-lr`` plans a config whose optimizer is the user's
(issue 14 items 5-6, issue 19 item 9)."""

import json

import pytest

from seesaw_ds.cli.main import main
from seesaw_ds.config import plan_from_ds_config
from seesaw_ds.report.table import format_plan_table
from seesaw_ds.schedules import ConstantLR, Plan, StepBatch

PEAK = 6e-4


def _config(**seesaw):
    section = {"total_tokens": 50_000, "seq_length": 64, "batch_schedule": "step",
               "batch_steps": [[20_000, 64]], "lr_schedule": {"type": "constant"}}
    section.update(seesaw)
    return {"train_batch_size": 32, "train_micro_batch_size_per_gpu": 4,
            "optimizer": {"type": "AdamW", "params": {"lr": PEAK}}, "seesaw": section}


def _run(tmp_path, capsys, config, *args):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    code = main(["plan", str(path), "--dp-size", "2", *args])
    out, err = capsys.readouterr()
    return code, out, err


def _rows(table):
    """Data rows of the table as lists of cells (up to the blank line)."""
    lines = table.splitlines()
    return [line.split() for line in lines[2:lines.index("")]]


def test_table_and_json_show_the_short_last_step_as_it_trains(tmp_path, capsys):
    # 50,000 tokens: 10 steps of batch 32 (20,480 tokens), then batch 64 (4,096 tokens a
    # step): 7 full steps reach 49,152 and the last takes the 848 tokens left as batch 14,
    # rounded up to the batch multiple 8 -> 16, at LR 6e-4 x sqrt(16/64) = 3e-4
    config = _config()
    plan = plan_from_ds_config(config, 2)
    *_, (_, start, last) = plan.iter_steps()
    assert (start, last.global_batch, last.micro_batch, last.grad_accum) == (49152, 16, 4, 2)
    assert last.lr == pytest.approx(PEAK / 2)
    code, out, _ = _run(tmp_path, capsys, config)
    assert code == 0
    rows = _rows(out)
    assert rows[-2] == ["1", "20.00K", "50.00K", "64", "4", "8", "6.000e-04", "6.000e-04", "7"]
    assert rows[-1] == ["last", "49.15K", "50.18K", "16", "4", "2", "3.000e-04", "3.000e-04",
                        "1"]
    assert sum(int(row[-1]) for row in rows) == plan.optimizer_steps == 18
    code, out, _ = _run(tmp_path, capsys, config, "--json")
    summary = json.loads(out)
    assert summary["last_step"] == {
        "phase": 1, "start_tokens": 49152, "end_tokens": 50176, "global_batch": 16,
        "micro_batch": 4, "grad_accum": 2, "lr": pytest.approx(PEAK / 2), "short": True}
    assert summary["trained_tokens"] == 50176
    assert any(note.startswith("last step (phase 1): the 848 tokens left take batch 16")
               for note in summary["notes"])


def test_phases_without_a_step_are_not_rows():
    # batch 8 x seq 4: 32 steps reach token 1,024, past the 16-batch phase [1000, 1020)
    base = ConstantLR(total_tokens=16_384)
    plan = Plan(base, StepBatch(batch_steps=((1000.0, 16), (1020.0, 32))), PEAK, 8, 4,
                micro_batch=2)
    assert plan.steps_per_phase()[1] == 0
    table = format_plan_table(plan)
    assert [row[0] for row in _rows(table)] == ["0", "2"]
    assert "phase 1 train no step (shorter than one step of the batch before): not shown." \
        in table


def test_guard_and_adaptive_tables_mark_what_is_decided_online(tmp_path, capsys):
    guard = _config(batch_schedule="seesaw", batch_steps=None, batch_growth=2.0,
                    lr_schedule={"type": "cosine", "final_factor": 0.1},
                    cbs_guard={"enabled": True})
    guard["seesaw"].pop("batch_steps")
    code, out, _ = _run(tmp_path, capsys, guard)
    assert code == 0
    rows = _rows(out)
    assert [row[3] for row in rows] == ["32", "64*", "128*", "80*"]  # 80: the last step
    assert "cbs_guard (* rows): decided online" in out
    code, out, err = _run(tmp_path, capsys, guard, "--megatron")
    assert out == "0:32 26816:64 36672:128\n"  # stdout: the bare string
    assert err.startswith("seesaw-ds plan: note: this string is the offline plan")
    assert "cbs_guard" in err
    code, out, _ = _run(tmp_path, capsys, guard, "--json")
    assert json.loads(out)["online_phases"] == [1, 2, 3]  # 3: the last step's phase
    warn = dict(guard, seesaw=dict(guard["seesaw"], cbs_guard={"enabled": True,
                                                               "action": "warn"}))
    code, out, _ = _run(tmp_path, capsys, warn)
    assert "*" not in out and "cbs_guard (action 'warn'): the batch grows as shown" in out
    adaptive = dict(guard, seesaw=dict(guard["seesaw"], batch_schedule="adaptive",
                                       cbs_guard={}, max_batch=256))
    code, out, err = _run(tmp_path, capsys, adaptive)
    assert [row[3] for row in _rows(out)] == ["32*", "64*", "128*", "80*"]
    assert "adaptive (* rows): the table is the Seesaw envelope" in out
    code, out, err = _run(tmp_path, capsys, adaptive, "--megatron")
    assert "adaptive" in err and "offline plan" in err
    code, out, err = _run(tmp_path, capsys, _config(), "--megatron")
    assert err == ""  # a fixed plan needs no caveat


def test_peak_lr_plans_a_config_for_a_client_optimizer(tmp_path, capsys):
    config = _config()
    del config["optimizer"]
    code, _, err = _run(tmp_path, capsys, config)
    assert code == 2
    assert "seesaw-ds plan --peak-lr LR" in err and "param_groups[0] lr" in err
    code, out, _ = _run(tmp_path, capsys, config, "--peak-lr", "1e-3", "--json")
    assert code == 0
    summary = json.loads(out)
    assert summary["peak_lr"] == 1e-3 and summary["phases"][0]["lr_start"] == 1e-3
    # with an optimizer section its lr is the peak: a different --peak-lr is refused
    code, _, err = _run(tmp_path, capsys, _config(), "--peak-lr", "1e-3")
    assert code == 2 and "optimizer.params.lr = 0.0006 is the peak LR" in err
    code, _, err = _run(tmp_path, capsys, config, "--peak-lr", "-1")
    assert code == 2 and "--peak-lr = -1.0 must be a positive" in err


def test_plan_help_states_the_client_optimizer_rule(capsys):
    with pytest.raises(SystemExit):
        main(["plan", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--peak-lr LR" in text
    assert "client optimizer" in text and "param_groups[0] lr is the peak" in text
