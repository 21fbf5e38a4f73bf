"""Every key of the ``seesaw`` section refuses values of the wrong JSON type, by name.

Parametrized over ``KEY_TYPES``: a key the parser accepts must be in the schema, appear in
one of the valid sections below, and refuse every wrong-typed value with one
``SeesawConfigError`` naming it. ``"cbs_guard": {"enabled": "false"}`` used to enable the
guard (``bool("false")``); ``"warmup_tokens": false`` used to read as 0 tokens.
"""

import copy

import pytest
from error_assertions import assert_one_clear_error

from seesaw_ds.config import parse_seesaw_section
from seesaw_ds.config import section as section_module
from seesaw_ds.config.section import KEY_TYPES
from seesaw_ds.errors import SeesawConfigError

COSINE = {"type": "cosine", "warmup_fraction": 0.1, "warmup_start_factor": 0.1,
          "final_factor": 0.1}

#: Valid sections that together hold every key of the schema.
VALID = [
    {"total_tokens": "3.3B", "seq_length": 1024, "batch_schedule": "seesaw",
     "batch_growth": 2.0, "lr_cut": 1.5, "max_batch": 1024, "strict": True, "min_lr": 1e-5,
     "batch_multiple": 16, "growth_policy": "micro_batch_first", "max_micro_batch": 8,
     "data_seed": 7, "keep_weight_decay_timescale": True, "keep_beta2_half_life": False,
     "save_interval_tokens": "100M", "eval_interval_tokens": 5e7,
     "cbs_guard": {"enabled": True, "ema_decay": 0.9, "safety_factor": 1.0, "min_samples": 3,
                   "action": "warn"},
     "lr_schedule": COSINE},
    {"total_tokens": 1e9, "seq_length": 512, "batch_schedule": "adaptive",
     "adaptive": {"safety_factor": 0.5, "lr_ceiling": 2.0, "ema_decay": 0.9, "min_samples": 2,
                  "confidence": 0.9, "probe_samples": 1},
     "lr_schedule": {"type": "wsd", "warmup_tokens": "10M", "decay_tokens": "200M",
                     "final_factor": 0.1, "tail": "cosine"}},
    {"total_tokens": 1e9, "seq_length": 512, "batch_schedule": "linear_ramp",
     "final_batch": 512, "batch_increment": 64, "ramp_tokens": "100M", "lr_scaling": "sqrt",
     "lr_schedule": {"type": "step", "milestones": ["300M", 6e8], "gamma": 0.5}},
    {"total_tokens": 1e9, "seq_length": 512, "batch_schedule": "step",
     "batch_steps": [[0, 128], ["500M", 256]],
     "lr_schedule": {"type": "step", "milestone_fractions": [0.5, 0.8]}},
    {"total_tokens": 1e9, "seq_length": 512, "batch_schedule": "late_switch",
     "switch_fraction": 0.7, "switch_batch": 512,
     "batch_multiple_stages": [{"from_tokens": 5e8, "multiple": 32}],
     "lr_schedule": {"type": "inverse_sqrt", "warmup_tokens": 0, "timescale_tokens": "50M"}},
    {"total_tokens": 1e9, "seq_length": 512,
     "lr_schedule": {"type": "wsd", "decay_fraction": 0.2}},
]

_WRONG = {
    "bool": ["false", "true", "no", "off", "0", 0, 1, 0.0, None, [True], {}],
    "int": ["8", "abc", True, False, 8.5, float("nan"), 10 ** 400, [8], {"a": 1}, None],
    "number": ["1.5", "abc", True, False, float("nan"), float("inf"), 10 ** 400, [1.5], {},
               None],
    "tokens": [True, False, "abc", "", float("nan"), 10 ** 400, [1], {"a": 1}, None],
    "choice": ["nonexistent", "", 1, True, ["seesaw"], {"type": 1}, None],
    "object": ["x", "", [1], 1, True, None],
    "list": ["x", 1, 2.5, True, {"a": 1}, None],
}


def _wrong_values(kind):
    base, _, nullable = kind.partition("|")
    return [value for value in _WRONG[base] if not (nullable and value is None)]


def _set(section, path, value):
    node = section
    *parents, leaf = path.split(".")
    for name in parents:
        node = node[name]
    node[leaf] = value


def _example_with(path):
    for example in VALID:
        node = example
        for name in path.split("."):
            if not isinstance(node, dict) or name not in node:
                break
            node = node[name]
        else:
            return example
    raise AssertionError(f"no section in VALID holds seesaw.{path}: add one")


CASES = [(path, value) for path, kind in sorted(KEY_TYPES.items())
         for value in _wrong_values(kind)]


@pytest.mark.parametrize("path, value", CASES,
                         ids=[f"{path}={value!r}"[:60] for path, value in CASES])
def test_every_key_refuses_a_wrong_type_by_name(path, value):
    section = copy.deepcopy(_example_with(path))
    _set(section, path, value)
    with pytest.raises(SeesawConfigError) as error:
        parse_seesaw_section(section)
    assert_one_clear_error(error, f"seesaw.{path}")


@pytest.mark.parametrize("example", VALID, ids=lambda e: e.get("batch_schedule", "default"))
def test_the_valid_sections_parse(example):
    parse_seesaw_section(copy.deepcopy(example))


def test_the_schema_holds_every_key_the_parser_accepts():
    accepted = set(section_module._ALL_KEYS)
    accepted |= {f"lr_schedule.{key}" for key in section_module._LR_COMMON_KEYS.union(
        *section_module._LR_KEYS.values())}
    accepted |= {f"cbs_guard.{key}" for key in section_module._CBS_GUARD_KEYS}
    accepted |= {f"adaptive.{key}" for key in section_module._ADAPTIVE_KEYS}
    assert set(KEY_TYPES) == accepted
    for path in KEY_TYPES:
        _example_with(path)


@pytest.mark.parametrize("text", ["false", "no", "off", "0"])
def test_a_guard_disabled_as_text_is_refused_not_enabled(text):
    with pytest.raises(SeesawConfigError) as error:
        parse_seesaw_section({"total_tokens": 1e9, "seq_length": 512,
                              "cbs_guard": {"enabled": text}})
    assert_one_clear_error(error, "seesaw.cbs_guard.enabled", "true or false")


def test_booleans_keep_their_meaning():
    base = {"total_tokens": 1e9, "seq_length": 512}
    assert not parse_seesaw_section(dict(base, cbs_guard={"enabled": False})).cbs_guard.enabled
    assert parse_seesaw_section(dict(base, cbs_guard={"enabled": True})).cbs_guard.enabled
    assert parse_seesaw_section(dict(base, cbs_guard={"action": "warn"})).cbs_guard.enabled
    assert not parse_seesaw_section(dict(base, cbs_guard={})).cbs_guard.enabled
    assert parse_seesaw_section(dict(base, seq_length=512.0)).seq_length == 512
