"""``seesaw-ds configs list`` / ``seesaw-ds configs copy NAME DEST``: the example configs that
ship inside the package.

The DeepSpeed JSON configs (``seesaw_ds/configs/``, the repository's ``ds_configs/``) and the
YAML run configs of ``seesaw_ds.train`` (``seesaw_ds/run_configs/``, the repository's
``launch/run_configs/``) are one set of files: in the repository the package folders are
symbolic links to those two, so a wheel carries exactly what the repository holds.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
from importlib import resources
from typing import Dict, List, Tuple

from seesaw_ds.errors import SeesawConfigError

__all__ = ["add_parser", "run", "packaged_configs", "describe"]

# package folder -> what its files are
_FOLDERS = (("configs", ".json", "DeepSpeed config"), ("run_configs", ".yaml", "run config"))


def packaged_configs() -> Dict[str, Tuple[str, str]]:
    """File name -> (path, kind) of every example config in the installed package."""
    found: Dict[str, Tuple[str, str]] = {}
    root = resources.files("seesaw_ds")
    for folder, suffix, kind in _FOLDERS:
        directory = root / folder
        if not directory.is_dir():
            continue
        for entry in sorted(directory.iterdir(), key=lambda item: item.name):
            if entry.name.endswith(suffix):
                found[entry.name] = (str(entry), kind)
    return found


def describe(path: str) -> str:
    """One line saying what a config holds (schedule, batch, budget; or the run config's
    first comment line)."""
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    if not path.endswith(".json"):
        comment = []
        for line in text.splitlines():
            if not line.startswith("#"):
                break
            comment.append(line.lstrip("# ").strip())
        return re.split(r" \(|\. |\.$", " ".join(comment))[0]
    config = json.loads(text)
    section = config.get("seesaw") or {}
    base = (section.get("lr_schedule") or {}).get("type", "constant")
    zero = (config.get("zero_optimization") or {}).get("stage", 0)
    tokens = section.get("total_tokens")
    budget = f"{float(tokens):.3g} tokens" if isinstance(tokens, (int, float)) else str(tokens)
    return (f"batch {section.get('batch_schedule', 'seesaw')}, LR {base}, "
            f"B0 {config.get('train_batch_size')}, seq {section.get('seq_length')}, {budget}, "
            f"ZeRO {zero}")


def _find(name: str) -> Tuple[str, str]:
    configs = packaged_configs()
    for candidate in (name, f"{name}.json", f"{name}.yaml"):
        if candidate in configs:
            return candidate, configs[candidate][0]
    names = ", ".join(sorted(os.path.splitext(known)[0] for known in configs))
    raise SeesawConfigError(
        f"configs: no packaged config named {name!r}; `seesaw-ds configs list` shows them "
        f"({names}).")


def copy_config(name: str, dest: str, force: bool = False) -> str:
    """Copy the packaged config ``name`` (with or without its suffix) to ``dest`` (a file,
    or an existing folder); returns the written path. An existing file is kept unless
    ``force``."""
    file_name, source = _find(name)
    target = os.path.join(dest, file_name) if os.path.isdir(dest) else dest
    if os.path.exists(target) and not force:
        raise SeesawConfigError(
            f"configs copy: {target} exists; pass --force to overwrite it, or name another "
            "DEST.")
    parent = os.path.dirname(os.path.abspath(target))
    if not os.path.isdir(parent):
        raise SeesawConfigError(f"configs copy: the folder {parent} of DEST does not exist.")
    shutil.copyfile(source, target)
    return target


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "configs",
        help="list or copy the example configs shipped in the package",
        description="The example DeepSpeed configs (the paper's 150M-600M runs, tiny CPU "
        "ones) and run configs of seesaw_ds.train ship inside the package: list them, or "
        "copy one to edit.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    listing = actions.add_parser("list", help="list the packaged configs")
    listing.add_argument("--paths", action="store_true", help="print each file's path")
    listing.set_defaults(run=run)
    copying = actions.add_parser("copy", help="copy one packaged config to DEST")
    copying.add_argument("name", metavar="NAME", help="config name, e.g. tiny_seesaw")
    copying.add_argument("dest", metavar="DEST", help="file path, or an existing folder")
    copying.add_argument("--force", action="store_true", help="overwrite an existing file")
    copying.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.action == "copy":
        print(f"configs: wrote {copy_config(args.name, args.dest, args.force)}")
        return 0
    configs = packaged_configs()
    if not configs:
        raise SeesawConfigError("configs: this installation ships no configs (a build "
                                 "without package data); reinstall seesaw-ds.")
    width = max(len(name) for name in configs)
    lines: List[str] = []
    for kind in (kind for _, _, kind in _FOLDERS):
        for name, (path, its_kind) in configs.items():
            if its_kind == kind:
                lines.append(f"{name:<{width}}  {kind:<16}  "
                             + (path if args.paths else describe(path)))
    print("\n".join(lines))
    return 0
