"""Compare finished runs: one summary, a markdown table and a Figure-1-style PNG.

Each run directory holds the ``summary.json`` and ``curve.json`` written by
``seesaw_ds.train``. ``python -m seesaw_ds.report.compare OUT RUN_DIR...`` writes
``OUT/summary.json`` (one entry per schedule), ``OUT/table.md`` and ``OUT/figure1.png``
(validation loss against tokens and against optimizer steps, one line per schedule).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Dict, List, Optional, Sequence

from seesaw_ds.errors import SeesawConfigError

__all__ = ["load_run", "compare_runs", "format_table", "plot_curves", "main"]

_SUMMARY_KEYS = ("schedule", "final_val_loss", "optimizer_steps", "tokens", "wall_seconds")


def load_run(run_dir: str) -> Dict:
    """A run's summary with its validation curve under ``curve``."""
    paths = {name: os.path.join(run_dir, f"{name}.json") for name in ("summary", "curve")}
    for path in paths.values():
        if not os.path.isfile(path):
            raise SeesawConfigError(
                f"{path} is missing: is {run_dir} a finished seesaw_ds.train output dir?"
            )
    with open(paths["summary"], encoding="utf-8") as handle:
        summary = json.load(handle)
    with open(paths["curve"], encoding="utf-8") as handle:
        summary["curve"] = json.load(handle)
    return summary


def _reference(runs: Sequence[Dict], name: str) -> Optional[Dict]:
    return next((run for run in runs if run["schedule"] == name), None)


def compare_runs(runs: Sequence[Dict], reference: str = "cosine") -> List[Dict]:
    """Summary entries with loss and step ratios against the ``reference`` schedule."""
    base = _reference(runs, reference)
    entries = []
    for run in runs:
        entry = {key: run[key] for key in _SUMMARY_KEYS}
        for key in ("batch_schedule", "final_global_batch", "seed"):
            if key in run:
                entry[key] = run[key]
        if base is not None:
            entry["steps_ratio_vs_" + reference] = run["optimizer_steps"] / base["optimizer_steps"]
            entry["loss_gap_vs_" + reference] = (
                run["final_val_loss"] / base["final_val_loss"] - 1.0
            )
            entry["wall_ratio_vs_" + reference] = run["wall_seconds"] / base["wall_seconds"]
        entries.append(entry)
    return entries


def format_table(entries: Sequence[Dict], reference: str = "cosine") -> str:
    header = ("schedule", "final val loss", f"gap vs {reference}", "optimizer steps",
              f"steps vs {reference}", "tokens", "wall s")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for entry in entries:
        gap = entry.get("loss_gap_vs_" + reference)
        ratio = entry.get("steps_ratio_vs_" + reference)
        lines.append("| " + " | ".join((
            entry["schedule"],
            f"{entry['final_val_loss']:.4f}",
            "-" if gap is None else f"{100 * gap:+.2f}%",
            str(entry["optimizer_steps"]),
            "-" if ratio is None else f"{ratio:.3f}",
            f"{entry['tokens']:,}",
            f"{entry['wall_seconds']:.0f}",
        )) + " |")
    return "\n".join(lines)


def plot_curves(runs: Sequence[Dict], path: str) -> str:
    """Validation loss against tokens (left) and optimizer steps (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (by_tokens, by_steps) = plt.subplots(1, 2, figsize=(12, 4.5))
    for run in runs:
        curve = run["curve"]
        tokens = [point["tokens"] / 1e6 for point in curve]
        steps = [point["step"] for point in curve]
        losses = [point["val_loss"] for point in curve]
        by_tokens.plot(tokens, losses, marker=".", label=run["schedule"])
        by_steps.plot(steps, losses, marker=".", label=run["schedule"])
    by_tokens.set_xlabel("tokens (millions)")
    by_steps.set_xlabel("optimizer steps")
    for axis in (by_tokens, by_steps):
        axis.set_ylabel("validation loss")
        axis.grid(alpha=0.3)
        axis.legend()
        finals = [run["final_val_loss"] for run in runs]
        if finals:
            axis.set_ylim(min(finals) * 0.97, min(finals) * 1.35)
    figure.suptitle("same tokens, fewer optimizer steps")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir")
    parser.add_argument("run_dirs", nargs="+")
    parser.add_argument("--reference", default="cosine")
    args = parser.parse_args(argv)
    try:
        runs = [load_run(run_dir) for run_dir in args.run_dirs]
    except SeesawConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    os.makedirs(args.out_dir, exist_ok=True)
    entries = compare_runs(runs, args.reference)
    with open(os.path.join(args.out_dir, "summary.json"), "w", encoding="utf-8") as handle:
        json.dump(entries, handle, indent=2)
    table = format_table(entries, args.reference)
    with open(os.path.join(args.out_dir, "table.md"), "w", encoding="utf-8") as handle:
        handle.write(table + "\n")
    plot_curves(runs, os.path.join(args.out_dir, "figure1.png"))
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
