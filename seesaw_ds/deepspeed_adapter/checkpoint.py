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

import errno
import json
import logging
import os
import pickle
import shutil
from typing import Any, Dict, List, Optional, Tuple

from seesaw_ds.atomic_files import fsync_path, write_text_atomic
from seesaw_ds.deepspeed_adapter.checkpoint_tags import (
    LATEST_NAME,
    SIDECAR_NAME,
    check_tag_files,
    read_latest,
    read_sidecar,
    resume_tag,
    tags_hint,
)
from seesaw_ds.deepspeed_adapter.fingerprint import (
    config_field_name,
    fingerprint_differences,
    run_fingerprint,
)
from seesaw_ds.deepspeed_adapter.state import SeesawState
from seesaw_ds.errors import SeesawConfigError

__all__ = [
    "save_checkpoint", "save_checkpoint_if_new", "load_checkpoint", "write_latest_atomically",
    "read_latest", "CLIENT_STATE_KEY", "SIDECAR_NAME",
]

CLIENT_STATE_KEY = "seesaw"
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


def _fsync_files(paths: List[str]) -> None:
    """fsync each file and then each directory holding one (a rank's own writes)."""
    for path in paths:
        fsync_path(path)
    for directory in sorted({os.path.dirname(os.path.abspath(p)) for p in paths}):
        fsync_path(directory)


