"""Save and restore a Seesaw run with DeepSpeed checkpoints.

DeepSpeed's ``save_checkpoint``/``load_checkpoint`` keep model, optimizer, scheduler state,
``global_steps``/``global_samples`` and ``client_state``, but the batch and GAS come back at
the JSON values and ``micro_steps`` restarts at 0. These wrappers add the token clock, the
setting and the data position (under ``client_state["seesaw"]`` plus a readable
``seesaw_state.json`` in the tag directory) and put them back into the engine.

The ``latest`` file is written by us, atomically, after every rank has finished writing the
tag directory: DeepSpeed 0.19.8 truncates and rewrites ``latest`` in place on rank 0 before
its final barrier, so a crash can leave it empty or pointing at a tag other ranks have not
finished.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any, Dict, Optional, Tuple

from seesaw_ds.atomic_files import fsync_path, write_text_atomic
from seesaw_ds.deepspeed_adapter.state import SeesawState
from seesaw_ds.errors import SeesawConfigError

__all__ = [
    "save_checkpoint", "load_checkpoint", "write_latest_atomically", "read_latest",
    "CLIENT_STATE_KEY", "SIDECAR_NAME",
]

CLIENT_STATE_KEY = "seesaw"
SIDECAR_NAME = "seesaw_state.json"
LATEST_NAME = "latest"
_log = logging.getLogger(__name__)


def _hook_of(engine: Any):
    hook = engine.__dict__.get("seesaw")
    if hook is None:
        raise SeesawConfigError(
            "this engine has no Seesaw state (engine.seesaw): build it with "
            "seesaw_ds.initialize."
        )
    return hook


def _barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def write_latest_atomically(save_dir: str, tag: str) -> None:
    """Point ``save_dir/latest`` at ``tag``: temp file, fsync, ``os.replace``, fsync dir.

    A reader sees the old tag or the new one, never a partial file.
    """
    write_text_atomic(os.path.join(save_dir, LATEST_NAME), str(tag))


def read_latest(load_dir: str, name: str = LATEST_NAME) -> Optional[str]:
    """The tag in ``load_dir/latest`` (or ``name``), or None when there is none."""
    path = os.path.join(load_dir, name)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as handle:
        tag = handle.read().strip()
    return tag or None


def _fsync_tree(directory: str) -> None:
    for root, _, files in os.walk(directory):
        for name in files:
            fsync_path(os.path.join(root, name))
        fsync_path(root)


def save_checkpoint(
    engine: Any,
    save_dir: str,
    tag: Optional[str] = None,
    client_state: Optional[Dict[str, Any]] = None,
    save_latest: bool = True,
    exclude_frozen_parameters: bool = False,
) -> str:
    """Save a DeepSpeed checkpoint with the Seesaw clock, setting and data position.

    Call it on every rank, between optimizer steps (``engine.seesaw.at_boundary``).
    Files registered in ``engine.seesaw.checkpoint_sidecars`` (name -> callable returning
    JSON data; called on rank 0 only, so no collectives) are written into the tag directory
    before ``latest`` moves, so a resume never sees a tag without them.

    Args:
        engine: an engine from :func:`seesaw_ds.initialize`.
        save_dir: checkpoint root (tags are subdirectories).
        tag: tag name; default ``global_step{N}`` as DeepSpeed.
        client_state: extra user state (the key ``"seesaw"`` is reserved).
        save_latest: atomically point ``latest`` at this tag once every rank is done.
        exclude_frozen_parameters: passed to DeepSpeed.

    Returns:
        The tag.
    """
    hook = _hook_of(engine)
    if not hook.at_boundary:
        raise RuntimeError(
            f"save_checkpoint called inside an accumulation window (micro-batch "
            f"{hook.micro_in_window} of {hook.setting.grad_accum}): save right after the "
            "engine.step() that finishes an optimizer step (engine.seesaw.at_boundary)."
        )
    client = dict(client_state or {})
    if CLIENT_STATE_KEY in client:
        raise SeesawConfigError(
            f"client_state[{CLIENT_STATE_KEY!r}] is reserved for the Seesaw state: rename it."
        )
    zero_stage = int(engine.zero_optimization_stage())
    payload = {
        "state": hook.state.to_dict(),
        "loader": hook.loader.state_dict() if hook.loader is not None else None,
        "zero_stage": zero_stage,
        "global_steps": int(engine.global_steps),
        "global_samples": int(engine.global_samples),
    }
    client[CLIENT_STATE_KEY] = payload
    tag = str(tag) if tag is not None else f"global_step{engine.global_steps}"
    decoupled = bool(getattr(engine.checkpoint_engine, "is_decoupled", lambda: False)())
    # The class method: ``engine.save_checkpoint`` is this function while the hook is on.
    type(engine).save_checkpoint(
        engine, save_dir, tag=tag, client_state=client, save_latest=save_latest and decoupled,
        exclude_frozen_parameters=exclude_frozen_parameters,
    )
    # DeepSpeed's save ends with a barrier: every rank has written its files of this tag.
    if int(engine.global_rank) == 0:
        tag_dir = os.path.join(save_dir, tag)
        write_text_atomic(os.path.join(tag_dir, SIDECAR_NAME), json.dumps(payload, indent=1))
        for name, produce in dict(getattr(hook, "checkpoint_sidecars", {}) or {}).items():
            write_text_atomic(os.path.join(tag_dir, name), json.dumps(produce(), indent=1))
        _fsync_tree(tag_dir)
        if save_latest and not decoupled:
            write_latest_atomically(save_dir, tag)
    _barrier()
    return tag


def _precheck(hook: Any, load_dir: str, tag: str, engine: Any) -> None:
    """Refuse, before DeepSpeed loads anything, a checkpoint this run cannot continue."""
    path = os.path.join(load_dir, tag, SIDECAR_NAME)
    if not os.path.isfile(path):
        return
    with open(path, encoding="utf-8") as handle:
        saved = json.load(handle)
    SeesawState(hook.plan).load_dict(saved["state"])  # same plan? raises a clear error
    old_dp, new_dp = saved["state"].get("dp_size"), hook.plan.dp_size
    universal = bool(getattr(engine, "load_universal_checkpoint", lambda: False)())
    if old_dp != new_dp and saved.get("zero_stage", 0) >= 1 and not universal:
        raise SeesawConfigError(
            f"checkpoint {tag} was saved with ZeRO stage {saved['zero_stage']} on {old_dp} "
            f"data-parallel ranks; this run has {new_dp}. DeepSpeed cannot reshard ZeRO "
            "optimizer state directly: convert it with `python -m "
            "deepspeed.checkpoint.ds_to_universal` and set \"checkpoint\": "
            "{\"load_universal\": true}, or resume on the same number of ranks."
        )


def load_checkpoint(
    engine: Any,
    load_dir: str,
    tag: Optional[str] = None,
    **deepspeed_kwargs: Any,
) -> Tuple[Optional[str], Optional[Dict[str, Any]]]:
    """Load a checkpoint from :func:`save_checkpoint` and restore the whole Seesaw run.

    Model/optimizer/scheduler through ``engine.load_checkpoint`` (``deepspeed_kwargs`` are
    passed on), then the token clock, the engine's batch/GAS/micro-batch for the next step
    (re-derived for this run's data-parallel size), the LR and the attached loader's
    position.

    Returns:
        ``(load_path, client_state)`` like DeepSpeed, without the ``"seesaw"`` entry;
        ``(None, None)`` when ``load_dir`` has no ``latest`` and no tag was given.

    With ``load_module_only=True`` (a warm start from weights) the clock is not restored:
    the run starts its plan from token 0.

    Note:
        Resuming on another number of ranks keeps the plan if its phases are identical
        (set ``seesaw.batch_multiple`` to a multiple of every layout); ZeRO >= 1 optimizer
        state then needs DeepSpeed's universal checkpoint (``python -m
        deepspeed.checkpoint.ds_to_universal --input_folder DIR/TAG --output_folder
        DIR/TAG_universal --inject_missing_state`` and ``"checkpoint": {"load_universal":
        true}``; the tag is then read from ``latest_universal``).
    """
    hook = _hook_of(engine)
    universal = bool(getattr(engine, "load_universal_checkpoint", lambda: False)())
    if tag is None:
        latest = "latest_universal" if universal else LATEST_NAME
        tag = read_latest(load_dir, latest)
        if tag is None:
            _log.warning("no checkpoint to resume: %s has no %r file", load_dir, latest)
            return None, None
    warm_start = bool(deepspeed_kwargs.get("load_module_only", False))
    if not warm_start:
        _precheck(hook, load_dir, str(tag), engine)
    load_path, client = type(engine).load_checkpoint(engine, load_dir, tag=tag, **deepspeed_kwargs)
    if load_path is None:
        return None, None
    client = dict(client or {})
    payload = client.pop(CLIENT_STATE_KEY, None)
    if warm_start:
        hook.sync()
        return load_path, client
    if payload is None:
        raise SeesawConfigError(
            f"checkpoint {os.path.join(load_dir, str(tag))} has no Seesaw state: it was not "
            "saved with seesaw_ds.deepspeed_adapter.save_checkpoint."
        )
    hook.state.load_dict(payload["state"])
    hook.sync()
    if hook.loader is not None and payload.get("loader"):
        hook.loader.load_state_dict(payload["loader"])
        if hook.loader.position != (hook.state.consumed_samples, 0):  # pragma: no cover
            raise RuntimeError("loader position and token clock disagree in the checkpoint")
    return load_path, client
