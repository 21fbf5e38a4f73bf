"""The ``seesaw`` section: typed parsing, token strings, and one clear error per mistake."""

import copy

import pytest
from error_assertions import assert_one_clear_error

from seesaw_ds.config import parse_seesaw_section, parse_token_count
from seesaw_ds.errors import SeesawConfigError
from seesaw_ds.schedules import (
    WSDLR,
    ConstantLR,
    CosineLR,
    InverseSqrtLR,
    LateSwitchBatch,
    LinearLR,
    LinearRampBatch,
    SeesawBatch,
    StepBatch,
    StepDecayLR,
)

PAPER = {
    "total_tokens": "3.3B",
    "seq_length": 1024,
    "batch_schedule": "seesaw",
    "batch_growth": 1.1,
    "lr_schedule": {"type": "cosine", "warmup_fraction": 0.1, "warmup_start_factor": 0.1,
                    "final_factor": 0.1},
}


def _with(**changes):
    section = copy.deepcopy(PAPER)
    for key, value in changes.items():
        if value is _DROP:
            section.pop(key, None)
        else:
            section[key] = value
    return section


def _with_lr(**changes):
    section = copy.deepcopy(PAPER)
    for key, value in changes.items():
        if value is _DROP:
            section["lr_schedule"].pop(key, None)
        else:
            section["lr_schedule"][key] = value
    return section


_DROP = object()




# ---- happy paths ------------------------------------------------------------------------------


def test_the_paper_section():
    section = parse_seesaw_section(PAPER)
    assert section.total_tokens == 3.3e9
    assert section.seq_length == 1024
    assert section.batch_schedule_name == "seesaw"
    assert section.batch_options == {"batch_growth": 1.1}
    assert section.build_batch_schedule() == SeesawBatch(batch_growth=1.1)
    base = section.build_lr_schedule()
    assert isinstance(base, CosineLR)
    assert base.total_tokens == 3.3e9
    assert base.warmup_tokens == pytest.approx(3.3e8)
    assert (base.warmup_start_factor, base.final_factor) == (0.1, 0.1)
    assert section.min_lr == 0.0 and section.batch_multiple is None
    assert section.growth_policy == "accumulation"
    assert not section.cbs_guard.enabled


def test_defaults_seesaw_and_a_constant_lr():
    section = parse_seesaw_section({"total_tokens": 1e6, "seq_length": 128})
    assert section.build_batch_schedule() == SeesawBatch()
    assert section.build_lr_schedule() == ConstantLR(total_tokens=1e6)


@pytest.mark.parametrize("text, value", [
    ("3.3B", 3.3e9), ("250M", 2.5e8), ("250m", 2.5e8), ("1.5K", 1500.0), ("2T", 2e12),
    ("7G", 7e9), (" 4B ", 4e9), ("1e9", 1e9), ("3.3e9", 3.3e9), (1000, 1000.0),
    (2.5e6, 2.5e6),
])
def test_token_counts(text, value):
    assert parse_token_count("seesaw.total_tokens", text) == pytest.approx(value, rel=1e-15)


@pytest.mark.parametrize("bad", ["abc", "", "B", "3.3X", "nan", "inf", True, None, [1], 0,
                                 -5, "-1M", "0B"])
def test_bad_token_counts_name_the_field(bad):
    with pytest.raises(SeesawConfigError) as error:
        parse_token_count("seesaw.total_tokens", bad)
    assert_one_clear_error(error, "seesaw.total_tokens")


