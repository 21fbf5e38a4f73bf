"""The frontier testbed (``bench/frontier.py``, docs/results.md): cells and their configs, the
choices made on the tuning seeds, and the judgement on the judged seeds. Pure except
:func:`plot_testbed` (matplotlib).

The testbed: the micro GPT (0.10M parameters outside the embeddings) with BPE 2048 on the
stdlib corpus, seq 128, 2M tokens (under one epoch), AdamW 0.9/0.95, no weight decay, 10%
warmup, cosine to 0.1x, one rank, micro-batch 4. Its critical batch is measured by
branching (``bench/cbs_testbed.sh``).

The programme, in order (every choice is made before the seeds that judge it run):

1. **tune** on seeds 100 and 101: cosine at three peak LRs per B0 (a factor 2 apart, centred
   on the square-root rule; where the best sits on the grid's edge, the grid is extended by
   a factor 2 past it, up to twice); the planned schedule (from the measured critical-batch curve)
   and the adaptive one (online, confidence rule, 1-sample probe) at three safety factors
   each, at the B0 of the best tuned cosine.
2. **choose** from the tuning seeds only: the peak LR per B0 (lowest mean loss), each grown
   schedule's safety (the largest whose mean gap to that cosine is at most +0.3%).
3. **judge** on seeds 0-4: the chosen cosine per B0, Seesaw, the planned and the adaptive
   schedule at every B0 with that B0's chosen peak LR.
4. **stage 2, aimed at the target** (added after seed 0's judged cells showed the grown
   schedules from B0 4 beating the best cosine): at the smallest B0, the grown schedules
   at safeties past the chosen ones on the tuning seeds; of those within half the best
   tuned cosine's steps, the one with the smallest tuning gap is judged on seeds 0-4.

A cell is (schedule, B0, peak LR, seed); every cell of one seed shares the model init
(``seed``) and the global sample order (``data_seed``), so comparisons at one seed are
paired.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from seesaw_ds.report.intervals import Interval, mean_interval, verdict

__all__ = ["TOKENS", "SEQ", "MICRO", "B0S", "LR_GRID", "TUNE_SEEDS", "JUDGE_SEEDS",
           "GROWN_SAFETIES", "TARGET_GAP", "TARGET_STEPS", "Cell", "ds_config_of",
           "run_config_of", "tuning_cells", "choose_cosine_lrs", "lr_extensions", "best_b0",
           "grown_tuning_cells", "choose_safety", "grown_name", "judged_cells", "judge",
           "TARGET_CANDIDATES", "target_tuning_cells", "choose_target_candidate",
           "format_judgement", "plot_testbed"]

TOKENS = 2_000_000
SEQ = 128
MICRO = 4
B0S = (4, 16, 64)
LR_GRID: Dict[int, Tuple[float, ...]] = {4: (1e-3, 2e-3, 4e-3), 16: (2e-3, 4e-3, 8e-3),
                                         64: (4e-3, 8e-3, 1.6e-2)}
TUNE_SEEDS = (100, 101)
JUDGE_SEEDS = (0, 1, 2, 3, 4)
#: the schedules grown from a critical-batch measurement, and the safety factors tuned
GROWN_SAFETIES: Dict[str, Tuple[float, ...]] = {"planned": (0.5, 1.0, 2.0),
                                                "adaptive": (0.25, 0.5, 1.0)}
PLANNED_GROWTH = 1.5
ADAPTIVE = {"confidence": 0.9, "probe_samples": 1, "ema_decay": 0.9, "min_samples": 3}
SEESAW_GROWTH = 1.1
#: the target: the upper end of the 95% interval of the paired final-loss gap to the best
#: cosine at most +0.3%, in at most half its optimizer steps
TARGET_GAP = 0.003
TARGET_STEPS = 0.5


@dataclass(frozen=True)
class Cell:
    """One run: ``schedule`` is ``cosine``, ``seesaw``, ``planned_x<safety>`` or
    ``adaptive_x<safety>``."""

    schedule: str
    b0: int
    peak_lr: float
    seed: int

    @property
    def name(self) -> str:
        return f"{self.schedule}_b{self.b0}_lr{self.peak_lr:g}_s{self.seed}"

    def label(self) -> str:
        return f"{self.schedule}@{self.b0}/lr{self.peak_lr:g}/s{self.seed}"

    @classmethod
    def parse(cls, text: str) -> "Cell":
        """``schedule@B0/lrLR/sSEED``, e.g. ``seesaw@16/lr0.004/s1``."""
        try:
            schedule, rest = text.split("@")
            b0, lr, seed = rest.split("/")
            if not (lr.startswith("lr") and seed.startswith("s")):
                raise ValueError(text)
            return cls(schedule, int(b0), float(lr[2:]), int(seed[1:]))
        except ValueError:
            raise ValueError(f"--only {text!r}: write schedule@B0/lrLR/sSEED, e.g. "
                             "seesaw@16/lr0.004/s1") from None

    @property
    def family(self) -> str:
        return self.schedule.split("_x")[0]

    @property
    def safety(self) -> Optional[float]:
        return float(self.schedule.split("_x")[1]) if "_x" in self.schedule else None


def grown_name(family: str, safety: float) -> str:
    return f"{family}_x{safety:g}"


def ds_config_of(cell: Cell, cbs_curve=None) -> Dict:
    """The DeepSpeed config of a cell (one rank, fp32, torch AdamW 0.9/0.95); a planned
    cell needs the fitted critical-batch curve (:class:`~seesaw_ds.cbs.fit.PowerLaw`)."""
    section: Dict = {
        "total_tokens": TOKENS, "seq_length": SEQ, "batch_multiple": MICRO,
        "data_seed": 1234 + cell.seed,
        "lr_schedule": {"type": "cosine", "warmup_fraction": 0.1, "warmup_start_factor": 0.1,
                        "final_factor": 0.1},
    }
    if cell.schedule == "cosine":
        section["batch_schedule"] = "constant"
    elif cell.schedule == "seesaw":
        section.update(batch_schedule="seesaw", batch_growth=SEESAW_GROWTH)
    elif cell.family == "adaptive" and cell.safety is not None:
        section.update(batch_schedule="adaptive", batch_growth=SEESAW_GROWTH,
                       adaptive=dict(ADAPTIVE, safety_factor=cell.safety))
    elif cell.family == "planned" and cell.safety is not None:
        section["batch_schedule"] = "constant"
    else:
        raise ValueError(f"unknown schedule {cell.schedule!r}: cosine, seesaw, planned_x<s> "
                         "or adaptive_x<s>")
    config = {
        "train_batch_size": cell.b0, "train_micro_batch_size_per_gpu": MICRO,
        "gradient_clipping": 1.0, "steps_per_print": 10**9,
        "optimizer": {"type": "AdamW", "params": {
            "lr": cell.peak_lr, "betas": [0.9, 0.95], "eps": 1e-8, "weight_decay": 0.0,
            "torch_adam": True}},
        "zero_optimization": {"stage": 0},
        "seesaw": section,
    }
    if cell.family == "planned":
        from seesaw_ds.cbs.planned import planned_ds_config

        if cbs_curve is None:
            raise ValueError(f"{cell.label()}: a planned cell needs the critical-batch curve")
        config = planned_ds_config(config, cbs_curve, 1, PLANNED_GROWTH, cell.safety)
    return config


def run_config_of(cell: Cell, prepared_dir: str, output_dir: str) -> Dict:
    return {
        "model": {"shape": "micro"},
        "data": {"prepared_dir": prepared_dir, "vocab_size": 2048},
        "eval": {"interval_tokens": TOKENS / 4, "batches": 16, "batch_size": 32},
        "output_dir": output_dir, "seed": cell.seed, "name": cell.schedule,
    }


# ---- the programme --------------------------------------------------------------------------

def loss_of(run: Mapping) -> float:
    """A run's final loss; a diverged run (``final_val_loss`` null) counts as ``+inf``."""
    value = run.get("final_val_loss")
    return math.inf if value is None else float(value)


