"""Imports go downward: no package module imports the entry points (train, cli) it sits under."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "seesaw_ds"
ENTRY_POINTS = ("seesaw_ds.train", "seesaw_ds.cli")


def _imported_modules(path: Path):
    """Every module an ``import`` statement in ``path`` names, function bodies included."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


def _is_entry(module: str) -> bool:
    """``seesaw_ds.train`` or under ``seesaw_ds.cli`` (not ``seesaw_ds.training``)."""
    return any(module == entry or module.startswith(entry + ".") for entry in ENTRY_POINTS)


def test_no_module_below_the_entry_points_imports_them():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE.parent).with_suffix("").as_posix().replace("/", ".")
        if _is_entry(relative):
            continue
        offenders += [f"{relative} imports {name}" for name in _imported_modules(path)
                      if _is_entry(name)]
    assert offenders == []
