"""Reading a checkpoint directory without trusting it: tags, ``latest``, sidecar, files.

Each doubt is one :class:`SeesawConfigError` naming the file and the fix; the universal
converter and ``load_checkpoint`` share the checks (fabricated directories, no DeepSpeed).
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from dsa_common import tiny_config
from seesaw_ds.cbs.probe import GuardDriver
from seesaw_ds.cli.main import main as cli_main
from seesaw_ds.config import plan_from_ds_config
from seesaw_ds.config.section import _ADAPTIVE_KEYS
from seesaw_ds.deepspeed_adapter import validate_ds_config
from seesaw_ds.deepspeed_adapter.checkpoint import _check_fingerprint
from seesaw_ds.deepspeed_adapter.checkpoint_tags import (
    check_tag_files,
    checkpoint_tags,
    read_latest,
    resume_tag,
)
from seesaw_ds.deepspeed_adapter.fingerprint import ADAPTIVE_OPTIONS, run_fingerprint
from seesaw_ds.errors import SeesawConfigError


def _tag(root, name, zero=0, dp=2, shards=None, sidecar=None):
    folder = root / name
    folder.mkdir(parents=True)
    torch.save({"module": {}}, folder / "mp_rank_00_model_states.pt")
    for rank in range(dp if shards is None else shards):
        if zero:
            torch.save({}, folder / f"zero_pp_rank_{rank}_mp_rank_00_optim_states.pt")
    state = {"consumed_samples": 8, "consumed_tokens": 32, "step": 1, "dp_size": dp}
    payload = {"state": state, "zero_stage": zero} if sidecar is None else sidecar
    (folder / "seesaw_state.json").write_text(json.dumps(payload))
    return folder


def test_tags_are_listed_by_step_and_latest_must_name_one(tmp_path):
    for step in (120, 40, 79):
        _tag(tmp_path, f"global_step{step}")
    (tmp_path / "global_step120_universal").mkdir()
    (tmp_path / "notes").mkdir()
    assert checkpoint_tags(str(tmp_path)) == ["global_step40", "global_step79",
                                              "global_step120"]
    assert resume_tag(str(tmp_path), "global_step79") == "global_step79"
    (tmp_path / "latest").write_text("global_step120\n")
    assert resume_tag(str(tmp_path)) == "global_step120"
    (tmp_path / "latest").write_bytes(b"\xff\xfe")
    assert read_latest(str(tmp_path)) is None
    with pytest.raises(SeesawConfigError, match="has a 'latest' file that is not text, but it "
                       "holds checkpoints global_step40, global_step79, global_step120: pick "
                       "one with --resume-tag TAG"):
        resume_tag(str(tmp_path))


def test_only_an_empty_directory_is_a_fresh_start(tmp_path):
    assert resume_tag(str(tmp_path / "nothing")) is None
    (tmp_path / "latest").write_text("")
    with pytest.raises(SeesawConfigError, match="has an empty 'latest' file and holds no "
                       "checkpoint: delete .*latest to start a new run"):
        resume_tag(str(tmp_path))


def test_a_missing_or_truncated_optimizer_shard_is_named(tmp_path):
    _tag(tmp_path, "global_step10", zero=1, dp=2)
    _tag(tmp_path, "global_step20", zero=1, dp=2, shards=1)
    sidecar = {"state": {"dp_size": 2}, "zero_stage": 1}
    check_tag_files(str(tmp_path), "global_step10", sidecar)
    with pytest.raises(SeesawConfigError, match="global_step20/zero_pp_rank_1_mp_rank_00_optim"
                       r"_states.pt \(the optimizer shard of rank 1 of 2\) is missing: "
                       ".*--resume-tag global_step10"):
        check_tag_files(str(tmp_path), "global_step20", sidecar)
    shard = tmp_path / "global_step10" / "zero_pp_rank_0_mp_rank_00_optim_states.pt"
    shard.write_bytes(shard.read_bytes()[:100])
    with pytest.raises(SeesawConfigError, match="zero_pp_rank_0_mp_rank_00_optim_states.pt is "
                       "truncated or not a torch file"):
        check_tag_files(str(tmp_path), "global_step10", sidecar)


def _universal(*argv):
    return cli_main(["universal", *argv])


def test_universal_names_a_missing_tag_and_a_missing_shard(tmp_path, capsys):
    _tag(tmp_path, "global_step10", zero=1, dp=2, shards=1)
    (tmp_path / "latest").write_text("global_step10")
    assert _universal(str(tmp_path), "--tag", "global_step99") == 2
    err = capsys.readouterr().err
    assert err.startswith(f"seesaw-ds: error: --tag global_step99: {tmp_path}/global_step99 "
                          "is not a checkpoint; its checkpoints: global_step10")
    assert "latest" not in err  # it used to say there was no 'latest'
    assert _universal(str(tmp_path)) == 2
    err = capsys.readouterr().err
    assert "zero_pp_rank_1_mp_rank_00_optim_states.pt (the optimizer shard of rank 1 of 2) " \
           "is missing" in err and err.count("\n") == 1


def _guard_engine(config):
    plan = plan_from_ds_config(config, 2)
    return SimpleNamespace(seesaw=SimpleNamespace(plan=plan, checkpoint_sidecars={}),
                           zero_optimization_stage=lambda: 0)


def test_a_deleted_or_damaged_guard_file_is_named_not_taken_for_a_layout_change(tmp_path):
    config = tiny_config(0, "adamw", cbs_guard={"enabled": True})
    validated = validate_ds_config(config, 2)
    fingerprint = run_fingerprint(validated.section, validated.plan)
    _tag(tmp_path, "global_step10", sidecar={
        "state": {"consumed_samples": 8, "consumed_tokens": 32, "step": 1, "dp_size": 2},
        "run_fingerprint": fingerprint})
    driver = GuardDriver.maybe(validated.section, _guard_engine(config), print)
    with pytest.raises(SeesawConfigError, match="global_step10/cbs_guard.json is missing: "
                       "checkpoint global_step10 was trained with the cbs_guard"):
        driver.restore(str(tmp_path), "global_step10")
    driver.restore(str(tmp_path), "global_step10", allow_plan_change=True)  # starts afresh
    (tmp_path / "global_step10" / "cbs_guard.json").write_text("garbage")
    with pytest.raises(SeesawConfigError, match=r"cbs_guard.json is damaged \(JSONDecodeError"):
        driver.restore(str(tmp_path), "global_step10")


def test_the_fingerprint_error_names_adaptive_options_as_configured():
    assert ADAPTIVE_OPTIONS == _ADAPTIVE_KEYS
    old = validate_ds_config(tiny_config(0, "adamw", batch_schedule="adaptive",
                                         adaptive={"safety_factor": 0.5}), 2)
    new = validate_ds_config(tiny_config(0, "adamw", batch_schedule="adaptive",
                                         adaptive={"safety_factor": 0.25}), 2)
    hook = SimpleNamespace(section=new.section, plan=new.plan)
    saved = {"run_fingerprint": run_fingerprint(old.section, old.plan)}
    with pytest.raises(SeesawConfigError, match="seesaw.adaptive.safety_factor = 0.25 but "
                       "checkpoint global_step3 was trained with 0.5"):
        _check_fingerprint(hook, saved, "global_step3")