def _by_cell(runs: Sequence[Mapping]) -> Dict[Tuple[str, int, float, int], Mapping]:
    return {(r["schedule"], r["b0"], float(r["peak_lr"]), r["seed"]): r for r in runs}


def _mean_loss(table: Mapping, schedule: str, b0: int, lr: float,
               seeds: Sequence[int]) -> Optional[float]:
    """Mean loss of a cell over ``seeds`` (``table``: :func:`_by_cell`), None unless every
    seed is in."""
    losses = [loss_of(table[(schedule, b0, lr, s)]) for s in seeds
              if (schedule, b0, lr, s) in table]
    return statistics.fmean(losses) if len(losses) == len(seeds) else None


def tuning_cells() -> List[Cell]:
    return [Cell("cosine", b0, lr, seed) for b0 in B0S for lr in LR_GRID[b0]
            for seed in TUNE_SEEDS]


def _tuned_grid(runs: Sequence[Mapping], b0: int) -> List[float]:
    """The grid LRs of ``b0`` plus every LR the grid was extended by (a cosine run of a
    tuning seed at ``b0``), ascending."""
    extra = {float(r["peak_lr"]) for r in runs if r["schedule"] == "cosine"
             and r["b0"] == b0 and r["seed"] in TUNE_SEEDS}
    return sorted(set(LR_GRID[b0]) | extra)


