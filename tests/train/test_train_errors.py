"""Bad input: ``seesaw_ds.train.main`` returns 2 with one line naming the field, no
traceback, before any process group, engine or output exists (in-process, fast)."""

from __future__ import annotations

import json

import pytest
import torch.distributed as dist

from seesaw_ds.train import main
from train_common import ds_config, run_config


def _write(tmp_path, run=None, ds=None):
    run_path, ds_path = tmp_path / "run.yaml", tmp_path / "ds.json"
    run = run_config(tmp_path / "data", 1e4) if run is None else run
    run_path.write_text(json.dumps(run) if isinstance(run, dict) else run)
    ds_path.write_text(json.dumps(ds_config(6.4e4) if ds is None else ds))
    return run_path, ds_path


def _guarded(**changes):
    config = ds_config(6.4e4, guard={"ema_decay": 0.0, "min_samples": 1})
    for key, value in changes.items():
        config[key] = value
    return config


def _with_scheduler():
    config = ds_config(6.4e4)
    config["scheduler"] = {"type": "WarmupLR", "params": {"warmup_num_steps": 10}}
    return config


def _constant_guarded():
    config = ds_config(6.4e4, schedule="constant", guard={})
    return config


CASES = {
    "unknown run-config key": (
        {"model": {"shape": "micro"}, "evall": {"batches": 2}}, None, ["evall", "'eval'"]),
    "unknown model.shape": ({"model": {"shape": "gigantic"}}, None, ["model.shape", "gigantic"]),
    "seesaw with a scheduler section": (None, _with_scheduler(), ["scheduler", "seesaw"]),
    "guard on ZeRO 3": (None, _guarded(zero_optimization={"stage": 3}),
                        ["cbs_guard needs ZeRO stage 0-2", "zero_optimization.stage"]),
    "guard without a ZeRO grad norm": (
        None, _guarded(zero_optimization={"stage": 2, "compute_grad_norm": False},
                       gradient_clipping=0.0),
        ["cbs_guard", "compute_grad_norm"]),
    "guard on a constant batch": (None, _constant_guarded(), ["cbs_guard", "'seesaw'"]),
    "sequence parallelism": (None, dict(ds_config(6.4e4), sequence_parallel_size=2),
                             ["sequence_parallel_size = 2", "data-parallel runs only"]),
    "non-finite gradient_clipping": (None, dict(ds_config(6.4e4),
                                                gradient_clipping=float("inf")),
                                     ["gradient_clipping = inf must be a finite number"]),
}


def _assert_refused(capsys, code, out_dir, needles):
    captured = capsys.readouterr()
    assert code == 2
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("seesaw-ds train: error: ")
    for needle in needles:
        assert needle in lines[0]
    assert "Traceback" not in captured.err + captured.out
    assert not dist.is_initialized()
    assert not out_dir.exists()


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_exits_2_with_one_line_before_any_work(name, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DS_ACCELERATOR", "cpu")
    run, ds, needles = CASES[name]
    run_path, ds_path = _write(tmp_path, run, ds)
    out = tmp_path / "out"
    code = main(["--run-config", str(run_path), "--deepspeed_config", str(ds_path),
                 "--output-dir", str(out)])
    _assert_refused(capsys, code, out, needles)


def test_allow_plan_change_without_resume_exits_2(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DS_ACCELERATOR", "cpu")
    run_path, ds_path = _write(tmp_path)
    out = tmp_path / "out"
    code = main(["--run-config", str(run_path), "--deepspeed_config", str(ds_path),
                 "--output-dir", str(out), "--allow-plan-change"])
    _assert_refused(capsys, code, out, ["--allow-plan-change", "--resume"])


def test_missing_run_config_file_exits_2(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DS_ACCELERATOR", "cpu")
    _, ds_path = _write(tmp_path)
    missing = tmp_path / "nowhere.yaml"
    out = tmp_path / "out"
    code = main(["--run-config", str(missing), "--deepspeed_config", str(ds_path),
                 "--output-dir", str(out)])
    _assert_refused(capsys, code, out, [str(missing), "--run-config"])
