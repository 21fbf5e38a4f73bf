"""The multi-seed frontier sweep: cell configs, aggregation (mean +- standard error, paired
gaps), frontier analysis and the figure. Pure except :func:`plot_frontier` (matplotlib).

A cell is (schedule, B0, seed). Every cell of one seed shares the model init (``seed``) and
the global sample order (``seesaw.data_seed``), so the comparisons at one seed are paired.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

__all__ = ["Cell", "SCHEDULES", "VARIANTS", "ds_config_of", "run_config_of", "aggregate",
           "paired_gaps", "frontier_report", "format_frontier_table", "plot_frontier",
           "side_study_reference"]

SEQ = 128
PEAK_LR = 3e-3
MICRO = 4
SCHEDULES = ("cosine", "seesaw", "adaptive", "late_switch", "seesaw_guard")
# Variants measured on part of the sweep: the adaptive schedule with an LR ceiling of 2 or 4
# and/or a lower safety factor (name -> (safety factor, None: the sweep's; LR ceiling)); the
# guard at safety factor 0.25; with AdamW weight decay 0.1, cosine and Seesaw without and
# with the opt-in keys that keep the weight-decay timescale (``_tau``) or the beta2
# half-life (``_b2``) through batch changes (their reference is ``cosine_wd``).
VARIANTS = ("adaptive_s25", "adaptive_c2", "adaptive_c2_s25", "adaptive_c4", "adaptive_c4_s25",
            "seesaw_guard_s25", "cosine_wd", "seesaw_wd", "seesaw_wd_tau", "seesaw_wd_b2",
            "cosine_fd", "seesaw_fd")
# ``_fd``: the data order fixed (``data_seed`` 1234 for every seed), the seed moves the model
# init only: the init noise alone; their reference is ``cosine_fd``.
_FIXED_DATA = ("cosine_fd", "seesaw_fd")
WEIGHT_DECAY = 0.1
_WITH_WEIGHT_DECAY = {"cosine_wd": {}, "seesaw_wd": {},
                      "seesaw_wd_tau": {"keep_weight_decay_timescale": True},
                      "seesaw_wd_b2": {"keep_beta2_half_life": True}}
_GUARD = {"seesaw_guard": None, "seesaw_guard_s25": 0.25}
_ADAPTIVE = {"adaptive": (None, 1.0), "adaptive_s25": (0.25, 1.0), "adaptive_c2": (None, 2.0),
             "adaptive_c2_s25": (0.25, 2.0), "adaptive_c4": (None, 4.0),
             "adaptive_c4_s25": (0.25, 4.0)}


@dataclass(frozen=True)
class Cell:
    schedule: str
    b0: int
    seed: int

    @property
    def name(self) -> str:
        return f"{self.schedule}_b{self.b0}_s{self.seed}"

    @classmethod
    def parse(cls, text: str) -> "Cell":
        """``schedule@B0/sSEED``, e.g. ``seesaw@32/s1``."""
        schedule, rest = text.split("@")
        b0, seed = rest.split("/s")
        return cls(schedule, int(b0), int(seed))

    def label(self) -> str:
        return f"{self.schedule}@{self.b0}/s{self.seed}"


def _seesaw_section(cell: Cell, tokens: float, guard_safety: float,
                    adaptive_safety: float) -> Dict:
    section: Dict = {
        # micro-batch 4 throughout: the noise-scale probe needs a micro-batch smaller than
        # the global batch on one rank, and every schedule gets the same layout
        "total_tokens": tokens, "seq_length": SEQ, "batch_multiple": MICRO,
        "data_seed": 1234 + cell.seed,
        "lr_schedule": {"type": "cosine", "warmup_fraction": 0.1, "warmup_start_factor": 0.1,
                        "final_factor": 0.1},
    }
    if cell.schedule in _WITH_WEIGHT_DECAY:
        plain = Cell(cell.schedule.split("_wd")[0], cell.b0, cell.seed)
        section = _seesaw_section(plain, tokens, guard_safety, adaptive_safety)
        section.update(_WITH_WEIGHT_DECAY[cell.schedule])
        return section
    if cell.schedule in _FIXED_DATA:
        plain = Cell(cell.schedule[: -len("_fd")], cell.b0, cell.seed)
        return dict(_seesaw_section(plain, tokens, guard_safety, adaptive_safety),
                    data_seed=1234)
    if cell.schedule == "cosine":
        section["batch_schedule"] = "constant"
    elif cell.schedule == "seesaw" or cell.schedule in _GUARD:
        section.update(batch_schedule="seesaw", batch_growth=1.1)
        if cell.schedule in _GUARD:
            section["cbs_guard"] = {"enabled": True,
                                    "safety_factor": _GUARD[cell.schedule] or guard_safety,
                                    "ema_decay": 0.9, "min_samples": 3}
    elif cell.schedule in _ADAPTIVE:
        safety, ceiling = _ADAPTIVE[cell.schedule]
        section.update(batch_schedule="adaptive", batch_growth=1.1,
                       adaptive={"safety_factor": safety or adaptive_safety, "ema_decay": 0.9,
                                 "min_samples": 3, "lr_ceiling": ceiling})
    elif cell.schedule == "late_switch":
        section.update(batch_schedule="late_switch", switch_fraction=0.7,
                       switch_batch=4 * cell.b0, lr_scaling="none")
    else:
        raise ValueError(f"unknown schedule {cell.schedule!r}; use one of "
                         f"{SCHEDULES + VARIANTS}")
    return section


def ds_config_of(cell: Cell, tokens: float, guard_safety: float = 1.0,
                 adaptive_safety: float = 0.5) -> Dict:
    """The DeepSpeed config of a cell (one rank, fp32, torch AdamW 0.9/0.95)."""
    return {
        "train_batch_size": cell.b0, "train_micro_batch_size_per_gpu": MICRO,
        "gradient_clipping": 1.0, "steps_per_print": 10**9,
        "optimizer": {"type": "AdamW", "params": {
            "lr": PEAK_LR, "betas": [0.9, 0.95], "eps": 1e-8,
            "weight_decay": WEIGHT_DECAY if cell.schedule in _WITH_WEIGHT_DECAY else 0.0,
            "torch_adam": True}},
        "zero_optimization": {"stage": 0},
        "seesaw": _seesaw_section(cell, tokens, guard_safety, adaptive_safety),
    }


def run_config_of(cell: Cell, tokens: float, prepared_dir: str, output_dir: str) -> Dict:
    return {
        "model": {"shape": "micro"},
        "data": {"prepared_dir": prepared_dir, "vocab_size": 2048},
        "eval": {"interval_tokens": tokens / 4, "batches": 16, "batch_size": 32},
        "output_dir": output_dir, "seed": cell.seed, "name": cell.schedule,
    }


# ---- aggregation -----------------------------------------------------------------------------

def _mean_se(values: Sequence[float]) -> Tuple[float, float]:
    mean = statistics.fmean(values)
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else math.nan
    return mean, se


def aggregate(runs: Iterable[Dict]) -> List[Dict]:
    """One row per (schedule, b0): mean +- SE of the final loss and mean steps."""
    groups: Dict[Tuple[str, int], List[Dict]] = {}
    for run in runs:
        groups.setdefault((run["schedule"], run["b0"]), []).append(run)
    rows = []
    for (schedule, b0), group in sorted(groups.items(), key=lambda item: (item[0][1],
                                                                         item[0][0])):
        loss, se = _mean_se([run["final_val_loss"] for run in group])
        steps = statistics.fmean(run["optimizer_steps"] for run in group)
        rows.append({"schedule": schedule, "b0": b0, "seeds": len(group), "loss": loss,
                     "loss_se": se, "steps": steps,
                     "tokens": statistics.fmean(run["tokens"] for run in group)})
    return rows


def paired_gaps(runs: Sequence[Dict], reference: Tuple[str, int]) -> List[Dict]:
    """Per (schedule, b0): mean +- SE over seeds of the relative loss gap to ``reference``
    (schedule, b0) at the same seed, and the mean steps ratio."""
    by_key = {(run["schedule"], run["b0"], run["seed"]): run for run in runs}
    out = []
    for schedule, b0 in sorted({(r["schedule"], r["b0"]) for r in runs},
                               key=lambda key: (key[1], key[0])):
        gaps, ratios = [], []
        for seed in sorted({r["seed"] for r in runs}):
            run, ref = by_key.get((schedule, b0, seed)), by_key.get((*reference, seed))
            if run is None or ref is None:
                continue
            gaps.append(run["final_val_loss"] / ref["final_val_loss"] - 1.0)
            ratios.append(run["optimizer_steps"] / ref["optimizer_steps"])
        if gaps:
            gap, se = _mean_se(gaps)
            out.append({"schedule": schedule, "b0": b0, "gap": gap, "gap_se": se,
                        "steps_ratio": statistics.fmean(ratios), "pairs": len(gaps)})
    return out


def frontier_report(runs: Sequence[Dict]) -> Dict:
    """The best cosine (lowest mean loss over B0) and each schedule's best point that
    reaches it within max(SE of the paired difference, 0.2%), with the fewest steps."""
    rows = aggregate(runs)
    cosine = [row for row in rows if row["schedule"] == "cosine"]
    if not cosine:
        return {}
    best = min(cosine, key=lambda row: row["loss"])
    gaps = paired_gaps(runs, ("cosine", best["b0"]))
    reached = []
    for gap in gaps:
        tolerance = max(gap["gap_se"] if math.isfinite(gap["gap_se"]) else 0.0, 0.002)
        gap["reaches_best_cosine"] = gap["gap"] <= tolerance
        if gap["reaches_best_cosine"] and gap["schedule"] != "cosine":
            reached.append(gap)
    winner = min(reached, key=lambda gap: gap["steps_ratio"], default=None)
    return {"best_cosine": best, "vs_best_cosine": gaps, "fewest_steps_at_best_loss": winner,
            "beyond_cosine_frontier": beyond_cosine_frontier(rows)}


def beyond_cosine_frontier(rows: Sequence[Dict]) -> List[Dict]:
    """Mean points of other schedules that no cosine point dominates (a cosine run with at
    most as many steps and at most the same mean loss): the frontier sense."""
    cosine = [row for row in rows if row["schedule"] == "cosine"]
    return [row for row in rows if row["schedule"] != "cosine" and not any(
        c["steps"] <= row["steps"] and c["loss"] <= row["loss"] for c in cosine)]


def side_study_reference(schedule: str) -> Optional[str]:
    """The reference of a side-study cell (weight decay: ``cosine_wd``; fixed data order:
    ``cosine_fd``), which keeps it out of the frontier; None for the sweep's own cells."""
    if schedule in _WITH_WEIGHT_DECAY:
        return "cosine_wd"
    return "cosine_fd" if schedule in _FIXED_DATA else None