def choose_cosine_lrs(runs: Sequence[Mapping]) -> Optional[Dict[int, float]]:
    """Per B0 the LR with the lowest mean loss over the tuning seeds, among the grid and
    its extensions (None until every cell of those is in)."""
    chosen, table = {}, _by_cell(runs)
    for b0 in B0S:
        means = {lr: _mean_loss(table, "cosine", b0, lr, TUNE_SEEDS)
                 for lr in _tuned_grid(runs, b0)}
        if any(m is None for m in means.values()):
            return None
        chosen[b0] = min(means, key=means.get)
    return chosen


def lr_extensions(runs: Sequence[Mapping], lrs: Mapping[int, float],
                  max_extra: int = 2) -> List[Cell]:
    """Tuning cells one factor 2 past the grid's edge where the best LR sits on that edge
    (so the chosen LR is an interior optimum), at most ``max_extra`` LRs added per B0."""
    cells = []
    for b0, best in lrs.items():
        grid = _tuned_grid(runs, b0)
        if len(grid) - len(LR_GRID[b0]) >= max_extra:
            continue
        step = 0.5 if best == grid[0] else 2.0 if best == grid[-1] else None
        if step is not None:
            cells += [Cell("cosine", b0, float(f"{best * step:.6g}"), seed)
                      for seed in TUNE_SEEDS]
    return cells


def best_b0(runs: Sequence[Mapping], lrs: Mapping[int, float],
            seeds: Sequence[int] = TUNE_SEEDS) -> int:
    """The B0 whose cosine (at its chosen LR) has the lowest mean loss over ``seeds``."""
    table = _by_cell(runs)
    means = {b0: _mean_loss(table, "cosine", b0, lr, seeds) for b0, lr in lrs.items()}
    return min((b0 for b0 in means if means[b0] is not None), key=means.get)


def grown_tuning_cells(lrs: Mapping[int, float], b0: int) -> List[Cell]:
    return [Cell(grown_name(family, s), b0, lrs[b0], seed)
            for family, safeties in GROWN_SAFETIES.items() for s in safeties
            for seed in TUNE_SEEDS]


def choose_safety(runs: Sequence[Mapping], family: str, lrs: Mapping[int, float],
                  b0: int) -> Optional[dict]:
    """The largest safety of ``family`` whose mean paired gap to the cosine at ``b0`` over
    the tuning seeds is at most ``TARGET_GAP``; if none is, the one with the smallest gap.
    None until every tuning cell is in."""
    table = _by_cell(runs)
    gaps = {}
    safeties = GROWN_SAFETIES[family]
    for safety in safeties:
        paired = _paired(table, (grown_name(family, safety), b0, lrs[b0]),
                         ("cosine", b0, lrs[b0]), TUNE_SEEDS)
        if paired is None or paired[2] < len(TUNE_SEEDS):
            return None
        gaps[safety] = paired[0].mean
    within = [s for s in safeties if gaps[s] <= TARGET_GAP]
    chosen = max(within) if within else min(gaps, key=gaps.get)
    return {"safety": chosen, "b0": b0, "tuning_gaps": {f"{s:g}": g for s, g in gaps.items()}}


