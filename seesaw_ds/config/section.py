"""The ``seesaw`` section of a DeepSpeed JSON config, parsed into typed objects.

Nothing is stated twice: the initial global batch is the config's ``train_batch_size`` and
the peak LR is the optimizer's ``lr``. The section holds the clock (``total_tokens``,
``seq_length``), the batch schedule and its options, and the base LR schedule as a nested
``lr_schedule`` object. Unknown keys are errors with a did-you-mean suggestion.

Example::

    "seesaw": {
      "total_tokens": 3.3e9, "seq_length": 1024,
      "batch_schedule": "seesaw", "batch_growth": 1.1,
      "lr_schedule": {"type": "cosine", "warmup_fraction": 0.1,
                      "warmup_start_factor": 0.1, "final_factor": 0.1}
    }
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Tuple

from seesaw_ds.config.typed import (
    boolean, choice, close_match, key_name, number, token_count, whole)
from seesaw_ds.errors import SeesawConfigError
from seesaw_ds.schedules.batch_schedules import LR_SCALINGS
from seesaw_ds.schedules.lr_schedules import WSD_TAILS
from seesaw_ds.schedules.multiples import check_no_online_decisions, parse_multiple_stages
from seesaw_ds.schedules.optimizer_scaling import OptimizerScaling
from seesaw_ds.schedules import (
    BATCH_SCHEDULES,
    GROWTH_POLICIES,
    LR_SCHEDULES,
    BatchSchedule,
    LRSchedule,
    Plan,
)

__all__ = ["SeesawSection", "CBSGuardSettings", "parse_seesaw_section", "parse_token_count",
           "KEY_TYPES"]

#: Every key of the section (dotted below ``seesaw``) and its JSON type: ``bool`` (only
#: true/false), ``int`` (a whole number), ``number``, ``tokens`` (a number or "3.3B"),
#: ``choice`` (one of a few strings), ``object``, ``list``; ``|null`` where null means "not
#: set". Each is checked with the helpers of :mod:`seesaw_ds.config.typed`;
#: ``tests/config/test_config_types.py`` feeds every key values of the wrong types.
KEY_TYPES: Dict[str, str] = {
    "total_tokens": "tokens", "seq_length": "int", "batch_schedule": "choice",
    "lr_schedule": "object", "min_lr": "number", "batch_multiple": "int|null",
    "batch_multiple_stages": "list|null", "growth_policy": "choice",
    "max_micro_batch": "int|null", "cbs_guard": "object", "data_seed": "int",
    "keep_weight_decay_timescale": "bool", "keep_beta2_half_life": "bool",
    "save_interval_tokens": "tokens|null", "eval_interval_tokens": "tokens|null",
    # batch-schedule options
    "batch_growth": "number", "lr_cut": "number", "max_batch": "int|null", "strict": "bool",
    "adaptive": "object", "final_batch": "int", "batch_increment": "int",
    "ramp_tokens": "tokens", "lr_scaling": "choice", "batch_steps": "list",
    "switch_fraction": "number", "switch_batch": "int",
    # lr_schedule
    "lr_schedule.type": "choice", "lr_schedule.warmup_tokens": "tokens",
    "lr_schedule.warmup_fraction": "number", "lr_schedule.warmup_start_factor": "number",
    "lr_schedule.final_factor": "number", "lr_schedule.decay_tokens": "tokens",
    "lr_schedule.decay_fraction": "number", "lr_schedule.tail": "choice",
    "lr_schedule.milestones": "list", "lr_schedule.milestone_fractions": "list",
    "lr_schedule.gamma": "number", "lr_schedule.timescale_tokens": "tokens",
    # cbs_guard and adaptive
    "cbs_guard.enabled": "bool", "cbs_guard.ema_decay": "number",
    "cbs_guard.safety_factor": "number", "cbs_guard.min_samples": "int",
    "cbs_guard.action": "choice",
    "adaptive.safety_factor": "number", "adaptive.lr_ceiling": "number",
    "adaptive.ema_decay": "number", "adaptive.min_samples": "int",
    "adaptive.confidence": "number|null", "adaptive.probe_samples": "int|null",
}

_SCHEDULE_KEYS = {
    "seesaw": {"batch_growth", "lr_cut", "max_batch", "strict"},
    "adaptive": {"batch_growth", "lr_cut", "max_batch", "strict", "adaptive"},
    "constant": set(),
    "linear_ramp": {"final_batch", "batch_increment", "ramp_tokens", "lr_scaling"},
    "step": {"batch_steps", "lr_scaling"},
    "late_switch": {"switch_fraction", "switch_batch", "lr_scaling"},
}
_COMMON_KEYS = {
    "total_tokens", "seq_length", "batch_schedule", "lr_schedule", "min_lr",
    "batch_multiple", "batch_multiple_stages", "growth_policy", "max_micro_batch",
    "cbs_guard", "data_seed", "keep_weight_decay_timescale", "keep_beta2_half_life",
    # read by the Megatron-LM adapter (save/eval spacing in tokens), not part of the plan
    "save_interval_tokens", "eval_interval_tokens",
}
_ALL_KEYS = _COMMON_KEYS.union(*_SCHEDULE_KEYS.values())

_LR_COMMON_KEYS = {"type", "warmup_tokens", "warmup_fraction", "warmup_start_factor"}
_LR_KEYS = {
    "constant": set(),
    "cosine": {"final_factor"},
    "linear": {"final_factor"},
    "wsd": {"final_factor", "decay_tokens", "decay_fraction", "tail"},
    "step": {"milestones", "milestone_fractions", "gamma"},
    "inverse_sqrt": {"timescale_tokens"},
}
_CBS_GUARD_KEYS = {"enabled", "ema_decay", "safety_factor", "min_samples", "action"}
_ADAPTIVE_KEYS = {"safety_factor", "lr_ceiling", "ema_decay", "min_samples", "confidence",
                  "probe_samples"}


def parse_token_count(field: str, value: Any) -> float:
    """A token count from a number or a string like ``"3.3B"`` / ``"250M"``."""
    return token_count(field, value)


def _reject_unknown(section: str, given: Mapping[str, Any], allowed: set, hint: str) -> None:
    for key in given:
        if key not in allowed:
            raise SeesawConfigError(
                f"{section}.{key_name(key)} is not a known key{hint}."
                f"{close_match(key, sorted(allowed))} Known keys: {sorted(allowed)}."
            )


def _number(field: str, value: Any, kind=float, minimum: Optional[float] = None):
    """``number`` or (``kind=int``) ``whole`` of :mod:`seesaw_ds.config.typed`."""
    if kind is int:
        return whole(field, value, None if minimum is None else int(minimum))
    return number(field, value, minimum)


@dataclass(frozen=True)
class CBSGuardSettings:
    """Options of the online critical-batch-size guard (see ``seesaw_ds.cbs``)."""

    enabled: bool = False
    ema_decay: float = 0.95
    safety_factor: float = 1.0
    min_samples: int = 5
    action: str = "hold"


@dataclass(frozen=True)
class SeesawSection:
    """The parsed ``seesaw`` section."""

    total_tokens: float
    seq_length: int
    lr_schedule: Dict[str, Any]
    batch_schedule_name: str
    batch_options: Dict[str, Any]
    min_lr: float = 0.0
    batch_multiple: Optional[int] = None
    batch_multiple_stages: Optional[Tuple[Dict[str, Any], ...]] = None
    growth_policy: str = "accumulation"
    max_micro_batch: Optional[int] = None
    data_seed: int = 1234
    cbs_guard: CBSGuardSettings = CBSGuardSettings()
    optimizer_scaling: OptimizerScaling = OptimizerScaling()

    def build_lr_schedule(self) -> LRSchedule:
        return _build_lr_schedule(self.lr_schedule, self.total_tokens)

    def build_batch_schedule(self) -> BatchSchedule:
        return BATCH_SCHEDULES[self.batch_schedule_name](**self.batch_options)

    def build_plan(self, peak_lr: float, initial_batch: int, micro_batch: int,
                   dp_size: int) -> Plan:
        """The plan of this section for a run's peak LR, initial batch and rank layout."""
        return Plan(
            base=self.build_lr_schedule(),
            batch_schedule=self.build_batch_schedule(),
            peak_lr=peak_lr,
            initial_batch=initial_batch,
            seq_length=self.seq_length,
            micro_batch=micro_batch,
            dp_size=dp_size,
            batch_multiple=self.batch_multiple,
            multiple_stages=self.batch_multiple_stages,
            optimizer_scaling=self.optimizer_scaling,
            min_lr=self.min_lr,
            growth_policy=self.growth_policy,
            max_micro_batch=self.max_micro_batch,
        )


