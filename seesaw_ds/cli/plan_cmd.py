"""``seesaw-ds plan CONFIG``: read the plan (table, JSON, PNG, Megatron string) before training."""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any, Mapping, Optional

from seesaw_ds.config import load_config_file, plan_from_ds_config, seesaw_section_of
from seesaw_ds.errors import SeesawConfigError
from seesaw_ds.report.table import format_plan_table, online_note, online_phases, plan_notes

_PEAK_LR_HELP = (
    "the peak LR when the config has no optimizer section (a client optimizer passed to "
    "seesaw_ds.initialize: its param_groups[0] lr is the peak, other groups keep their ratio "
    "to it). With an optimizer section its params.lr is the peak; a different --peak-lr is "
    "an error.")

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "plan",
        help="print the phase table of a DeepSpeed config with a seesaw section",
        description="Print the exact phases (tokens, batch, micro-batch, GAS, LR, steps) "
        "that a config will train, the optimizer steps vs the constant-batch baseline "
        "and the continuous-limit bound. The peak LR is the config's optimizer.params.lr; "
        "with a client optimizer (no optimizer section) it is the optimizer's "
        "param_groups[0] lr: give it as --peak-lr.",
    )
    parser.add_argument("config", help="DeepSpeed JSON (or YAML) config with a seesaw section")
    parser.add_argument("--dp-size", type=int, default=None,
                        help="data-parallel ranks (default: train_batch_size / (micro x GAS) "
                        "when all three are in the config, else 1)")
    parser.add_argument("--peak-lr", type=float, default=None, metavar="LR",
                        help=_PEAK_LR_HELP)
    parser.add_argument("--plot", metavar="FILE.png", help="also draw LR, batch and "
                        "lr*sqrt(B) against tokens")
    parser.add_argument("--throughput", metavar="TP.json",
                        help="throughput file (seesaw-ds calibrate, or hand-written): lay the "
                        "plan out on --ranks and project its wall-clock time against the "
                        "constant-batch baseline")
    parser.add_argument("--ranks", type=int, default=None,
                        help="with --throughput: ranks available (the job's size)")
    parser.add_argument("--max-ranks", type=int, default=None,
                        help="with --throughput: let a chain of jobs grow to this many ranks "
                        "as the batch grows")
    parser.add_argument("--gpus-per-node", type=int, default=None,
                        help="with --max-ranks: jobs of the chain use one partial node or "
                        "whole nodes of this many GPUs (default: any rank count)")
    parser.add_argument("--relaunch-seconds", type=float, default=None,
                        help="with --max-ranks: seconds each extra job of the chain costs "
                        "(start-up, checkpoint save, conversion and load; a queue wait is "
                        "extra); the search weighs it (default: 300, see docs/wallclock.md)")
    output = parser.add_mutually_exclusive_group()
    parser.add_argument("--cbs-curve", metavar="CBS.json", default=None,
                        help="plan the batch offline below the critical-batch curve fitted "
                        "by `seesaw-ds cbs` (a step schedule, lr / sqrt(B) on the base path)")
    parser.add_argument("--cbs-safety", type=float, default=1.0,
                        help="with --cbs-curve: stay below this fraction of the curve (1.0)")
    parser.add_argument("--cbs-growth", type=float, default=2.0,
                        help="with --cbs-curve: rung growth factor (2.0)")
    output.add_argument("--json", action="store_true", help="print a JSON summary instead")
    output.add_argument("--megatron", action="store_true",
                        help="print the Megatron --step-batch-size-schedule string instead")
    parser.set_defaults(run=run)


def _default_dp_size(config: dict) -> int:
    keys = ("train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps")
    values = [config.get(key) for key in keys]
    if all(isinstance(value, int) and value > 0 for value in values):
        total, micro, accum = values
        if total % (micro * accum) == 0:
            return total // (micro * accum)
    return 1


def _peak_lr(config: Mapping[str, Any], peak_lr: Optional[float]) -> Optional[float]:
    """``--peak-lr`` checked against the config (None: the config's optimizer lr)."""
    if peak_lr is None:
        return None
    if not math.isfinite(peak_lr) or peak_lr <= 0:
        raise SeesawConfigError(f"--peak-lr = {peak_lr!r} must be a positive finite number.")
    optimizer = config.get("optimizer")
    params = optimizer.get("params") if isinstance(optimizer, Mapping) else None
    configured = params.get("lr") if isinstance(params, Mapping) else None
    if configured is not None and configured != peak_lr:
        raise SeesawConfigError(
            f"--peak-lr = {peak_lr!r} but the config's optimizer.params.lr = {configured!r} "
            "is the peak LR: drop --peak-lr (it is for a client optimizer, with no optimizer "
            "section) or change the config.")
    return peak_lr