#: stage 2, aimed at the target: grown schedules from the smallest B0 at safeties past the
#: chosen ones, tuned on the tuning seeds; the one judged is chosen there
TARGET_CANDIDATES = ("planned_x1", "adaptive_x1", "adaptive_x2")


def target_tuning_cells(lrs: Mapping[int, float]) -> List[Cell]:
    b0 = min(B0S)
    return [Cell(schedule, b0, lrs[b0], seed) for schedule in TARGET_CANDIDATES
            for seed in TUNE_SEEDS]


def choose_target_candidate(runs: Sequence[Mapping], lrs: Mapping[int, float],
                            best: int) -> dict:
    """Among the stage-2 candidates, on the tuning seeds: those whose mean optimizer steps
    are at most ``TARGET_STEPS`` of the best tuned cosine's (at ``best``); of them the one
    with the smallest mean paired gap to that cosine (``schedule`` None if none qualifies; a
    candidate with a tuning cell missing is left out)."""
    table = _by_cell(runs)
    b0, scored = min(B0S), {}
    for schedule in TARGET_CANDIDATES:
        paired = _paired(table, (schedule, b0, lrs[b0]), ("cosine", best, lrs[best]),
                         TUNE_SEEDS)
        if paired is None or paired[2] < len(TUNE_SEEDS):
            continue
        scored[schedule] = {"steps_ratio": paired[1], "gap": paired[0].mean}
    eligible = [s for s, v in scored.items() if v["steps_ratio"] <= TARGET_STEPS]
    if not eligible:
        return {"schedule": None, "b0": b0, "tuning": scored}
    chosen = min(eligible, key=lambda s: scored[s]["gap"])
    return {"schedule": chosen, "b0": b0, "tuning": scored}


def judged_cells(lrs: Mapping[int, float], safeties: Mapping[str, float]) -> List[Cell]:
    """Seeds outermost, so an interrupted sweep has whole seeds of every schedule."""
    schedules = ["cosine", "seesaw"] + [grown_name(f, s) for f, s in safeties.items()]
    return [Cell(schedule, b0, lrs[b0], seed) for seed in JUDGE_SEEDS for b0 in B0S
            for schedule in schedules]


# ---- the judgement --------------------------------------------------------------------------

def _paired(runs: Mapping, key: Tuple[str, int, float], ref: Tuple[str, int, float],
            seeds: Sequence[int]) -> Optional[Tuple[Interval, float, int]]:
    """Over the ``seeds`` where both cells are in (``runs``: :func:`_by_cell`): the relative
    loss gaps' mean and 95% interval, the mean steps ratio, and the number of pairs."""
    gaps, ratios = [], []
    for seed in seeds:
        run, base = runs.get((*key, seed)), runs.get((*ref, seed))
        if run is None or base is None:
            continue
        gaps.append(loss_of(run) / loss_of(base) - 1.0)
        ratios.append(run["optimizer_steps"] / base["optimizer_steps"])
    if not gaps:
        return None
    return mean_interval(gaps), statistics.fmean(ratios), len(gaps)