def parse_seesaw_section(section: Any) -> SeesawSection:
    """Validate a ``seesaw`` mapping and return typed settings; raises SeesawConfigError."""
    if not isinstance(section, Mapping):
        raise SeesawConfigError(
            f"seesaw must be an object (a JSON mapping), got {type(section).__name__}."
        )
    _reject_unknown("seesaw", section, _ALL_KEYS, "")
    for required in ("total_tokens", "seq_length"):
        if required not in section:
            raise SeesawConfigError(
                f"seesaw.{required} is missing: the schedule's clock is tokens, so give "
                "both seesaw.total_tokens (e.g. 3.3e9) and seesaw.seq_length (e.g. 1024)."
            )
    total_tokens = parse_token_count("seesaw.total_tokens", section["total_tokens"])
    for key in ("save_interval_tokens", "eval_interval_tokens"):  # read by the Megatron adapter
        if section.get(key) is not None:
            parse_token_count(f"seesaw.{key}", section[key])
    seq_length = _number("seesaw.seq_length", section["seq_length"], int, 1)
    name = choice("seesaw.batch_schedule", section.get("batch_schedule", "seesaw"),
                  sorted(BATCH_SCHEDULES))
    for key in section:
        owners = [owner for owner, keys in _SCHEDULE_KEYS.items() if key in keys]
        if owners and name not in owners:
            raise SeesawConfigError(
                f"seesaw.{key} applies to batch_schedule {' or '.join(map(repr, owners))}, "
                f"not {name!r}: remove it or change seesaw.batch_schedule."
            )
    options = {key: section[key] for key in _SCHEDULE_KEYS[name] if key in section}
    options = _typed_batch_options(name, options, total_tokens)
    growth_policy = choice("seesaw.growth_policy", section.get("growth_policy", "accumulation"),
                           GROWTH_POLICIES)
    if growth_policy == "micro_batch_first" and section.get("max_micro_batch") is None:
        raise SeesawConfigError(
            "seesaw.growth_policy = 'micro_batch_first' needs seesaw.max_micro_batch (the "
            "largest micro-batch per GPU that fits in memory): add it, or use growth_policy "
            "'accumulation'.")
    lr_schedule = section.get("lr_schedule", {"type": "constant"})
    parsed = SeesawSection(
        total_tokens=total_tokens,
        seq_length=seq_length,
        lr_schedule=dict(lr_schedule) if isinstance(lr_schedule, Mapping) else lr_schedule,
        batch_schedule_name=name,
        batch_options=options,
        min_lr=_number("seesaw.min_lr", section.get("min_lr", 0.0), float, 0.0),
        batch_multiple=_optional_int(section, "batch_multiple"),
        growth_policy=growth_policy,
        max_micro_batch=_optional_int(section, "max_micro_batch"),
        data_seed=_number("seesaw.data_seed", section.get("data_seed", 1234), int, 0),
        cbs_guard=_parse_cbs_guard(section.get("cbs_guard", {})),
        optimizer_scaling=OptimizerScaling(
            keep_weight_decay_timescale=_flag(section, "keep_weight_decay_timescale"),
            keep_beta2_half_life=_flag(section, "keep_beta2_half_life")),
    )
    if section.get("batch_multiple_stages") is not None:
        parsed = dataclasses.replace(parsed, batch_multiple_stages=_multiple_stages(
            section["batch_multiple_stages"], parsed))
    parsed.build_lr_schedule()  # validate now, before any expensive work
    parsed.build_batch_schedule()
    return parsed


