"""Pretraining entry point: ``python -m seesaw_ds.train --run-config RUN.yaml
--deepspeed_config DS.json``; also under ``deepspeed --num_gpus N --module seesaw_ds.train``
and ``torchrun --nproc_per_node N -m seesaw_ds.train``.

Reads a YAML run config (model, data, evaluation, output; ``seesaw_ds.run_config``) and a
DeepSpeed JSON config with a ``seesaw`` section (the schedule), validates both before any
process group exists, prepares the data on rank 0 (reused when unchanged), trains with
``seesaw_ds.initialize`` and writes to ``output_dir``:

- ``curve.json``: validation loss at fixed token intervals (same held-out batches for
  every schedule) with tokens, optimizer steps and training wall seconds,
- ``steps.csv``: per optimizer step: tokens, LR, global batch, micro-batch, GAS, train loss,
- ``summary.json``: final validation loss, optimizer steps, tokens, wall seconds, schedule,
- DeepSpeed checkpoints (``checkpoint.interval_tokens`` and at the end); ``--resume``
  continues from the latest one (or ``--resume-tag TAG``; a doubtful ``latest`` with tags
  present is refused, never a fresh start), also on another number of ranks (a ZeRO >= 1 checkpoint
  first converted with ``seesaw-ds universal CKPT_DIR``; the plan must not depend on the
  rank count: ``seesaw.batch_multiple``).
- the run config's ``divergence`` policy stops a run whose loss stays non-finite (exit 3,
  no checkpoint of diverged weights; ``docs/never-lose-a-run.md``).
- ``--stop-at-tokens T`` ends the job at the first step boundary at or past ``T`` tokens
  with a checkpoint (a phase start from ``seesaw-ds plan --max-ranks`` makes it the end of
  one job of a growing chain; ``launch/grow_chain.py``).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from typing import Dict, List, Optional

from seesaw_ds.atomic_files import check_directory_creatable, finite_or_none, write_json_atomic
from seesaw_ds.distributed import (all_mean, barrier, free_port, rank, release_cpu_shm_buffer,
                                   world_size)
from seesaw_ds.errors import SeesawConfigError
from seesaw_ds.training.divergence import Diverged, DivergencePolicy

__all__ = ["main", "parse_args", "DIVERGED_EXIT"]

DIVERGED_EXIT = 3  # the divergence policy (run config ``divergence``) stopped the run


def next_multiple(tokens: float, interval: Optional[float]) -> float:
    """The first multiple of ``interval`` past ``tokens`` (``inf`` without an interval): when
    the next evaluation or checkpoint is due."""
    return (math.floor(tokens / interval) + 1) * interval if interval else math.inf


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m seesaw_ds.train",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--run-config", required=True, help="YAML run config")
    parser.add_argument("--deepspeed_config", "--deepspeed-config", dest="deepspeed_config",
                        required=True, help="DeepSpeed JSON config with a seesaw section")
    parser.add_argument("--output-dir", help="override output_dir of the run config")
    parser.add_argument("--name", help="label of this run in summaries (default: schedule)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the latest checkpoint in the checkpoint dir")
    parser.add_argument("--resume-tag", default=None, metavar="TAG",
                        help="with --resume: continue from this checkpoint tag (e.g. "
                        "global_step40) instead of the one 'latest' names")
    parser.add_argument("--allow-missing-seesaw-state", action="store_true",
                        help="with --resume: accept a tag without seesaw_state.json (its plan "
                        "is then checked against the Seesaw state in its model file)")
    parser.add_argument("--allow-plan-change", action="store_true",
                        help="with --resume: accept a changed seesaw section / peak LR / batch "
                             "and continue from the saved token count on the new plan")
    parser.add_argument("--max-steps", type=int, default=None,
                        help="stop once this many optimizer steps are done, counted from the "
                             "run's start (a resume past it trains nothing)")
    parser.add_argument("--stop-at-tokens", default=None,
                        help="checkpoint and stop at the first step boundary at or past this "
                        "many tokens (e.g. a phase start: grow the job from there)")
    parser.add_argument("--eval-at-stop", action="store_true",
                        help="with --stop-at-tokens: evaluate at the stop too (the branches "
                        "of `seesaw-ds cbs` read that point)")
    parser.add_argument("--force-prepare", action="store_true",
                        help="rebuild data.prepared_dir even when it was prepared with other "
                        "options or inputs (otherwise refused)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--local_rank", "--local-rank", type=int,
                        default=int(os.environ.get("LOCAL_RANK", -1)))
    return parser.parse_args(argv)


# ---- validation: everything cheap, before any process group ---------------------------------

def _validate(args: argparse.Namespace):
    from seesaw_ds.config import load_config_file
    from seesaw_ds.deepspeed_adapter import prepare_config
    from seesaw_ds.run_config import load_run_config

    run = load_run_config(args.run_config, {"output_dir": args.output_dir, "name": args.name})
    ds_config = load_config_file(args.deepspeed_config)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    _monitors_under(ds_config, run.output_dir)
    validated = prepare_config(ds_config, world)
    _check_guard(validated)
    _check_data(run, args.force_prepare)
    if args.max_steps is not None and args.max_steps < 1:
        raise SeesawConfigError(f"--max-steps = {args.max_steps} must be >= 1.")
    for flag, given in (("--allow-plan-change", args.allow_plan_change),
                        ("--resume-tag", args.resume_tag is not None),
                        ("--allow-missing-seesaw-state", args.allow_missing_seesaw_state)):
        if given and not args.resume:
            raise SeesawConfigError(f"{flag} applies to --resume only: add --resume.")
    check_directory_creatable(f"output_dir (--output-dir) = {run.output_dir}", run.output_dir)
    check_directory_creatable(f"checkpoint.dir = {run.checkpoint_dir}", run.checkpoint_dir)
    if args.stop_at_tokens is not None:
        from seesaw_ds.config import parse_token_count

        args.stop_at_tokens = parse_token_count("--stop-at-tokens", args.stop_at_tokens)
    layout = _resume_layout(args, run.checkpoint_dir) if args.resume else None
    _resume_universal_if_resharding(ds_config, run.checkpoint_dir, world, layout)
    # where this job starts on the token clock: the resumed checkpoint's, with --resume
    start = 0 if layout is None else layout["consumed_tokens"]
    if args.allow_plan_change and layout is not None \
            and start >= validated.plan.total_tokens:
        raise SeesawConfigError(
            f"checkpoint {layout['tag']} has trained {start:,} tokens, at or past the new "
            f"seesaw.total_tokens = {validated.plan.total_tokens:,.0f}: nothing would train. "
            f"Raise seesaw.total_tokens above {start:,} to continue it.")
    validated.plan.check_runnable(start, args.stop_at_tokens)
    return run, ds_config, validated


def _resume_layout(args: argparse.Namespace, checkpoint_dir: str) -> Optional[dict]:
    """The checkpoint ``--resume`` continues, checked before anything is touched: its tag
    (``--resume-tag`` or ``latest``; sets ``args.resume_tag``), sidecar and files. None for
    a fresh start (no ``latest``, no tag)."""
    from seesaw_ds.deepspeed_adapter.checkpoint_tags import (check_tag_files, read_sidecar,
                                                             resume_tag)
    from seesaw_ds.deepspeed_adapter.universal import checkpoint_layout

    tag = resume_tag(checkpoint_dir, args.resume_tag)
    args.resume_tag = tag
    if tag is None:
        return None
    sidecar = read_sidecar(checkpoint_dir, tag, required=not args.allow_missing_seesaw_state)
    check_tag_files(checkpoint_dir, tag, sidecar)
    return checkpoint_layout(checkpoint_dir, tag, sidecar) if sidecar else None


def _resume_universal_if_resharding(ds_config: dict, checkpoint_dir: str, world: int,
                                    layout: Optional[dict]) -> None:
    """A ZeRO >= 1 checkpoint (``layout``: :func:`checkpoint_layout` of it) saved on another
    rank count loads through its universal copy."""
    from seesaw_ds.deepspeed_adapter.checkpoint_tags import read_latest
    from seesaw_ds.deepspeed_adapter.universal import UNIVERSAL_LATEST

    if layout is None or layout["zero_stage"] == 0:
        return
    dp = world  # this trainer is data-parallel only
    if layout["dp_size"] == dp:
        return
    if read_latest(checkpoint_dir, UNIVERSAL_LATEST) != f"{layout['tag']}_universal":
        raise SeesawConfigError(
            f"checkpoint {layout['tag']} was saved with ZeRO stage {layout['zero_stage']} on "
            f"{layout['dp_size']} ranks and this job has {dp}: convert it first with "
            f"`seesaw-ds universal {checkpoint_dir}`, or resume on {layout['dp_size']} ranks.")
    section = ds_config.setdefault("checkpoint", {})
    section["load_universal"] = True


def _check_guard(validated) -> None:
    """An enabled cbs_guard this setup cannot run is refused here, not after the engine."""
    from seesaw_ds.cbs.probe import check_guard_supported

    zero = validated.ds_config.get("zero_optimization") or {}
    check_guard_supported(validated.section, int(zero.get("stage", 0)),
                          bool(zero.get("compute_grad_norm", True)))


def _monitors_under(ds_config: dict, output_dir: str) -> None:
    """Relative monitor paths (csv_monitor, tensorboard) become ``<output_dir>/monitor``."""
    for key in ("csv_monitor", "tensorboard"):
        section = ds_config.get(key)
        if isinstance(section, dict) and section.get("enabled"):
            path = section.get("output_path") or ""
            if not os.path.isabs(path):
                section["output_path"] = os.path.join(output_dir, "monitor")


# ---- data and model -------------------------------------------------------------------------

_FORCE_PREPARE = "--force-prepare"


def _check_data(run, force: bool) -> None:
    """A prepared folder built with other options is refused here, before any process group
    (``prepare`` would refuse it on rank 0 only)."""
    from seesaw_ds.data.prepare import check_prepared

    data = run.data
    if data.paths is not None:
        _megatron_data(run)
        return
    check_prepared(data.inputs, data.prepared_dir, **data.prepare_options(), force=force,
                   force_flag=_FORCE_PREPARE)


def _megatron_data(run):
    """``data.paths``: existing Megatron data, checked against its tokenizer (cheap)."""
    from seesaw_ds.data.megatron_blend import open_blend

    data = run.data
    return open_blend(data.paths, data.tokenizer_model, data.hf_tokenizer,
                      data.cache_dir or os.path.join(run.output_dir, "data_cache"))


def _prepare_data(run, log, force: bool = False):
    from seesaw_ds.data.prepare import load_prepared, prepare

    data = run.data
    if data.paths is not None:
        return _megatron_data(run)
    if rank() == 0:
        prepared = prepare(data.inputs, data.prepared_dir, **data.prepare_options(),
                           progress=sys.stderr.isatty(),  # no bar in a log file
                           force=force, force_flag=_FORCE_PREPARE, log=log)
    barrier()
    if rank() != 0:
        prepared = load_prepared(data.prepared_dir)
    from seesaw_ds.data.verify import verify_prepared

    verify_prepared(prepared, write_cache=rank() == 0)  # every rank: the same verdict
    return prepared


def _datasets(run, prepared, plan):
    from seesaw_ds.data.gpt_data import build_gpt_datasets, fixed_validation_batches

    seq = plan.seq_length
    # From the token budget only: GPTDataset's length (and so the global sample order) depends
    # on the samples asked for, so schedule-dependent sizes would give cosine and Seesaw runs
    # different token streams. The last step's overshoot wraps around (GlobalSampleOrder).
    train_samples = math.ceil(plan.total_tokens / seq)
    # a weighted blend sizes each prefix's share from both counts
    valid_samples = (run.eval.batches * run.eval.batch_size
                     if prepared.blend[1] is not None else None)
    train, valid = build_gpt_datasets(prepared, seq, split=run.data.split, seed=1234,
                                      train_samples=train_samples, valid_samples=valid_samples)
    batches = fixed_validation_batches(valid, run.eval.batch_size, run.eval.batches)
    return train, batches


def _on_device(batch, device):
    """The batch's tensors on the engine's device (the loader yields host tensors)."""
    return {key: value.to(device, non_blocking=True) if hasattr(value, "to") else value
            for key, value in batch.items()}


def _evaluate(engine, batches) -> float:
    """Mean CE over the fixed validation batches, sharded over ranks (summed on the device,
    one all-reduce and one host copy at the end)."""
    import torch

    me, world = rank(), world_size()
    total, count = 0.0, 0
    engine.eval()
    with torch.no_grad():
        for index, batch in enumerate(batches):
            if index % world != me:
                continue
            batch = _on_device(batch, engine.device)
            out = engine(batch["tokens"], batch["labels"])
            total = total + out.ce.detach().double()
            count += 1
    engine.train()
    total, count = all_mean([total, float(count)])
    return total / count


# ---- the run ------------------------------------------------------------------------------

class _Recorder:
    """Per-step CSV, validation curve and summary, written by rank 0 only."""

    def __init__(self, output_dir: str, resume: bool) -> None:
        self.output_dir = output_dir
        self.is_writer = rank() == 0
        self.curve: List[Dict] = []
        self.steps_path = os.path.join(output_dir, "steps.csv")
        if self.is_writer:
            os.makedirs(output_dir, exist_ok=True)
            if not resume or not os.path.exists(self.steps_path):
                with open(self.steps_path, "w", encoding="utf-8") as handle:
                    handle.write("step,tokens,lr,global_batch,micro_batch,grad_accum,train_loss\n")

    def step(self, step, tokens, setting, loss) -> None:
        if self.is_writer:
            with open(self.steps_path, "a", encoding="utf-8") as handle:
                handle.write(f"{step},{tokens},{setting.lr:.10g},{setting.global_batch},"
                             f"{setting.micro_batch},{setting.grad_accum},{loss:.8f}\n")

    def point(self, tokens, step, val_loss, wall) -> None:
        self.curve.append({"tokens": int(tokens), "step": int(step), "val_loss": val_loss,
                           "wall_seconds": wall})
        if self.is_writer:
            write_json_atomic(os.path.join(self.output_dir, "curve.json"), self.curve)

    def truncate_steps(self, last_step: int) -> None:
        """After a resume, drop per-step rows past the checkpoint (they will be redone)."""
        if not self.is_writer or not os.path.exists(self.steps_path):
            return
        with open(self.steps_path, encoding="utf-8") as handle:
            lines = handle.readlines()
        kept = [lines[0]] + [line for line in lines[1:] if int(line.split(",")[0]) <= last_step]
        with open(self.steps_path, "w", encoding="utf-8") as handle:
            handle.writelines(kept)


class _Session:
    """One training run on a live engine: resume, the loop, evaluation, checkpoints, summary.

    ``state`` (next evaluation/checkpoint token counts, training wall seconds, hook seconds)
    travels in every checkpoint's client state together with the validation curve.
    """

    def __init__(self, args, run, validated, engine, loader, valid_batches, log) -> None:
        from seesaw_ds.cbs.probe import GuardDriver

        self.args, self.run, self.validated = args, run, validated
        self.engine, self.loader, self.valid_batches, self.log = engine, loader, valid_batches, log
        self.hook = engine.seesaw
        self.plan = validated.plan
        self.name = run.name or validated.section.batch_schedule_name
        self.recorder = _Recorder(run.output_dir, args.resume)
        self.guard = GuardDriver.maybe(validated.section, engine, log)
        self.divergence = DivergencePolicy(run.divergence)
        self.skipped_seen = int(getattr(engine, "skipped_steps", 0) or 0)
        self.state = {"next_eval": 0.0,
                      "next_checkpoint": next_multiple(0, run.checkpoint.interval_tokens),
                      "wall": 0.0, "hook_seconds": 0.0}
        self.progress = None

    # ---- pieces -------------------------------------------------------------------------

    def resume(self) -> None:
        """Continue from the latest checkpoint (guard hold first, so the plan check sees it)."""
        hook, checkpoint_dir, args = self.hook, self.run.checkpoint_dir, self.args
        tag = args.resume_tag  # checked in _validate: None only for a fresh start
        if tag is None:
            self.log(f"no checkpoint to resume in {checkpoint_dir}: starting the run")
            self.recorder.truncate_steps(0)
            return
        if self.guard is not None:
            self.guard.restore(checkpoint_dir, tag, args.allow_plan_change)
        if bool(getattr(self.engine, "load_universal_checkpoint", lambda: False)()):
            tag = f"{tag}_universal"
        load_path, client = self.engine.load_checkpoint(
            checkpoint_dir, tag=tag, allow_plan_change=args.allow_plan_change,
            allow_missing_seesaw_state=args.allow_missing_seesaw_state)
        if load_path is not None:
            self.divergence.load_state_dict(client["train_state"].pop("divergence", {}))
            self.skipped_seen = int(getattr(self.engine, "skipped_steps", 0) or 0)
            self.state.update(client["train_state"])
            # the checkpoint interval of this run's config, not the saved run's: a branch or
            # a resumed run may set another one, or none (then only the final save)
            self.state["next_checkpoint"] = next_multiple(
                hook.consumed_tokens, self.run.checkpoint.interval_tokens)
            self.recorder.curve = client["curve"]
            self.log(f"resumed from {load_path} at step {hook.step}, "
                     f"{hook.consumed_tokens:,} tokens")
        self.recorder.truncate_steps(hook.step)  # rows past the checkpoint (all, if none) redo

    def open_progress(self) -> None:
        """The tqdm bar, on rank 0 and only on a terminal; elsewhere (a log file, a batch
        job) the ``seesaw_ds`` logger's plain lines every ``steps_per_print`` steps, and one
        per evaluation, stand in for it."""
        if rank() == 0 and not self.args.no_progress and sys.stderr.isatty():
            from tqdm import tqdm

            total = int(self.plan.total_tokens)
            self.progress = tqdm(total=total, initial=min(self.hook.consumed_tokens, total),
                                 unit="tok", unit_scale=True, desc=self.name,
                                 dynamic_ncols=True)

    def evaluate(self) -> float:
        """Validation loss now; a curve point; the next evaluation's token count."""
        hook = self.hook
        val_loss = _evaluate(self.engine, self.valid_batches)
        self.recorder.point(hook.consumed_tokens, hook.step, val_loss, self.state["wall"])
        self.state["next_eval"] = next_multiple(hook.consumed_tokens,
                                                self.run.eval.interval_tokens)
        if self.progress is not None:
            self.progress.set_postfix(val=f"{val_loss:.4f}", B=hook.setting.global_batch)
        elif rank() == 0 and not self.args.no_progress:
            logging.getLogger("seesaw_ds").info(
                f"[seesaw] eval step={hook.step} tokens={hook.consumed_tokens}: "
                f"val_loss={val_loss:.4f}")
        return val_loss

    def save(self) -> None:
        """A checkpoint of this step (skipped by the adapter when ``latest`` holds it)."""
        if not self.divergence.safe_to_save:
            self.log(f"checkpoint global_step{self.engine.global_steps} skipped: the last "
                     f"step's loss was bad ({self.divergence.last_reason})")
            return
        saved_state = dict(self.state,
                           hook_seconds=self.state["hook_seconds"] + self.hook.hook_seconds,
                           divergence=self.divergence.state_dict())
        client = {"train_state": saved_state, "curve": self.recorder.curve}
        written = self.engine.save_checkpoint(self.run.checkpoint_dir, client_state=client)
        self.log(f"checkpoint global_step{self.engine.global_steps} "
                 + ("written" if written else "already published at this step: not rewritten"))

    def after_step(self, setting, loss: float) -> None:
        """Bookkeeping after an optimizer step: CSV row, progress, eval, checkpoint."""
        hook, state = self.hook, self.state
        self.recorder.step(hook.step, hook.consumed_tokens, setting, loss)
        hook.report_loss(loss)  # the progress line's loss
        self.watch(loss)
        if self.progress is not None:
            total = int(self.plan.total_tokens)
            self.progress.update(min(hook.consumed_tokens, total) - self.progress.n)
        if hook.consumed_tokens >= state["next_eval"] or hook.finished:
            self.evaluate()
        if hook.consumed_tokens >= state["next_checkpoint"] and not hook.finished:
            # Advanced before saving: a resume must not save this checkpoint again.
            state["next_checkpoint"] = next_multiple(hook.consumed_tokens,
                                                     self.run.checkpoint.interval_tokens)
            self.save()

    def watch(self, loss: float) -> None:
        """Feed the divergence policy this step's loss; raise :class:`Diverged` to stop."""
        skipped_now = int(getattr(self.engine, "skipped_steps", 0) or 0)
        skipped, self.skipped_seen = skipped_now > self.skipped_seen, skipped_now
        if self.divergence.observe(self.hook.step, loss, skipped=skipped):
            raise Diverged(self.divergence.reason)

    def _planned_stop(self) -> bool:
        """``--stop-at-tokens`` reached before the end: remember where, and stop."""
        stop, hook = self.args.stop_at_tokens, self.hook
        if stop is None or hook.consumed_tokens < stop or hook.finished:
            return False
        self.state["stopped_at_tokens"] = int(hook.consumed_tokens)
        return True

    def train(self) -> None:
        """The DeepSpeed loop over the plan, up to its end, ``--max-steps`` or
        ``--stop-at-tokens``."""
        engine, hook, guard, max_steps = self.engine, self.hook, self.guard, self.args.max_steps
        if max_steps is not None and hook.step >= max_steps:
            return  # resumed at --max-steps N: train nothing
        window_loss, window_micro = 0.0, 0  # summed on the device: no sync per micro-step
        started = time.perf_counter()
        for batch in self.loader:
            batch = _on_device(batch, engine.device)
            if guard is not None and hook.at_boundary:
                guard.probe(batch)
            out = engine(batch["tokens"], batch["labels"])
            engine.backward(out.loss)
            window_loss, window_micro = window_loss + out.ce.detach().double(), window_micro + 1
            if guard is not None and engine.is_gradient_accumulation_boundary():
                guard.before_step()
            setting = hook.setting
            engine.step()
            if not hook.at_boundary:
                continue
            loss = all_mean([window_loss / window_micro])[0]  # the step's one host sync
            window_loss, window_micro = 0.0, 0
            if guard is not None:
                guard.after_step(setting, hook)
            self.state["wall"] += time.perf_counter() - started
            self.after_step(setting, loss)
            started = time.perf_counter()
            if max_steps is not None and hook.step >= max_steps:
                break
            if self._planned_stop():
                break

    def summary(self, stopped: Optional[int] = None) -> Dict:
        hook, plan, state = self.hook, self.plan, self.state
        summary = {
            "schedule": self.name,
            "batch_schedule": self.validated.section.batch_schedule_name,
            "final_val_loss": self.recorder.curve[-1]["val_loss"],
            "optimizer_steps": hook.step,
            "tokens": int(hook.consumed_tokens),
            "wall_seconds": state["wall"],
            "planned_optimizer_steps": plan.optimizer_steps,
            "baseline_optimizer_steps": plan.baseline_optimizer_steps,
            "final_global_batch": hook.setting.global_batch,
            "world_size": world_size(),
            "seed": self.run.seed,
            "finished": bool(hook.finished),
            "stopped_at_tokens": stopped,
            "hook_seconds": state["hook_seconds"] + hook.hook_seconds,
            "divergence": dict(self.divergence.summary(), diverged=False),
        }
        if self.guard is not None:
            summary["cbs_guard"] = self.guard.summary()
        if plan.optimizer_scaling.enabled:  # what the opt-in keys left in the optimizer
            group = self.engine.optimizer.param_groups[0]
            summary["optimizer_scaling"] = {
                "keep_weight_decay_timescale": plan.optimizer_scaling.keep_weight_decay_timescale,
                "keep_beta2_half_life": plan.optimizer_scaling.keep_beta2_half_life,
                "last_weight_decay": float(group.get("weight_decay", 0.0)),
                "last_betas": [float(b) for b in group.get("betas", ())]}
        return summary

    # ---- the whole run ------------------------------------------------------------------

    def execute(self) -> int:
        """The run; 0, or :data:`DIVERGED_EXIT` when the divergence policy stopped it."""
        if self.args.resume:
            self.resume()
        self.open_progress()
        if self.hook.consumed_tokens >= self.state["next_eval"]:
            self.evaluate()
        try:
            self.train()
        except Diverged as stop:
            return self.diverged(str(stop))
        if self.progress is not None:
            self.progress.close()
        stopped = self.state.pop("stopped_at_tokens", None)
        if (self.recorder.curve and self.recorder.curve[-1]["step"] != self.hook.step
                and (stopped is None or self.args.eval_at_stop)):
            self.evaluate()  # a planned stop keeps the curve of an uninterrupted run
        self.save()
        if rank() == 0:
            summary = self.summary(stopped)
            write_json_atomic(os.path.join(self.run.output_dir, "summary.json"), summary)
            self.log(json.dumps(finite_or_none(summary)))
        return 0

    def diverged(self, reason: str) -> int:
        """Stop a diverged run: no checkpoint of its weights, the last good one named, a
        summary saying so; every rank returns :data:`DIVERGED_EXIT`."""
        from seesaw_ds.deepspeed_adapter.checkpoint_tags import read_latest

        if self.progress is not None:
            self.progress.close()
        checkpoint_dir = self.run.checkpoint_dir
        good = read_latest(checkpoint_dir)
        if good is not None:
            kept = (f"last good checkpoint: {os.path.join(checkpoint_dir, good)} (continue it "
                    f"with --resume --resume-tag {good}, e.g. with a lower peak LR and "
                    "--allow-plan-change)")
        else:
            kept = "no checkpoint was saved before it"
        if rank() == 0:
            summary = self.summary()
            summary["divergence"].update(diverged=True, reason=reason,
                                         last_good_checkpoint=good)
            write_json_atomic(os.path.join(self.run.output_dir, "summary.json"), summary)
            print(f"seesaw-ds train: diverged at step {self.hook.step}: {reason}; {kept}.",
                  file=sys.stderr, flush=True)
        return DIVERGED_EXIT


