"""The first frontier sweep (superseded by ``bench/frontier.py``, kept to reproduce its
records): the micro GPT at 1M tokens, one peak LR (3e-3) for every B0, three seeds; cosine,
Seesaw, adaptive, late switch and guarded Seesaw across initial batches B0, through the
product path (``torchrun -m seesaw_ds.train``, 1 rank). That testbed is step-limited (only
B0 8 is below its critical batch); see docs/results.md.

    python bench/frontier_micro_1m.py                          # the whole sweep (resumable)
    python bench/frontier_micro_1m.py --only seesaw@32/s1      # one cell
    python bench/frontier_micro_1m.py --report                 # table + PNG from finished runs

Every cell of one seed shares the model init and the global sample order, so comparisons
are paired. Finished cells (a ``summary.json`` with ``finished: true``) are skipped. Writes
``bench/records/frontier_micro_1m.json`` (one entry per run), prints the table (mean +- SE per
schedule and B0, paired gaps and steps ratios vs cosine at the same B0, and the frontier
view against the best cosine over all B0) and draws ``bench/records/frontier_micro_1m.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import zlib

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _ROOT)

from seesaw_ds.atomic_files import write_json_atomic  # noqa: E402
from seesaw_ds.report.frontier import (  # noqa: E402
    SCHEDULES,
    VARIANTS,
    WEIGHT_DECAY,
    Cell,
    ds_config_of,
    format_frontier_table,
    frontier_report,
    plot_frontier,
    run_config_of,
    side_study_reference,
)

RECORDS = os.path.join(_ROOT, "bench", "records", "frontier_micro_1m.json")
FIGURE = os.path.join(_ROOT, "bench", "records", "frontier_micro_1m.png")
DEFAULT_OUT = "results/frontier_micro_1m"
DEFAULTS = {"tokens": 1.0e6, "b0": [8, 16, 32, 128], "seeds": [0, 1, 2]}


def _cell_dirs(cell: Cell, out: str):
    run_dir = os.path.join(out, cell.name)
    return run_dir, os.path.join(out, "configs", cell.name)


def _command(cell: Cell, args) -> str:
    return (f"python bench/frontier_micro_1m.py --only {cell.label()} --tokens {args.tokens:g} "
            f"--out {args.out} --guard-safety {args.guard_safety:g} "
            f"--adaptive-safety {args.adaptive_safety:g}")


def _finished(run_dir: str):
    path = os.path.join(run_dir, "summary.json")
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as handle:
        summary = json.load(handle)
    return summary if summary.get("finished") else None


def run_cell(cell: Cell, args) -> dict:
    """Train one cell (unless finished) and return its record."""
    import yaml

    run_dir, config_dir = _cell_dirs(cell, args.out)
    summary = _finished(run_dir)
    if summary is None:
        os.makedirs(config_dir, exist_ok=True)
        run_path = os.path.join(config_dir, "run.yaml")
        ds_path = os.path.join(config_dir, "ds.json")
        with open(run_path, "w", encoding="utf-8") as handle:
            yaml.safe_dump(run_config_of(cell, args.tokens, args.prepared, run_dir), handle)
        with open(ds_path, "w", encoding="utf-8") as handle:
            json.dump(ds_config_of(cell, args.tokens, args.guard_safety,
                                   args.adaptive_safety), handle, indent=2)
        port = str(29600 + zlib.crc32(cell.name.encode()) % 300)
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "1",
                   "--master_port", port, "-m", "seesaw_ds.train", "--run-config", run_path,
                   "--deepspeed_config", ds_path, "--no-progress"]
        if os.path.isdir(os.path.join(run_dir, "checkpoints")):
            command.append("--resume")
        env = dict(os.environ, DS_ACCELERATOR="cpu", OMP_NUM_THREADS="1")
        started = time.time()
        with open(os.path.join(config_dir, "train.log"), "w", encoding="utf-8") as log:
            proc = subprocess.run(command, cwd=_ROOT, env=env, stdout=log,
                                  stderr=subprocess.STDOUT)
        if proc.returncode != 0:
            raise SystemExit(f"frontier: {cell.label()} failed (rc {proc.returncode}); see "
                             f"{os.path.join(config_dir, 'train.log')}")
        summary = _finished(run_dir)
        print(f"frontier: {cell.label()} done in {time.time() - started:.0f} s: loss "
              f"{summary['final_val_loss']:.4f}, {summary['optimizer_steps']} steps",
              flush=True)
    return {
        "schedule": cell.schedule, "b0": cell.b0, "seed": cell.seed,
        "final_val_loss": summary["final_val_loss"],
        "optimizer_steps": summary["optimizer_steps"], "tokens": summary["tokens"],
        "wall_seconds": summary["wall_seconds"],
        "final_global_batch": summary.get("final_global_batch"),
        "command": _command(cell, args),
        "summary_path": os.path.relpath(os.path.join(run_dir, "summary.json"), _ROOT),
    }


def _load_records() -> list:
    if not os.path.isfile(RECORDS):
        return []
    with open(RECORDS, encoding="utf-8") as handle:
        return json.load(handle)["runs"]


def _save_records(runs: list, args) -> None:
    runs = sorted(runs, key=lambda r: (r["b0"], r["schedule"], r["seed"]))
    write_json_atomic(RECORDS, {"tokens": args.tokens, "model": "micro", "seq_length": 128,
                                "guard_safety": args.guard_safety,
                                "adaptive_safety": args.adaptive_safety, "runs": runs})


def report(runs: list) -> None:
    side = {}
    for run in runs:
        reference = side_study_reference(run["schedule"])
        if reference:
            side.setdefault(reference, []).append(run)
    runs = [run for run in runs if not side_study_reference(run["schedule"])]
    print(format_frontier_table(runs))
    frontier = frontier_report(runs)
    if frontier:
        best = frontier["best_cosine"]
        print(f"\nbest cosine: B0 = {best['b0']}, loss {best['loss']:.4f} +- "
              f"{best['loss_se']:.4f}, {best['steps']:.0f} steps")
        print("| schedule | B0 | gap vs best cosine (paired) | steps ratio | reaches it |")
        print("|---|---|---|---|---|")
        for gap in frontier["vs_best_cosine"]:
            print(f"| {gap['schedule']} | {gap['b0']} | {100 * gap['gap']:+.2f}% +- "
                  f"{100 * gap['gap_se']:.2f}% | {gap['steps_ratio']:.3f} | "
                  f"{'yes' if gap['reaches_best_cosine'] else 'no'} |")
        beyond = frontier["beyond_cosine_frontier"]
        print("\npoints no cosine run dominates (fewer or equal steps and lower or equal mean "
              "loss): " + (", ".join(f"{r['schedule']}@{r['b0']} ({r['steps']:.0f} steps, "
                                     f"{r['loss']:.4f})" for r in beyond) or "none"))
        winner = frontier["fewest_steps_at_best_loss"]
        if winner:
            print(f"\nfewest steps at the best cosine loss: {winner['schedule']} @ B0 "
                  f"{winner['b0']}: {winner['steps_ratio']:.3f} of its steps, gap "
                  f"{100 * winner['gap']:+.2f}% +- {100 * winner['gap_se']:.2f}%")
    plot_frontier(runs, FIGURE)
    print(f"\nfigure: {os.path.relpath(FIGURE, _ROOT)}")
    if "cosine_wd" in side:
        print(f"\nwith AdamW weight decay {WEIGHT_DECAY:g} (opt-in keys: _tau keeps the "
              "weight-decay timescale, _b2 the beta2 half-life):")
        print(format_frontier_table(side["cosine_wd"], reference="cosine_wd"))
    if "cosine_fd" in side:
        print("\ndata order fixed (data_seed 1234), the seed moves the model init only:")
        print(format_frontier_table(side["cosine_fd"], reference="cosine_fd"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=float, default=DEFAULTS["tokens"])
    parser.add_argument("--b0", type=int, nargs="+", default=DEFAULTS["b0"])
    parser.add_argument("--seeds", type=int, nargs="+", default=DEFAULTS["seeds"])
    parser.add_argument("--schedules", nargs="+", default=list(SCHEDULES),
                        choices=SCHEDULES + VARIANTS)
    parser.add_argument("--only", help="one cell, schedule@B0/sSEED")
    parser.add_argument("--out", default=DEFAULT_OUT,
                        help="run folder; records are kept only for the default one")
    parser.add_argument("--prepared", default="results/data/stdlib")
    parser.add_argument("--guard-safety", type=float, default=1.0)
    parser.add_argument("--adaptive-safety", type=float, default=0.5)
    parser.add_argument("--report", action="store_true", help="only report finished runs")
    args = parser.parse_args(argv)
    if not os.path.isdir(os.path.join(_ROOT, args.prepared)):
        subprocess.run([sys.executable, "-m", "seesaw_ds.cli.main", "prepare", "--out",
                        args.prepared, "--vocab-size", "2048"], cwd=_ROOT, check=True)
    records = {(r["schedule"], r["b0"], r["seed"]): r for r in _load_records()}
    if not args.report:
        cells = ([Cell.parse(args.only)] if args.only else
                 [Cell(s, b, seed) for seed in args.seeds for b in args.b0
                  for s in args.schedules])
        for index, cell in enumerate(cells, 1):
            print(f"frontier: [{index}/{len(cells)}] {cell.label()}", flush=True)
            record = run_cell(cell, args)
            if os.path.normpath(args.out) != os.path.normpath(DEFAULT_OUT):
                print(json.dumps(record))  # a check elsewhere never replaces a record
                continue
            # re-read first: several sweep processes may share the records file
            records = {(r["schedule"], r["b0"], r["seed"]): r for r in _load_records()}
            records[(cell.schedule, cell.b0, cell.seed)] = record
            _save_records(list(records.values()), args)
    report(list(records.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