def _multiple_stages(value: Any, parsed: SeesawSection) -> Tuple[Dict[str, Any], ...]:
    """``seesaw.batch_multiple_stages`` checked now (order, numbers), before any work."""
    stages = parse_multiple_stages(value, 1, parsed.total_tokens)[1:]
    check_no_online_decisions(
        True, parsed.cbs_guard.enabled or parsed.batch_schedule_name == "adaptive")
    return tuple({"from_tokens": start, "multiple": multiple} for start, multiple in stages)


def _flag(section: Mapping[str, Any], key: str) -> bool:
    return boolean(f"seesaw.{key}", section.get(key, False))


def _optional_int(section: Mapping[str, Any], key: str) -> Optional[int]:
    value = section.get(key)
    return None if value is None else _number(f"seesaw.{key}", value, int, 1)


def _typed_batch_options(name: str, options: Dict[str, Any], total_tokens: float) -> Dict:
    typed: Dict[str, Any] = {}
    for key, value in options.items():
        field = f"seesaw.{key}"
        if key in ("batch_growth", "lr_cut", "switch_fraction"):
            typed[key] = _number(field, value)
        elif key == "max_batch":  # null: no cap
            typed[key] = None if value is None else _number(field, value, int, 1)
        elif key in ("final_batch", "batch_increment", "switch_batch"):
            typed[key] = _number(field, value, int, 1)
        elif key == "ramp_tokens":
            typed[key] = parse_token_count(field, value)
        elif key == "strict":
            typed[key] = boolean(field, value)
        elif key == "lr_scaling":
            typed[key] = choice(field, value, LR_SCALINGS)
        elif key == "batch_steps":
            typed[key] = _parse_batch_steps(value)
        elif key == "adaptive":
            typed.update(_parse_adaptive(value))
    if name == "linear_ramp":
        for key in ("final_batch", "batch_increment", "ramp_tokens"):
            if key not in typed:
                raise SeesawConfigError(
                    f"seesaw.{key} is missing: batch_schedule 'linear_ramp' needs "
                    "final_batch, batch_increment and ramp_tokens."
                )
    if name == "late_switch" and "switch_batch" not in typed:
        raise SeesawConfigError(
            "seesaw.switch_batch is missing: batch_schedule 'late_switch' needs the batch "
            "to switch to (and optionally switch_fraction, default 0.7)."
        )
    if name == "step" and "batch_steps" not in typed:
        raise SeesawConfigError(
            "seesaw.batch_steps is missing: batch_schedule 'step' needs "
            "[[start_tokens, global_batch], ...]."
        )
    return typed


