"""The plan as a text table, readable before any GPU hour is spent."""

from __future__ import annotations

from typing import List

from seesaw_ds.schedules import Plan

__all__ = ["format_plan_table", "format_tokens"]


def format_tokens(tokens: float) -> str:
    """3.3e9 -> '3.30B', 2.8e6 -> '2.80M'."""
    for scale, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(tokens) >= scale:
            return f"{tokens / scale:.2f}{suffix}"
    return f"{tokens:.0f}"


def format_plan_table(plan: Plan) -> str:
    """Phase table plus totals: steps vs the constant-batch baseline and the continuous bound."""
    summary = plan.summary()
    header = ("phase", "start", "end", "batch", "micro", "GAS", "lr start", "lr end", "steps")
    rows: List[tuple] = []
    for index, phase in enumerate(summary["phases"]):
        rows.append((
            str(index),
            format_tokens(phase["start_tokens"]),
            format_tokens(phase["end_tokens"]),
            str(phase["global_batch"]),
            str(phase["micro_batch"] or "-"),
            str(phase["grad_accum"] or "-"),
            f"{phase['lr_start']:.3e}",
            f"{phase['lr_end']:.3e}",
            str(phase["steps"]),
        ))
    widths = [max(len(header[i]), *(len(row[i]) for row in rows)) for i in range(len(header))]
    lines = ["  ".join(cell.rjust(width) for cell, width in zip(header, widths))]
    lines.append("  ".join("-" * width for width in widths))
    lines += ["  ".join(cell.rjust(width) for cell, width in zip(row, widths)) for row in rows]
    lines.append("")
    lines.append(
        f"schedule: {summary['batch_schedule']} over {summary['lr_schedule']} LR, "
        f"{format_tokens(summary['total_tokens'])} tokens, seq {summary['seq_length']}, "
        f"dp {summary['dp_size']}, batch multiple {summary['batch_multiple']}"
    )
    lines.append(
        f"optimizer steps: {summary['optimizer_steps']} vs {summary['baseline_optimizer_steps']}"
        f" at constant batch {summary['initial_batch']} -> ratio {summary['steps_ratio']:.3f}"
        f" (saving {100 * summary['step_saving']:.1f}%; continuous-limit bound "
        f"{100 * summary['continuous_limit_saving']:.1f}%)"
    )
    if summary["batch_multiple_stages"]:
        stages = ", ".join(f"x{stage['multiple']} from {format_tokens(stage['from_tokens'])}"
                           for stage in summary["batch_multiple_stages"])
        lines.append(
            f"batch-multiple stages: {stages} (batches rounded up, lr / sqrt(B) unchanged); "
            f"micro/GAS '-': a phase dp {summary['dp_size']} cannot lay out, run by another "
            "job of the chain")
    online = getattr(plan.batch_schedule, "safety_factor", None)
    if summary["batch_schedule"] == "adaptive":
        lines.append(
            f"adaptive: the table is the Seesaw envelope, decided offline; during training "
            f"the batch also grows one rung (x{plan.batch_schedule.batch_growth:g}) whenever "
            f"{online:g} x B_simple reaches it (decided online, saved in checkpoints), with "
            f"lr / sqrt(B) on the base path and lr <= {plan.lr_ceiling:g} x peak: fewer steps "
            "than shown."
        )
    return "\n".join(lines)
