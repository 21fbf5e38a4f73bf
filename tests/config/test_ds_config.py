"""A whole DeepSpeed config: files (JSON, YAML), the batch triple, the peak LR, the plan."""

import copy
import json

import pytest
from error_assertions import assert_one_clear_error

from seesaw_ds.config import (
    load_config_file,
    peak_lr_of,
    plan_from_ds_config,
    resolve_batch_triple,
    seesaw_section_of,
)
from seesaw_ds.errors import SeesawConfigError
from seesaw_ds.schedules import CosineLR, Plan, SeesawBatch

CONFIG = {
    "train_batch_size": 128,
    "train_micro_batch_size_per_gpu": 4,
    "gradient_accumulation_steps": 16,
    "optimizer": {"type": "AdamW", "params": {"lr": 3e-3, "betas": [0.9, 0.95]}},
    "bf16": {"enabled": True},
    "seesaw": {
        "total_tokens": "100M", "seq_length": 512, "batch_growth": 2.0,
        "lr_schedule": {"type": "cosine", "warmup_fraction": 0.1, "warmup_start_factor": 0.1,
                        "final_factor": 0.1},
    },
}

YAML_CONFIG = """\
train_batch_size: 128
train_micro_batch_size_per_gpu: 4
gradient_accumulation_steps: 16
optimizer:
  type: AdamW
  params:
    lr: 3.0e-3
    betas: [0.9, 0.95]
bf16:
  enabled: true
seesaw:
  total_tokens: 100M
  seq_length: 512
  batch_growth: 2.0
  lr_schedule:
    type: cosine
    warmup_fraction: 0.1
    warmup_start_factor: 0.1
    final_factor: 0.1
"""


def _config(**top):
    config = copy.deepcopy(CONFIG)
    for key, value in top.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    return config


def _seesaw(**changes):
    config = copy.deepcopy(CONFIG)
    config["seesaw"].update(changes)
    return config




# ---- happy paths ------------------------------------------------------------------------------


def test_plan_from_config_equals_the_plan_built_by_hand():
    plan = plan_from_ds_config(CONFIG, dp_size=2)
    base = CosineLR(total_tokens=1e8, warmup_tokens=1e7, warmup_start_factor=0.1,
                    final_factor=0.1)
    by_hand = Plan(base, SeesawBatch(batch_growth=2.0), 3e-3, 128, 512, micro_batch=4,
                   dp_size=2)
    assert plan.phases == by_hand.phases
    assert plan.peak_lr == 3e-3 and plan.initial_batch == 128
    assert plan.batch_multiple == 8  # micro 4 x dp 2
    assert plan.phases[0].grad_accum == 16
    assert plan.phases[0].micro_batch * plan.phases[0].grad_accum * 2 == 128


def test_json_and_yaml_files_give_the_same_plan(tmp_path):
    json_path = tmp_path / "ds.json"
    json_path.write_text(json.dumps(CONFIG))
    yaml_path = tmp_path / "ds.yaml"
    yaml_path.write_text(YAML_CONFIG)
    from_json = load_config_file(json_path)
    from_yaml = load_config_file(str(yaml_path))
    assert from_json == CONFIG
    plan_json = plan_from_ds_config(from_json, dp_size=2)
    plan_yaml = plan_from_ds_config(from_yaml, dp_size=2)
    assert plan_json.phases == plan_yaml.phases
    assert plan_json.peak_lr == plan_yaml.peak_lr == 3e-3


def test_explicit_peak_lr_wins_and_min_lr_and_batch_multiple_flow_through():
    config = _seesaw(min_lr=1e-4, batch_multiple=32)
    plan = plan_from_ds_config(config, dp_size=2, peak_lr=1e-3)
    assert plan.peak_lr == 1e-3 and plan.min_lr == 1e-4 and plan.batch_multiple == 32
    assert all(phase.global_batch % 32 == 0 for phase in plan.phases)


