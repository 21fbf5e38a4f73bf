"""Write files so a reader never sees a half-written one: temp file, fsync, ``os.replace``."""

from __future__ import annotations

import json
import os
from typing import Any

__all__ = ["write_text_atomic", "write_json_atomic", "fsync_path"]


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


def write_json_atomic(path: str, data: Any, **dump_options: Any) -> None:
    """:func:`write_text_atomic` of ``json.dumps(data, indent=2, **dump_options)``."""
    dump_options.setdefault("indent", 2)
    write_text_atomic(path, json.dumps(data, **dump_options) + "\n")
