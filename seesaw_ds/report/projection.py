"""The wall-clock projection of a laid-out plan as a text table.

The layout and the time come from :mod:`seesaw_ds.layout` (pure); this module only formats
a :class:`~seesaw_ds.layout.WallClockPlan`: one row per phase (tokens, batch, ranks,
micro-batch, GAS, step seconds, phase hours) and the totals against the constant-batch
baseline laid out by the same rules; above it, the comparisons side by side (Seesaw and
cosine on the same fixed allocation first: the headline; then both on the largest
allocation allowed, and the growing chain with its relaunch cost), time and GPU-hours.
"""

from __future__ import annotations

import json
from typing import List

from seesaw_ds.layout import WallClockPlan
from seesaw_ds.report.table import format_tokens

__all__ = ["format_wallclock_table", "format_comparisons"]


def _rows_to_text(header, rows) -> List[str]:
    widths = [max(len(header[i]), *(len(row[i]) for row in rows)) for i in range(len(header))]
    lines = ["  ".join(cell.rjust(width) for cell, width in zip(header, widths))]
    lines.append("  ".join("-" * width for width in widths))
    lines += ["  ".join(cell.rjust(width) for cell, width in zip(row, widths)) for row in rows]
    return lines


def format_comparisons(data: dict) -> List[str]:
    """The side-by-side rows of ``WallClockPlan.to_dict()['comparisons']``."""
    header = ("run", "ranks used", "jobs", "hours", "GPU-hours")
    rows = []
    for row in data["comparisons"]:
        used = (f"{row['start_ranks']}" if row["start_ranks"] == row["max_ranks"]
                else f"{row['start_ranks']} -> {row['max_ranks']}")
        jobs = str(row["jobs"]) + (f" (+{row['relaunch_seconds']:g} s each)"
                                   if row["jobs"] > 1 else "")
        rows.append((row["label"], used, jobs, f"{row['seconds'] / 3600:.3f}",
                     f"{row['gpu_hours']:.2f}"))
    lines = _rows_to_text(header, rows)
    lines.append(
        f"headline (same fixed allocation, {data['ranks']} ranks): Seesaw / cosine time "
        f"{data['equal_resource_time_ratio']:.3f}")
    lines.append("(ranks used: a fixed layout uses the largest rank count <= the allocation "
                 "that divides the initial batch and fits the per-rank micro-batches)")
    return lines


def format_wallclock_table(projection: WallClockPlan) -> str:
    """Comparisons, then the phase table with ranks, layout and time of the chosen layout;
    totals and the ratio to the baseline."""
    data = projection.to_dict()
    header = ("phase", "start", "end", "batch", "ranks", "micro", "GAS", "lr start", "steps",
              "step s", "hours")
    rows = []
    for index, phase in enumerate(data["phases"]):
        rows.append((
            str(index), format_tokens(phase["start_tokens"]), format_tokens(phase["end_tokens"]),
            str(phase["global_batch"]), str(phase["ranks"]), str(phase["micro_batch"]),
            str(phase["grad_accum"]), f"{phase['lr_start']:.3e}", str(phase["steps"]),
            f"{phase['step_seconds']:.4f}", f"{phase['seconds'] / 3600:.3f}",
        ))
    lines = format_comparisons(data) + ["", "chosen layout:"] + _rows_to_text(header, rows)
    base = data["baseline"]
    ranks = f"{data['ranks']} ranks" + (
        f", growing to <= {data['max_ranks']}" if data["max_ranks"] else "")
    rounding = (f"batches rounded to multiples of {data['batch_multiple']} (train with "
                f"seesaw.batch_multiple = {data['batch_multiple']})")
    if data["batch_multiple_stages"]:
        rounding = (f"batches rounded to multiples of each job's rank count (train with "
                    f"seesaw.batch_multiple = {data['batch_multiple']} and "
                    f"seesaw.batch_multiple_stages = "
                    f"{json.dumps(data['batch_multiple_stages'])}; launch/grow_chain.py "
                    "writes this config)")
    relaunch = (f"; {data['relaunch_seconds']:g} s counted per relaunch"
                if data["relaunch_seconds"] else "; relaunch time not counted")
    lines += [
        "",
        f"layout: {ranks}; {rounding}; "
        f"{len(data['stages'])} jobs: " + ", ".join(
            f"{stage['ranks']} ranks from {format_tokens(stage['start_tokens'])}"
            for stage in data["stages"]) + relaunch,
        f"baseline (constant batch {data['initial_batch']}): {base['ranks']} ranks x micro "
        f"{base['micro_batch']} x GAS {base['grad_accum']}, {base['step_seconds']:.4f} s/step, "
        f"{base['steps']} steps",
        f"projected: {data['projected_seconds'] / 3600:.3f} h ({data['optimizer_steps']} steps, "
        f"{data['gpu_hours']:.2f} GPU-h) vs baseline "
        f"{data['baseline_projected_seconds'] / 3600:.3f} h ({data['baseline_gpu_hours']:.2f} "
        f"GPU-h) -> time ratio {data['time_ratio']:.3f}",
    ]
    return "\n".join(lines)