def judge(runs: Sequence[Mapping], lrs: Mapping[int, float],
          seeds: Sequence[int] = JUDGE_SEEDS) -> dict:
    """Rows per (schedule, B0) on the judged seeds: mean loss with its 95% interval, mean
    steps, the paired gap to the cosine at the same B0 and to the best cosine over all B0
    (95% t intervals, df = pairs - 1), steps ratios, the verdict and the target check."""
    table = _by_cell(runs)
    judged = [r for r in runs if r["seed"] in seeds and lrs.get(r["b0"]) == r["peak_lr"]]
    keys = sorted({(r["schedule"], r["b0"], float(r["peak_lr"])) for r in judged},
                  key=lambda k: (k[1], k[0] != "cosine", k[0]))
    cosine_means = {}  # over the judged seeds that are in (a sweep still running: fewer)
    for b0, lr in lrs.items():
        present = [s for s in seeds if ("cosine", b0, lr, s) in table]
        if present:
            cosine_means[b0] = _mean_loss(table, "cosine", b0, lr, present)
    if not cosine_means:
        return {"rows": [], "best_cosine": None}
    best = min(cosine_means, key=cosine_means.get)
    best_key = ("cosine", best, lrs[best])
    rows = []
    for key in keys:
        group = [table[(*key, s)] for s in seeds if (*key, s) in table]
        loss = mean_interval([loss_of(r) for r in group])
        row = {"schedule": key[0], "b0": key[1], "peak_lr": key[2], "seeds": len(group),
               "loss": loss.to_dict(), "diverged": sum(r.get("diverged", False)
                                                       for r in group),
               "steps": statistics.fmean(r["optimizer_steps"] for r in group),
               "final_batch": statistics.fmean(r.get("final_global_batch") or key[1]
                                               for r in group)}
        for name, ref in (("vs_same_b0", ("cosine", key[1], key[2])), ("vs_best", best_key)):
            paired = _paired(table, key, ref, seeds)
            if paired is not None and key != ref:
                gap, ratio, pairs = paired
                row[name] = {"gap": gap.to_dict(), "steps_ratio": ratio, "pairs": pairs,
                             "verdict": verdict(gap)}
        vs_best = row.get("vs_best")
        row["meets_target"] = bool(
            vs_best and vs_best["pairs"] > 1 and vs_best["gap"]["high"] <= TARGET_GAP
            and vs_best["steps_ratio"] <= TARGET_STEPS)
        rows.append(row)
    ours = [r for r in rows if r["schedule"] != "cosine" and r.get("vs_best")]
    noninferior = [r for r in ours if r["vs_best"]["pairs"] > 1
                   and r["vs_best"]["gap"]["high"] <= TARGET_GAP]
    fewest = min(noninferior, key=lambda r: r["vs_best"]["steps_ratio"], default=None)
    cosine_rows = [r for r in rows if r["schedule"] == "cosine"]
    undominated = [f"{r['schedule']}@{r['b0']}" for r in ours if not any(
        c["steps"] <= r["steps"] and c["loss"]["mean"] <= r["loss"]["mean"]
        for c in cosine_rows)]
    return {"rows": rows, "best_cosine": {"b0": best, "peak_lr": lrs[best],
                                          "loss": cosine_means[best]},
            "not_dominated_by_cosine": undominated,
            "fewest_steps_noninferior": fewest,
            "target": {"gap_upper": TARGET_GAP, "steps_ratio": TARGET_STEPS,
                       "met_by": [f"{r['schedule']}@{r['b0']}" for r in rows
                                  if r["meets_target"]]}}


def _pct(interval: Mapping) -> str:
    if interval["mean"] is None or math.isinf(interval["mean"]):
        return "diverged"
    if interval["n"] < 2 or not math.isfinite(interval["low"]):
        return f"{100 * interval['mean']:+.2f}%"
    return (f"{100 * interval['mean']:+.2f}% [{100 * interval['low']:+.2f}, "
            f"{100 * interval['high']:+.2f}]")


