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
  continues from the latest one.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from typing import Dict, List, Optional

from seesaw_ds.atomic_files import write_json_atomic
from seesaw_ds.errors import SeesawConfigError

__all__ = ["main", "parse_args"]


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
    parser.add_argument("--allow-plan-change", action="store_true",
                        help="with --resume: accept a changed seesaw section / peak LR / batch "
                             "and continue from the saved token count on the new plan")
    parser.add_argument("--max-steps", type=int, default=None,
                        help="stop once this many optimizer steps are done, counted from the "
                             "run's start (a resume past it trains nothing)")
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
    if args.max_steps is not None and args.max_steps < 1:
        raise SeesawConfigError(f"--max-steps = {args.max_steps} must be >= 1.")
    if args.allow_plan_change and not args.resume:
        raise SeesawConfigError("--allow-plan-change applies to --resume only: add --resume.")
    return run, ds_config, validated


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


# ---- distributed helpers --------------------------------------------------------------------

def _rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if dist.is_initialized() else 0


def _world() -> int:
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_initialized() else 1


def _barrier() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.barrier()


def _all_mean(values: List[float]) -> List[float]:
    """Mean over ranks of each value."""
    import torch
    import torch.distributed as dist

    tensor = torch.tensor(values, dtype=torch.float64)
    if dist.is_initialized():
        dist.all_reduce(tensor)
        tensor /= dist.get_world_size()
    return tensor.tolist()


# ---- data and model -------------------------------------------------------------------------

def _prepare_data(run, log):
    from seesaw_ds.data.prepare import load_prepared, prepare

    data = run.data
    if _rank() == 0:
        prepared = prepare(data.inputs, data.prepared_dir, **data.prepare_options(),
                           progress=True, log=log)
    _barrier()
    if _rank() != 0:
        prepared = load_prepared(data.prepared_dir)
    return prepared


def _datasets(run, prepared, plan):
    from seesaw_ds.data.gpt_data import build_gpt_datasets, fixed_validation_batches

    seq = plan.seq_length
    # From the token budget only: GPTDataset's length (and so the global sample order) depends
    # on the samples asked for, so schedule-dependent sizes would give cosine and Seesaw runs
    # different token streams. The last step's overshoot wraps around (GlobalSampleOrder).
    train_samples = math.ceil(plan.total_tokens / seq)
    train, valid = build_gpt_datasets(prepared, seq, split=run.data.split, seed=1234,
                                      train_samples=train_samples)
    batches = fixed_validation_batches(valid, run.eval.batch_size, run.eval.batches)
    return train, batches


def _evaluate(engine, batches) -> float:
    """Mean CE over the fixed validation batches, sharded over ranks."""
    import torch

    rank, world = _rank(), _world()
    total, count = 0.0, 0
    engine.eval()
    with torch.no_grad():
        for index, batch in enumerate(batches):
            if index % world != rank:
                continue
            out = engine(batch["tokens"], batch["labels"])
            total += float(out.ce)
            count += 1
    engine.train()
    total, count = _all_mean([total, float(count)])
    return total / count


# ---- the run ------------------------------------------------------------------------------

class _Recorder:
    """Per-step CSV, validation curve and summary, written by rank 0 only."""

    def __init__(self, output_dir: str, resume: bool) -> None:
        self.output_dir = output_dir
        self.is_writer = _rank() == 0
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