def _build(run, validated, ds_config, log, force_prepare=False):
    """Data (prepared on rank 0), model and the Seesaw DeepSpeed engine."""
    import torch

    import seesaw_ds.deepspeed_adapter as adapter
    from seesaw_ds.model.shapes import build_model

    torch.manual_seed(run.seed)
    prepared = _prepare_data(run, log, force_prepare)
    plan = validated.plan
    train, valid_batches = _datasets(run, prepared, plan)
    model = build_model(run.model.shape, vocab_size=prepared.vocab_size,
                        seq_length=plan.seq_length, z_loss_coef=run.model.z_loss_coef,
                        seed=run.seed if run.model.init_seed is None else run.model.init_seed)
    engine, _, loader, _ = adapter.initialize(
        model=model, model_parameters=model.parameters(), training_data=train,
        config=ds_config)
    return engine, loader, valid_batches


def _run(args, run, ds_config, validated) -> int:
    import deepspeed
    import torch.distributed as dist

    _single_process_env()
    deepspeed.init_distributed(dist_backend=_backend())
    _set_device()
    log = (lambda message: print(message, flush=True)) if rank() == 0 else (lambda message: None)
    try:
        engine, loader, valid_batches = _build(run, validated, ds_config, log,
                                               args.force_prepare)
        code = _Session(args, run, validated, engine, loader, valid_batches, log).execute()
        barrier()  # every rank done with its last collective before any tears down
        engine.destroy()
        if dist.is_initialized():
            dist.destroy_process_group()
    finally:
        # here, not in an exit handler: __main__ leaves through os._exit, which runs none
        release_cpu_shm_buffer()
    return code


