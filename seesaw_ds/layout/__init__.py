"""Layouts and wall-clock: throughput files, and the fastest ranks x micro x GAS per phase.

Pure Python like ``seesaw_ds.schedules`` (no torch import); measuring a throughput file is
``seesaw_ds.calibrate``'s job.
"""

from seesaw_ds.layout.choose import (
    Layout,
    DEFAULT_RELAUNCH_SECONDS,
    LayoutSearch,
    PhaseLayout,
    Projection,
    WallClockPlan,
    best_layout,
    project_wallclock,
)
from seesaw_ds.layout.throughput import (
    REQUIRED_FIELDS,
    Throughput,
    load_throughput,
    throughput_from_dict,
    zero_of_config,
)
from seesaw_ds.layout.network import Link, Network, network_from_dict

__all__ = [
    "Layout", "LayoutSearch", "PhaseLayout", "Projection", "WallClockPlan", "best_layout",
    "project_wallclock", "REQUIRED_FIELDS", "Throughput", "load_throughput",
    "throughput_from_dict", "zero_of_config", "DEFAULT_RELAUNCH_SECONDS", "Link", "Network",
    "network_from_dict",
]
