"""The prepared folder's ``manifest.json``: input fingerprint, parameters and outputs.

``prepare`` reuses a folder when the fingerprint and parameters recorded here match the
current ones and every listed output still exists with its recorded size.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Optional, Sequence

from seesaw_ds.atomic_files import write_json_atomic  # re-exported for prepare
from seesaw_ds.data.corpus import SourceFile

__all__ = ["MANIFEST_NAME", "FORMAT_VERSION", "fingerprint", "write_json_atomic",
           "read_manifest", "outputs_intact"]

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1


def fingerprint(files: Sequence[SourceFile]) -> dict:
    """A digest of (path, size, mtime) of every input file, plus counts.

    Note:
        Contents are not hashed: a file edited without changing size or mtime is missed.
    """
    digest = hashlib.sha256()
    for source in files:
        digest.update(f"{source.path}\0{source.size}\0{source.mtime_ns}\n".encode())
    return {
        "num_files": len(files),
        "total_bytes": sum(source.size for source in files),
        "sha256": digest.hexdigest(),
        "first": files[0].path if files else None,
        "last": files[-1].path if files else None,
    }


def read_manifest(out_dir: str) -> Optional[dict]:
    """The manifest of ``out_dir``, or None when absent or unreadable."""
    try:
        with open(os.path.join(out_dir, MANIFEST_NAME), encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def outputs_intact(out_dir: str, manifest: dict) -> bool:
    """True when every output file listed in ``manifest`` exists with its recorded size."""
    sizes = manifest.get("output_sizes") or {}
    if not sizes:
        return False
    for name, size in sizes.items():
        path = os.path.join(out_dir, name)
        if not os.path.isfile(path) or os.path.getsize(path) != size:
            return False
    return True