@pytest.mark.parametrize("spec, expected", [
    ({"type": "constant", "warmup_tokens": "10M"}, ConstantLR(total_tokens=1e9,
                                                              warmup_tokens=1e7)),
    ({"type": "cosine", "final_factor": 0.0}, CosineLR(total_tokens=1e9)),
    ({"type": "linear", "warmup_tokens": 0, "final_factor": 0.1},
     LinearLR(total_tokens=1e9, final_factor=0.1)),
    ({"type": "wsd", "decay_fraction": 0.2, "tail": "1-sqrt"},
     WSDLR(total_tokens=1e9, decay_tokens=2e8, tail="1-sqrt")),
    ({"type": "wsd", "decay_tokens": "100M", "warmup_tokens": "1M"},
     WSDLR(total_tokens=1e9, warmup_tokens=1e6, decay_tokens=1e8)),
    ({"type": "step", "milestones": ["300M", 6e8], "gamma": 0.5},
     StepDecayLR(total_tokens=1e9, milestones=(3e8, 6e8), gamma=0.5)),
    ({"type": "step", "milestone_fractions": [0.5, 0.75]},
     StepDecayLR(total_tokens=1e9, milestones=(5e8, 7.5e8))),
    ({"type": "inverse_sqrt", "timescale_tokens": "5M"},
     InverseSqrtLR(total_tokens=1e9, timescale_tokens=5e6)),
])
def test_every_lr_schedule_type(spec, expected):
    section = parse_seesaw_section({"total_tokens": "1B", "seq_length": 64, "lr_schedule": spec})
    assert section.build_lr_schedule() == expected


@pytest.mark.parametrize("options, expected", [
    ({"batch_schedule": "constant"}, None),
    ({"batch_schedule": "seesaw", "batch_growth": 2, "lr_cut": 2.0, "max_batch": 1024,
      "strict": True}, SeesawBatch(batch_growth=2, lr_cut=2.0, max_batch=1024, strict=True)),
    ({"batch_schedule": "linear_ramp", "final_batch": 512, "batch_increment": 64,
      "ramp_tokens": "100M", "lr_scaling": "sqrt"},
     LinearRampBatch(final_batch=512, batch_increment=64, ramp_tokens=1e8, lr_scaling="sqrt")),
    ({"batch_schedule": "step", "batch_steps": [["0", 128], ["200M", 256], [5e8, 512]]},
     StepBatch(batch_steps=((0.0, 128), (2e8, 256), (5e8, 512)))),
    ({"batch_schedule": "late_switch", "switch_batch": 512, "switch_fraction": 0.75},
     LateSwitchBatch(switch_fraction=0.75, switch_batch=512)),
])
def test_every_batch_schedule(options, expected):
    section = parse_seesaw_section({"total_tokens": "1B", "seq_length": 64, **options})
    built = section.build_batch_schedule()
    assert built.type_name == options["batch_schedule"]
    if expected is not None:
        assert built == expected


def test_common_options():
    section = parse_seesaw_section(_with(min_lr=1e-5, batch_multiple=16,
                                         growth_policy="micro_batch_first", max_micro_batch=8,
                                         data_seed=7, cbs_guard={"action": "warn"}))
    assert (section.min_lr, section.batch_multiple, section.growth_policy,
            section.max_micro_batch, section.data_seed) == (1e-5, 16, "micro_batch_first", 8, 7)
    assert section.cbs_guard.enabled and section.cbs_guard.action == "warn"


# ---- every bad input: one SeesawConfigError naming the field ---------------------------------

