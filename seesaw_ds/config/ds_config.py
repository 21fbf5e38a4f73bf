"""Read a DeepSpeed config (JSON or YAML) that holds a ``seesaw`` section; build the plan.

The batch triple follows DeepSpeed's rules: ``train_batch_size`` =
``train_micro_batch_size_per_gpu`` x ``gradient_accumulation_steps`` x data-parallel size,
any two of them determine the third. The peak LR is ``optimizer.params.lr``; with a client
optimizer (an optimizer object passed to ``seesaw_ds.initialize``, no ``optimizer`` section)
it is that optimizer's ``param_groups[0]["lr"]`` (other groups keep their ratio to it), which
``seesaw-ds plan`` takes as ``--peak-lr``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Union

from seesaw_ds.config.section import SeesawSection, parse_seesaw_section
from seesaw_ds.config.typed import is_number
from seesaw_ds.errors import SeesawConfigError, text_number_hint
from seesaw_ds.schedules import Plan

__all__ = [
    "BatchTriple",
    "load_config_file",
    "resolve_batch_triple",
    "peak_lr_of",
    "seesaw_section_of",
    "plan_from_ds_config",
]

_TBS, _MICRO, _GAS = (
    "train_batch_size",
    "train_micro_batch_size_per_gpu",
    "gradient_accumulation_steps",
)


def load_config_file(path: Union[str, os.PathLike]) -> Dict[str, Any]:
    """Load a JSON (or YAML: ``.yaml``/``.yml``) config into a dict with one clear error."""
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as error:
        raise SeesawConfigError(f"cannot read config {path}: {error.strerror}.") from None
    except UnicodeDecodeError as error:
        raise SeesawConfigError(
            f"config {path} is not UTF-8 text (byte {error.start}): pass the JSON or YAML "
            "config file, not a binary one.") from None
    if path.endswith((".yaml", ".yml")):
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise SeesawConfigError(
                f"config {path} is not valid YAML{where}: fix the syntax there."
            ) from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise SeesawConfigError(
                f"config {path} is not valid JSON at line {error.lineno}, column "
                f"{error.colno}: {error.msg}."
            ) from None
    if not isinstance(data, dict):
        raise SeesawConfigError(f"config {path} must hold a mapping at the top level.")
    return data


@dataclass(frozen=True)
class BatchTriple:
    """The initial global batch and its per-rank layout."""

    train_batch_size: int
    micro_batch: int
    grad_accum: int
    dp_size: int


def _positive_int(config: Mapping[str, Any], key: str) -> Optional[int]:
    value = config.get(key)
    if value is None or value == "auto":
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise SeesawConfigError(
            f"{key} = {value!r} must be a positive integer.{text_number_hint(value)}"
        )
    return value


def resolve_batch_triple(config: Mapping[str, Any], dp_size: int) -> BatchTriple:
    """Complete DeepSpeed's batch triple for ``dp_size`` ranks, or say what is inconsistent."""
    total, micro, accum = (_positive_int(config, key) for key in (_TBS, _MICRO, _GAS))
    if total is None and micro is None:
        raise SeesawConfigError(
            f"{_TBS} is missing: Seesaw starts from the config's {_TBS} (the initial global "
            "batch in sequences)."
        )
    if total is not None and micro is not None and accum is not None:
        if total != micro * accum * dp_size:
            raise SeesawConfigError(
                f"{_TBS} = {total} != {_MICRO} x {_GAS} x data-parallel size = {micro} x "
                f"{accum} x {dp_size}: fix one of them (or drop {_GAS} to derive it)."
            )
    elif total is not None and micro is not None:
        if total % (micro * dp_size):
            raise SeesawConfigError(
                f"{_TBS} = {total} is not divisible by {_MICRO} x data-parallel size = "
                f"{micro} x {dp_size}: choose a multiple of {micro * dp_size}."
            )
        accum = total // (micro * dp_size)
    elif total is not None:
        accum = accum or 1
        if total % (accum * dp_size):
            raise SeesawConfigError(
                f"{_TBS} = {total} is not divisible by {_GAS} x data-parallel size = "
                f"{accum} x {dp_size}: set {_MICRO} explicitly."
            )
        micro = total // (accum * dp_size)
    else:
        accum = accum or 1
        total = micro * accum * dp_size
    return BatchTriple(total, micro, accum, dp_size)


def _staged_triple(config: Mapping[str, Any], dp_size: int,
                   section: SeesawSection) -> Optional[BatchTriple]:
    """A chain job whose rank count does not divide the initial batch (it runs a later stage
    of ``seesaw.batch_multiple_stages``): the plan still starts from ``train_batch_size``."""
    total, micro = (_positive_int(config, key) for key in (_TBS, _MICRO))
    if not section.batch_multiple_stages or total is None or micro is None \
            or total % (micro * dp_size) == 0:
        return None
    return BatchTriple(total, micro, 0, dp_size)


def peak_lr_of(config: Mapping[str, Any], fallback: Optional[float] = None) -> float:
    """The optimizer section's ``lr`` (the Seesaw peak LR)."""
    optimizer = config.get("optimizer")
    lr = None
    if isinstance(optimizer, Mapping) and isinstance(optimizer.get("params"), Mapping):
        lr = optimizer["params"].get("lr")
    if lr is None:
        lr = fallback
    if lr is None:
        raise SeesawConfigError(
            "optimizer.params.lr is missing: the peak LR of the plan is the optimizer's lr "
            "(add an \"optimizer\": {\"type\": \"AdamW\", \"params\": {\"lr\": ...}} section; "
            "with a client optimizer its param_groups[0] lr is the peak: seesaw-ds plan "
            "--peak-lr LR)."
        )
    if not is_number(lr) or lr <= 0:
        raise SeesawConfigError(
            f"optimizer.params.lr = {lr!r} must be a positive finite number."
            f"{text_number_hint(lr)}"
        )
    return float(lr)


def seesaw_section_of(config: Mapping[str, Any]) -> SeesawSection:
    """Parse the ``seesaw`` section, refusing a competing DeepSpeed ``scheduler``."""
    if "seesaw" not in config:
        raise SeesawConfigError(
            "the config has no \"seesaw\" section: add one (see README, 'Config schema')."
        )
    if config.get("scheduler"):
        raise SeesawConfigError(
            "the config has both a \"seesaw\" section and a \"scheduler\" section: Seesaw "
            "owns the LR, so remove \"scheduler\" (put its warmup/decay into "
            "seesaw.lr_schedule)."
        )
    return parse_seesaw_section(config["seesaw"])


def plan_from_ds_config(
    config: Mapping[str, Any],
    dp_size: int,
    peak_lr: Optional[float] = None,
    section: Optional[SeesawSection] = None,
) -> Plan:
    """The plan a run of this config on ``dp_size`` data-parallel ranks follows."""
    section = section or seesaw_section_of(config)
    triple = _staged_triple(config, dp_size, section) or resolve_batch_triple(config, dp_size)
    return section.build_plan(
        peak_lr=peak_lr_of(config, peak_lr) if peak_lr is None else peak_lr,
        initial_batch=triple.train_batch_size,
        micro_batch=triple.micro_batch,
        dp_size=dp_size,
    )