def _rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def _agree(value: Any) -> Any:
    """Rank 0's ``value`` on every rank (a decision all ranks must take alike)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _published_state(save_dir: str, tag: str) -> Optional[Dict[str, Any]]:
    """The Seesaw state of ``tag`` if ``latest`` names it (a published tag), else None
    (``{}`` when its sidecar is missing or unreadable: it is not rewritten either)."""
    if read_latest(save_dir) != tag:
        return None
    try:
        return (read_sidecar(save_dir, tag, required=False) or {}).get("state", {})
    except SeesawConfigError:
        return {}


_DISK_FULL_FREE_BYTES = 64 << 20


def _free_bytes(path: str) -> Optional[int]:
    try:
        stats = os.statvfs(path)
    except OSError:
        return None
    return stats.f_bavail * stats.f_frsize


def _disk_full(error: BaseException, save_dir: str) -> bool:
    """ENOSPC anywhere in the chain, or torch's stream error (``unexpected pos ...``, no
    errno) with next to no space left."""
    seen = error
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno == errno.ENOSPC:
            return True
        seen = seen.__cause__ or seen.__context__
    free = _free_bytes(save_dir)
    return free is not None and free < _DISK_FULL_FREE_BYTES


def _kept(save_dir: str) -> str:
    published = read_latest(save_dir)
    return (f"'latest' still names {published}, untouched" if published
            else "no earlier checkpoint was published")


def _no_space(save_dir: str, tag: str, free: Optional[int], need: str = "") -> str:
    return (f"saving checkpoint {os.path.join(save_dir, tag)} failed: no space left on "
            f"device ({(free or 0) / 2**20:.1f} MiB free in {save_dir}{need}); "
            f"{_kept(save_dir)}. Free space (or set checkpoint.dir elsewhere), then continue "
            "with --resume.")


def _tree_bytes(folder: str) -> int:
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(root, name))
            except OSError:
                pass
    return total


def _space_shortage(save_dir: str, tag: str) -> Optional[str]:
    """Refuse a save that cannot fit, before writing a byte: less free space than the last
    published checkpoint took (plus 5%). None when it fits or nothing is known yet."""
    published = read_latest(save_dir)
    free = _free_bytes(save_dir) if os.path.isdir(save_dir) else None
    if published is None or free is None or published == tag:
        return None
    need = int(_tree_bytes(os.path.join(save_dir, published)) * 1.05)
    if free >= need:
        return None
    return _no_space(save_dir, tag, free, f"; {published} took {need / 1.05 / 2**20:.1f} MiB")


def _save_failure_message(error: BaseException, save_dir: str, tag: str, rank: int) -> str:
    kept = _kept(save_dir)
    if _disk_full(error, save_dir):
        return _no_space(save_dir, tag, _free_bytes(save_dir))
    where = f" ({error.filename})" if isinstance(error, OSError) and error.filename else ""
    text = " ".join(str(error).split())[:200]
    return (f"saving checkpoint {os.path.join(save_dir, tag)} failed on rank {rank}: "
            f"{type(error).__name__}: {text}{where}; {kept}. Fix the cause, then continue "
            "with --resume.")


def _raise_if_any_failed(failure: Optional[BaseException], save_dir: str, tag: str,
                         rank: int) -> None:
    """After every rank's write: all ranks learn whether any failed (no rank waits on a
    barrier another never reaches); then the partial tag is removed and one
    :class:`SeesawConfigError` raised on every rank. ``latest`` is left as it was."""
    import torch.distributed as dist

    message = _save_failure_message(failure, save_dir, tag, rank) if failure else None
    if dist.is_available() and dist.is_initialized():
        messages: List[Optional[str]] = [None] * dist.get_world_size()
        dist.all_gather_object(messages, message)
        message = next((m for m in messages if m), None)
    if message is None:
        return
    if rank == 0 and read_latest(save_dir) != tag:
        shutil.rmtree(os.path.join(save_dir, tag), ignore_errors=True)  # never published
    _barrier()
    raise SeesawConfigError(message) from failure


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
        # No readable Seesaw state in the published tag (resumed with
        # allow_missing_seesaw_state): its name is its step; never rewritten either way.
        same = not published or {k: published.get(k) for k in ("consumed_samples", "step")} == {
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
    shortage = _agree(_space_shortage(save_dir, tag) if int(engine.global_rank) == 0
                      else None)
    if shortage is not None:
        raise SeesawConfigError(shortage)
    failure = None
    try:
        with _RecordWrites(engine) as written:
            try:
                type(engine).save_checkpoint(
                    engine, save_dir, tag=tag, client_state=client, save_latest=False,
                    exclude_frozen_parameters=exclude_frozen_parameters,
                )
            except Exception:
                # DeepSpeed's save ends in a barrier the ranks that wrote are waiting in:
                # stand in for it, so the failure is agreed on below instead of hanging.
                _barrier()
                raise
        _fsync_files(written.paths)  # every rank: its own files, before the tag is published
    except Exception as error:  # noqa: BLE001 - every rank must learn of any rank's failure
        failure = error
    _raise_if_any_failed(failure, save_dir, tag, int(engine.global_rank))
    if int(engine.global_rank) == 0:
        try:
            tag_dir = os.path.join(save_dir, tag)
            write_text_atomic(os.path.join(tag_dir, SIDECAR_NAME),
                              json.dumps(payload, indent=1))
            for name, produce in dict(getattr(hook, "checkpoint_sidecars", {}) or {}).items():
                write_text_atomic(os.path.join(tag_dir, name), json.dumps(produce(), indent=1))
            fsync_path(tag_dir)
            if save_latest:
                write_latest_atomically(save_dir, tag)
        except Exception as error:  # noqa: BLE001 - see _raise_if_any_failed
            failure = error
    _raise_if_any_failed(failure, save_dir, tag, int(engine.global_rank))
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
    others = [config_field_name(name) for name, _, _ in differences[1:]
              if name != "plan.phases"]
    more = f" (also changed: {', '.join(others)})" if others else ""
    if field == "plan.phases":
        what = "the plan's phases differ (same config fields: another rank layout?)"
    else:
        what = (f"{config_field_name(field)} = {now!r} but checkpoint {tag} was trained with "
                f"{before!r}{more}")
    raise SeesawConfigError(
        f"resuming would change the run: {what}. Resume with the original value, or continue "
        "from the saved token count on the new plan on purpose with allow_plan_change=True "
        "(seesaw_ds.train --allow-plan-change)."
    )


def _check_saved_state(hook: Any, saved: Dict[str, Any], tag: str,
                       allow_plan_change: bool) -> None:
    """The fingerprint, sample order and plan of a saved Seesaw state (the sidecar's or the
    model file's ``client_state``) against this run's; raises a clear error."""
    probe = SeesawState(hook.plan)
    probe.allow_plan_change = allow_plan_change
    if not allow_plan_change:
        _check_fingerprint(hook, saved, tag)
        if hook.loader is not None and saved.get("loader"):
            hook.loader.check_state_dict(saved["loader"])  # same sample order?
    probe.load_dict(saved["state"])  # same plan (and seq_length)? raises a clear error


def _precheck(hook: Any, load_dir: str, tag: str, engine: Any, allow_plan_change: bool,
              allow_missing_seesaw_state: bool = False) -> None:
    """Refuse, before DeepSpeed loads anything, a checkpoint this run cannot continue: a
    missing or damaged sidecar (unless ``allow_missing_seesaw_state``: the model file's
    state is checked after the load instead), missing or truncated files, another plan."""
    universal = bool(getattr(engine, "load_universal_checkpoint", lambda: False)())
    flag = "allow_missing_seesaw_state=True (seesaw_ds.train --allow-missing-seesaw-state)"
    source = tag[:-len("_universal")] if tag.endswith("_universal") else None
    if universal and source and not os.path.isfile(os.path.join(load_dir, tag, SIDECAR_NAME)):
        # DeepSpeed's own ds_to_universal copies no sidecar: the converted tag's is its source's
        saved = read_sidecar(load_dir, source, required=not allow_missing_seesaw_state,
                             flag=flag)
    else:
        saved = read_sidecar(load_dir, tag, required=not allow_missing_seesaw_state,
                             flag=flag)
    if not universal:
        check_tag_files(load_dir, tag, saved)
    if saved is None:
        return
    _check_saved_state(hook, saved, tag, allow_plan_change)
    old_dp, new_dp = saved["state"].get("dp_size"), hook.plan.dp_size
    if old_dp != new_dp and saved.get("zero_stage", 0) >= 1 and not universal:
        raise SeesawConfigError(
            f"checkpoint {tag} was saved with ZeRO stage {saved['zero_stage']} on {old_dp} "
            f"data-parallel ranks; this run has {new_dp}. DeepSpeed cannot reshard ZeRO "
            "optimizer state directly: convert it with `python -m "
            "deepspeed.checkpoint.ds_to_universal` and set \"checkpoint\": "
            "{\"load_universal\": true}, or resume on the same number of ranks."
        )


_HYPER_KEYS = ("weight_decay", "betas", "eps")


def _configured_hyper_parameters(hook: Any) -> Optional[List[Dict[str, Any]]]:
    """The optimizer's weight decay, betas and eps per param group as configured (before a
    load overwrites them with the checkpoint's): the scheduler's base values, eps as set."""
    scheduler = getattr(hook, "scheduler", None)
    optimizer = getattr(scheduler, "optimizer", None)
    if optimizer is None:
        return None
    groups = []
    for index, group in enumerate(optimizer.param_groups):
        entry = {key: group[key] for key in _HYPER_KEYS if key in group}
        if "weight_decay" in entry:
            entry["weight_decay"] = scheduler.weight_decays[index]
        if "betas" in entry and scheduler.betas[index] is not None:
            entry["betas"] = tuple(scheduler.betas[index])
        groups.append(entry)
    return groups


def _apply_hyper_parameters(hook: Any, configured: Optional[List[Dict[str, Any]]],
                            tag: str) -> None:
    """Write the configured weight decay, betas and eps into the optimizer after a load
    (DeepSpeed restores the saved ones): a config change applies on resume, logged."""
    scheduler = getattr(hook, "scheduler", None)
    optimizer = getattr(scheduler, "optimizer", None)
    if configured is None or optimizer is None or len(configured) != len(
            optimizer.param_groups):
        return
    changed = set()
    for index, (group, entry) in enumerate(zip(optimizer.param_groups, configured)):
        saved = {key: group.get(key) for key in entry}
        if "weight_decay" in entry:
            saved["weight_decay"] = scheduler.weight_decays[index]
            scheduler.weight_decays[index] = float(entry["weight_decay"])
        if "betas" in entry and scheduler.betas[index] is not None:
            saved["betas"] = tuple(scheduler.betas[index])
            scheduler.betas[index] = tuple(entry["betas"])
        for key, value in entry.items():
            if saved.get(key) is not None and tuple(_as_list(saved[key])) != tuple(
                    _as_list(value)):
                changed.add(f"{key} {saved[key]} -> {value}")
            group[key] = tuple(value) if key == "betas" else value
    scheduler.apply()  # the LR, and the plan's weight decay / beta2 scaling on top
    if changed and _rank() == 0:
        _log.warning("seesaw: optimizer %s from the config (checkpoint %s had the old "
                     "values)", ", ".join(sorted(changed)), tag)


def _as_list(value: Any) -> List[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


_LOAD_ERRORS = (RuntimeError, OSError, EOFError, ValueError, KeyError, TypeError,
                AttributeError, IndexError, pickle.UnpicklingError)


def load_checkpoint(
    engine: Any,
    load_dir: str,
    tag: Optional[str] = None,
    allow_plan_change: bool = False,
    allow_missing_seesaw_state: bool = False,
    **deepspeed_kwargs: Any,
) -> Tuple[Optional[str], Optional[Dict[str, Any]]]:
    """Load a checkpoint from :func:`save_checkpoint` and restore the whole Seesaw run.

    Model/optimizer/scheduler through ``engine.load_checkpoint`` (``deepspeed_kwargs`` are
    passed on), then the token clock, the engine's batch/GAS/micro-batch for the next step
    (re-derived for this run's data-parallel size), the LR and the attached loader's
    position.

    Returns:
        ``(load_path, client_state)`` like DeepSpeed, without the ``"seesaw"`` entry;
        ``(None, None)`` when no tag was given and ``load_dir`` has neither ``latest`` nor
        any checkpoint (a fresh start). With checkpoints there, a missing, empty or
        unreadable ``latest`` (or one naming a missing tag) is refused, listing the tags:
        pass ``tag``.

    Before DeepSpeed reads anything the tag's files are checked (model file and optimizer
    shards present, none truncated) and its ``seesaw_state.json`` read; a tag without it is
    refused unless ``allow_missing_seesaw_state=True`` (then the Seesaw state saved in the
    model file is checked instead, after the load). Any damage is one
    :class:`SeesawConfigError` naming the file and the other tags.

    The optimizer's weight decay, betas and eps come from this run's config, not from the
    checkpoint (DeepSpeed would restore the saved ones): a change applies from the resume
    on and is logged.

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
        tag = resume_tag(load_dir, latest_name=latest)  # refuses a doubtful 'latest'
        if tag is None:
            _log.warning("no checkpoint to resume: %s has no %r file and no checkpoint",
                         load_dir, latest)
            return None, None
    tag = str(tag)
    warm_start = bool(deepspeed_kwargs.get("load_module_only", False))
    if not warm_start:
        _precheck(hook, load_dir, tag, engine, allow_plan_change, allow_missing_seesaw_state)
    configured = _configured_hyper_parameters(hook)
    hook.state.allow_plan_change = allow_plan_change
    try:
        load_path, client = type(engine).load_checkpoint(engine, load_dir, tag=tag,
                                                         **deepspeed_kwargs)
    except SeesawConfigError:
        raise
    except _LOAD_ERRORS as error:
        where = f" ({error.filename})" if isinstance(error, OSError) and error.filename else ""
        text = " ".join(str(error).split()).split(". ")[0][:160]  # torch adds advice
        raise SeesawConfigError(
            f"checkpoint {os.path.join(load_dir, tag)} could not be loaded: "
            f"{type(error).__name__}: {text}{where}. A file of it is damaged: restore it, or "
            f"resume another tag with --resume-tag ({tags_hint(load_dir, exclude=tag)})."
        ) from error
    finally:
        hook.state.allow_plan_change = False
    if load_path is None:
        raise SeesawConfigError(
            f"checkpoint {os.path.join(load_dir, tag)} could not be loaded (DeepSpeed found no "
            f"model file): resume another tag with --resume-tag "
            f"({tags_hint(load_dir, exclude=tag)}).")
    client = dict(client or {})
    payload = client.pop(CLIENT_STATE_KEY, None)
    if warm_start:
        hook.sync()
        return load_path, client
    if not isinstance(payload, dict) or not isinstance(payload.get("state"), dict):
        raise SeesawConfigError(
            f"checkpoint {os.path.join(load_dir, tag)} has no Seesaw state: it was not "
            "saved with seesaw_ds.deepspeed_adapter.save_checkpoint.")
    # The model file's own copy of the state: checked too (a tag without the sidecar, or a
    # sidecar that does not match the weights).
    _check_saved_state(hook, payload, tag, allow_plan_change)
    hook.state.allow_plan_change = allow_plan_change
    try:
        hook.state.load_dict(payload["state"])
    finally:
        hook.state.allow_plan_change = False
    _apply_hyper_parameters(hook, configured, tag)
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