def _single_process_env() -> None:
    """Plain ``python -m seesaw_ds.train`` (no launcher): a world of one on a free port."""
    if "RANK" in os.environ:
        return
    os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(free_port()))


def _set_device() -> None:
    """This rank's accelerator device, before the first collective (``_prepare_data``'s
    barrier): NCCL binds each rank's communicator to the current device."""
    from deepspeed.accelerator import get_accelerator

    get_accelerator().set_device(int(os.environ.get("LOCAL_RANK", "0")))


def _backend() -> str:
    from deepspeed.accelerator import get_accelerator

    return get_accelerator().communication_backend_name()


#: How long another rank waits before printing its own error line: rank 0 prints first and
#: the launcher (torchrun, deepspeed) ends the other ranks when it exits, so a job prints one
#: line; an error that rank 0 did not reach still gets printed by the rank that met it.
OTHER_RANK_GRACE_SECONDS = 10.0


def _report(error: SeesawConfigError) -> int:
    """One line on stderr: from global rank 0 at once; from another rank only if it is still
    running after :data:`OTHER_RANK_GRACE_SECONDS` (rank 0 did not stop the job)."""
    me = rank() if world_size() > 1 else int(os.environ.get("RANK", "0") or 0)
    if me == 0:
        print(f"seesaw-ds train: error: {error}", file=sys.stderr, flush=True)
    else:
        time.sleep(OTHER_RANK_GRACE_SECONDS)
        print(f"seesaw-ds train: error (rank {me}): {error}", file=sys.stderr, flush=True)
    return 2


def main(argv: Optional[List[str]] = None) -> int:
    """Exit status: 0 done (or stopped as asked), 2 a user error (one line),
    :data:`DIVERGED_EXIT` (3) the divergence policy stopped the run."""
    args = parse_args(argv)
    try:
        run, ds_config, validated = _validate(args)
    except SeesawConfigError as error:
        return _report(error)
    try:
        return _run(args, run, ds_config, validated)
    except SeesawConfigError as error:
        return _report(error)


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Everything is written and the process group is gone: leave without running C++ static
    # destructors, which on CPU (gloo, DeepSpeed's shm comm op) sometimes abort a run that
    # did almost no work ("terminate called without an active exception", exit -6).
    os._exit(code)
