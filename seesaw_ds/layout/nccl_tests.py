"""Read nccl-tests' ``all_reduce_perf`` output into a ring (latency per hop, bus bandwidth).

nccl-tests (github.com/NVIDIA/nccl-tests) prints one ``#  Rank  N Group ... on HOST device``
line per rank and one row per message size (``size count type redop root time algbw busbw
#wrong`` out-of-place, then in-place; time in microseconds). This reads the ranks, their
hosts (one host: inside a node; several: across nodes) and the out-of-place times, and fits
:func:`seesaw_ds.layout.network.fit_ring`.

    seesaw-ds calibrate ... --nccl-tests one_node.txt two_nodes.txt
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict

from seesaw_ds.errors import SeesawConfigError
from seesaw_ds.layout.network import fit_ring

__all__ = ["NcclTestsResult", "parse_all_reduce_perf"]

_RANK = re.compile(r"^#\s*Rank\s+(\d+)\s.*?\bon\s+(\S+)\s+device", re.MULTILINE)


@dataclass(frozen=True)
class NcclTestsResult:
    ranks: int
    nodes: int
    times: Dict[int, float]  # bytes -> seconds (out-of-place)
    latency_seconds: float  # per ring hop, fitted
    bus_bytes_per_second: float  # fitted
    reported_peak_busbw: float  # the largest busbw nccl-tests printed (bytes/s)

    @property
    def gpus_per_node(self) -> int:
        return self.ranks // self.nodes


def parse_all_reduce_perf(text: str, source: str = "nccl-tests output") -> NcclTestsResult:
    """Parse ``all_reduce_perf`` stdout; one :class:`SeesawConfigError` if it is not one."""
    hosts = {int(rank): host for rank, host in _RANK.findall(text)}
    if not hosts:
        raise SeesawConfigError(
            f"{source}: no '#  Rank N Group G Pid P on HOST device D' lines: pass the whole "
            "stdout of nccl-tests' all_reduce_perf.")
    columns = None
    times: Dict[int, float] = {}
    peak = 0.0
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            tokens = stripped.lstrip("#").split()
            if tokens[:2] == ["size", "count"] and "time" in tokens:
                columns = {"time": tokens.index("time"), "busbw": tokens.index("busbw")}
            continue
        tokens = stripped.split()
        if not tokens or not tokens[0].isdigit() or columns is None:
            continue
        try:
            size = int(tokens[0])
            micro_seconds = float(tokens[columns["time"]])
            busbw = float(tokens[columns["busbw"]])
        except (ValueError, IndexError):
            continue
        if size > 0 and micro_seconds > 0:
            times[size] = micro_seconds * 1e-6
            peak = max(peak, busbw * 1e9)
    if len(times) < 2:
        raise SeesawConfigError(f"{source}: fewer than two size rows under the 'size count "
                                "type redop root time algbw busbw' header.")
    ranks = len(hosts)
    latency, bandwidth = fit_ring(times, ranks)
    return NcclTestsResult(ranks, len(set(hosts.values())), times, latency, bandwidth, peak)