@pytest.mark.parametrize("given, dp, expected", [
    ({"train_batch_size": 128, "train_micro_batch_size_per_gpu": 4}, 2, (128, 4, 16, 2)),
    ({"train_batch_size": 128, "gradient_accumulation_steps": 8}, 4, (128, 4, 8, 4)),
    ({"train_batch_size": 64}, 8, (64, 8, 1, 8)),
    ({"train_micro_batch_size_per_gpu": 2, "gradient_accumulation_steps": 3}, 4,
     (24, 2, 3, 4)),
    ({"train_micro_batch_size_per_gpu": 2}, 4, (8, 2, 1, 4)),
    ({"train_batch_size": 128, "train_micro_batch_size_per_gpu": 4,
      "gradient_accumulation_steps": "auto"}, 2, (128, 4, 16, 2)),
    ({"train_batch_size": 32, "train_micro_batch_size_per_gpu": 2,
      "gradient_accumulation_steps": 4}, 4, (32, 2, 4, 4)),
])
def test_batch_triple(given, dp, expected):
    triple = resolve_batch_triple(given, dp)
    assert (triple.train_batch_size, triple.micro_batch, triple.grad_accum,
            triple.dp_size) == expected


def test_peak_lr_of():
    assert peak_lr_of(CONFIG) == 3e-3
    assert peak_lr_of({}, fallback=1e-4) == 1e-4
    with pytest.raises(SeesawConfigError, match="optimizer.params.lr"):
        peak_lr_of({"optimizer": {"type": "AdamW"}})
    with pytest.raises(SeesawConfigError, match="optimizer.params.lr"):
        peak_lr_of({"optimizer": {"params": {"lr": -1.0}}})
    with pytest.raises(SeesawConfigError, match="optimizer.params.lr"):
        peak_lr_of({"optimizer": {"params": [3e-3]}})  # not a mapping: no AttributeError


# ---- every bad input: one SeesawConfigError naming the field ---------------------------------

BAD_CONFIGS = [
    ("growth 1", _seesaw(batch_growth=1.0), 2, ["seesaw.batch_growth"]),
    ("total 0", _seesaw(total_tokens=0), 2, ["seesaw.total_tokens"]),
    ("warmup longer than training",
     _seesaw(lr_schedule={"type": "cosine", "warmup_tokens": "200M"}), 2, ["warmup"]),
    ("floor above peak", _seesaw(lr_schedule={"type": "cosine", "final_factor": 2.0}), 2,
     ["final_factor"]),
    ("min_lr above peak", _seesaw(min_lr=1e-2), 2, ["seesaw.min_lr"]),
    ("batch not a multiple of micro x dp",
     _config(train_batch_size=100, gradient_accumulation_steps=None), 2,
     ["train_batch_size", "train_micro_batch_size_per_gpu"]),
    ("batch not a multiple of micro x dp (dp 3)",
     _config(gradient_accumulation_steps=None), 3, ["train_batch_size"]),
    ("batch not a multiple of batch_multiple", _seesaw(batch_multiple=48), 2,
     ["train_batch_size", "48"]),
    ("batch_multiple not a multiple of micro x dp", _seesaw(batch_multiple=12), 2,
     ["seesaw.batch_multiple"]),
    ("max_batch below the starting batch", _seesaw(max_batch=64), 2, ["seesaw.max_batch"]),
    ("unknown batch schedule", _seesaw(batch_schedule="seasaw"), 2,
     ["seesaw.batch_schedule", "Did you mean 'seesaw'"]),
    ("unknown lr schedule", _seesaw(lr_schedule={"type": "cosine_annealing"}), 2,
     ["seesaw.lr_schedule.type"]),
    ("misspelled key", _seesaw(seq_lenght=512), 2, ["Did you mean 'seq_length'"]),
    ("scheduler and seesaw",
     _config(scheduler={"type": "WarmupDecayLR", "params": {"warmup_num_steps": 100}}), 2,
     ["\"scheduler\"", "seesaw"]),
    ("inconsistent triple", _config(gradient_accumulation_steps=8), 2,
     ["train_batch_size", "gradient_accumulation_steps"]),
    ("inconsistent triple (dp)", CONFIG, 4, ["train_batch_size"]),
    ("no batch at all", _config(train_batch_size=None, train_micro_batch_size_per_gpu=None),
     2, ["train_batch_size", "missing"]),
    ("batch not an integer", _config(train_batch_size=128.0), 2, ["train_batch_size"]),
    ("no seesaw section", _config(seesaw=None), 2, ["seesaw"]),
    ("no optimizer lr", _config(optimizer=None), 2, ["optimizer.params.lr"]),
    ("key of another schedule", _seesaw(batch_schedule="linear_ramp", batch_growth=None,
                                        final_batch=100, batch_increment=8,
                                        ramp_tokens="10M"), 2,
     ["seesaw.batch_growth", "seesaw"]),
    ("ramp batches", {**_seesaw(), "seesaw": {"total_tokens": "100M", "seq_length": 512,
                                              "batch_schedule": "linear_ramp",
                                              "final_batch": 130, "batch_increment": 8,
                                              "ramp_tokens": "10M"}}, 2,
     ["seesaw.final_batch"]),
    ("bad lr scaling", {**_seesaw(), "seesaw": {"total_tokens": "100M", "seq_length": 512,
                                                "batch_schedule": "late_switch",
                                                "switch_batch": 256, "lr_scaling": "linear"}},
     2, ["seesaw.lr_scaling"]),
]


