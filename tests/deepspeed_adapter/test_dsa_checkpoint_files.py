"""Checkpoint files: ``latest`` is replaced atomically and only after the tag is complete."""

import json
import os
from types import SimpleNamespace

import pytest

from dsa_common import tiny_config
from seesaw_ds.config import plan_from_ds_config
from seesaw_ds.deepspeed_adapter import read_latest, save_checkpoint, write_latest_atomically
from seesaw_ds.deepspeed_adapter.checkpoint import SIDECAR_NAME
from seesaw_ds.deepspeed_adapter.state import SeesawState
from seesaw_ds.errors import SeesawConfigError


class FakeEngine:
    def __init__(self, crash=False):
        state = SeesawState(plan_from_ds_config(tiny_config(), 2))
        for _ in range(56):
            state.advance()
        self.seesaw = SimpleNamespace(at_boundary=True, state=state, loader=None,
                                      micro_in_window=0, setting=state.setting)
        self.global_steps, self.global_samples, self.global_rank = 56, 456, 0
        self.checkpoint_engine = SimpleNamespace(is_decoupled=lambda: False)
        self.crash = crash
        self.calls = []

    def zero_optimization_stage(self):
        return 1

    def save_checkpoint(self, save_dir, tag, client_state, save_latest, **_):
        self.calls.append((tag, save_latest, client_state))
        os.makedirs(os.path.join(save_dir, tag), exist_ok=True)
        with open(os.path.join(save_dir, tag, "mp_rank_00_model_states.pt"), "w") as handle:
            handle.write("partial")
            if self.crash:
                raise OSError("disk full")


def test_latest_is_replaced_atomically(tmp_path, monkeypatch):
    write_latest_atomically(str(tmp_path), "global_step10")
    assert read_latest(str(tmp_path)) == "global_step10"

    def failing_replace(src, dst):
        raise OSError("crash between write and rename")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError):
        write_latest_atomically(str(tmp_path), "global_step20")
    assert read_latest(str(tmp_path)) == "global_step10"  # never a partial file


def test_save_writes_latest_only_after_the_tag_is_complete(tmp_path):
    write_latest_atomically(str(tmp_path), "global_step50")
    with pytest.raises(SeesawConfigError, match="failed on rank 0: OSError: disk full; "
                       "'latest' still names global_step50, untouched"):
        save_checkpoint(FakeEngine(crash=True), str(tmp_path))
    assert read_latest(str(tmp_path)) == "global_step50"
    assert not (tmp_path / "global_step56").exists()  # the partial tag is removed

    engine = FakeEngine()
    engine.seesaw.checkpoint_sidecars = {"cbs_guard.json": lambda: {"held_at": 16}}
    tag = save_checkpoint(engine, str(tmp_path), client_state={"mine": 1})
    assert json.loads((tmp_path / tag / "cbs_guard.json").read_text()) == {"held_at": 16}
    assert tag == "global_step56" and read_latest(str(tmp_path)) == tag
    (called_tag, deepspeed_latest, client), = engine.calls
    assert deepspeed_latest is False  # DeepSpeed's own, non-atomic 'latest' is not used
    assert client["mine"] == 1 and client["seesaw"]["state"]["consumed_samples"] == 456
    sidecar = json.loads((tmp_path / tag / SIDECAR_NAME).read_text())
    assert sidecar["state"]["global_batch"] == 16 and sidecar["zero_stage"] == 1
    assert not [p for p in os.listdir(tmp_path) if ".tmp" in p]


def test_save_refuses_mid_window_and_the_reserved_key(tmp_path):
    engine = FakeEngine()
    with pytest.raises(SeesawConfigError, match="reserved"):
        save_checkpoint(engine, str(tmp_path), client_state={"seesaw": 1})
    engine.seesaw.at_boundary = False
    engine.seesaw.micro_in_window = 1
    with pytest.raises(RuntimeError, match="accumulation window"):
        save_checkpoint(engine, str(tmp_path))


def test_a_published_tag_is_never_rewritten_in_place(tmp_path):
    engine = FakeEngine()
    tag = save_checkpoint(engine, str(tmp_path))
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / tag).iterdir()}
    assert save_checkpoint(engine, str(tmp_path)) == tag  # same step again: skipped
    assert len(engine.calls) == 1
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / tag).iterdir()} == before
    engine.seesaw.state.advance()
    save_checkpoint(engine, str(tmp_path), tag="fixed")
    assert read_latest(str(tmp_path)) == "fixed"
    engine.seesaw.state.advance()  # other state under the published name: refused
    with pytest.raises(SeesawConfigError, match=r"tag 'fixed' is the published checkpoint"):
        save_checkpoint(engine, str(tmp_path), tag="fixed")
    assert len(engine.calls) == 2 and read_latest(str(tmp_path)) == "fixed"


def test_a_decoupled_checkpoint_engine_is_refused(tmp_path):
    engine = FakeEngine()
    engine.checkpoint_engine = SimpleNamespace(is_decoupled=lambda: True)
    with pytest.raises(SeesawConfigError, match="decoupled"):
        save_checkpoint(engine, str(tmp_path))
    assert engine.calls == [] and read_latest(str(tmp_path)) is None
    from seesaw_ds.deepspeed_adapter import validate_ds_config

    for key, value in (("checkpoint", {"writer": {"type": "FAST", "decoupled": True}}),
                       ("datastates_ckpt", {"host_cache_size": 16})):
        config = tiny_config()
        config[key] = value
        with pytest.raises(SeesawConfigError, match=r"decoupled|datastates_ckpt"):
            validate_ds_config(config, 2)
