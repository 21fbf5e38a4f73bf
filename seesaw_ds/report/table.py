"""The plan as a text table, readable before any GPU hour is spent.

The table agrees with the plan's own steps (:meth:`Plan.iter_steps`): a phase row counts
the full steps of its batch, the short last step has a row of its own (its batch, micro-batch,
GAS and LR as it trains), and phases that train no step are left out (named below the table).
Rows whose batch an online policy may change during training carry a ``*``, explained below.
"""

from __future__ import annotations

from typing import List, Optional

from seesaw_ds.schedules import AdaptiveBatch, Plan

__all__ = ["format_plan_table", "format_tokens", "online_note", "online_phases", "plan_notes"]


def format_tokens(tokens: float) -> str:
    """3.3e9 -> '3.30B', 2.8e6 -> '2.80M'."""
    for scale, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(tokens) >= scale:
            return f"{tokens / scale:.2f}{suffix}"
    return f"{tokens:.0f}"


def online_phases(plan: Plan, guard: Optional[object] = None) -> List[int]:
    """Indices of the phases whose batch an online policy may change: the critical-batch
    guard (``guard``: the section's enabled ``cbs_guard``) may hold every phase that grows
    past the initial batch; the adaptive schedule may raise every phase below its top."""
    if isinstance(plan.batch_schedule, AdaptiveBatch):
        top = plan.batch_schedule.largest_batch(plan.initial_batch)
        return [i for i, phase in enumerate(plan.phases) if phase.global_batch < top]
    if guard is not None and getattr(guard, "enabled", False) \
            and getattr(guard, "action", "hold") == "hold":
        return [i for i, phase in enumerate(plan.phases)
                if phase.global_batch > plan.initial_batch]
    return []  # no policy, or a guard that only reports ('warn')


def online_note(plan: Plan, guard: Optional[object] = None) -> Optional[str]:
    """One paragraph on what is decided during training, or None for a fixed plan."""
    if isinstance(plan.batch_schedule, AdaptiveBatch):
        schedule = plan.batch_schedule
        return (
            f"adaptive (* rows): the table is the Seesaw envelope, decided offline; during "
            f"training the batch also grows one rung (x{schedule.batch_growth:g}) whenever "
            f"{schedule.safety_factor:g} x B_simple reaches it (decided online, saved in "
            f"checkpoints), with lr / sqrt(B) on the base path and lr <= "
            f"{plan.lr_ceiling:g} x peak: fewer steps than shown.")
    if guard is not None and getattr(guard, "enabled", False):
        action = getattr(guard, "action", "hold")
        if action == "warn":
            return ("cbs_guard (action 'warn'): the batch grows as shown; during training a "
                    "growth past safety_factor x B_simple is only reported.")
        return (
            f"cbs_guard (* rows): decided online, saved in checkpoints: each growth shown is "
            f"taken only while it stays <= {getattr(guard, 'safety_factor', 1.0):g} x B_simple;"
            " a held batch keeps lr / sqrt(B) on the base path (the LR takes the decay): as "
            "many steps as shown or more.")
    return None


def plan_notes(plan: Plan, guard: Optional[object] = None) -> List[str]:
    """The lines under the table: what the rows alone do not say."""
    notes: List[str] = []
    steps = plan.steps_per_phase()
    empty = [str(index) for index, count in enumerate(steps) if count == 0]
    if empty:
        notes.append(f"phase{'s' if len(empty) > 1 else ''} {', '.join(empty)} train no step "
                     "(shorter than one step of the batch before): not shown.")
    last = plan.last_step()
    if last["short"]:
        phase = plan.phases[last["phase"]]
        notes.append(
            f"last step (phase {last['phase']}): the {format_tokens(plan.total_tokens - last['start_tokens'])} tokens "
            f"left take batch {last['global_batch']} (rounded up to the batch multiple), not "
            f"{phase.global_batch}, at lr x sqrt({last['global_batch']}/{phase.global_batch}) "
            f"= {last['lr']:.3e}.")
    for index, reason in plan.micro_batch_reasons:
        notes.append(f"phase {index}: {reason}.")
    for index, wanted in plan.stage_lr_caps():
        notes.append(
            f"phase {index}: the batch-multiple stage rounds the batch up to "
            f"{plan.phases[index].global_batch}; keeping lr / sqrt(B) would lift the LR to "
            f"{wanted:.3g} x peak, so it is capped at the peak (lr / sqrt(B) below the "
            "schedule's path there). Start the stage after the batch has grown to avoid it.")
    online = online_note(plan, guard)
    if online:
        notes.append(online)
    return notes


def format_plan_table(plan: Plan, guard: Optional[object] = None) -> str:
    """Phase table plus totals: steps vs the constant-batch baseline and the continuous bound.

    ``guard``: the section's ``cbs_guard`` settings, to mark what it may decide online.
    """
    summary = plan.summary()
    last = summary["last_step"]
    marked = set(online_phases(plan, guard))
    header = ("phase", "start", "end", "batch", "micro", "GAS", "lr start", "lr end", "steps")
    rows: List[tuple] = []
    for index, phase in enumerate(summary["phases"]):
        steps = phase["steps"] - (1 if last["short"] and index == last["phase"] else 0)
        if steps:
            rows.append((
                str(index),
                format_tokens(phase["start_tokens"]),
                format_tokens(phase["end_tokens"]),
                str(phase["global_batch"]) + ("*" if index in marked else ""),
                str(phase["micro_batch"] or "-"),
                str(phase["grad_accum"] or "-"),
                f"{phase['lr_start']:.3e}",
                f"{phase['lr_end']:.3e}",
                str(steps),
            ))
        if last["short"] and index == last["phase"]:
            rows.append((
                "last",
                format_tokens(last["start_tokens"]),
                format_tokens(last["end_tokens"]),
                str(last["global_batch"]) + ("*" if index in marked else ""),
                str(last["micro_batch"] or "-"),
                str(last["grad_accum"] or "-"),
                f"{last['lr']:.3e}",
                f"{last['lr']:.3e}",
                "1",
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
            f"batch-multiple stages: {stages} (batches rounded up, lr / sqrt(B) unchanged up "
            f"to the peak LR); micro/GAS '-': a phase dp {summary['dp_size']} cannot lay out, "
            "run by another job of the chain")
    lines += plan_notes(plan, guard)
    return "\n".join(lines)
