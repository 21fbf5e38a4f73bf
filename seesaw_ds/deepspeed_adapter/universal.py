"""Convert a Seesaw checkpoint to DeepSpeed's universal format, to resume on more ranks.

ZeRO >= 1 shards optimizer state by rank; DeepSpeed reshards it only through its universal
checkpoint (``python -m deepspeed.checkpoint.ds_to_universal``). This runs that converter on
the ``latest`` tag (one process, no GPU), copies the Seesaw sidecar next to it and points
``latest_universal`` at the result atomically. ``seesaw_ds.train --resume`` on another rank
count then loads it (it sets ``"checkpoint": {"load_universal": true}`` itself).

Limitations:
    Needs the whole checkpoint on one file system and enough memory on this machine for
    the fp32 optimizer state of one parameter at a time (DeepSpeed's converter).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from typing import Optional

from seesaw_ds.atomic_files import write_text_atomic
from seesaw_ds.deepspeed_adapter.checkpoint_tags import (
    SIDECAR_NAME,
    check_tag_files,
    read_latest,
    read_sidecar,
    resume_tag,
    tags_hint,
)
from seesaw_ds.errors import SeesawConfigError

__all__ = ["UNIVERSAL_LATEST", "checkpoint_layout", "convert_to_universal"]

UNIVERSAL_LATEST = "latest_universal"


def checkpoint_layout(checkpoint_dir: str, tag: Optional[str] = None,
                      sidecar: Optional[dict] = None) -> Optional[dict]:
    """``{"tag", "dp_size", "zero_stage", "consumed_tokens"}`` of a checkpoint's sidecar
    (``sidecar`` if already read), or None if it has none."""
    tag = tag or read_latest(checkpoint_dir)
    if tag is None:
        return None
    saved = sidecar if sidecar is not None else read_sidecar(checkpoint_dir, tag,
                                                             required=False)
    if saved is None:
        return None
    return {"tag": tag, "dp_size": saved["state"].get("dp_size"),
            "zero_stage": int(saved.get("zero_stage", 0)),
            "consumed_tokens": int(saved["state"].get("consumed_tokens", 0))}


def convert_to_universal(checkpoint_dir: str, tag: Optional[str] = None,
                         log=print) -> Optional[str]:
    """Convert ``tag`` (default: ``latest``) and point ``latest_universal`` at it.

    Returns the universal tag, or None for a ZeRO-0 checkpoint (it loads on any rank count
    as it is). Converting the same tag again reuses the earlier result. A missing tag, a
    doubtful ``latest``, a missing or truncated shard is one :class:`SeesawConfigError`
    before the converter runs.
    """
    chosen = resume_tag(checkpoint_dir, tag, option="--tag")
    if chosen is None:
        raise SeesawConfigError(
            f"{checkpoint_dir} has no checkpoint to convert (no 'latest' and no tag folder): "
            "save one with seesaw_ds.train --stop-at-tokens, or check the directory.")
    saved = read_sidecar(checkpoint_dir, chosen, required=False, option="--tag")
    if saved is None:
        raise SeesawConfigError(
            f"{os.path.join(checkpoint_dir, chosen)} has no {SIDECAR_NAME} (not saved by "
            f"seesaw_ds): convert another with --tag "
            f"({tags_hint(checkpoint_dir, exclude=chosen, option='--tag')}).")
    check_tag_files(checkpoint_dir, chosen, saved, option="--tag")
    layout = checkpoint_layout(checkpoint_dir, chosen, saved)
    if layout["zero_stage"] == 0:
        log(f"{layout['tag']}: ZeRO stage 0, no conversion needed to change the rank count")
        return None
    source = os.path.join(checkpoint_dir, layout["tag"])
    universal = f"{layout['tag']}_universal"
    target = os.path.join(checkpoint_dir, universal)
    if read_latest(checkpoint_dir, UNIVERSAL_LATEST) == universal and os.path.isfile(
            os.path.join(target, SIDECAR_NAME)):
        log(f"{universal} exists already")
        return universal
    shutil.rmtree(target, ignore_errors=True)  # a half-finished earlier try
    command = [sys.executable, "-m", "deepspeed.checkpoint.ds_to_universal",
               "--input_folder", source, "--output_folder", target, "--inject_missing_state",
               "--num_extract_workers", "1", "--num_merge_workers", "1"]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
        shutil.rmtree(target, ignore_errors=True)
        raise SeesawConfigError(
            f"DeepSpeed's ds_to_universal failed on {source}: "
            f"{lines[-1].strip()[:200] if lines else 'no output'}; rerun `python -m "
            f"deepspeed.checkpoint.ds_to_universal --input_folder {source} --output_folder "
            f"{target} --inject_missing_state` to see its whole output, or convert another "
            f"tag with --tag ({tags_hint(checkpoint_dir, exclude=layout['tag'], option='--tag')}).")
    shutil.copy2(os.path.join(source, SIDECAR_NAME), os.path.join(target, SIDECAR_NAME))
    write_text_atomic(os.path.join(checkpoint_dir, UNIVERSAL_LATEST), universal)
    log(f"{layout['tag']} (ZeRO {layout['zero_stage']}, {layout['dp_size']} ranks) -> {universal}")
    return universal
