"""Throughput of one worker: the measured (or published) pieces of an optimizer step.

A throughput file is JSON with these fields (others may follow and are kept):

- ``micro_batch_seconds``: ``{"<micro-batch size>": seconds}``, forward + backward of one
  micro-batch on one rank; the largest size listed is the largest micro-batch allowed
  (memory), sizes in between are interpolated linearly,
- ``optimizer_seconds``: one optimizer step on one rank over the whole model (divided by
  the rank count under ZeRO >= 1),
- ``gradient_bytes``: bytes of the gradients reduced per step (``parameter_bytes``,
  optional, the parameters all-gathered under ZeRO; default: ``gradient_bytes``),
- the interconnect, either ``network`` (inside and across nodes, see
  :mod:`seesaw_ds.layout.network`) or the flat pair ``allreduce_latency_seconds`` and
  ``allreduce_bytes_per_second`` (one ring for every rank count: per-hop latency and bus
  bandwidth),
- optionally ``zero_stage`` (0-3) and ``overlap_comm``; ``seesaw-ds plan`` takes both from
  the DeepSpeed config instead.

``seesaw-ds calibrate`` measures such a file; a hand-written one (a GPU's published
figures) works the same way.

Note:
    A step costs ``GAS * t(micro)`` plus the ZeRO stage's communication and optimizer time
    (:func:`seesaw_ds.layout.network.zero_step_seconds`).

Limitations:
    No pipeline or tensor parallelism; one worker's figures stand for every worker.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field, replace
from typing import Any, Dict, Mapping, Optional, Tuple

from seesaw_ds.errors import SeesawConfigError
from seesaw_ds.layout.network import Link, Network, network_from_dict, zero_step_seconds

__all__ = ["Throughput", "load_throughput", "throughput_from_dict", "REQUIRED_FIELDS",
           "FLAT_NETWORK_FIELDS", "zero_of_config"]

REQUIRED_FIELDS = ("micro_batch_seconds", "optimizer_seconds", "gradient_bytes")
FLAT_NETWORK_FIELDS = ("allreduce_latency_seconds", "allreduce_bytes_per_second")
_MODEL_FIELDS = REQUIRED_FIELDS + FLAT_NETWORK_FIELDS + (
    "network", "parameter_bytes", "zero_stage", "overlap_comm")


@dataclass(frozen=True)
class Throughput:
    """Step-time pieces of one worker (see the module docstring)."""

    micro_batch_seconds: Tuple[Tuple[int, float], ...]
    optimizer_seconds: float
    network: Network
    gradient_bytes: int
    parameter_bytes: Optional[int] = None
    zero_stage: int = 0
    overlap_comm: bool = False
    extra: Dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def max_micro_batch(self) -> int:
        return self.micro_batch_seconds[-1][0]

    def micro_seconds(self, micro: int) -> float:
        """Forward + backward seconds of ``micro`` sequences, 1 <= micro <= the largest
        size listed: measured where listed, linear between (and below the smallest, along
        the first two points, or proportional with one point)."""
        if not 1 <= micro <= self.max_micro_batch:
            raise ValueError(f"micro-batch {micro} outside 1..{self.max_micro_batch}")
        points = self.micro_batch_seconds
        for size, seconds in points:
            if size == micro:
                return seconds
        if len(points) == 1:
            return points[0][1] * micro / points[0][0]
        for (low, t_low), (high, t_high) in zip(points, points[1:]):
            if low < micro < high:
                return t_low + (t_high - t_low) * (micro - low) / (high - low)
        (low, t_low), (high, t_high) = points[0], points[1]  # below the smallest size
        return max(0.0, t_low + (t_high - t_low) * (micro - low) / (high - low))

    def allreduce_seconds(self, ranks: int) -> float:
        """One ring all-reduce of the gradients over ``ranks``."""
        return self.network.all_reduce(ranks, self.gradient_bytes)

    def step_seconds(self, micro: int, grad_accum: int, ranks: int) -> float:
        """One optimizer step: ``grad_accum`` micro-batches, the ZeRO stage's collectives,
        one (sharded under ZeRO >= 1) update."""
        micro_seconds = self.micro_seconds(micro)
        return grad_accum * micro_seconds + zero_step_seconds(
            self.network, ranks, grad_accum, micro_seconds, self.gradient_bytes,
            self.parameter_bytes or self.gradient_bytes, self.optimizer_seconds,
            self.zero_stage, self.overlap_comm)

    def with_zero(self, zero_stage: int, overlap_comm: bool = False) -> "Throughput":
        """The same worker under another ZeRO stage (from a DeepSpeed config)."""
        if zero_stage not in (0, 1, 2, 3):
            raise SeesawConfigError(
                f"zero_optimization.stage = {zero_stage!r} must be 0, 1, 2 or 3.")
        return replace(self, zero_stage=zero_stage, overlap_comm=bool(overlap_comm))

    def to_dict(self) -> Dict[str, Any]:
        data = dict(self.extra)
        data.update({
            "micro_batch_seconds": {str(size): seconds
                                    for size, seconds in self.micro_batch_seconds},
            "optimizer_seconds": self.optimizer_seconds,
            "network": self.network.to_dict(),
            "gradient_bytes": self.gradient_bytes,
            "zero_stage": self.zero_stage,
            "overlap_comm": self.overlap_comm,
        })
        if self.parameter_bytes is not None:
            data["parameter_bytes"] = self.parameter_bytes
        return data


def _number(where: str, value: Any, minimum: float, strict: bool) -> float:
    ok = (not isinstance(value, bool) and isinstance(value, (int, float))
          and math.isfinite(value) and (value > minimum if strict else value >= minimum))
    if not ok:
        bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
        raise SeesawConfigError(f"{where} = {value!r} must be a number {bound}.")
    return float(value)


def throughput_from_dict(data: Mapping[str, Any], source: str = "throughput") -> Throughput:
    """Validate a throughput mapping; one :class:`SeesawConfigError` naming the field."""
    if not isinstance(data, Mapping):
        raise SeesawConfigError(f"{source} must hold a JSON object with {list(REQUIRED_FIELDS)}.")
    missing = [name for name in REQUIRED_FIELDS if name not in data]
    if "network" not in data:
        missing += [name for name in FLAT_NETWORK_FIELDS if name not in data]
    if missing:
        raise SeesawConfigError(
            f"{source} lacks {missing}: a throughput file needs {list(REQUIRED_FIELDS)} and "
            f"either network or {list(FLAT_NETWORK_FIELDS)} "
            "(write one with `seesaw-ds calibrate`, or by hand)."
        )
    micro = data["micro_batch_seconds"]
    if not isinstance(micro, Mapping) or not micro:
        raise SeesawConfigError(
            f"{source}: micro_batch_seconds must be a non-empty object like "
            '{"1": 0.01, "8": 0.05} (micro-batch size -> seconds of forward+backward).'
        )
    points = []
    for key, seconds in micro.items():
        try:
            size = int(key)
        except (TypeError, ValueError):
            size = 0
        if size < 1 or str(size) != str(key).strip():
            raise SeesawConfigError(
                f"{source}: micro_batch_seconds key {key!r} must be a positive whole number "
                "(the micro-batch size, as a string)."
            )
        points.append((size, _number(f"{source}: micro_batch_seconds[{key!r}]", seconds,
                                     0.0, True)))
    points.sort()
    extra = {key: value for key, value in data.items() if key not in _MODEL_FIELDS}
    gradient_bytes = _number(f"{source}: gradient_bytes", data["gradient_bytes"], 0.0, False)
    if "network" in data:
        network = network_from_dict(data["network"], f"{source}: network")
    else:
        network = Network(Link(
            _number(f"{source}: allreduce_bytes_per_second",
                    data["allreduce_bytes_per_second"], 0.0, True),
            _number(f"{source}: allreduce_latency_seconds",
                    data["allreduce_latency_seconds"], 0.0, False)))
    parameter_bytes = data.get("parameter_bytes")
    if parameter_bytes is not None:
        parameter_bytes = int(_number(f"{source}: parameter_bytes", parameter_bytes, 0.0, False))
    stage = data.get("zero_stage", 0)
    if stage not in (0, 1, 2, 3) or isinstance(stage, bool):
        raise SeesawConfigError(f"{source}: zero_stage = {stage!r} must be 0, 1, 2 or 3.")
    overlap = data.get("overlap_comm", False)
    if not isinstance(overlap, bool):
        raise SeesawConfigError(f"{source}: overlap_comm = {overlap!r} must be true or false.")
    return Throughput(
        micro_batch_seconds=tuple(points),
        optimizer_seconds=_number(f"{source}: optimizer_seconds", data["optimizer_seconds"],
                                  0.0, False),
        network=network,
        gradient_bytes=int(gradient_bytes),
        parameter_bytes=parameter_bytes,
        zero_stage=stage,
        overlap_comm=overlap,
        extra=extra,
    )


def zero_of_config(throughput: Throughput, ds_config: Mapping[str, Any]) -> Throughput:
    """``throughput`` under the DeepSpeed config's ``zero_optimization`` stage and
    ``overlap_comm`` (DeepSpeed's defaults: stage 0; overlap off below stage 3)."""
    zero = ds_config.get("zero_optimization") or {}
    if not isinstance(zero, Mapping):
        raise SeesawConfigError("zero_optimization must be an object like {\"stage\": 1}.")
    stage = zero.get("stage", 0)
    overlap = zero.get("overlap_comm", stage == 3)
    return throughput.with_zero(stage, bool(overlap))


def load_throughput(path: str) -> Throughput:
    """Read and validate a throughput JSON file."""
    try:
        with open(os.fspath(path), encoding="utf-8") as handle:
            data = json.load(handle)
    except OSError as error:
        raise SeesawConfigError(f"cannot read throughput file {path}: {error.strerror}.") from None
    except json.JSONDecodeError as error:
        raise SeesawConfigError(
            f"throughput file {path} is not valid JSON at line {error.lineno}, column "
            f"{error.colno}: {error.msg}."
        ) from None
    return throughput_from_dict(data, f"throughput file {path}")