def _run_wallclock(args: argparse.Namespace, config: dict) -> int:
    from seesaw_ds.layout import load_throughput, project_wallclock, zero_of_config
    from seesaw_ds.report.projection import format_wallclock_table

    if args.ranks is None:
        raise SeesawConfigError("--throughput needs --ranks N (the ranks of the job).")
    if args.megatron or args.plot or args.dp_size is not None:
        raise SeesawConfigError(
            "--throughput chooses the layout itself: drop --dp-size, --plot and --megatron.")
    throughput = zero_of_config(load_throughput(args.throughput), config)
    plan = plan_from_ds_config(config, 1, peak_lr=_peak_lr(config, args.peak_lr))
    if args.max_ranks is None and (args.gpus_per_node is not None
                                   or args.relaunch_seconds is not None):
        raise SeesawConfigError("--gpus-per-node and --relaunch-seconds shape a chain of jobs: "
                                "add --max-ranks M.")
    projection = project_wallclock(plan, throughput, args.ranks, args.max_ranks,
                                   args.gpus_per_node, args.relaunch_seconds)
    if args.json:
        print(json.dumps(projection.to_dict(), indent=2))
    else:
        print(format_wallclock_table(projection))
    return 0


def _planned_from_curve(args: argparse.Namespace, config: dict, dp_size: int) -> dict:
    """The config with a step schedule planned below the curve of a ``seesaw-ds cbs`` JSON;
    its ``batch_steps`` printed first, to paste into a config."""
    from seesaw_ds.cbs.fit import PowerLaw
    from seesaw_ds.cbs.planned import planned_ds_config

    if not args.cbs_safety > 0 or not args.cbs_growth > 1:
        raise SeesawConfigError("--cbs-safety must be > 0 and --cbs-growth > 1.")
    try:
        with open(args.cbs_curve, encoding="utf-8") as handle:
            curve = PowerLaw.from_dict(json.load(handle)["fit"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise SeesawConfigError(f"--cbs-curve {args.cbs_curve}: not a `seesaw-ds cbs` JSON "
                                f"with a fit ({error}).")
    config = planned_ds_config(config, curve, dp_size, args.cbs_growth, args.cbs_safety)
    section = config["seesaw"]
    if not args.json and not args.megatron:
        print(f"planned below {args.cbs_safety:g} x B*(t) = {curve.a:.4g} x t^{curve.b:.3f}: "
              f"\"batch_schedule\": \"{section['batch_schedule']}\""
              + (f", \"batch_steps\": {json.dumps(section['batch_steps'])}, "
                 "\"lr_scaling\": \"sqrt\"" if "batch_steps" in section else ""))
    return config


def run(args: argparse.Namespace) -> int:
    config = load_config_file(args.config)
    if args.throughput:
        return _run_wallclock(args, config)
    if args.ranks is not None or args.max_ranks is not None:
        raise SeesawConfigError("--ranks and --max-ranks need --throughput TP.json.")
    dp_size: Optional[int] = args.dp_size
    if dp_size is not None and dp_size < 1:
        raise SeesawConfigError(f"--dp-size = {dp_size} must be >= 1.")
    dp_size = dp_size or _default_dp_size(config)
    if args.cbs_curve:
        config = _planned_from_curve(args, config, dp_size)
    peak_lr = _peak_lr(config, args.peak_lr)
    section = seesaw_section_of(config)
    # checks the batch triple (or a chain stage)
    plan = plan_from_ds_config(config, dp_size, peak_lr=peak_lr, section=section)
    guard = section.cbs_guard
    if args.json:
        summary = plan.summary()
        summary["online_phases"] = online_phases(plan, guard)
        summary["notes"] = plan_notes(plan, guard)
        print(json.dumps(summary, indent=2))
    elif args.megatron:
        print(plan.megatron_step_schedule())
        online = online_note(plan, guard)
        if online:  # stdout stays the bare string for $(seesaw-ds plan --megatron)
            print("seesaw-ds plan: note: this string is the offline plan; Megatron's "
                  "--step-batch-size-schedule is fixed, so it cannot follow the online "
                  f"decisions of this config. {online.replace(' (* rows)', '')}",
                  file=sys.stderr)
    else:
        print(format_plan_table(plan, guard))
    if args.plot:
        from seesaw_ds.report.plot import plot_plan

        plot_plan(plan, args.plot)
        if not args.json and not args.megatron:
            print(f"plot written to {args.plot}")
    return 0
