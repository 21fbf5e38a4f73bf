"""Throughput of one worker: the measured (or published) pieces of an optimizer step.

A throughput file is JSON with these fields (others may follow and are kept):

- ``micro_batch_seconds``: ``{"<micro-batch size>": seconds}``, forward + backward of one
  micro-batch on one rank; the largest size listed is the largest micro-batch allowed
  (memory), sizes in between are interpolated linearly,
- ``optimizer_seconds``: one optimizer step on one rank,
- ``allreduce_latency_seconds`` and ``allreduce_bytes_per_second``: the alpha-beta cost of
  one ring hop,
- ``gradient_bytes``: bytes all-reduced per optimizer step.

``seesaw-ds calibrate`` measures such a file; a hand-written one (a GPU's published
figures) works the same way.

Note:
    A ring all-reduce over ``r`` ranks costs ``2 (r - 1) alpha + 2 (r - 1) / r * bytes /
    bandwidth``; a step costs ``GAS * t(micro) + allreduce(r) + optimizer``.

Limitations:
    No overlap of the all-reduce with backward, no pipeline or tensor parallelism; one
    worker's figures stand for every worker.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Tuple

from seesaw_ds.errors import SeesawConfigError

__all__ = ["Throughput", "load_throughput", "throughput_from_dict", "REQUIRED_FIELDS"]

REQUIRED_FIELDS = ("micro_batch_seconds", "optimizer_seconds", "allreduce_latency_seconds",
                   "allreduce_bytes_per_second", "gradient_bytes")


@dataclass(frozen=True)
class Throughput:
    """Step-time pieces of one worker (see the module docstring)."""

    micro_batch_seconds: Tuple[Tuple[int, float], ...]
    optimizer_seconds: float
    allreduce_latency_seconds: float
    allreduce_bytes_per_second: float
    gradient_bytes: int
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
        if ranks <= 1:
            return 0.0
        hops = 2 * (ranks - 1)
        return hops * self.allreduce_latency_seconds + (
            hops / ranks * self.gradient_bytes / self.allreduce_bytes_per_second)

    def step_seconds(self, micro: int, grad_accum: int, ranks: int) -> float:
        """One optimizer step: ``grad_accum`` micro-batches, one all-reduce, one update."""
        return (grad_accum * self.micro_seconds(micro) + self.allreduce_seconds(ranks)
                + self.optimizer_seconds)

    def to_dict(self) -> Dict[str, Any]:
        data = dict(self.extra)
        data.update({
            "micro_batch_seconds": {str(size): seconds
                                    for size, seconds in self.micro_batch_seconds},
            "optimizer_seconds": self.optimizer_seconds,
            "allreduce_latency_seconds": self.allreduce_latency_seconds,
            "allreduce_bytes_per_second": self.allreduce_bytes_per_second,
            "gradient_bytes": self.gradient_bytes,
        })
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
    if missing:
        raise SeesawConfigError(
            f"{source} lacks {missing}: a throughput file needs {list(REQUIRED_FIELDS)} "
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
    extra = {key: value for key, value in data.items() if key not in REQUIRED_FIELDS}
    gradient_bytes = _number(f"{source}: gradient_bytes", data["gradient_bytes"], 0.0, False)
    return Throughput(
        micro_batch_seconds=tuple(points),
        optimizer_seconds=_number(f"{source}: optimizer_seconds", data["optimizer_seconds"],
                                  0.0, False),
        allreduce_latency_seconds=_number(f"{source}: allreduce_latency_seconds",
                                          data["allreduce_latency_seconds"], 0.0, False),
        allreduce_bytes_per_second=_number(f"{source}: allreduce_bytes_per_second",
                                           data["allreduce_bytes_per_second"], 0.0, True),
        gradient_bytes=int(gradient_bytes),
        extra=extra,
    )


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