BAD_SECTIONS = [
    ("growth 1", _with(batch_growth=1.0), ["seesaw.batch_growth"]),
    ("growth below 1", _with(batch_growth=0.9), ["seesaw.batch_growth"]),
    ("growth string", _with(batch_growth="1.1"), ["seesaw.batch_growth"]),
    ("total 0", _with(total_tokens=0), ["seesaw.total_tokens"]),
    ("total negative", _with(total_tokens=-3.3e9), ["seesaw.total_tokens"]),
    ("total missing", _with(total_tokens=_DROP), ["seesaw.total_tokens", "missing"]),
    ("seq missing", _with(seq_length=_DROP), ["seesaw.seq_length", "missing"]),
    ("seq zero", _with(seq_length=0), ["seesaw.seq_length"]),
    ("seq fractional", _with(seq_length=1024.5), ["seesaw.seq_length"]),
    ("warmup longer than training", _with_lr(warmup_fraction=_DROP, warmup_tokens="4B"),
     ["warmup"]),
    ("warmup fraction 1", _with_lr(warmup_fraction=1.0), ["warmup_fraction"]),
    ("warmup both ways", _with_lr(warmup_tokens="1M"), ["warmup_tokens", "warmup_fraction"]),
    ("floor above peak", _with_lr(final_factor=1.5), ["final_factor"]),
    ("start above peak", _with_lr(warmup_start_factor=1.2), ["warmup_start_factor"]),
    ("unknown batch schedule", _with(batch_schedule="seasaw"),
     ["seesaw.batch_schedule", "Did you mean 'seesaw'"]),
    ("unknown lr schedule", _with_lr(type="cosin"),
     ["seesaw.lr_schedule.type", "Did you mean 'cosine'"]),
    ("missing lr type", _with_lr(type=_DROP), ["seesaw.lr_schedule.type"]),
    ("misspelled key", _with(batch_grwth=1.1), ["seesaw.batch_grwth",
                                                 "Did you mean 'batch_growth'"]),
    ("misspelled lr key", _with_lr(final_facter=0.1),
     ["seesaw.lr_schedule.final_facter", "Did you mean 'final_factor'"]),
    ("key of another type", _with_lr(gamma=0.5), ["seesaw.lr_schedule.gamma"]),
    ("key of another schedule", _with(final_batch=512), ["seesaw.final_batch", "linear_ramp"]),
    ("lr_cut below 1", _with(lr_cut=0.5), ["seesaw.lr_cut"]),
    ("strict not bool", _with(strict="yes"), ["seesaw.strict"]),
    ("unstable and strict", _with(batch_growth=4, lr_cut=1.0, strict=True), ["seesaw.lr_cut"]),
    ("max_batch zero", _with(max_batch=0), ["seesaw.max_batch"]),
    ("min_lr negative", _with(min_lr=-1e-5), ["seesaw.min_lr"]),
    ("growth policy", _with(growth_policy="greedy"), ["seesaw.growth_policy"]),
    ("batch_multiple zero", _with(batch_multiple=0), ["seesaw.batch_multiple"]),
    ("lr_schedule not a mapping", _with(lr_schedule="cosine"), ["seesaw.lr_schedule"]),
    ("wsd without decay", _with(lr_schedule={"type": "wsd"}), ["decay_tokens"]),
    ("step without milestones", _with(lr_schedule={"type": "step"}), ["milestones"]),
    ("ramp incomplete", _with(batch_schedule="linear_ramp", batch_growth=_DROP,
                              final_batch=512), ["seesaw.batch_increment", "missing"]),
    ("late switch incomplete", _with(batch_schedule="late_switch", batch_growth=_DROP),
     ["seesaw.switch_batch"]),
    ("step without steps", _with(batch_schedule="step", batch_growth=_DROP),
     ["seesaw.batch_steps"]),
    ("bad batch steps", _with(batch_schedule="step", batch_growth=_DROP,
                              batch_steps=[[0, 128, 3]]), ["seesaw.batch_steps"]),
    ("cbs guard key", _with(cbs_guard={"enabeld": True}), ["seesaw.cbs_guard.enabeld",
                                                            "Did you mean 'enabled'"]),
    ("cbs guard action", _with(cbs_guard={"action": "shrink"}), ["seesaw.cbs_guard.action"]),
]


@pytest.mark.parametrize("section, fragments", [(s, f) for _, s, f in BAD_SECTIONS],
                         ids=[name for name, _, _ in BAD_SECTIONS])
def test_bad_sections_raise_one_error_naming_the_field(section, fragments):
    with pytest.raises(SeesawConfigError) as error:
        parse_seesaw_section(section)
    assert_one_clear_error(error, *fragments)


def test_section_must_be_a_mapping():
    with pytest.raises(SeesawConfigError, match="seesaw must be an object"):
        parse_seesaw_section([("total_tokens", 1)])