@pytest.mark.parametrize("config, dp, fragments", [(c, d, f) for _, c, d, f in BAD_CONFIGS],
                         ids=[name for name, _, _, _ in BAD_CONFIGS])
def test_bad_configs_raise_one_error_naming_the_field(config, dp, fragments):
    with pytest.raises(SeesawConfigError) as error:
        plan_from_ds_config(config, dp_size=dp)
    assert_one_clear_error(error, *fragments)


def test_an_empty_scheduler_section_is_not_a_conflict():
    assert seesaw_section_of(_config(scheduler={})).seq_length == 512


@pytest.mark.parametrize("name, text, fragments", [
    ("bad.json", '{"train_batch_size": 128,\n "seesaw": {"total_tokens": 1e9,}}',
     ["bad.json", "not valid JSON", "line 2"]),
    ("truncated.json", '{"train_batch_size": 128', ["truncated.json", "not valid JSON"]),
    ("list.json", "[1, 2, 3]", ["list.json", "mapping"]),
    ("bad.yaml", "seesaw:\n  total_tokens: [1, 2\n  seq_length: 3\n",
     ["bad.yaml", "not valid YAML", "line"]),
    ("tabs.yml", "seesaw:\n\ttotal_tokens: 1\n", ["tabs.yml", "not valid YAML"]),
    ("scalar.yaml", "just a string\n", ["scalar.yaml", "mapping"]),
])
def test_malformed_files_raise_one_error_naming_the_file(tmp_path, name, text, fragments):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(SeesawConfigError) as error:
        load_config_file(path)
    assert_one_clear_error(error, *fragments)


def test_missing_file(tmp_path):
    with pytest.raises(SeesawConfigError) as error:
        load_config_file(tmp_path / "nowhere.json")
    assert_one_clear_error(error, "cannot read config", "nowhere.json")


def test_yaml_lr_without_a_dot_is_named_as_text(tmp_path):
    path = tmp_path / "ds.yaml"
    path.write_text(YAML_CONFIG.replace("lr: 3.0e-3", "lr: 1e-3"))
    config = load_config_file(str(path))
    assert config["optimizer"]["params"]["lr"] == "1e-3"  # PyYAML (YAML 1.1) reads text
    with pytest.raises(SeesawConfigError, match=r"optimizer.params.lr = '1e-3' .*read as text"
                       r".*write 1.0e-3 or 0.001"):
        plan_from_ds_config(config, dp_size=2)
    config["train_batch_size"] = "128"
    with pytest.raises(SeesawConfigError, match=r"train_batch_size = '128' .*read as text"):
        resolve_batch_triple(config, 2)


@pytest.mark.parametrize("lr", [float("nan"), float("inf")])
def test_non_finite_peak_lr_is_refused(lr):
    config = copy.deepcopy(CONFIG)
    config["optimizer"]["params"]["lr"] = lr
    with pytest.raises(SeesawConfigError, match=r"optimizer.params.lr = (nan|inf) must be a "
                       r"positive finite number"):
        plan_from_ds_config(config, dp_size=2)
