"""The plan as a PNG: LR, global batch and the two lr-sqrt(B) products against tokens."""

from __future__ import annotations

import math
from typing import Optional

from seesaw_ds.schedules import ConstantBatch, Plan

__all__ = ["plot_plan"]

_POINTS = 2000


def _series(plan: Plan):
    tokens, lrs, batches = [], [], []
    for i in range(_POINTS + 1):
        t = plan.total_tokens * i / _POINTS
        setting = plan.at_tokens(min(t, plan.total_tokens * (1 - 1e-12)))
        tokens.append(t)
        lrs.append(setting.lr)
        batches.append(setting.global_batch)
    return tokens, lrs, batches


def plot_plan(plan: Plan, path: str, baseline: Optional[Plan] = None) -> str:
    """Draw the plan (and the constant-batch baseline of the same base schedule) to ``path``.

    Panels: LR; global batch; ``lr / sqrt(B)`` (per-token noise temperature, which Seesaw
    keeps on the base schedule's path); ``lr * sqrt(B)`` (normalized-SGD step size, which
    Seesaw holds at the peak's value while the batch does the annealing).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if baseline is None:
        baseline = Plan(plan.base, ConstantBatch(), plan.peak_lr, plan.initial_batch,
                        plan.seq_length, micro_batch=plan.micro_batch, dp_size=plan.dp_size)
    figure, axes = plt.subplots(2, 2, figsize=(11, 7), sharex=True)
    for current, label, style in ((baseline, "constant batch (base)", "--"),
                                  (plan, plan.batch_schedule.type_name, "-")):
        tokens, lrs, batches = _series(current)
        millions = [t / 1e6 for t in tokens]
        axes[0, 0].plot(millions, lrs, style, label=label)
        axes[0, 1].plot(millions, batches, style, label=label)
        axes[1, 0].plot(millions, [lr / math.sqrt(b) for lr, b in zip(lrs, batches)], style,
                        label=label)
        axes[1, 1].plot(millions, [lr * math.sqrt(b) for lr, b in zip(lrs, batches)], style,
                        label=label)
    titles = ("learning rate", "global batch (sequences)",
              "lr / sqrt(B)  (per-token temperature)", "lr * sqrt(B)  (NSGD step size)")
    for axis, title in zip(axes.flat, titles):
        axis.set_title(title)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    for axis in axes[1]:
        axis.set_xlabel("tokens (millions)")
    summary = plan.summary()
    figure.suptitle(
        f"{summary['batch_schedule']}: {summary['optimizer_steps']} optimizer steps vs "
        f"{summary['baseline_optimizer_steps']} at constant batch "
        f"(ratio {summary['steps_ratio']:.3f})"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
