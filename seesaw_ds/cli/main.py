"""Entry point of the ``seesaw-ds`` console script.

Every subcommand module exposes ``add_parser(subparsers)``; a user mistake
(:class:`SeesawConfigError`) is printed as one line and exits 2, with no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings
from typing import List, Optional

from seesaw_ds.errors import SeesawConfigError

__all__ = ["main", "build_parser"]

_SUBCOMMANDS = ("plan_cmd", "calibrate_cmd", "prepare_cmd", "train_cmd", "universal_cmd")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="seesaw-ds",
        description="Seesaw batch-size scheduling for DeepSpeed and Megatron.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name in _SUBCOMMANDS:
        try:
            module = importlib.import_module(f"seesaw_ds.cli.{name}")
        except ModuleNotFoundError as error:
            if error.name != f"seesaw_ds.cli.{name}":
                raise
            continue
        module.add_parser(subparsers)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None):
    print(f"warning: {message}", file=sys.stderr)


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    warnings.showwarning = _show_warning
    try:
        return int(args.run(args) or 0)
    except SeesawConfigError as error:
        print(f"seesaw-ds: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
