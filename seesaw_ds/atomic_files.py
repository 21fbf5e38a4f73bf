"""Write files so a reader never sees a half-written one: temp file, fsync, ``os.replace``."""

from __future__ import annotations

import json
import math
import os
from typing import Any

__all__ = ["write_text_atomic", "write_json_atomic", "fsync_path", "finite_or_none",
           "check_directory_creatable"]


def fsync_path(path: str) -> None:
    """fsync a file or directory by path; best effort (some filesystems refuse)."""
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def write_text_atomic(path: str, text: str) -> None:
    """Replace ``path`` with ``text`` atomically and durably (file and directory synced)."""
    temporary = f"{path}.tmp{os.getpid()}"
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    fsync_path(os.path.dirname(os.path.abspath(path)))


def finite_or_none(data: Any) -> Any:
    """A copy of ``data`` with every NaN or infinite float replaced by None (JSON ``null``):
    strict JSON readers reject the bare ``NaN`` that ``json.dumps`` writes by default."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {key: finite_or_none(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [finite_or_none(value) for value in data]
    return data


def write_json_atomic(path: str, data: Any, **dump_options: Any) -> None:
    """:func:`write_text_atomic` of ``json.dumps(data, indent=2, **dump_options)``, strict:
    non-finite floats are written as ``null`` (:func:`finite_or_none`)."""
    dump_options.setdefault("indent", 2)
    text = json.dumps(finite_or_none(data), allow_nan=False, **dump_options)
    write_text_atomic(path, text + "\n")


def check_directory_creatable(label: str, path: str) -> None:
    """``path`` is, or can be made, a writable directory (nothing is created here); else one
    :class:`SeesawConfigError` starting with ``label`` and naming the blocking folder."""
    from seesaw_ds.errors import SeesawConfigError

    probe = os.path.abspath(path)
    while not os.path.exists(probe):  # the folder that would hold it
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if not os.path.isdir(probe):
        raise SeesawConfigError(
            f"{label}: {probe} is a file, not a directory: choose another path or move the "
            "file.")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise SeesawConfigError(
            f"{label}: {probe} is not writable by this user: choose a writable path.")