def _run(args, run, ds_config, validated) -> int:
    import deepspeed
    import torch

    import seesaw_ds.deepspeed_adapter as adapter
    from seesaw_ds.cbs.probe import GuardDriver
    from seesaw_ds.model.shapes import build_model

    _single_process_env()
    deepspeed.init_distributed(dist_backend=_backend())
    rank = _rank()
    log = (lambda message: print(message, flush=True)) if rank == 0 else (lambda message: None)
    torch.manual_seed(run.seed)
    prepared = _prepare_data(run, log)
    plan = validated.plan
    train, valid_batches = _datasets(run, prepared, plan)
    model = build_model(run.model.shape, vocab_size=prepared.vocab_size,
                        seq_length=plan.seq_length, z_loss_coef=run.model.z_loss_coef,
                        seed=run.seed if run.model.init_seed is None else run.model.init_seed)
    engine, _, loader, _ = adapter.initialize(
        model=model, model_parameters=model.parameters(), training_data=train,
        config=ds_config)
    hook = engine.seesaw
    name = run.name or validated.section.batch_schedule_name
    recorder = _Recorder(run.output_dir, args.resume)
    guard = GuardDriver.maybe(validated.section, engine, log)
    checkpoint_dir = run.checkpoint_dir
    state = {"next_eval": 0.0, "next_checkpoint": run.checkpoint.interval_tokens or math.inf,
             "wall": 0.0, "hook_seconds": 0.0}
    if args.resume:
        if guard is not None:
            guard.restore(checkpoint_dir)
        load_path, client = engine.load_checkpoint(
            checkpoint_dir, allow_plan_change=args.allow_plan_change)
        if load_path is not None:
            state.update(client["train_state"])
            recorder.curve = client["curve"]
            log(f"resumed from {load_path} at step {hook.step}, "
                f"{hook.consumed_tokens:,} tokens")
        recorder.truncate_steps(hook.step)  # rows past the checkpoint (all, if none) redo
    total = plan.total_tokens
    progress = None
    if rank == 0 and not args.no_progress:
        from tqdm import tqdm

        progress = tqdm(total=int(total), initial=min(hook.consumed_tokens, int(total)),
                        unit="tok", unit_scale=True, desc=name, dynamic_ncols=True)

    def evaluate_and_record():
        val_loss = _evaluate(engine, valid_batches)
        recorder.point(hook.consumed_tokens, hook.step, val_loss, state["wall"])
        state["next_eval"] = (math.floor(hook.consumed_tokens / run.eval.interval_tokens) + 1) \
            * run.eval.interval_tokens
        if progress is not None:
            progress.set_postfix(val=f"{val_loss:.4f}", B=hook.setting.global_batch)
        return val_loss

    def save(tag=None):
        saved_state = dict(state, hook_seconds=state["hook_seconds"] + hook.hook_seconds)
        client = {"train_state": saved_state, "curve": recorder.curve}
        written = engine.save_checkpoint(checkpoint_dir, tag=tag, client_state=client)
        log(f"checkpoint global_step{engine.global_steps} "
            + ("written" if written else "already published at this step: not rewritten"))

    if hook.consumed_tokens >= state["next_eval"]:
        evaluate_and_record()
    window_losses: List[float] = []
    started = time.perf_counter()
    done = args.max_steps is not None and hook.step >= args.max_steps
    for batch in () if done else loader:  # resumed at --max-steps N: train nothing
        if guard is not None and hook.at_boundary:
            guard.probe(batch)
        out = engine(batch["tokens"], batch["labels"])
        engine.backward(out.loss)
        window_losses.append(float(out.ce))
        closing = engine.is_gradient_accumulation_boundary()
        if guard is not None and closing:
            guard.before_step()
        setting = hook.setting
        engine.step()
        if not hook.at_boundary:
            continue
        loss = _all_mean([sum(window_losses) / len(window_losses)])[0]
        window_losses = []
        if guard is not None:
            guard.after_step(setting, hook)
        state["wall"] += time.perf_counter() - started
        recorder.step(hook.step, hook.consumed_tokens, setting, loss)
        if progress is not None:
            progress.update(min(hook.consumed_tokens, int(total)) - progress.n)
        if hook.consumed_tokens >= state["next_eval"] or hook.finished:
            evaluate_and_record()
        if hook.consumed_tokens >= state["next_checkpoint"] and not hook.finished:
            # Advanced before saving: a resume must not save this checkpoint again.
            interval = run.checkpoint.interval_tokens
            state["next_checkpoint"] = (math.floor(hook.consumed_tokens / interval) + 1) * interval
            save()
        started = time.perf_counter()
        if args.max_steps is not None and hook.step >= args.max_steps:
            break
    if progress is not None:
        progress.close()
    if recorder.curve and recorder.curve[-1]["step"] != hook.step:
        evaluate_and_record()
    save()
    if rank == 0:
        summary = {
            "schedule": name,
            "batch_schedule": validated.section.batch_schedule_name,
            "final_val_loss": recorder.curve[-1]["val_loss"],
            "optimizer_steps": hook.step,
            "tokens": int(hook.consumed_tokens),
            "wall_seconds": state["wall"],
            "planned_optimizer_steps": plan.optimizer_steps,
            "baseline_optimizer_steps": plan.baseline_optimizer_steps,
            "final_global_batch": hook.setting.global_batch,
            "world_size": _world(),
            "seed": run.seed,
            "finished": bool(hook.finished),
            "hook_seconds": state["hook_seconds"] + hook.hook_seconds,
        }
        if guard is not None:
            summary["cbs_guard"] = guard.summary()
        write_json_atomic(os.path.join(run.output_dir, "summary.json"), summary)
        log(json.dumps(summary))
    engine.destroy()
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()
    return 0


def _single_process_env() -> None:
    """Plain ``python -m seesaw_ds.train`` (no launcher): a world of one on a free port."""
    if "RANK" in os.environ:
        return
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))


def _backend() -> str:
    from deepspeed.accelerator import get_accelerator

    return get_accelerator().communication_backend_name()


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    try:
        run, ds_config, validated = _validate(args)
    except SeesawConfigError as error:
        print(f"seesaw-ds train: error: {error}", file=sys.stderr)
        return 2
    try:
        return _run(args, run, ds_config, validated)
    except SeesawConfigError as error:
        print(f"seesaw-ds train: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
