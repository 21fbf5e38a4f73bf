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

__all__ = ["main", "build_parser", "installed_version"]

_SUBCOMMANDS = ("plan_cmd", "calibrate_cmd", "prepare_cmd", "train_cmd", "universal_cmd",
                "configs_cmd", "cbs_cmd")


def installed_version() -> str:
    """The installed distribution's version (package metadata); the source tree's
    ``seesaw_ds.__version__`` when run from a checkout that is not installed."""
    from importlib import metadata

    try:
        return metadata.version("seesaw-ds")
    except metadata.PackageNotFoundError:
        from seesaw_ds import __version__

        return f"{__version__} (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="seesaw-ds",
        description="Seesaw batch-size scheduling for DeepSpeed and Megatron.",
    )
    parser.add_argument("--version", action="version",
                        version=f"seesaw-ds {installed_version()}")
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
