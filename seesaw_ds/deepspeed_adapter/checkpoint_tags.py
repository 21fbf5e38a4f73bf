"""What a checkpoint directory holds, read without trusting it: its tags, the tag a resume
continues, a tag's Seesaw sidecar and its DeepSpeed files.

Every check here is cheap (directory listings, a JSON file, the end of each ``.pt`` file)
and deterministic, so ``seesaw_ds.train`` runs them before any process group exists and
every rank reaches the same verdict. A problem is one :class:`SeesawConfigError` naming the
file and the fix; nothing is written.

A resume never starts over silently: with tag folders present, a missing, empty,
unreadable ``latest`` (or one naming a tag that is not there) is refused with the list of
tags and how to pick one (``--resume-tag``). Only a directory with neither ``latest`` nor
any tag is a fresh start.
"""

from __future__ import annotations

import json
import os
import re
import zipfile
from typing import Any, Dict, List, Optional, Tuple

from seesaw_ds.errors import SeesawConfigError

__all__ = [
    "LATEST_NAME", "SIDECAR_NAME", "read_latest", "checkpoint_tags", "resume_tag",
    "read_sidecar", "check_tag_files", "tags_hint",
]

LATEST_NAME = "latest"
SIDECAR_NAME = "seesaw_state.json"
MISSING_STATE_FLAG = "--allow-missing-seesaw-state"
_TAG_NAME = re.compile(r"^[^\x00-\x1f/\\]+$")  # one path component, printable
_STEP = re.compile(r"(\d+)$")


def _latest(load_dir: str, name: str = LATEST_NAME) -> Tuple[Optional[str], str]:
    """``(tag, "")`` from ``load_dir/name``, or ``(None, what is wrong with it)``."""
    path = os.path.join(load_dir, name)
    if not os.path.isfile(path):
        return None, f"has no {name!r} file"
    try:
        with open(path, "rb") as handle:
            raw = handle.read(4096)
    except OSError as error:
        return None, f"has a {name!r} file that cannot be read ({error.strerror})"
    try:
        tag = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        return None, f"has a {name!r} file that is not text"
    if not tag:
        return None, f"has an empty {name!r} file"
    if not _TAG_NAME.match(tag) or tag in (".", ".."):
        return None, f"has a {name!r} file holding {tag[:40]!r}, not a tag name"
    return tag, ""


def read_latest(load_dir: str, name: str = LATEST_NAME) -> Optional[str]:
    """The tag in ``load_dir/latest`` (or ``name``), or None when there is none or it is not
    a tag name (empty, binary)."""
    return _latest(load_dir, name)[0]


def _step_key(tag: str) -> Tuple[int, str]:
    match = _STEP.search(tag)
    return (int(match.group(1)) if match else -1, tag)


def checkpoint_tags(checkpoint_dir: str) -> List[str]:
    """Tag folders holding a checkpoint (a DeepSpeed ``*model_states.pt`` or the Seesaw
    sidecar), oldest step first; universal copies (``*_universal``) left out."""
    try:
        names = os.listdir(checkpoint_dir)
    except OSError:
        return []
    tags = []
    for name in names:
        folder = os.path.join(checkpoint_dir, name)
        if name.endswith("_universal") or not os.path.isdir(folder):
            continue
        try:
            files = os.listdir(folder)
        except OSError:
            continue
        if SIDECAR_NAME in files or any(f.endswith("model_states.pt") for f in files):
            tags.append(name)
    return sorted(tags, key=_step_key)


def tags_hint(checkpoint_dir: str, exclude: Optional[str] = None,
              option: str = "--resume-tag") -> str:
    """``"its checkpoints: a, b (newest: --resume-tag b)"``, or that there is none."""
    tags = [tag for tag in checkpoint_tags(checkpoint_dir) if tag != exclude]
    if not tags:
        return "it holds no other checkpoint"
    shown = tags if len(tags) <= 8 else tags[:3] + ["..."] + tags[-4:]
    return f"its checkpoints: {', '.join(shown)} (newest: {option} {tags[-1]})"


