"""``seesaw-ds universal CKPT_DIR``: make the latest checkpoint loadable on another rank count."""

from __future__ import annotations

import argparse

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "universal",
        help="convert the latest checkpoint to DeepSpeed's universal format (more ranks)",
        description="Run DeepSpeed's ds_to_universal on the latest (or --tag) checkpoint of "
        "CKPT_DIR and point latest_universal at it; `python -m seesaw_ds.train --resume` on "
        "another number of ranks then continues the same plan from it.",
    )
    parser.add_argument("checkpoint_dir")
    parser.add_argument("--tag", default=None, help="tag to convert (default: latest)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from seesaw_ds.deepspeed_adapter.universal import convert_to_universal

    convert_to_universal(args.checkpoint_dir, args.tag)
    return 0
