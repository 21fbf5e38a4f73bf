"""Seesaw vs cosine at equal tokens: one table from one run of the tiny reproduction.

    python bench/seesaw_vs_cosine.py                 # runs launch/repro_tiny.sh (~10 min)
    python bench/seesaw_vs_cosine.py --results results/repro_tiny   # reuse finished runs

Prints optimizer-step ratio and wall-clock ratio of Seesaw to cosine, the final validation
loss of each, and the scheduler + hook cost per optimizer step as a fraction of the step time
(``hook_seconds / wall_seconds`` of each run), against the targets: steps <= 0.62 of cosine,
loss within 1% of cosine, hook cost < 0.5%. On a 2-core CPU the wall-clock ratio follows
tokens and micro-batch efficiency, not steps: see bench/wallclock.py for the cluster view.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load(results: str, schedule: str) -> dict:
    with open(os.path.join(results, schedule, "summary.json"), encoding="utf-8") as handle:
        return json.load(handle)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", help="a finished results/repro_tiny folder to read")
    args = parser.parse_args(argv)
    results = args.results
    if results is None:
        results = os.path.join(_ROOT, "results", "bench_seesaw_vs_cosine")
        env = dict(os.environ, OUT=results, SCHEDULES="cosine seesaw")
        subprocess.run(["bash", os.path.join(_ROOT, "launch", "repro_tiny.sh")], check=True,
                       env=env, cwd=_ROOT)
    cosine, seesaw = _load(results, "cosine"), _load(results, "seesaw")
    steps_ratio = seesaw["optimizer_steps"] / cosine["optimizer_steps"]
    wall_ratio = seesaw["wall_seconds"] / cosine["wall_seconds"]
    gap = seesaw["final_val_loss"] / cosine["final_val_loss"] - 1.0
    rows = [
        ("optimizer steps, seesaw / cosine", f"{steps_ratio:.3f}", "<= 0.62",
         steps_ratio <= 0.62),
        ("wall clock (this CPU), seesaw / cosine", f"{wall_ratio:.3f}", "(see wallclock.py)",
         None),
        ("final val loss, cosine", f"{cosine['final_val_loss']:.4f}", "", None),
        ("final val loss, seesaw", f"{seesaw['final_val_loss']:.4f}", "", None),
        ("loss gap, seesaw vs cosine", f"{100 * gap:+.2f}%", "within 1%", abs(gap) <= 0.01),
    ]
    for run in (cosine, seesaw):
        share = run["hook_seconds"] / run["wall_seconds"]
        per_step = 1e6 * run["hook_seconds"] / run["optimizer_steps"]
        rows.append((f"scheduler+hook cost, {run['schedule']}",
                     f"{100 * share:.3f}% ({per_step:.0f} us/step)", "< 0.5%", share < 0.005))
    width = max(len(row[0]) for row in rows)
    print(f"{'measure':<{width}}  {'value':>24}  {'target':>18}  met")
    for name, value, target, met in rows:
        mark = "" if met is None else ("yes" if met else "NO")
        print(f"{name:<{width}}  {value:>24}  {target:>18}  {mark}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
