"""Wall-clock projection of cosine vs Seesaw on the nine paper configs: equal resources first.

Each config is laid out with ``seesaw_ds.layout`` on its size's throughput file
(``bench/records/throughput_h100_{150m,300m,600m}.json``: 8-GPU H100 nodes, derived from
llm.c and nccl-tests figures, see ``bench/throughput_h100.py``), with the network inside and
across nodes and the config's ZeRO stage (stage 1 in the paper configs).

1. **Equal resources**: Seesaw and cosine on the same fixed allocation (8 and 64 GPUs by
   default), time and GPU-hours. This is the headline.
2. **Growing chains**: Seesaw on a chain of jobs from 8 GPUs growing to at most 64, with each
   relaunch charged at the cost measured on CPU (``bench/records/relaunch_cost.json``: engine
   start-up, ZeRO-1 save, universal conversion, load; 600M extrapolated by state size when it
   was not measured), against cosine on 8 and on 64 GPUs; GPU-hours as jobs (each job's
   ranks) and as one allocation sized for the largest job, held throughout
   (``launch/grow_in_allocation.py``).

    python bench/wallclock.py
    python bench/wallclock.py --ranks 8 64 --grow 8:64 --relaunch-seconds 300
    python bench/wallclock.py --throughput my_cluster.json   # one file for every config
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys

from seesaw_ds.config import load_config_file, plan_from_ds_config
from seesaw_ds.layout import LayoutSearch, load_throughput, zero_of_config

_HERE = os.path.dirname(os.path.abspath(__file__))
_REPO = os.path.dirname(_HERE)
_RELAUNCH = os.path.join(_HERE, "records", "relaunch_cost.json")


def throughput_path(size: str) -> str:
    return os.path.join(_HERE, "records", f"throughput_h100_{size}.json")


def relaunch_seconds(size: str, record: dict) -> tuple:
    """(seconds, how) of one relaunch of ``size``: start-up + save + conversion + load,
    measured, or extrapolated by parameter count from the measured shapes."""
    pieces = ("import_seconds", "engine_init_seconds", "save_seconds", "convert_seconds",
              "load_universal_seconds")
    rows = [r for r in record.get("rows", []) if all(key in r for key in pieces)]
    for row in rows:
        if row["shape"] == size:
            return sum(row[key] for key in pieces), "measured"
    if not rows:
        return None, "no measurement"
    params = {"150m": 216_820_224, "300m": 367_841_280, "600m": 661_494_144}[size]
    fixed = sum(r["import_seconds"] + r["engine_init_seconds"] for r in rows) / len(rows)
    scaling = sum(sum(r[k] for k in pieces[2:]) for r in rows) / sum(r["parameters"]
                                                                    for r in rows)
    return fixed + scaling * params, "extrapolated by state size"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--throughput", default=None,
                        help="one throughput file for every config (default: per size)")
    parser.add_argument("--ranks", type=int, nargs="+", default=[8, 64])
    parser.add_argument("--grow", default="8:64", help="START:MAX of the chain")
    parser.add_argument("--relaunch-seconds", type=float, default=None,
                        help="per relaunch (default: measured, bench/records/relaunch_cost.json)")
    parser.add_argument("--json", help="write the rows here")
    args = parser.parse_args(argv)
    start, grow_to = (int(x) for x in args.grow.split(":"))
    record = {}
    if args.relaunch_seconds is None and os.path.exists(_RELAUNCH):
        with open(_RELAUNCH, encoding="utf-8") as handle:
            record = json.load(handle)

    fixed_rows, chain_rows = [], []
    for path in sorted(glob.glob(os.path.join(_REPO, "ds_configs", "*m_b*_seesaw.json"))):
        name = os.path.basename(path)[: -len("_seesaw.json")]
        size = name.split("_")[0]
        config = load_config_file(path)
        tp_path = args.throughput or throughput_path(size)
        throughput = zero_of_config(load_throughput(tp_path), config)
        plan = plan_from_ds_config(config, 1)
        if args.relaunch_seconds is not None:
            relaunch, how = args.relaunch_seconds, "given"
        else:
            relaunch, how = relaunch_seconds(size, record)
            if relaunch is None:
                relaunch, how = 300.0, "documented default"
        search = LayoutSearch(plan, throughput, relaunch_seconds=relaunch)
        row = {"config": name, "throughput": os.path.relpath(tp_path, _REPO),
               "zero_stage": throughput.zero_stage}
        for ranks in args.ranks:
            laid = search.project(ranks)
            row[ranks] = {"used_ranks": laid.seesaw.start_ranks,
                          "baseline_used_ranks": laid.baseline.start_ranks,
                          "hours": laid.seesaw.seconds / 3600,
                          "baseline_hours": laid.baseline.seconds / 3600,
                          "ratio": laid.ratio,
                          "gpu_hours": laid.seesaw.gpu_seconds / 3600,
                          "baseline_gpu_hours": laid.baseline.gpu_seconds / 3600,
                          "steps": laid.seesaw.steps, "baseline_steps": laid.baseline.steps}
        fixed_rows.append(row)
        chain = search.project(start, grow_to)
        big = search.project(grow_to)
        jobs = [s["ranks"] for s in chain.seesaw.stages()]
        chain_rows.append({
            "config": name, "relaunch_seconds": relaunch, "relaunch_how": how,
            "jobs": jobs, "hours": chain.seesaw.seconds / 3600,
            "gpu_hours_jobs": chain.seesaw.gpu_seconds / 3600,
            "gpu_hours_held": max(jobs) * chain.seesaw.seconds / 3600,
            "cosine_start_hours": chain.baseline.seconds / 3600,
            "cosine_max_hours": big.baseline.seconds / 3600,
            "cosine_max_gpu_hours": big.baseline.gpu_seconds / 3600,
            "seesaw_start_hours": chain.seesaw_fixed.seconds / 3600,
        })

    sources = sorted({row["throughput"] for row in fixed_rows})
    print(f"throughput: {', '.join(sources)}; ZeRO stage from each config")
    print("\n1. Equal resources: Seesaw vs cosine on the same fixed allocation (the headline)")
    header = f"{'config':>10}"
    for ranks in args.ranks:
        header += (f" | {ranks:>3} GPUs: {'seesaw h':>8} {'cosine h':>8} {'ratio':>5} "
                   f"{'GPU-h':>7} {'cos GPU-h':>9}")
    print(header)
    print("-" * len(header))
    notes = set()
    for row in fixed_rows:
        line = f"{row['config']:>10}"
        for ranks in args.ranks:
            cell = row[ranks]
            mark = " "
            if cell["used_ranks"] != ranks or cell["baseline_used_ranks"] != ranks:
                mark = "*"
                notes.add(f"* {row['config']} at {ranks}: Seesaw uses {cell['used_ranks']}, "
                          f"cosine {cell['baseline_used_ranks']} ranks (rank counts must "
                          "divide the initial batch)")
            line += (f" | {'':>9}{mark}{cell['hours']:>8.3f} {cell['baseline_hours']:>8.3f} "
                     f"{cell['ratio']:>5.3f} {cell['gpu_hours']:>7.2f} "
                     f"{cell['baseline_gpu_hours']:>9.2f}")
        print(line)
    for note in sorted(notes):
        print(note)

    print(f"\n2. Growing chain {start} -> <= {grow_to} GPUs, each relaunch charged "
          "(start-up + ZeRO-1 save + universal conversion + load)")
    header = (f"{'config':>10} {'relaunch s':>10} {'jobs':>16} {'chain h':>7} "
              f"{'/cos@' + str(start):>8} {'/cos@' + str(grow_to):>8} {'GPU-h jobs':>10} "
              f"{'GPU-h held':>10} {'cos@' + str(grow_to) + ' GPU-h':>12}")
    print(header)
    print("-" * len(header))
    for row in chain_rows:
        jobs = "->".join(map(str, row["jobs"])) if len(row["jobs"]) < 5 else (
            f"{row['jobs'][0]}->...->{row['jobs'][-1]} ({len(row['jobs'])})")
        print(f"{row['config']:>10} {row['relaunch_seconds']:>10.0f} {jobs:>16} "
              f"{row['hours']:>7.3f} {row['hours'] / row['cosine_start_hours']:>8.3f} "
              f"{row['hours'] / row['cosine_max_hours']:>8.3f} {row['gpu_hours_jobs']:>10.2f} "
              f"{row['gpu_hours_held']:>10.2f} {row['cosine_max_gpu_hours']:>12.2f}")
    hows = sorted({f"{r['config'].split('_')[0]}: {r['relaunch_how']}" for r in chain_rows})
    print("relaunch cost: " + "; ".join(hows) + " (CPU, one process: see docs/wallclock.md)")

    print("\nchecks")
    fixed_ok = all(row[r]["ratio"] <= 1.0 for row in fixed_rows for r in args.ranks)
    print(f"  Seesaw <= cosine on every equal allocation: {'met' if fixed_ok else 'MISSED'}")
    chain_ok = all(r["hours"] <= r["seesaw_start_hours"] * (1 + 1e-12) for r in chain_rows)
    print(f"  chain never slower than Seesaw fixed at {start}: "
          f"{'met' if chain_ok else 'MISSED'}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"fixed": [{**{k: v for k, v in row.items() if not isinstance(k, int)},
                                  "by_ranks": {str(k): v for k, v in row.items()
                                               if isinstance(k, int)}}
                                 for row in fixed_rows], "chains": chain_rows}, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