def _parse_batch_steps(value: Any):
    if not isinstance(value, (list, tuple)) or not all(
        isinstance(item, (list, tuple)) and len(item) == 2 for item in value
    ):
        raise SeesawConfigError(
            f"seesaw.batch_steps = {value!r} must be a list of [start_tokens, global_batch] "
            "pairs."
        )
    return tuple(
        (
            0.0 if _is_zero(item[0]) else parse_token_count(f"seesaw.batch_steps[{i}]", item[0]),
            _number(f"seesaw.batch_steps[{i}] batch", item[1], int, 1),
        )
        for i, item in enumerate(value)
    )


def _parse_adaptive(value: Any) -> Dict[str, Any]:
    if not isinstance(value, Mapping):
        raise SeesawConfigError(
            "seesaw.adaptive must be an object, e.g. {\"safety_factor\": 0.5}.")
    _reject_unknown("seesaw.adaptive", value, _ADAPTIVE_KEYS, "")
    kinds = {key: KEY_TYPES[f"adaptive.{key}"] for key in value}  # "int", "number|null", ...
    return {key: None if item is None and kinds[key].endswith("|null") else
            _number(f"seesaw.adaptive.{key}", item,
                    int if kinds[key].startswith("int") else float)
            for key, item in value.items()}


def _parse_cbs_guard(value: Any) -> CBSGuardSettings:
    if not isinstance(value, Mapping):
        raise SeesawConfigError("seesaw.cbs_guard must be an object, e.g. {\"enabled\": true}.")
    _reject_unknown("seesaw.cbs_guard", value, _CBS_GUARD_KEYS, "")
    action = choice("seesaw.cbs_guard.action", value.get("action", "hold"), ("hold", "warn"),
                    " ('hold' stops growing the batch and puts the decay into the LR; 'warn' "
                    "only reports)")
    decay = _number("seesaw.cbs_guard.ema_decay", value.get("ema_decay", 0.95))
    if not 0.0 <= decay < 1.0:
        raise SeesawConfigError(f"seesaw.cbs_guard.ema_decay = {decay} must lie in [0, 1).")
    return CBSGuardSettings(
        enabled=boolean("seesaw.cbs_guard.enabled", value.get("enabled", bool(value))),
        ema_decay=decay,
        safety_factor=_number(
            "seesaw.cbs_guard.safety_factor", value.get("safety_factor", 1.0), float, 0.0
        ),
        min_samples=_number("seesaw.cbs_guard.min_samples", value.get("min_samples", 5), int, 1),
        action=action,
    )


