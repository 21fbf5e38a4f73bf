"""Wall-clock projection of cosine vs Seesaw on the shipped paper configs: one table.

Uses a throughput file (default: ``bench/records/throughput_gpu_like.json``, a hand-written
GPU-like worker; or ``--measure`` to calibrate this machine on the tiny model first with
``seesaw_ds.calibrate``) and lays every plan out with ``seesaw_ds.layout`` at fixed rank
counts and on a growing chain of jobs. Checks the layout targets:

- Seesaw's projected time <= cosine's at every fixed rank count 1..512, every config,
- 150M B=128, 8 ranks growing to 64: Seesaw / cosine <= 0.65 (target of issue 9).

    python bench/wallclock.py
    python bench/wallclock.py --throughput my_cluster.json --ranks 8 64 --grow 8:64
    python bench/wallclock.py --gpus-per-node 8 --relaunch-seconds 60   # chain variants

Chains are shown three ways: any rank count per job (batch-multiple stages), whole nodes of
``--gpus-per-node`` GPUs, and any rank count with ``--relaunch-seconds`` charged per job.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys

from seesaw_ds.config import load_config_file, plan_from_ds_config
from seesaw_ds.layout import LayoutSearch, load_throughput, throughput_from_dict

_HERE = os.path.dirname(os.path.abspath(__file__))
_REPO = os.path.dirname(_HERE)
_DEFAULT_TP = os.path.join(_HERE, "records", "throughput_gpu_like.json")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--throughput", default=_DEFAULT_TP)
    parser.add_argument("--measure", action="store_true",
                        help="calibrate this machine (tiny model) instead of --throughput")
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 8, 64, 512])
    parser.add_argument("--grow", nargs="+", default=["8:64"], help="START:MAX chains")
    parser.add_argument("--gpus-per-node", type=int, default=8,
                        help="the whole-node chain variant")
    parser.add_argument("--relaunch-seconds", type=float, default=60.0,
                        help="the chain variant that counts each relaunch")
    parser.add_argument("--json", help="write the rows here")
    args = parser.parse_args(argv)

    if args.measure:
        from seesaw_ds.calibrate import calibrate

        data = calibrate(os.path.join(_REPO, "launch", "run_configs", "tiny.yaml"),
                         os.path.join(_REPO, "ds_configs", "tiny_seesaw.json"), [1, 2, 4, 8])
        throughput, source = throughput_from_dict(data), "measured here (tiny model)"
    else:
        throughput, source = load_throughput(args.throughput), args.throughput
    rows, worst = [], {}
    variants = [("", {}), (f"/{args.gpus_per_node}n", {"gpus_per_node": args.gpus_per_node}),
                (f"+{args.relaunch_seconds:g}s", {"relaunch_seconds": args.relaunch_seconds})]
    for path in sorted(glob.glob(os.path.join(_REPO, "ds_configs", "*m_b*_seesaw.json"))):
        name = os.path.basename(path)[: -len("_seesaw.json")]
        plan = plan_from_ds_config(load_config_file(path), 1)
        search = LayoutSearch(plan, throughput)
        worst[name] = max((search.project(n).ratio, n) for n in range(1, 513))
        layouts = [(n, None, "", {}) for n in args.ranks] + [
            (*(int(x) for x in chain.split(":")), tag, options)
            for chain in args.grow for tag, options in variants]
        for ranks, max_ranks, tag, options in layouts:
            laid = LayoutSearch(plan, throughput, **options) if options else search
            data = laid.project(ranks, max_ranks).to_dict()
            chain = [s["ranks"] for s in data["stages"]]
            rows.append({"config": name, "ranks": ranks, "max_ranks": max_ranks, "variant": tag,
                         "batch_multiple": data["batch_multiple"],
                         "staged": bool(data["batch_multiple_stages"]),
                         "steps": data["optimizer_steps"],
                         "baseline_steps": data["baseline_optimizer_steps"],
                         "hours": data["projected_seconds"] / 3600,
                         "baseline_hours": data["baseline_projected_seconds"] / 3600,
                         "time_ratio": data["time_ratio"],
                         "jobs": (f"{len(chain)}: " + "->".join(map(str, chain)) if len(chain) < 6
                                  else f"{len(chain)}: {chain[0]}->{chain[1]}->...->{chain[-1]}")})
    print(f"throughput: {source}")
    header = (f"{'config':>10} {'ranks':>11} {'q':>4} {'steps':>6} {'cos steps':>9} "
              f"{'hours':>7} {'cos hours':>9} {'ratio':>6}  jobs")
    print(header)
    print("-" * len(header))
    for row in rows:
        ranks = f"{row['ranks']}" + (f"-{row['max_ranks']}" if row["max_ranks"] else "")
        ranks += row["variant"]
        q = f"{row['batch_multiple']}" + ("+" if row["staged"] else "")
        print(f"{row['config']:>10} {ranks:>11} {q:>4} {row['steps']:>6} "
              f"{row['baseline_steps']:>9} {row['hours']:>7.3f} {row['baseline_hours']:>9.3f} "
              f"{row['time_ratio']:>6.3f}  {row['jobs']}")
    print("(q: batch multiple of the first job; q+: later jobs round to their own rank count, "
          "seesaw.batch_multiple_stages)")
    print("\ntargets")
    fixed_ok = all(ratio <= 1.0 for ratio, _ in worst.values())
    print(f"  Seesaw <= cosine at every fixed rank count 1..512: "
          f"{'met' if fixed_ok else 'MISSED'} (worst ratio "
          f"{max(r for r, _ in worst.values()):.4f})")
    grow = [r for r in rows if r["config"] == "150m_b128" and r["ranks"] == 8
            and r["max_ranks"] == 64 and not r["variant"]]
    if grow:
        ratio = grow[0]["time_ratio"]
        print(f"  150m_b128, 8 ranks growing to 64: ratio {ratio:.3f} (target <= 0.65: "
              f"{'met' if ratio <= 0.65 else 'MISSED'})")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"throughput": throughput.to_dict(), "rows": rows,
                       "worst_fixed": worst}, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
