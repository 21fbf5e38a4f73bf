"""``seesaw-ds plan CONFIG``: read the plan (table, JSON, PNG, Megatron string) before training."""

from __future__ import annotations

import argparse
import json
from typing import Optional

from seesaw_ds.config import load_config_file, plan_from_ds_config
from seesaw_ds.errors import SeesawConfigError
from seesaw_ds.report.table import format_plan_table

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "plan",
        help="print the phase table of a DeepSpeed config with a seesaw section",
        description="Print the exact phases (tokens, batch, micro-batch, GAS, LR, steps) "
        "that a config will train, the optimizer steps vs the constant-batch baseline "
        "and the continuous-limit bound.",
    )
    parser.add_argument("config", help="DeepSpeed JSON (or YAML) config with a seesaw section")
    parser.add_argument("--dp-size", type=int, default=None,
                        help="data-parallel ranks (default: train_batch_size / (micro x GAS) "
                        "when all three are in the config, else 1)")
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
    parser.add_argument("--relaunch-seconds", type=float, default=0.0,
                        help="with --max-ranks: seconds each extra job of the chain costs "
                        "(queue, start-up, checkpoint conversion); the search weighs it")
    output = parser.add_mutually_exclusive_group()
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


def _run_wallclock(args: argparse.Namespace, config: dict) -> int:
    from seesaw_ds.layout import load_throughput, project_wallclock
    from seesaw_ds.report.projection import format_wallclock_table

    if args.ranks is None:
        raise SeesawConfigError("--throughput needs --ranks N (the ranks of the job).")
    if args.megatron or args.plot or args.dp_size is not None:
        raise SeesawConfigError(
            "--throughput chooses the layout itself: drop --dp-size, --plot and --megatron.")
    throughput = load_throughput(args.throughput)
    plan = plan_from_ds_config(config, 1)
    if args.max_ranks is None and (args.gpus_per_node is not None or args.relaunch_seconds):
        raise SeesawConfigError("--gpus-per-node and --relaunch-seconds shape a chain of jobs: "
                                "add --max-ranks M.")
    projection = project_wallclock(plan, throughput, args.ranks, args.max_ranks,
                                   args.gpus_per_node, args.relaunch_seconds)
    if args.json:
        print(json.dumps(projection.to_dict(), indent=2))
    else:
        print(format_wallclock_table(projection))
    return 0


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
    plan = plan_from_ds_config(config, dp_size)  # checks the batch triple (or a chain stage)
    if args.json:
        print(json.dumps(plan.summary(), indent=2))
    elif args.megatron:
        print(plan.megatron_step_schedule())
    else:
        print(format_plan_table(plan))
    if args.plot:
        from seesaw_ds.report.plot import plot_plan

        plot_plan(plan, args.plot)
        if not args.json and not args.megatron:
            print(f"plot written to {args.plot}")
    return 0