def resume_tag(checkpoint_dir: str, tag: Optional[str] = None,
               latest_name: str = LATEST_NAME, option: str = "--resume-tag") -> Optional[str]:
    """The tag a resume continues: ``tag`` if given (it must be there), else the one
    ``latest`` names. None only when the directory has no ``latest`` and no tag (a fresh
    start); any other doubt is a :class:`SeesawConfigError` listing the tags."""
    if tag is not None:
        if tag not in checkpoint_tags(checkpoint_dir):
            raise SeesawConfigError(
                f"{option} {tag}: {os.path.join(checkpoint_dir, tag)} is not a checkpoint; "
                f"{tags_hint(checkpoint_dir, option=option)}.")
        return tag
    latest, problem = _latest(checkpoint_dir, latest_name)
    if latest is not None:
        if os.path.isdir(os.path.join(checkpoint_dir, latest)):
            return latest
        problem = f"has a {latest_name!r} file naming {latest!r}, which is not there"
    tags = checkpoint_tags(checkpoint_dir)
    if not tags and not os.path.exists(os.path.join(checkpoint_dir, latest_name)):
        return None
    if not tags:
        raise SeesawConfigError(
            f"cannot resume: {checkpoint_dir} {problem} and holds no checkpoint: delete "
            f"{os.path.join(checkpoint_dir, latest_name)} to start a new run, or point "
            "checkpoint.dir at the run's checkpoints.")
    raise SeesawConfigError(
        f"cannot resume: {checkpoint_dir} {problem}, but it holds checkpoints "
        f"{', '.join(tags if len(tags) <= 8 else tags[:3] + ['...'] + tags[-4:])}: pick one "
        f"with {option} TAG" + (" (python -m seesaw_ds.train; tag= in load_checkpoint)"
                                if option == "--resume-tag" else "")
        + f", e.g. {option} {tags[-1]} (the newest). Nothing was changed.")


def _sidecar_problem(saved: Any) -> Optional[str]:
    if not isinstance(saved, dict) or not isinstance(saved.get("state"), dict):
        return "has no 'state' object"
    for key in ("consumed_samples", "consumed_tokens", "step"):
        value = saved["state"].get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"has no number at state.{key}"
    return None


def read_sidecar(checkpoint_dir: str, tag: str, required: bool = True,
                 flag: str = MISSING_STATE_FLAG,
                 option: str = "--resume-tag") -> Optional[Dict[str, Any]]:
    """The Seesaw sidecar of ``tag`` (``seesaw_state.json``), checked.

    A missing file is None if not ``required``; otherwise (and for garbage, ``{}``, or a
    file without the state) a :class:`SeesawConfigError` naming the file and the fix
    (``flag`` accepts a tag without it).
    """
    path = os.path.join(checkpoint_dir, tag, SIDECAR_NAME)
    if not os.path.isfile(path):
        if not required:
            return None
        raise SeesawConfigError(
            f"checkpoint {os.path.join(checkpoint_dir, tag)} has no {SIDECAR_NAME}, so the "
            "plan it was trained with cannot be checked before loading: resume another tag "
            f"with --resume-tag ({tags_hint(checkpoint_dir, exclude=tag)}), or accept it with "
            f"{flag} (the plan is then checked against the Seesaw state in its model file).")
    try:
        with open(path, encoding="utf-8") as handle:
            saved = json.load(handle)
        problem = _sidecar_problem(saved)
    except (OSError, UnicodeDecodeError, ValueError) as error:
        problem = f"is not readable JSON ({type(error).__name__}: {str(error)[:80]})"
    if problem is not None:
        raise SeesawConfigError(
            f"{path} {problem}: it is damaged; restore it from a copy, or use another tag "
            f"with {option} ({tags_hint(checkpoint_dir, exclude=tag, option=option)}).")
    return saved


def check_tag_files(checkpoint_dir: str, tag: str, sidecar: Optional[Dict[str, Any]] = None,
                    option: str = "--resume-tag") -> None:
    """Every DeepSpeed file of ``tag`` is there and ends like a whole torch file.

    The model file (``*model_states.pt``), and for ZeRO >= 1 one optimizer shard per saved
    data-parallel rank (from the sidecar); each ``.pt`` must carry its zip directory (a
    truncated file does not). Garbage of the right length is only found by loading it.
    """
    def _damaged(what: str) -> SeesawConfigError:
        return SeesawConfigError(
            f"{what}: checkpoint {folder} cannot be loaded; restore the file, or use another "
            f"tag with {option} ({tags_hint(checkpoint_dir, exclude=tag, option=option)}).")

    folder = os.path.join(checkpoint_dir, tag)
    try:
        files = sorted(os.listdir(folder))
    except OSError as error:
        raise _damaged(f"{folder} cannot be listed ({error.strerror})") from None
    if not any(name.endswith("model_states.pt") for name in files):
        raise _damaged(f"{folder} has no model file (*model_states.pt)")
    state = (sidecar or {}).get("state") or {}
    zero, dp = int((sidecar or {}).get("zero_stage", 0) or 0), state.get("dp_size")
    if zero >= 1 and isinstance(dp, int):
        for rank in range(dp):
            marker = f"zero_pp_rank_{rank}_mp_rank_"
            if not any(marker in name and name.endswith("optim_states.pt") for name in files):
                raise _damaged(f"{os.path.join(folder, marker + '00_optim_states.pt')} (the "
                               f"optimizer shard of rank {rank} of {dp}) is missing")
    for name in files:
        path = os.path.join(folder, name)
        if name.endswith(".pt") and not zipfile.is_zipfile(path):
            raise _damaged(f"{path} is truncated or not a torch file")
