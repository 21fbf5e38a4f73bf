"""The run fingerprint: every field that changes a step's LR, batch or samples is in it."""

import pytest

from dsa_common import tiny_config
from seesaw_ds.deepspeed_adapter import validate_ds_config
from seesaw_ds.deepspeed_adapter.fingerprint import fingerprint_differences, run_fingerprint


def _fingerprint(config, dp=2):
    validated = validate_ds_config(config, dp)
    return run_fingerprint(validated.section, validated.plan)


def _changed(**seesaw):
    return tiny_config(1, "adamw", **seesaw)


@pytest.mark.parametrize("config, field, saved, new", [
    (_changed(min_lr=0.002), "seesaw.min_lr", 0.0, 0.002),
    (_changed(batch_growth=4.0), "seesaw.batch_growth", 2.0, 4.0),
    (_changed(data_seed=9), "seesaw.data_seed", 7, 9),
    (_changed(total_tokens=4000), "seesaw.total_tokens", 3000.0, 4000.0),
    (_changed(lr_schedule={"type": "cosine", "warmup_fraction": 0.1,
                           "warmup_start_factor": 0.2, "final_factor": 0.1}),
     "seesaw.lr_schedule.warmup_start_factor", 0.1, 0.2),
    (_changed(cbs_guard={"enabled": True, "ema_decay": 0.9}), "seesaw.cbs_guard.ema_decay",
     0.95, 0.9),
])
def test_a_changed_field_is_named_with_both_values(config, field, saved, new):
    differences = fingerprint_differences(_fingerprint(_changed()), _fingerprint(config))
    assert differences[0] == (field, saved, new)


def test_peak_lr_and_initial_batch_are_covered_but_the_rank_layout_is_not():
    base = _fingerprint(_changed())
    config = _changed()
    config["optimizer"]["params"]["lr"] = 0.1
    assert fingerprint_differences(base, _fingerprint(config))[0] == (
        "optimizer.params.lr", 0.01, 0.1)
    config = _changed()
    config["train_batch_size"] = 16
    assert fingerprint_differences(base, _fingerprint(config))[0] == (
        "train_batch_size", 8, 16)
    same_layout = _changed(batch_multiple=4)
    assert fingerprint_differences(_fingerprint(same_layout),
                                   _fingerprint(same_layout, dp=1)) == []
