"""The prepared folder's ``manifest.json``: input fingerprint, parameters and outputs.

``prepare`` reuses a folder when the fingerprint and parameters recorded here match the
current ones and every listed output still exists with its recorded size; when they differ,
:func:`first_difference` names what changed (``prepare`` refuses to rebuild without
``force``).
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Optional, Sequence, Tuple

from seesaw_ds.atomic_files import write_json_atomic  # re-exported for prepare
from seesaw_ds.data.corpus import SourceFile

__all__ = ["MANIFEST_NAME", "FORMAT_VERSION", "fingerprint", "write_json_atomic",
           "read_manifest", "outputs_intact", "first_difference"]

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


# the user-facing name of each recorded parameter (CLI flag / run-config key, without dashes)
_TOKENIZER_OPTION = "tokenizer_model"
_NAMES = {"sentencepiece_version": "sentencepiece version",
          "format_version": "prepared-data format version"}


def _leaves(params: Any, prefix: str = ""):
    """(name, value) pairs of a parameter dict, nested dicts flattened (``tokenizer.trained``
    contributes ``vocab_size``, ``seed``...; a loaded model contributes ``tokenizer_model``)."""
    if not isinstance(params, dict):
        yield prefix, params
        return
    for key, value in params.items():
        if key == "tokenizer" and isinstance(value, dict):
            if "loaded_sha256" in value:
                yield _TOKENIZER_OPTION, f"loaded, sha256 {value['loaded_sha256'][:12]}"
            else:
                yield _TOKENIZER_OPTION, None  # trained here
                yield from _leaves(value.get("trained", {}))
        else:
            yield from _leaves(value, key)


def _fingerprint_text(recorded: Optional[dict]) -> str:
    if not recorded:
        return "unknown"
    count = recorded.get("num_files")
    return (f"{count} file{'' if count == 1 else 's'}, {recorded.get('total_bytes')} bytes, "
            f"sha256 {str(recorded.get('sha256'))[:12]}")


def first_difference(manifest: dict, params: dict,
                     input_fingerprint: dict) -> Optional[Tuple[str, str, str]]:
    """The first option in which ``manifest`` (a prepared folder's) differs from ``params``
    and ``input_fingerprint`` (a new request): ``(name, recorded, requested)`` as text, or
    None when they agree. Input files that changed on disk count as the option ``input
    files`` (path, size or modification time of some file).
    """
    recorded = dict(_leaves(manifest.get("params") or {}))
    requested = dict(_leaves(params))
    for name in list(requested) + [name for name in recorded if name not in requested]:
        if recorded.get(name, "absent") != requested.get(name, "absent"):
            return (_NAMES.get(name, name), repr(recorded.get(name, "absent")),
                    repr(requested.get(name, "absent")))
    if manifest.get("input_fingerprint") != input_fingerprint:
        return ("input files", _fingerprint_text(manifest.get("input_fingerprint")),
                _fingerprint_text(input_fingerprint))
    return None