def format_frontier_table(runs: Sequence[Dict], reference: str = "cosine") -> str:
    rows = aggregate(runs)
    lines = [f"| B0 | schedule | seeds | final val loss (mean +- SE) | gap vs {reference} same "
             f"B0 (paired, mean +- SE) | steps | steps vs {reference} |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        same = {g["schedule"]: g for g in paired_gaps(runs, (reference, row["b0"]))
                if g["b0"] == row["b0"]}.get(row["schedule"])
        gap = (f"{100 * same['gap']:+.2f}% +- {100 * same['gap_se']:.2f}%"
               if same and row["schedule"] != reference else "-")
        ratio = f"{same['steps_ratio']:.3f}" if same else "-"
        lines.append(f"| {row['b0']} | {row['schedule']} | {row['seeds']} | "
                     f"{row['loss']:.4f} +- {row['loss_se']:.4f} | {gap} | "
                     f"{row['steps']:.0f} | {ratio} |")
    return "\n".join(lines)


_STYLES = {"cosine": ("black", "o", "-"), "seesaw": ("tab:orange", "s", "--"),
           "adaptive": ("tab:green", "^", "-"), "late_switch": ("tab:red", "v", "-"),
           "seesaw_guard": ("tab:purple", "D", ":")}
_VARIANT_MARKERS = "PXh*pd<>"


