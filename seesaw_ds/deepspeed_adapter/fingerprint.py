"""What a checkpoint must share with the config that resumes it: the run's fingerprint.

A run's fingerprint is a flat ``{field: value}`` map of everything that decides a step's LR,
its batch or the samples it reads: every field of the parsed ``seesaw`` section (LR
schedule, batch schedule and its options, ``min_lr``, ``data_seed``, ``seq_length``,
``cbs_guard``...), the peak LR (``optimizer.params.lr``), the initial global batch
(``train_batch_size``) and the plan's phases without their rank layout (start/end tokens,
global batch, LR at both ends). Values are canonical JSON, so the map is saved as is and
compared exactly.

Resuming compares the saved map with this run's and names the first field that differs
with both values. Fields that only change the layout on the ranks (micro-batch, GAS,
data-parallel size) are not part of it: a run may resume on another rank count as long
as the phases come out the same.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Dict, List, Mapping, Optional, Tuple

from seesaw_ds.schedules import Plan

__all__ = ["run_fingerprint", "fingerprint_differences", "config_field_name", "PHASES_FIELD"]

PHASES_FIELD = "plan.phases"
_LAYOUT_KEYS = ("micro_batch", "grad_accum", "steps")
# ``seesaw.adaptive``'s keys (config.section), flattened into the batch options when parsed
ADAPTIVE_OPTIONS = frozenset({"safety_factor", "lr_ceiling", "ema_decay", "min_samples",
                              "confidence", "probe_samples"})


def _plain(value: Any) -> Any:
    """JSON-ready copy: dataclasses become dicts, tuples lists, floats stay exact."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def _flatten(prefix: str, value: Any, out: Dict[str, Any]) -> None:
    if isinstance(value, dict) and value:
        for key in sorted(value):
            _flatten(f"{prefix}.{key}", value[key], out)
    else:
        out[prefix] = value


def _canonical(value: Any) -> Any:
    return json.loads(json.dumps(value, sort_keys=True))


def run_fingerprint(section: Any, plan: Plan) -> Dict[str, Any]:
    """The fingerprint of a run following ``plan``, built from its ``seesaw`` ``section``.

    The section's field names become ``seesaw.<field>`` (nested mappings dotted:
    ``seesaw.lr_schedule.final_factor``; ``batch_options`` entries appear under their
    config names, ``seesaw.batch_growth``).
    """
    out: Dict[str, Any] = {}
    fields = _plain(section)
    options = fields.pop("batch_options", {}) or {}
    if "batch_schedule_name" in fields:
        fields["batch_schedule"] = fields.pop("batch_schedule_name")
    fields.update(options)
    _flatten("seesaw", fields, out)
    out["optimizer.params.lr"] = plan.peak_lr
    out["train_batch_size"] = plan.initial_batch
    phases: List[Dict[str, Any]] = []
    for phase in plan.summary()["phases"]:
        phases.append({k: v for k, v in phase.items() if k not in _LAYOUT_KEYS})
    out[PHASES_FIELD] = phases
    return _canonical(out)


def fingerprint_differences(
    saved: Mapping[str, Any], now: Mapping[str, Any]
) -> List[Tuple[str, Optional[Any], Optional[Any]]]:
    """``(field, saved value, new value)`` for every field that differs, phases last."""
    saved, now = _canonical(dict(saved)), _canonical(dict(now))
    keys = sorted(set(saved) | set(now), key=lambda k: (k == PHASES_FIELD, k))
    return [(key, saved.get(key), now.get(key)) for key in keys if saved.get(key) != now.get(key)]


def config_field_name(field: str) -> str:
    """The config path of a fingerprint field, as the user writes it: the adaptive
    schedule's options (flattened into ``seesaw.<key>`` in the fingerprint, unchanged so
    saved fingerprints still compare) live under ``seesaw.adaptive.<key>``."""
    prefix, _, key = field.partition(".")
    if prefix == "seesaw" and key in ADAPTIVE_OPTIONS:
        return f"seesaw.adaptive.{key}"
    return field
