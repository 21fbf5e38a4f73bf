"""The frontier sweep on the testbed (``seesaw_ds/report/testbed.py``, docs/results.md):
LR-tuned cosine, Seesaw and the schedule planned from the measured critical batch, with
choices made on tuning seeds and 95% intervals on the judged seeds.

    bash bench/cbs_testbed.sh && RECORD=1 bash bench/cbs_testbed.sh   # the curve, first
    python bench/frontier.py --workers 2              # tune, choose, judge (resumable)
    python bench/frontier.py --phase tune             # only the tuning cells
    python bench/frontier.py --only seesaw@16/lr0.004/s1   # one cell (its record's command)
    python bench/frontier.py --report                 # table + PNG from finished runs
    python bench/frontier.py --check cosine@64/lr0.008/s0 --threads 2   # rerun, compare

Each cell is ``python -m seesaw_ds.train`` on one rank in ``results/frontier/<cell>/``;
a cell with a finished ``summary.json`` is skipped, a cell another sweep process is running
(a lock file) is left to it, so an interrupted sweep picks up where its records stop.
Writes ``bench/records/frontier.json`` (one entry per run with ``peak_lr`` and its command,
the choices, the judgement) and ``bench/records/frontier.png``.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _ROOT)

from seesaw_ds.atomic_files import write_json_atomic  # noqa: E402
from seesaw_ds.report import testbed  # noqa: E402
from seesaw_ds.report.testbed import Cell  # noqa: E402
from seesaw_ds.train import DIVERGED_EXIT  # noqa: E402

RECORDS = os.path.join(_ROOT, "bench", "records", "frontier.json")
FIGURE = os.path.join(_ROOT, "bench", "records", "frontier.png")
CBS_RECORD = os.path.join(_ROOT, "bench", "records", "cbs_testbed.json")
OUT = "results/frontier"
PREPARED = "results/data/stdlib"
_LOCK = threading.Lock()


def _load() -> dict:
    if not os.path.isfile(RECORDS):
        return {"runs": []}
    with open(RECORDS, encoding="utf-8") as handle:
        return json.load(handle)


def _save(update) -> dict:
    """Read, change and write the records under a lock (several workers share them)."""
    with _LOCK:
        with open(RECORDS + ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            records = _load()
            update(records)
            write_json_atomic(RECORDS, records)
            return records


def _curve():
    from seesaw_ds.cbs.fit import PowerLaw

    if not os.path.isfile(CBS_RECORD):
        raise SystemExit(f"frontier: {os.path.relpath(CBS_RECORD, _ROOT)} is missing: run "
                         "RECORD=1 bash bench/cbs_testbed.sh first (the planned cells need "
                         "the measured critical-batch curve).")
    with open(CBS_RECORD, encoding="utf-8") as handle:
        return PowerLaw.from_dict(json.load(handle)["fit"])


def _diverged(summary: dict) -> bool:
    return bool((summary.get("divergence") or {}).get("diverged"))


def _summary(run_dir: str):
    """The cell's summary once it finished, or once the divergence policy stopped it (a
    result too: that schedule diverged there); else None."""
    path = os.path.join(run_dir, "summary.json")
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as handle:
        summary = json.load(handle)
    return summary if summary.get("finished") or _diverged(summary) else None


def run_cell(cell: Cell, role: str, progress: str, wait: bool = False, out: str = OUT,
             threads: int = 1) -> bool:
    """Train ``cell`` unless finished; record it (only for the sweep's own folder). A cell
    another sweep process is training is left to it (False), or with ``wait`` waited for."""
    run_dir = os.path.join(_ROOT, out, cell.name)
    os.makedirs(run_dir, exist_ok=True)
    with open(os.path.join(run_dir, ".lock"), "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except OSError:
            print(f"frontier: {progress} {cell.label()} is running in another sweep process",
                  flush=True)
            return False
        summary = _summary(run_dir)
        if summary is None:
            curve = _curve() if cell.family == "planned" else None
            run_path = os.path.join(run_dir, "run.json")
            ds_path = os.path.join(run_dir, "ds.json")
            write_json_atomic(run_path, testbed.run_config_of(cell, PREPARED, run_dir))
            write_json_atomic(ds_path, testbed.ds_config_of(cell, curve))
            command = [sys.executable, "-m", "seesaw_ds.train", "--run-config", run_path,
                       "--deepspeed_config", ds_path, "--no-progress"]
            if os.path.isfile(os.path.join(run_dir, "checkpoints", "latest")):
                command.append("--resume")
            env = dict(os.environ, DS_ACCELERATOR="cpu", OMP_NUM_THREADS=str(threads))
            print(f"frontier: {progress} {cell.label()} ({role}) started", flush=True)
            started = time.time()
            with open(os.path.join(run_dir, "train.log"), "w", encoding="utf-8") as log:
                code = subprocess.call(command, cwd=_ROOT, env=env, stdout=log,
                                       stderr=subprocess.STDOUT)
            summary = _summary(run_dir)
            if code not in (0, DIVERGED_EXIT) or summary is None:
                raise SystemExit(f"frontier: {cell.label()} failed (exit {code}); see "
                                 f"{os.path.join(run_dir, 'train.log')}")
            outcome = ("DIVERGED" if _diverged(summary) else
                       f"done, loss {summary['final_val_loss']:.4f}")
            print(f"frontier: {progress} {cell.label()} {outcome} in "
                  f"{time.time() - started:.0f} s, {summary['optimizer_steps']} steps",
                  flush=True)
    diverged = _diverged(summary)
    record = {
        "schedule": cell.schedule, "b0": cell.b0, "peak_lr": cell.peak_lr, "seed": cell.seed,
        "role": role, "final_val_loss": None if diverged else summary["final_val_loss"],
        "diverged": diverged,
        "optimizer_steps": summary["optimizer_steps"], "tokens": summary["tokens"],
        "wall_seconds": summary["wall_seconds"],
        "final_global_batch": summary.get("final_global_batch"),
        "command": f"python bench/frontier.py --only {cell.label()}",
        "summary_path": os.path.relpath(os.path.join(run_dir, "summary.json"), _ROOT),
    }
    if out != OUT:
        return True

    def add(records):
        runs = [r for r in records["runs"] if not (
            r["schedule"], r["b0"], r["peak_lr"], r["seed"]) == (
            cell.schedule, cell.b0, cell.peak_lr, cell.seed)]
        records["runs"] = sorted(runs + [record], key=lambda r: (
            r["role"], r["b0"], r["schedule"], r["peak_lr"], r["seed"]))
    _save(add)
    return True


def run_cells(cells, role: str, workers: int) -> None:
    total = len(cells)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(run_cell, cell, role, f"[{i}/{total}]")
                   for i, cell in enumerate(cells, 1)]
        skipped = [cell for cell, future in zip(cells, futures) if not future.result()]
    for cell in skipped:  # trained by another sweep process: wait for it, then record it
        run_cell(cell, role, "[wait]", wait=True)


def _role(cell: Cell) -> str:
    return "tune" if cell.seed in testbed.TUNE_SEEDS else "judge"


def programme(workers: int, phase: str) -> None:
    print(f"frontier: tuning: cosine at 3 peak LRs per B0 {list(testbed.B0S)}, seeds "
          f"{list(testbed.TUNE_SEEDS)}", flush=True)
    run_cells(testbed.tuning_cells(), "tune", workers)
    lrs = testbed.choose_cosine_lrs(_load()["runs"])
    while True:  # the best LR of a B0 on the grid's edge: one more LR past it
        extra = testbed.lr_extensions(_load()["runs"], lrs)
        if not extra:
            break
        print("frontier: best LR on the grid's edge: tuning "
              f"{sorted({c.label() for c in extra})}", flush=True)
        run_cells(extra, "tune", workers)
        lrs = testbed.choose_cosine_lrs(_load()["runs"])
    runs = _load()["runs"]
    b0 = testbed.best_b0(runs, lrs)
    print(f"frontier: chosen on the tuning seeds: peak LR per B0 {lrs}; best cosine B0 {b0}",
          flush=True)
    run_cells(testbed.grown_tuning_cells(lrs, b0), "tune", workers)
    runs = _load()["runs"]
    grown = {family: testbed.choose_safety(runs, family, lrs, b0)
             for family in testbed.GROWN_SAFETIES}
    for family, choice in grown.items():
        print(f"frontier: {family} schedule safety {choice['safety']:g} (tuning gaps "
              f"{choice['tuning_gaps']})", flush=True)

    def keep(records):
        records["choices"] = {"cosine_peak_lr": {str(k): v for k, v in lrs.items()},
                              "best_tuning_b0": b0, "grown": grown,
                              "tuning_seeds": list(testbed.TUNE_SEEDS),
                              "judged_seeds": list(testbed.JUDGE_SEEDS)}
    _save(keep)
    if phase == "tune":
        return
    run_cells(testbed.judged_cells(lrs, {f: c["safety"] for f, c in grown.items()}), "judge",
              workers)


def target_stage(workers: int) -> None:
    """Stage 2: the target candidates from the smallest B0 on the tuning seeds, then the
    chosen one on the judged seeds (testbed.choose_target_candidate)."""
    choices = _load().get("choices")
    if not choices:
        raise SystemExit("frontier: stage 2 needs the choices: run the tuning first.")
    lrs = {int(k): v for k, v in choices["cosine_peak_lr"].items()}
    best = choices["best_tuning_b0"]
    print(f"frontier: stage 2: {', '.join(testbed.TARGET_CANDIDATES)} at B0 "
          f"{min(testbed.B0S)} on the tuning seeds", flush=True)
    run_cells(testbed.target_tuning_cells(lrs), "tune", workers)
    choice = testbed.choose_target_candidate(_load()["runs"], lrs, best)
    print(f"frontier: stage 2 choice: {choice}", flush=True)

    def keep(records):
        records["choices"]["target_stage"] = choice
    _save(keep)
    if choice["schedule"] is not None:
        run_cells([Cell(choice["schedule"], choice["b0"], lrs[choice["b0"]], seed)
                   for seed in testbed.JUDGE_SEEDS], "judge", workers)


def _batch_paths(lrs, safety, stage_two=None) -> dict:
    """The planned batch paths (Seesaw's, the planned schedule's) per B0, and the stage-2
    candidate's if it is planned."""
    from seesaw_ds.config import plan_from_ds_config

    curve = _curve() if os.path.isfile(CBS_RECORD) else None
    paths = {}
    cells = [(schedule, b0) for schedule in ("seesaw", testbed.grown_name("planned", safety))
             for b0 in testbed.B0S]
    if stage_two and str(stage_two.get("schedule")).startswith("planned"):
        cells.append((stage_two["schedule"], stage_two["b0"]))
    for schedule, b0 in cells:
        if schedule != "seesaw" and curve is None:
            continue
        plan = plan_from_ds_config(testbed.ds_config_of(Cell(schedule, b0, lrs[b0], 0), curve),
                                   1)
        paths[f"{schedule} B0 {b0}"] = [(p.start_tokens, p.global_batch) for p in plan.phases]
    return paths


def check_reproducible(label: str, threads: int) -> int:
    """Train a recorded cell again with ``threads`` CPU threads in its own folder and compare
    with its record: optimizer steps, last batch and final loss (relative difference);
    appends the comparison to ``bench/records/frontier_reproducibility.json``."""
    cell = Cell.parse(label)
    recorded = next((r for r in _load()["runs"] if (r["schedule"], r["b0"], r["peak_lr"],
                                                    r["seed"]) == (cell.schedule, cell.b0,
                                                                   cell.peak_lr, cell.seed)),
                    None)
    if recorded is None:
        raise SystemExit(f"frontier: {label} has no record to compare with; run it first.")
    out = f"results/frontier_check/threads{threads}"
    run_cell(cell, _role(cell), "[check]", wait=True, out=out, threads=threads)
    again = _summary(os.path.join(_ROOT, out, cell.name))
    relative = abs(again["final_val_loss"] / recorded["final_val_loss"] - 1.0)
    row = {"cell": label, "threads": threads, "recorded_threads": 1,
           "recorded_loss": recorded["final_val_loss"], "loss": again["final_val_loss"],
           "relative_difference": relative,
           "same_steps": again["optimizer_steps"] == recorded["optimizer_steps"],
           "same_last_batch": again.get("final_global_batch") == recorded.get(
               "final_global_batch")}
    with open(os.path.join(_ROOT, recorded["summary_path"]), encoding="utf-8") as handle:
        first = json.load(handle)
    if "cbs_guard" in first:  # an online schedule: the same decisions at the same tokens
        decisions = [[(d["tokens"], d.get("floor"), d.get("cap")) for d in
                      s.get("cbs_guard", {}).get("decisions", [])] for s in (first, again)]
        row["same_decisions"] = decisions[0] == decisions[1]
        row["decisions"] = len(decisions[0])
    print(json.dumps(row, indent=1))
    path = os.path.join(_ROOT, "bench", "records", "frontier_reproducibility.json")
    rows = []
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as handle:
            rows = [r for r in json.load(handle) if (r["cell"], r["threads"]) != (label,
                                                                                  threads)]
    write_json_atomic(path, rows + [row])
    return 0 if row["same_steps"] and row["same_last_batch"] and row.get(
        "same_decisions", True) else 1


def report() -> int:
    records = _load()
    choices = records.get("choices")
    if not choices:
        print("frontier: no choices yet (the tuning cells are not all in)")
        return 1
    lrs = {int(k): v for k, v in choices["cosine_peak_lr"].items()}
    result = testbed.judge(records["runs"], lrs)
    print(testbed.format_judgement(result))
    best = result["best_cosine"]
    if best:
        print(f"\nbest cosine (judged seeds): B0 {best['b0']}, peak LR {best['peak_lr']:g}, "
              f"loss {best['loss']:.4f}")
        print(f"target (gap upper 95% bound <= +{100 * testbed.TARGET_GAP:.1f}% in <= "
              f"{testbed.TARGET_STEPS:.2f} of its steps): met by "
              f"{', '.join(result['target']['met_by']) or 'none'}")
        print("points no cosine run dominates (as few or fewer steps and as low or lower mean "
              f"loss): {', '.join(result['not_dominated_by_cosine']) or 'none'}")
        fewest = result["fewest_steps_noninferior"]
        if fewest:
            print(f"fewest steps non-inferior: {fewest['schedule']}@{fewest['b0']}: "
                  f"{fewest['vs_best']['steps_ratio']:.3f} of its steps")

    def keep(records):
        records["judgement"] = result
        records["testbed"] = {"model": "micro", "tokens": testbed.TOKENS,
                              "seq_length": testbed.SEQ, "micro_batch": testbed.MICRO,
                              "b0": list(testbed.B0S),
                              "lr_grid": {str(k): v for k, v in testbed.LR_GRID.items()},
                              "planned_growth": testbed.PLANNED_GROWTH,
                              "adaptive": testbed.ADAPTIVE,
                              "seesaw_growth": testbed.SEESAW_GROWTH}
    _save(keep)
    cbs = None
    if os.path.isfile(CBS_RECORD):
        with open(CBS_RECORD, encoding="utf-8") as handle:
            cbs = json.load(handle)
    testbed.plot_testbed(result, cbs, _batch_paths(lrs, choices["grown"]["planned"]["safety"],
                                                   choices.get("target_stage")), FIGURE)
    print(f"\nfigure: {os.path.relpath(FIGURE, _ROOT)}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=1,
                        help="cells trained at once (one CPU core each)")
    parser.add_argument("--phase", choices=("tune", "all", "target"), default="all",
                        help="tune: the tuning cells only; target: only stage 2 (after the "
                        "choices); all: everything")
    parser.add_argument("--only", help="one cell, schedule@B0/lrLR/sSEED")
    parser.add_argument("--report", action="store_true", help="only report finished runs")
    parser.add_argument("--check", metavar="CELL",
                        help="train a recorded cell again (--threads) and compare")
    parser.add_argument("--threads", type=int, default=2,
                        help="CPU threads of the --check run (the sweep uses 1)")
    args = parser.parse_args(argv)
    if args.report:
        return report()
    if args.check:
        return check_reproducible(args.check, args.threads)
    if not os.path.isdir(os.path.join(_ROOT, PREPARED)):
        subprocess.run([sys.executable, "-m", "seesaw_ds.cli.main", "prepare", "--out",
                        PREPARED, "--vocab-size", "2048"], cwd=_ROOT, check=True)
    if args.only:
        cell = Cell.parse(args.only)
        run_cell(cell, _role(cell), "[1/1]")
    elif args.phase == "target":
        target_stage(max(1, args.workers))
    else:
        programme(max(1, args.workers), args.phase)
        target_stage(max(1, args.workers))
    return report()


if __name__ == "__main__":
    sys.exit(main())
