"""The interconnect: ring collectives inside a node and across nodes, and ZeRO's pattern.

A throughput file's optional ``network`` object::

    "network": {
      "gpus_per_node": 8,
      "intra_node": {"bus_bytes_per_second": 3.7e11, "latency_seconds": 1e-5},
      "inter_node": {"nic_bytes_per_second": 4.7e10, "nics_per_node": 8,
                     "latency_seconds": 2e-5}
    }

``bus_bytes_per_second`` is nccl-tests' *bus bandwidth* (busbw) of a ring all-reduce; across
nodes it is ``nic_bytes_per_second x nics_per_node`` (NCCL runs one ring per NIC; each byte
leaving a node crosses one NIC), or a measured ``bus_bytes_per_second``, and never more than
inside a node. A file without ``network`` (the flat format: ``allreduce_latency_seconds``,
``allreduce_bytes_per_second``) is one network for every rank count.

Ring costs over ``r`` ranks of ``n`` bytes with bus bandwidth ``bw`` and per-hop latency
``a`` (nccl-tests' definitions): all-reduce ``2 (r-1)/r n / bw + 2 (r-1) a``; reduce-scatter
and all-gather ``(r-1)/r n / bw + (r-1) a`` each (``n`` the full tensor).

ZeRO (DeepSpeed's ``runtime/zero/stage_1_and_2.py`` and ``engine.allreduce_gradients``):

- stage 0: one all-reduce of the gradients per optimizer step (at the accumulation
  boundary), the optimizer step unsharded;
- stage 1: gradients reduced to their owners once per step, at the boundary
  (``reduce_gradients``), then the updated parameters all-gathered; optimizer step on
  ``1/r`` of the state;
- stage 2: gradients reduced on **every micro-batch** (``partition_gradients``: the backward
  hooks call ``reduce_ready_partitions_and_remove_grads`` whatever the boundary), the
  parameters all-gathered once per step, optimizer on ``1/r``;
- stage 3: per micro-batch, the parameters all-gathered in forward and again in backward and
  the gradients reduce-scattered; optimizer on ``1/r``.

With ``overlap_comm`` a reduction that runs during backward hides behind it: its exposed
time is ``max(0, t - backward)``, backward taken as 2/3 of forward+backward (stage 3's
forward all-gather hides behind the forward third). Stage 1 overlaps only the boundary
micro-batch's backward.

Limitations:
    Rings only (no tree or NVLS algorithms, no SHARP); latency of a multi-node ring counts
    every hop at the inter-node latency; one rank per GPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional

from seesaw_ds.errors import SeesawConfigError

__all__ = ["Link", "Network", "network_from_dict", "zero_step_seconds", "fit_ring",
           "BACKWARD_SHARE"]

BACKWARD_SHARE = 2.0 / 3.0  # backward's share of forward + backward


@dataclass(frozen=True)
class Link:
    """Ring bus bandwidth (bytes/s) and per-hop latency (s) of one level."""

    bus_bytes_per_second: float
    latency_seconds: float


@dataclass(frozen=True)
class Network:
    """Inside a node up to ``gpus_per_node`` ranks, across nodes above (None: one level)."""

    intra: Link
    inter: Optional[Link] = None
    gpus_per_node: Optional[int] = None

    def link(self, ranks: int) -> Link:
        if self.inter is None or self.gpus_per_node is None or ranks <= self.gpus_per_node:
            return self.intra
        return self.inter

    def all_reduce(self, ranks: int, nbytes: float) -> float:
        return 2 * self._half(ranks, nbytes)

    def reduce_scatter(self, ranks: int, nbytes: float) -> float:
        return self._half(ranks, nbytes)

    all_gather = reduce_scatter

    def _half(self, ranks: int, nbytes: float) -> float:
        if ranks <= 1:
            return 0.0
        link = self.link(ranks)
        return ((ranks - 1) / ranks * nbytes / link.bus_bytes_per_second
                + (ranks - 1) * link.latency_seconds)

    def to_dict(self) -> Dict[str, Any]:
        data: Dict[str, Any] = {"intra_node": {
            "bus_bytes_per_second": self.intra.bus_bytes_per_second,
            "latency_seconds": self.intra.latency_seconds}}
        if self.inter is not None:
            data["gpus_per_node"] = self.gpus_per_node
            data["inter_node"] = {"bus_bytes_per_second": self.inter.bus_bytes_per_second,
                                  "latency_seconds": self.inter.latency_seconds}
        return data


def _positive(where: str, value: Any, strict: bool = True) -> float:
    ok = (not isinstance(value, bool) and isinstance(value, (int, float))
          and math.isfinite(value) and (value > 0 if strict else value >= 0))
    if not ok:
        bound = ">" if strict else ">="
        raise SeesawConfigError(f"{where} = {value!r} must be a number {bound} 0.")
    return float(value)


def _link(data: Any, where: str) -> Link:
    if not isinstance(data, Mapping):
        raise SeesawConfigError(f"{where} must be an object with bus_bytes_per_second (or "
                                "nic_bytes_per_second and nics_per_node) and latency_seconds.")
    if "bus_bytes_per_second" in data:
        bandwidth = _positive(f"{where}.bus_bytes_per_second", data["bus_bytes_per_second"])
    elif "nic_bytes_per_second" in data and "nics_per_node" in data:
        nics = data["nics_per_node"]
        if isinstance(nics, bool) or not isinstance(nics, int) or nics < 1:
            raise SeesawConfigError(
                f"{where}.nics_per_node = {nics!r} must be a whole number >= 1.")
        bandwidth = _positive(f"{where}.nic_bytes_per_second", data["nic_bytes_per_second"]) * nics
    else:
        raise SeesawConfigError(f"{where} needs bus_bytes_per_second, or nic_bytes_per_second "
                                "and nics_per_node.")
    return Link(bandwidth, _positive(f"{where}.latency_seconds",
                                     data.get("latency_seconds", 0.0), strict=False))


def network_from_dict(data: Any, where: str = "network") -> Network:
    """Validate a ``network`` object (see the module docstring); one error naming the field."""
    if not isinstance(data, Mapping) or "intra_node" not in data:
        raise SeesawConfigError(f"{where} must be an object with intra_node (and optionally "
                                "inter_node with gpus_per_node).")
    intra = _link(data["intra_node"], f"{where}.intra_node")
    if "inter_node" not in data:
        return Network(intra)
    node = data.get("gpus_per_node")
    if isinstance(node, bool) or not isinstance(node, int) or node < 1:
        raise SeesawConfigError(f"{where}.gpus_per_node = {node!r} must be a whole number >= 1 "
                                "when inter_node is given.")
    inter = _link(data["inter_node"], f"{where}.inter_node")
    # a ring across nodes also runs its hops inside each node
    inter = Link(min(inter.bus_bytes_per_second, intra.bus_bytes_per_second),
                 max(inter.latency_seconds, intra.latency_seconds))
    return Network(intra, inter, node)


def zero_step_seconds(network: Network, ranks: int, grad_accum: int, micro_seconds: float,
                      gradient_bytes: float, parameter_bytes: float, optimizer_seconds: float,
                      zero_stage: int = 0, overlap_comm: bool = False) -> float:
    """Communication plus optimizer seconds of one step (see the module docstring)."""
    backward = BACKWARD_SHARE * micro_seconds if overlap_comm else 0.0
    forward = (1 - BACKWARD_SHARE) * micro_seconds if overlap_comm else 0.0

    def exposed(seconds: float, hidden_by: float) -> float:
        return max(0.0, seconds - hidden_by)

    reduce = network.reduce_scatter(ranks, gradient_bytes)
    gather = network.all_gather(ranks, parameter_bytes)
    if zero_stage == 0:
        return network.all_reduce(ranks, gradient_bytes) + optimizer_seconds
    sharded_optimizer = optimizer_seconds / max(ranks, 1)
    if zero_stage == 1:
        return exposed(reduce, backward) + gather + sharded_optimizer
    if zero_stage == 2:
        return grad_accum * exposed(reduce, backward) + gather + sharded_optimizer
    if zero_stage == 3:
        return grad_accum * (exposed(gather, forward) + exposed(gather + reduce, backward)) \
            + sharded_optimizer
    raise SeesawConfigError(f"zero_optimization.stage = {zero_stage!r} must be 0, 1, 2 or 3.")


def fit_ring(times: Mapping[float, float], ranks: int, collective: str = "all_reduce"):
    """Fit a ring's ``(latency per hop, bus bandwidth)`` to ``{bytes: seconds}`` measured on
    ``ranks`` ranks: ``t = k (r-1)/r n / bw + k (r-1) a`` with ``k = 2`` for an all-reduce
    (1 for a reduce-scatter or all-gather). Least squares on the relative error, so that
    small messages (latency) count as much as large ones (bandwidth)."""
    if ranks < 2:
        raise SeesawConfigError(f"a ring fit needs >= 2 ranks, got {ranks}.")
    points = [(float(n), float(t)) for n, t in sorted(times.items()) if t > 0]
    if len(points) < 2:
        raise SeesawConfigError("a ring fit needs timings at >= 2 message sizes.")
    # minimise sum(((c + s n) / t - 1)^2): normal equations in (c, s)
    a11 = sum(1 / t ** 2 for _, t in points)
    a12 = sum(n / t ** 2 for n, t in points)
    a22 = sum(n * n / t ** 2 for n, t in points)
    b1 = sum(1 / t for _, t in points)
    b2 = sum(n / t for n, t in points)
    det = a11 * a22 - a12 * a12
    intercept = (b1 * a22 - b2 * a12) / det
    slope = (a11 * b2 - a12 * b1) / det
    if slope <= 0:  # latency-bound everywhere: take the largest message's bandwidth
        n, t = points[-1]
        slope, intercept = t / n, 0.0
    k = 2 if collective == "all_reduce" else 1
    latency = max(intercept, 0.0) / (k * (ranks - 1))
    bandwidth = k * (ranks - 1) / ranks / slope
    return latency, bandwidth
