"""Fuzz (hypothesis): any ``seesaw`` section, DeepSpeed config around it and run config is
either a valid plan / run config or one ``SeesawConfigError``; never another exception.

The strategies mix plausible values (the right type, a sensible range) with wild ones (any
JSON value: strings that look like numbers, huge integers, NaN, nested containers) for every
key of ``KEY_TYPES``, so most examples are near-valid and fail, if at all, on one key. The
run is bounded (``max_examples`` 200, derandomized: the same examples in every CI run);
``SEESAW_FUZZ_EXAMPLES=5000`` explores further locally.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import os
import re
import tempfile

import pytest

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seesaw_ds.cbs.probe import check_guard_supported
from seesaw_ds.cli.main import main as cli_main
from seesaw_ds.config import plan_from_ds_config
from seesaw_ds.config import section as section_module
from seesaw_ds.config.section import KEY_TYPES
from seesaw_ds.deepspeed_adapter.validation import validate_ds_config
from seesaw_ds.errors import SeesawConfigError
from seesaw_ds.run_config import parse_run_config

EXAMPLES = int(os.environ.get("SEESAW_FUZZ_EXAMPLES", "200"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))

# ---- values ---------------------------------------------------------------------------------

_scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(-3, 3), st.integers(-10 ** 6, 10 ** 6), st.sampled_from([10 ** 20, 10 ** 400]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["", "0", "1", "1e-3", "3.3B", "250M", "false", "true", "no", "nan",
                     "inf", "-1", "abc", "1.0e-3", "64"]),
    st.text(max_size=6),
)
WILD = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)),
    max_leaves=6)

_tokens = st.one_of(st.floats(1e3, 1e7), st.integers(1, 10 ** 7),
                    st.sampled_from(["1M", "2.5M", "500K", "0.01B", "1e6", "3M"]))
_PLAUSIBLE = {
    "bool": st.booleans(),
    "int": st.integers(1, 64),
    "number": st.one_of(st.floats(0.0, 4.0), st.integers(0, 3)),
    "tokens": _tokens,
    "list": st.lists(st.one_of(st.integers(0, 10 ** 6), st.lists(
        st.one_of(st.integers(0, 10 ** 6), _tokens), min_size=2, max_size=2)), max_size=3),
}
_CHOICES = {
    "batch_schedule": ["seesaw", "adaptive", "constant", "linear_ramp", "step",
                       "late_switch", "seasaw"],
    "growth_policy": ["accumulation", "micro_batch_first", "greedy"],
    "lr_scaling": ["none", "sqrt", "linear"],
    "lr_schedule.type": ["constant", "cosine", "linear", "wsd", "step", "inverse_sqrt",
                         "cosin"],
    "lr_schedule.tail": ["linear", "cosine", "1-sqrt", "exp"],
    "cbs_guard.action": ["hold", "warn", "shrink"],
}
_SPECIAL = {  # keys whose plausible values are more specific than their type
    "batch_growth": st.floats(1.0, 4.0), "lr_cut": st.floats(0.5, 4.0),
    "max_batch": st.one_of(st.none(), st.integers(1, 512)),
    "final_batch": st.integers(1, 256), "batch_increment": st.integers(1, 64),
    "switch_batch": st.integers(1, 256), "switch_fraction": st.floats(0.0, 1.0),
    "batch_multiple": st.one_of(st.none(), st.integers(1, 32)),
    "max_micro_batch": st.one_of(st.none(), st.integers(1, 32)),
    "seq_length": st.integers(1, 256), "data_seed": st.integers(0, 2 ** 31),
    "batch_steps": st.lists(st.tuples(st.one_of(st.just(0), _tokens), st.integers(1, 256))
                            .map(list), min_size=1, max_size=3),
    "batch_multiple_stages": st.one_of(st.none(), st.lists(st.fixed_dictionaries({
        "from_tokens": st.floats(1.0, 1e7), "multiple": st.integers(1, 16)}), max_size=2)),
    "lr_schedule.milestones": st.lists(_tokens, min_size=1, max_size=3),
    "lr_schedule.milestone_fractions": st.lists(st.floats(0.0, 1.0), min_size=1, max_size=3),
    "lr_schedule.warmup_fraction": st.floats(0.0, 1.0),
    "lr_schedule.decay_fraction": st.floats(0.0, 1.0),
    "cbs_guard.ema_decay": st.floats(0.0, 1.0), "adaptive.ema_decay": st.floats(0.0, 1.0),
    "cbs_guard.min_samples": st.integers(1, 10), "adaptive.min_samples": st.integers(1, 10),
    "lr_schedule.final_factor": st.floats(0.01, 1.0),
    "lr_schedule.warmup_start_factor": st.floats(0.0, 1.0),
    "lr_schedule.gamma": st.floats(0.05, 1.0), "min_lr": st.floats(0.0, 1e-4),
    "cbs_guard.safety_factor": st.floats(0.1, 4.0), "adaptive.safety_factor": st.floats(0.1, 4.0),
    "adaptive.lr_ceiling": st.floats(1.0, 4.0),
    "lr_schedule.warmup_tokens": st.one_of(st.just(0), _tokens),
}


def _plausible(path: str):
    kind = KEY_TYPES[path].partition("|")[0]
    if path in _SPECIAL:
        return _SPECIAL[path]
    if kind == "choice":
        return st.sampled_from(_CHOICES[path])
    if kind == "object":
        return _nested(f"{path}.")
    return _PLAUSIBLE[kind]


#: Values of a plausible type at the edges: huge, tiny, negative, zero, not finite.
EDGE = st.sampled_from([0, -1, 2 ** 53 + 1, 10 ** 30, 10 ** 400, 1e-300, 1e300, -0.0,
                        float("nan"), float("inf"), "1e400", "0"])


def _maybe_wild(draw, plausible):
    """Mostly ``plausible``; one draw in eight a wild JSON value, one in sixteen an edge."""
    roll = draw(st.integers(0, 15))
    return draw(WILD) if roll >= 14 else draw(EDGE) if roll == 13 else draw(plausible)


def _subset(draw, prefix: str, names, required=()):
    """A random subset of ``names`` (keys below ``prefix``), ``required`` usually in it."""
    chosen = draw(st.lists(st.sampled_from(sorted(names)), unique=True, max_size=4)) \
        if names else []
    for name in required:
        if name not in chosen and draw(st.integers(0, 15)) != 15:
            chosen.append(name)
    return [f"{prefix}{name}" for name in chosen]


@st.composite
def _nested(draw, prefix: str):
    """``lr_schedule``, ``cbs_guard`` or ``adaptive``: keys of the right owner mostly."""
    result = {}
    if prefix == "lr_schedule.":
        kind = _maybe_wild(draw, st.sampled_from(_CHOICES["lr_schedule.type"]))
        result["type"] = kind
        names = section_module._LR_COMMON_KEYS | section_module._LR_KEYS.get(
            kind if isinstance(kind, str) else "", set())
        names = names - {"type"}
    else:
        names = {path[len(prefix):] for path in KEY_TYPES if path.startswith(prefix)}
    if draw(st.integers(0, 9)) == 9:  # now and then any key of the schema
        names = {path[len(prefix):] for path in KEY_TYPES if path.startswith(prefix)} - {"type"}
    for path in _subset(draw, prefix, names):
        result[path[len(prefix):]] = _maybe_wild(draw, _plausible(path))
    return result


@st.composite
def sections(draw):
    """A ``seesaw`` section: a schedule, some of its keys and some common ones."""
    section = {}
    name = _maybe_wild(draw, st.sampled_from(_CHOICES["batch_schedule"]))
    if draw(st.integers(0, 4)) != 4:
        section["batch_schedule"] = name
    name = name if isinstance(name, str) else ""
    own = section_module._SCHEDULE_KEYS.get(name, set())
    if draw(st.integers(0, 9)) == 9:
        own = section_module._ALL_KEYS - section_module._COMMON_KEYS
    common = section_module._COMMON_KEYS - {"batch_schedule"}
    required = {"linear_ramp": ("final_batch", "batch_increment", "ramp_tokens"),
                "late_switch": ("switch_batch",), "step": ("batch_steps",)}.get(name, ())
    paths = _subset(draw, "", own, required) + _subset(
        draw, "", common, ("total_tokens", "seq_length", "lr_schedule"))
    for path in dict.fromkeys(paths):
        section[path] = _maybe_wild(draw, _plausible(path))
    if draw(st.integers(0, 19)) == 19:  # now and then an unknown key
        section[draw(st.text(min_size=1, max_size=8))] = draw(WILD)
    return section


@st.composite
def ds_configs(draw):
    config = {}
    for key, plausible, usually in (
            ("train_batch_size", st.sampled_from([1, 4, 8, 12, 16, 32, 64]), True),
            ("train_micro_batch_size_per_gpu", st.sampled_from([1, 2, 4]), True),
            ("gradient_accumulation_steps", st.integers(1, 4), False)):
        if draw(st.integers(0, 9)) < 8 if usually else draw(st.integers(0, 9)) > 6:
            config[key] = _maybe_wild(draw, plausible)
    if draw(st.integers(0, 19)) != 19:
        lr = _maybe_wild(draw, st.floats(1e-5, 1e-1))
        config["optimizer"] = {"type": "AdamW", "params": {"lr": lr, "torch_adam": True}}
    if draw(st.integers(0, 3)) == 3:
        config["zero_optimization"] = {"stage": _maybe_wild(draw, st.integers(0, 3))}
    if draw(st.integers(0, 19)) != 19:
        config["seesaw"] = _maybe_wild(draw, sections())
    return config


# ---- the properties -------------------------------------------------------------------------

def _plan_cli(config) -> None:
    """``seesaw-ds plan CONFIG --json``: rc 0 with a summary, or rc 2 with one error line."""
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "ds.json")
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(config, handle)
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli_main(["plan", path, "--json", "--dp-size", "1"])
    assert code in (0, 2), (code, err.getvalue())
    if code == 2:
        assert len(err.getvalue().strip().splitlines()) == 1, err.getvalue()
    else:
        json.loads(out.getvalue())


def _check(config, dp_size) -> None:
    """The plan path (``plan_from_ds_config``), the train path (validation, the guard check,
    the runnable check) and the ``plan`` command: a plan or one SeesawConfigError."""
    try:
        plan = plan_from_ds_config(config, dp_size)
    except SeesawConfigError:
        plan = None
    if plan is not None:  # a valid plan answers every question about itself
        assert plan.optimizer_steps >= 1
        for fraction in (0.0, 0.5, 0.999):
            setting = plan.at_tokens(fraction * plan.total_tokens)
            assert setting.global_batch >= 1 and setting.lr >= 0
    try:
        validated = validate_ds_config(config, dp_size, device="cpu")
        stage = config.get("zero_optimization", {}).get("stage", 0)
        check_guard_supported(validated.section, stage)
        validated.plan.check_runnable(0.0)
    except SeesawConfigError:
        pass
    _plan_cli(config)


@FUZZ
@given(config=ds_configs(), dp_size=st.integers(1, 4))
def test_any_config_gives_a_plan_or_one_config_error(config, dp_size):
    _check(config, dp_size)


#: Valid sections (every batch and LR schedule); the mutation test changes a few keys.
GOOD_SECTIONS = [
    {"total_tokens": 2e6, "seq_length": 64, "batch_growth": 2.0, "max_batch": 128,
     "lr_schedule": {"type": "cosine", "warmup_fraction": 0.1, "warmup_start_factor": 0.1,
                     "final_factor": 0.1},
     "cbs_guard": {"enabled": True, "ema_decay": 0.9, "min_samples": 3}},
    {"total_tokens": "2M", "seq_length": 64, "batch_schedule": "adaptive",
     "adaptive": {"safety_factor": 0.5, "lr_ceiling": 2.0},
     "lr_schedule": {"type": "wsd", "warmup_tokens": "100K", "decay_fraction": 0.2,
                     "tail": "1-sqrt"}},
    {"total_tokens": 2e6, "seq_length": 64, "batch_schedule": "linear_ramp",
     "final_batch": 64, "batch_increment": 16, "ramp_tokens": "500K", "lr_scaling": "sqrt",
     "lr_schedule": {"type": "step", "milestones": ["1M", 1.5e6], "gamma": 0.5}},
    {"total_tokens": 2e6, "seq_length": 64, "batch_schedule": "step",
     "batch_steps": [[0, 16], ["1M", 32]], "growth_policy": "micro_batch_first",
     "max_micro_batch": 8, "lr_schedule": {"type": "linear", "final_factor": 0.0}},
    {"total_tokens": 2e6, "seq_length": 64, "batch_schedule": "late_switch",
     "switch_batch": 64, "batch_multiple_stages": [{"from_tokens": 1e6, "multiple": 32}],
     "lr_schedule": {"type": "inverse_sqrt", "warmup_tokens": 0, "timescale_tokens": "200K"}},
    {"total_tokens": 2e6, "seq_length": 64, "batch_schedule": "constant", "data_seed": 3,
     "keep_weight_decay_timescale": True, "min_lr": 1e-5,
     "lr_schedule": {"type": "constant"}},
]
_DELETE = object()


@st.composite
def mutated_configs(draw):
    """A valid config with one to three keys of its section changed (a plausible value, a
    wild one, or deleted) and now and then its batch triple or LR."""
    section = copy.deepcopy(draw(st.sampled_from(GOOD_SECTIONS)))
    for path in draw(st.lists(st.sampled_from(sorted(KEY_TYPES)), min_size=1, max_size=3)):
        value = draw(st.one_of(_plausible(path), _plausible(path), WILD, EDGE,
                               st.just(_DELETE)))
        node, *parents = section, *path.split(".")[:-1]
        for name in parents:
            node = node.setdefault(name, {}) if isinstance(node, dict) else None
        if not isinstance(node, dict):
            continue
        leaf = path.split(".")[-1]
        if value is _DELETE:
            node.pop(leaf, None)
        else:
            node[leaf] = value
    config = {"train_batch_size": 16, "train_micro_batch_size_per_gpu": 2,
              "optimizer": {"type": "AdamW", "params": {"lr": 1e-3}}, "seesaw": section}
    if draw(st.integers(0, 4)) == 4:
        key = draw(st.sampled_from(["train_batch_size", "train_micro_batch_size_per_gpu",
                                    "gradient_accumulation_steps"]))
        config[key] = draw(st.one_of(st.integers(1, 64), WILD, EDGE))
    if draw(st.integers(0, 9)) == 9:
        config["optimizer"]["params"]["lr"] = draw(st.one_of(WILD, EDGE))
    return config


@FUZZ
@given(config=mutated_configs(), dp_size=st.integers(1, 4))
def test_a_config_with_a_few_keys_changed_gives_a_plan_or_one_config_error(config, dp_size):
    _check(config, dp_size)


_RUN_SECTIONS = {
    "model": {"shape": st.sampled_from(["tiny", "micro", "huge"]),
              "z_loss_coef": st.floats(0.0, 1e-3), "init_seed": st.integers(0, 9)},
    "data": {"prepared_dir": st.just("results/data/x"), "inputs": st.lists(st.just("*.txt")),
             "vocab_size": st.integers(1, 4096), "tokenizer_model": st.just("tok.model"),
             "text_field": st.just("text"), "max_bytes": st.integers(1, 10 ** 6),
             "split": st.sampled_from(["98,2,0", "80,20,0", "1"]),
             "encoding": st.sampled_from(["utf-8", "latin-1", "nope"]),
             "encoding_errors": st.sampled_from(["strict", "replace", "bogus"]),
             "doc_separator": st.sampled_from(["blank-line", "file", "\n\n"])},
    "eval": {"interval_tokens": _tokens, "batches": st.integers(1, 8),
             "batch_size": st.integers(1, 32)},
    "checkpoint": {"dir": st.just("ckpt"), "interval_tokens": _tokens},
}


@st.composite
def run_configs(draw):
    """Some sections with some of their keys, each value mostly plausible."""
    raw = {}
    for name, fields in _RUN_SECTIONS.items():
        if draw(st.booleans()):
            section = {}
            for key, plausible in fields.items():
                if draw(st.booleans()):
                    section[key] = _maybe_wild(draw, plausible)
            raw[name] = draw(WILD) if draw(st.integers(0, 15)) == 15 else section
    for key, plausible in (("output_dir", st.just("out")), ("seed", st.integers(0, 9)),
                           ("name", st.just("run"))):
        if draw(st.booleans()):
            raw[key] = _maybe_wild(draw, plausible)
    if draw(st.integers(0, 19)) == 19:
        raw[draw(st.text(min_size=1, max_size=8))] = draw(WILD)
    return draw(WILD) if draw(st.integers(0, 19)) == 19 else raw


@FUZZ
@given(raw=run_configs())
def test_any_run_config_parses_or_gives_one_config_error(raw):
    try:
        run = parse_run_config(raw)
    except SeesawConfigError:
        return
    # what the run hands to torch and the file system later is usable
    assert math.isfinite(run.model.z_loss_coef) and 0 <= run.seed < 2 ** 63
    assert run.model.init_seed is None or 0 <= run.model.init_seed < 2 ** 63
    paths = [run.output_dir, run.data.prepared_dir, run.checkpoint_dir,
             run.data.tokenizer_model or "", *(run.data.inputs or [])]
    assert not any("\x00" in path for path in paths)


# ---- what the fuzz found, kept as plain cases -------------------------------------------------

_GOOD = {"train_batch_size": 16, "train_micro_batch_size_per_gpu": 2,
         "optimizer": {"type": "AdamW", "params": {"lr": 1e-3}}, "seesaw": GOOD_SECTIONS[0]}


def _changed(section=None, **top):
    config = copy.deepcopy(_GOOD)
    config["seesaw"].update(section or {})
    config.update(top)
    return config


FOUND = {  # each raised something else than SeesawConfigError (or printed two lines)
    "a key with a line break": (_changed({"\r": 1}), "seesaw.'\\r'"),
    "a YAML number key": (_changed({1: 2}), "seesaw.1 is not a known key"),
    "a stage at 10**400 tokens": (
        _changed({"batch_multiple_stages": [{"from_tokens": 10 ** 400, "multiple": 2}],
                  "cbs_guard": {}}), "batch_multiple_stages[0].from_tokens"),
    "a stage multiple of 10**400": (
        _changed({"batch_multiple_stages": [[1e6, 10 ** 400]], "cbs_guard": {}}),
        "batch_multiple_stages[0].multiple"),
    "an lr of 10**400": (_changed(optimizer={"params": {"lr": 10 ** 400}}),
                         "optimizer.params.lr"),
    "a growth of 10**400": (_changed({"batch_growth": 10 ** 400}), "seesaw.batch_growth"),
    "a list as batch_schedule": (_changed({"batch_schedule": ["seesaw"]}),
                                 "seesaw.batch_schedule"),
    "a mapping as lr_schedule.type": (_changed({"lr_schedule": {"type": {"a": 1}}}),
                                      "seesaw.lr_schedule.type"),
    "a linear ramp without its final batch": (
        _changed({"batch_schedule": "linear_ramp", "batch_growth": None, "max_batch": None,
                  "cbs_guard": {}, "final_batch": None, "batch_increment": 16,
                  "ramp_tokens": "1M"}), "seesaw.final_batch"),
}


@pytest.mark.parametrize("name", list(FOUND))
def test_what_the_fuzz_found_is_one_config_error(name):
    config, needle = FOUND[name]
    config["seesaw"] = {key: value for key, value in config["seesaw"].items()
                        if value is not None or key == "final_batch"}
    with pytest.raises(SeesawConfigError, match=re.escape(needle)):
        plan_from_ds_config(config, 2)
    _plan_cli(config)


RUN_FOUND = {  # accepted before, failing later (torch.manual_seed, os.makedirs) or NaN loss
    "z_loss_coef NaN": ({"model": {"z_loss_coef": float("nan")}}, "model.z_loss_coef"),
    "z_loss_coef inf": ({"model": {"z_loss_coef": float("inf")}}, "model.z_loss_coef"),
    "seed 10**400": ({"seed": 10 ** 400}, "seed"),
    "seed 2**64": ({"seed": 2 ** 64}, "seed"),
    "init_seed -1": ({"model": {"init_seed": -1}}, "model.init_seed"),
    "NUL in output_dir": ({"output_dir": "out\x00put"}, "output_dir"),
    "NUL in prepared_dir": ({"data": {"prepared_dir": "d\x00"}}, "data.prepared_dir"),
    "NUL in an input": ({"data": {"inputs": ["a\x00.txt"]}}, "data.inputs"),
    "a key with a line break": ({"model": {"\n": 1}}, "model.'\\n'"),
}


@pytest.mark.parametrize("name", list(RUN_FOUND))
def test_what_the_fuzz_found_in_the_run_config_is_one_config_error(name):
    raw, needle = RUN_FOUND[name]
    with pytest.raises(SeesawConfigError, match=re.escape(needle)):
        parse_run_config(raw)