def format_judgement(result: Mapping) -> str:
    """The markdown table of :func:`judge`."""
    lines = ["| schedule | B0 | peak LR | seeds | final loss (95% CI) | steps | last batch | "
             "gap vs cosine same B0 (95% CI) | gap vs best cosine (95% CI) | steps vs best "
             "cosine | target |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in result["rows"]:
        loss = row["loss"]
        ci = (f" [{loss['low']:.4f}, {loss['high']:.4f}]" if loss["n"] > 1 else "")
        if math.isinf(loss["mean"]):
            ci = f" ({row['diverged']} diverged)"
        same, best = row.get("vs_same_b0"), row.get("vs_best")
        lines.append(
            f"| {row['schedule']} | {row['b0']} | {row['peak_lr']:g} | {row['seeds']} | "
            f"{loss['mean']:.4f}{ci} | {row['steps']:.0f} | {row['final_batch']:.0f} | "
            f"{_pct(same['gap']) if same else 'reference'} | "
            f"{_pct(best['gap']) if best else 'reference'} | "
            f"{best['steps_ratio'] if best else 1.0:.3f} | "
            f"{'yes' if row['meets_target'] else 'no'} |")
    return "\n".join(lines)


def plot_testbed(result: Mapping, cbs_record: Optional[Mapping], schedules: Mapping[str, list],
                 path: str) -> None:
    """Left: each (schedule, B0)'s paired final-loss gap to the best cosine (95% interval)
    against its optimizer steps as a fraction of that cosine's, with the target region
    (gap <= +0.3%, <= 0.5 of the steps) shaded. Right: the measured critical batch against
    tokens with its fit and the planned batch paths (``schedules``: label -> [(tokens,
    batch), ...])."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.6))
    left.fill_between([0.0, TARGET_STEPS], -100, 100 * TARGET_GAP, color="0.9",
                      label="target: upper bound <= +0.3%, <= 0.5 of the steps")
    left.axhline(0.0, color="0.5", lw=0.8)
    markers = {"cosine": "o", "seesaw": "s", "planned": "^", "adaptive": "v"}
    colours = {name: f"C{i}" for i, name in enumerate(sorted({r["schedule"]
                                                                for r in result["rows"]}))}
    shown = []
    for row in result["rows"]:
        best = row.get("vs_best")
        if best is None:  # the best cosine itself
            left.plot([1.0], [0.0], "*", color="k", ms=10)
            left.annotate(f"best cosine (B0 {row['b0']})", (1.0, 0.0), fontsize=7,
                          xytext=(4, -10), textcoords="offset points")
            continue
        gap = best["gap"]
        if gap["mean"] is None or not math.isfinite(gap["mean"]):
            continue
        low, high = (gap["low"], gap["high"]) if gap["n"] > 1 else (gap["mean"], gap["mean"])
        family = row["schedule"].split("_x")[0]
        label = row["schedule"] if row["schedule"] not in shown else None
        shown.append(row["schedule"])
        left.errorbar([best["steps_ratio"]], [100 * gap["mean"]],
                      yerr=[[100 * (gap["mean"] - low)], [100 * (high - gap["mean"])]],
                      marker=markers.get(family, "x"), capsize=3, ls="none", label=label,
                      color=colours[row["schedule"]])
        left.annotate(f"B0 {row['b0']}", (best["steps_ratio"], 100 * gap["mean"]), fontsize=7,
                      xytext=(4, 3), textcoords="offset points")
    left.set_xscale("log")
    ticks = [0.125, 0.25, 0.5, 1, 2, 4]
    left.set_xticks(ticks, [f"{t:g}" for t in ticks])
    left.minorticks_off()
    left.set_ylim(-3, 9)
    left.set_xlabel("optimizer steps / best cosine's")
    left.set_ylabel("final-loss gap to the best cosine, % (paired, 95% CI)")
    left.set_title("judged seeds")
    left.legend(fontsize=7, loc="upper right")
    if cbs_record:
        from seesaw_ds.cbs.fit import PowerLaw

        pts = cbs_record["checkpoints"]
        for censored, marker in ((False, "o"), (True, "^")):
            sel = [p for p in pts if p["censored"] == censored]
            if sel:
                right.plot([p["tokens"] for p in sel], [p["critical_batch"] for p in sel],
                           marker, color="k", fillstyle="none" if censored else "full",
                           label="critical batch" + (" (censored: at least)" if censored
                                                     else " (measured)"))
        fit = PowerLaw.from_dict(cbs_record["fit"])
        grid = [TOKENS * (i + 1) / 60 for i in range(60)]
        right.plot(grid, [fit(t) for t in grid], "k--", lw=1,
                   label=f"fit {fit.a:.3g} t^{fit.b:.2f}")
    for label, path_points in schedules.items():
        xs, ys = [], []
        for tokens, batch in path_points:
            if ys:
                xs.append(tokens)
                ys.append(ys[-1])
            xs.append(tokens)
            ys.append(batch)
        xs.append(TOKENS)
        ys.append(ys[-1])
        right.plot(xs, ys, lw=1.2, label=label)
    right.set_yscale("log", base=2)
    right.set_xlabel("tokens")
    right.set_ylabel("global batch (samples)")
    right.set_title("critical batch and batch paths")
    right.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