def _style(schedule: str, index: int):
    """(color, marker, line style) of a schedule; variants are points without lines."""
    if schedule in _STYLES:
        return _STYLES[schedule]
    return f"C{index % 10}", _VARIANT_MARKERS[index % len(_VARIANT_MARKERS)], "none"


def plot_frontier(runs: Sequence[Dict], path: str, title: Optional[str] = None) -> None:
    """Final loss against optimizer steps, one line per schedule across B0 (log steps), and
    a second panel zoomed on the smallest B0, where the schedules compete."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = aggregate(runs)
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    smallest = min(row["b0"] for row in rows)
    for panel, axis in enumerate(axes):
        for index, schedule in enumerate(SCHEDULES + VARIANTS):
            points = sorted((row["steps"], row["loss"], row["loss_se"], row["b0"])
                            for row in rows if row["schedule"] == schedule
                            and (panel == 0 or row["b0"] <= 2 * smallest))
            if not points:
                continue
            steps, losses, errors, b0s = zip(*points)
            errors = [0.0 if not math.isfinite(e) else e for e in errors]
            color, marker, line = _style(schedule, index)
            axis.errorbar(steps, losses, yerr=errors, marker=marker, capsize=3, color=color,
                          linestyle=line, label=schedule, markersize=6 if line != "none" else 8)
            for x, y, b0 in zip(steps, losses, b0s):
                axis.annotate(f"{b0}", (x, y), textcoords="offset points", xytext=(4, 4),
                              fontsize=7, color=color)
        axis.set_xscale("log")
        axis.set_xlabel("optimizer steps (log)")
        axis.grid(alpha=0.3, which="both")
    axes[0].set_ylabel("final validation loss (mean +- SE over seeds)")
    axes[0].set_title(title or "Frontier: final loss vs optimizer steps (labels: B0)")
    axes[1].set_title(f"zoom: B0 = {smallest} and {2 * smallest}")
    axes[1].legend(fontsize=8, loc="upper right")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
