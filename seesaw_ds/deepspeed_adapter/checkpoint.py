"""Save and restore a Seesaw run with DeepSpeed checkpoints.

DeepSpeed's ``save_checkpoint``/``load_checkpoint`` keep model, optimizer, scheduler state,
``global_steps``/``global_samples`` and ``client_state``, but the batch and GAS come back at
the JSON values and ``micro_steps`` restarts at 0. These wrappers add the token clock, the
setting and the data position (under ``client_state["seesaw"]`` plus a readable
``seesaw_state.json`` in the tag directory) and put them back into the engine.

The ``latest`` file is written by us, atomically, after every rank has finished writing the
tag directory: DeepSpeed 0.19.8 truncates and rewrites ``latest`` in place on rank 0 before
its final barrier, so a crash can leave it empty or pointing at a tag other ranks have not
finished. Each rank fsyncs the files it wrote itself (recorded from the checkpoint engine's
``save`` calls) before rank 0 publishes the tag. A published tag (the one ``latest`` names)
is never rewritten in place: saving the same step again is skipped, saving other state under
that name is refused. DeepSpeed's decoupled checkpoint engines (which write ``latest``
themselves, later, from a background commit) are refused.

Resuming checks the run's fingerprint (:mod:`seesaw_ds.deepspeed_adapter.fingerprint`)
before DeepSpeed loads anything; ``allow_plan_change=True`` continues the saved token count
on the new plan instead.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any, Dict, List, Optional, Tuple

from seesaw_ds.atomic_files import fsync_path, write_text_atomic
from seesaw_ds.deepspeed_adapter.fingerprint import fingerprint_differences, run_fingerprint
from seesaw_ds.deepspeed_adapter.state import SeesawState
from seesaw_ds.errors import SeesawConfigError

__all__ = [
    "save_checkpoint", "save_checkpoint_if_new", "load_checkpoint", "write_latest_atomically",
    "read_latest", "CLIENT_STATE_KEY", "SIDECAR_NAME",
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


def _fsync_files(paths: List[str]) -> None:
    """fsync each file and then each directory holding one (a rank's own writes)."""
    for path in paths:
        fsync_path(path)
    for directory in sorted({os.path.dirname(os.path.abspath(p)) for p in paths}):
        fsync_path(directory)


def _agree(value: Any) -> Any:
    """Rank 0's ``value`` on every rank (a decision all ranks must take alike)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _published_state(save_dir: str, tag: str) -> Optional[Dict[str, Any]]:
    """The Seesaw state of ``tag`` if ``latest`` names it (a published tag), else None."""
    if read_latest(save_dir) != tag:
        return None
    path = os.path.join(save_dir, tag, SIDECAR_NAME)
    if not os.path.isfile(path):
        return {}
    with open(path, encoding="utf-8") as handle:
        return json.load(handle).get("state", {})


def _is_decoupled(engine: Any) -> bool:
    checker = getattr(getattr(engine, "checkpoint_engine", None), "is_decoupled", None)
    return bool(checker()) if callable(checker) else False


class _RecordWrites:
    """Records the paths this rank's checkpoint engine saves to, while in the block."""

    def __init__(self, engine: Any) -> None:
        self.target = getattr(engine, "checkpoint_engine", None)
        self.paths: List[str] = []

    def __enter__(self) -> "_RecordWrites":
        original = getattr(self.target, "save", None)
        if original is None:
            return self

        def save(*args: Any, **kwargs: Any) -> Any:
            result = original(*args, **kwargs)
            path = kwargs.get("path", args[1] if len(args) > 1 else None)
            if isinstance(path, (str, os.PathLike)):
                self.paths.append(os.fspath(path))
            return result

        self.target.save = save
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.target is not None and "save" in getattr(self.target, "__dict__", {}):
            del self.target.save


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

    Raises:
        SeesawConfigError: a decoupled checkpoint engine, or other state under the tag
            ``latest`` names (a published tag is never rewritten; saving the step it
            already holds is skipped: see :func:`save_checkpoint_if_new`).
    """
    return save_checkpoint_if_new(engine, save_dir, tag, client_state, save_latest,
                                  exclude_frozen_parameters)[0]


def save_checkpoint_if_new(
    engine: Any,
    save_dir: str,
    tag: Optional[str] = None,
    client_state: Optional[Dict[str, Any]] = None,
    save_latest: bool = True,
    exclude_frozen_parameters: bool = False,
) -> Tuple[str, bool]:
    """:func:`save_checkpoint`, returning ``(tag, written)``: ``written`` is False when
    ``latest`` already names ``tag`` at this step (nothing is rewritten)."""
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
    if _is_decoupled(engine):
        raise SeesawConfigError(
            "the DeepSpeed checkpoint engine is decoupled (checkpoint.writer.decoupled or "
            "datastates_ckpt): it writes 'latest' itself, after this call returns, before the "
            "Seesaw state is in the tag. Remove that setting to use the default engine."
        )
    tag = str(tag) if tag is not None else f"global_step{engine.global_steps}"
    state_now = hook.state.to_dict()
    published = _agree(_published_state(save_dir, tag) if int(engine.global_rank) == 0
                       else None)
    if published is not None:
        same = {k: published.get(k) for k in ("consumed_samples", "step")} == {
            k: state_now[k] for k in ("consumed_samples", "step")}
        if same:
            return tag, False
        raise SeesawConfigError(
            f"tag {tag!r} is the published checkpoint in {save_dir} ('latest' names it, at "
            f"step {published.get('step')}); saving step {state_now['step']} over it would "
            "rewrite it in place: use another tag (the default is global_step<N>)."
        )
    zero_stage = int(engine.zero_optimization_stage())
    section = getattr(hook, "section", None)
    payload = {
        "state": state_now,
        "loader": hook.loader.state_dict() if hook.loader is not None else None,
        "zero_stage": zero_stage,
        "global_steps": int(engine.global_steps),
        "global_samples": int(engine.global_samples),
        "run_fingerprint": run_fingerprint(section, hook.plan) if section is not None else None,
    }
    client[CLIENT_STATE_KEY] = payload
    # The class method: ``engine.save_checkpoint`` is this function while the hook is on.
    with _RecordWrites(engine) as written:
        type(engine).save_checkpoint(
            engine, save_dir, tag=tag, client_state=client, save_latest=False,
            exclude_frozen_parameters=exclude_frozen_parameters,
        )
    _fsync_files(written.paths)  # every rank: its own files, before the tag is published
    _barrier()
    if int(engine.global_rank) == 0:
        tag_dir = os.path.join(save_dir, tag)
        write_text_atomic(os.path.join(tag_dir, SIDECAR_NAME), json.dumps(payload, indent=1))
        for name, produce in dict(getattr(hook, "checkpoint_sidecars", {}) or {}).items():
            write_text_atomic(os.path.join(tag_dir, name), json.dumps(produce(), indent=1))
        fsync_path(tag_dir)
        if save_latest:
            write_latest_atomically(save_dir, tag)
    _barrier()
    return tag, True


def _check_fingerprint(hook: Any, saved: Dict[str, Any], tag: str) -> None:
    """Name the first field whose change would alter a step's LR, batch or samples."""
    section = getattr(hook, "section", None)
    if section is None or not saved.get("run_fingerprint"):
        return
    differences = fingerprint_differences(saved["run_fingerprint"],
                                          run_fingerprint(section, hook.plan))
    if not differences:
        return
    field, before, now = differences[0]
    others = [name for name, _, _ in differences[1:] if name != "plan.phases"]
    more = f" (also changed: {', '.join(others)})" if others else ""
    if field == "plan.phases":
        what = "the plan's phases differ (same config fields: another rank layout?)"
    else:
        what = f"{field} = {now!r} but checkpoint {tag} was trained with {before!r}{more}"
    raise SeesawConfigError(
        f"resuming would change the run: {what}. Resume with the original value, or continue "
        "from the saved token count on the new plan on purpose with allow_plan_change=True "
        "(seesaw_ds.train --allow-plan-change)."
    )


def _precheck(hook: Any, load_dir: str, tag: str, engine: Any, allow_plan_change: bool) -> None:
    """Refuse, before DeepSpeed loads anything, a checkpoint this run cannot continue."""
    path = os.path.join(load_dir, tag, SIDECAR_NAME)
    if not os.path.isfile(path):
        return
    with open(path, encoding="utf-8") as handle:
        saved = json.load(handle)
    probe = SeesawState(hook.plan)
    probe.allow_plan_change = allow_plan_change
    if not allow_plan_change:
        _check_fingerprint(hook, saved, tag)
        if hook.loader is not None and saved.get("loader"):
            hook.loader.check_state_dict(saved["loader"])  # same sample order?
    probe.load_dict(saved["state"])  # same plan (and seq_length)? raises a clear error
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
    allow_plan_change: bool = False,
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

    Anything that would change a step's LR, batch or sample order (any ``seesaw`` field,
    the peak LR, ``train_batch_size``, the plan's phases) is refused, naming the field with
    its saved and new values. ``allow_plan_change=True`` accepts the change on purpose: the
    run continues from the saved token count (and step count, weights, optimizer state) on
    the new plan, at the sample position it had reached in the stream (``seq_length`` must
    stay the same).

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
        _precheck(hook, load_dir, str(tag), engine, allow_plan_change)
    hook.state.allow_plan_change = allow_plan_change
    try:
        load_path, client = type(engine).load_checkpoint(engine, load_dir, tag=tag,
                                                         **deepspeed_kwargs)
    finally:
        hook.state.allow_plan_change = False
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
    hook.state.allow_plan_change = allow_plan_change
    try:
        hook.state.load_dict(payload["state"])
    finally:
        hook.state.allow_plan_change = False
    hook.sync()
    if allow_plan_change:
        _log.warning("seesaw: continuing checkpoint %s from %d tokens on the new plan "
                     "(allow_plan_change)", tag, hook.state.consumed_tokens)
    # a reader attached after the load (engine.seesaw.batch_sampler) checks the saved order
    hook.resumed_loader_state = None if allow_plan_change else payload.get("loader")
    if hook.loader is not None and payload.get("loader"):
        if allow_plan_change:
            hook.loader.set_position(payload["loader"]["consumed_samples"])
        else:
            hook.loader.load_state_dict(payload["loader"])
        if hook.loader.position != (hook.state.consumed_samples, 0):  # pragma: no cover
            raise RuntimeError("loader position and token clock disagree in the checkpoint")
    return load_path, client