def _build_lr_schedule(spec: Any, total_tokens: float) -> LRSchedule:
    if not isinstance(spec, Mapping):
        raise SeesawConfigError(
            "seesaw.lr_schedule must be an object such as {\"type\": \"cosine\", "
            "\"warmup_fraction\": 0.1, \"final_factor\": 0.1}."
        )
    kind = choice("seesaw.lr_schedule.type", spec.get("type"), sorted(LR_SCHEDULES))
    allowed = _LR_COMMON_KEYS | _LR_KEYS[kind]
    _reject_unknown("seesaw.lr_schedule", spec, allowed, f" for type {kind!r}")
    args: Dict[str, Any] = {"total_tokens": total_tokens}
    args["warmup_tokens"] = _tokens_or_fraction(spec, "warmup", total_tokens, default=0.0)
    if "warmup_start_factor" in spec:
        args["warmup_start_factor"] = _number(
            "seesaw.lr_schedule.warmup_start_factor", spec["warmup_start_factor"]
        )
    if "final_factor" in spec:
        args["final_factor"] = _number("seesaw.lr_schedule.final_factor", spec["final_factor"])
    if kind == "wsd":
        args["decay_tokens"] = _tokens_or_fraction(spec, "decay", total_tokens, default=None)
        if "tail" in spec:
            args["tail"] = choice("seesaw.lr_schedule.tail", spec["tail"], WSD_TAILS)
    if kind == "step":
        args["milestones"] = _milestones(spec, total_tokens)
        if "gamma" in spec:
            args["gamma"] = _number("seesaw.lr_schedule.gamma", spec["gamma"])
    if kind == "inverse_sqrt" and "timescale_tokens" in spec:
        args["timescale_tokens"] = parse_token_count(
            "seesaw.lr_schedule.timescale_tokens", spec["timescale_tokens"]
        )
    return LR_SCHEDULES[kind](**args)


def _tokens_or_fraction(spec: Mapping, stem: str, total: float, default):
    tokens_key, fraction_key = f"{stem}_tokens", f"{stem}_fraction"
    if tokens_key in spec and fraction_key in spec:
        raise SeesawConfigError(
            f"seesaw.lr_schedule has both {tokens_key} and {fraction_key}: keep one."
        )
    if fraction_key in spec:
        fraction = _number(f"seesaw.lr_schedule.{fraction_key}", spec[fraction_key])
        if not 0.0 <= fraction < 1.0:
            raise SeesawConfigError(
                f"seesaw.lr_schedule.{fraction_key} = {fraction} must lie in [0, 1)."
            )
        return fraction * total
    if tokens_key in spec:
        if _is_zero(spec[tokens_key]):
            return 0.0
        return parse_token_count(f"seesaw.lr_schedule.{tokens_key}", spec[tokens_key])
    if default is None:
        raise SeesawConfigError(
            f"seesaw.lr_schedule needs {tokens_key} or {fraction_key} for type 'wsd'."
        )
    return default


def _is_zero(value: Any) -> bool:
    """0 or "0" (a token count that may be zero), never ``false``."""
    return not isinstance(value, bool) and isinstance(value, (int, float, str)) \
        and value in (0, "0")


def _milestones(spec: Mapping, total: float):
    if "milestones" in spec and "milestone_fractions" in spec:
        raise SeesawConfigError(
            "seesaw.lr_schedule has both milestones and milestone_fractions: keep one."
        )
    if "milestone_fractions" in spec:
        values = spec["milestone_fractions"]
        if not isinstance(values, (list, tuple)):
            raise SeesawConfigError("seesaw.lr_schedule.milestone_fractions must be a list.")
        return tuple(_number("seesaw.lr_schedule.milestone_fractions", v) * total for v in values)
    values = spec.get("milestones")
    if not isinstance(values, (list, tuple)) or not values:
        raise SeesawConfigError(
            "seesaw.lr_schedule.milestones must be a non-empty list of token counts for type "
            "'step' (or give milestone_fractions)."
        )
    return tuple(parse_token_count("seesaw.lr_schedule.milestones", v) for v in values)
