"""Multi-rank worker for the DeepSpeed adapter tests (run by torchrun or the deepspeed launcher).

``worker.py --spec spec.json`` runs the spec's cases one after another in one process group
and writes ``{out}.rank{r}.json`` after each case. A case::

    {"name": str, "config": ds_config, "mode": "seesaw" | "naive",
     "resume_from": dir?, "allow_plan_change": bool?, "save_dir": dir?,
     "save_at_steps": [k, ...], "kill_at_step": k?, "max_steps": n?, "monitor_dir": dir?,
     "record_fsync": bool?}

Per optimizer step it records the LR/batch/GAS/micro-batch the engine used, the samples
this rank fed, the micro-batch losses, and (at the end) the full weights.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch.distributed as dist  # noqa: E402

import seesaw_ds  # noqa: E402
from dsa_common import RegressionData, make_model  # noqa: E402
from seesaw_ds.deepspeed_adapter import (  # noqa: E402
    SeesawDataLoader,
    load_checkpoint,
    save_checkpoint,
)
from seesaw_ds.errors import SeesawConfigError  # noqa: E402


def rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def gathered_weights(engine) -> list:
    import deepspeed

    params = list(engine.module.parameters())
    with deepspeed.zero.GatheredParameters(params, modifier_rank=None):
        return [p.detach().double().flatten().tolist() for p in params]


def record_fsyncs() -> list:
    """Paths this process fsyncs during checkpoint saves (wraps the helper the saver calls)."""
    import seesaw_ds.deepspeed_adapter.checkpoint as checkpoint

    seen, original = [], checkpoint.fsync_path

    def fsync_path(path):
        seen.append(str(path))
        original(path)

    checkpoint.fsync_path = fsync_path
    return seen


def run_case(case: dict, local_rank: int) -> dict:
    fsynced = record_fsyncs() if case.get("record_fsync") else None
    model = make_model()
    data = RegressionData()
    naive = case.get("mode") == "naive"
    args = argparse.Namespace(local_rank=local_rank, deepspeed_config=None)
    engine, optimizer, loader, scheduler = seesaw_ds.initialize(
        args=args, model=model, model_parameters=model.parameters(),
        training_data=None if naive else data, config=case["config"],
    )
    hook = engine.seesaw
    if case.get("resume_from"):
        path, _ = load_checkpoint(engine, case["resume_from"],
                                  allow_plan_change=case.get("allow_plan_change", False))
        assert path is not None, "nothing to resume"
    if naive:  # DeepSpeed's own boundary + set_train_batch_size at each boundary
        hook.detach()
        loader = SeesawDataLoader(data, hook.plan, hook.dp_rank, hook.plan.dp_size,
                                  hook.data_seed)
    basic_optimizer = engine.basic_optimizer
    identity = [id(engine), id(engine.optimizer), id(basic_optimizer), id(engine.module)]
    steps, current = [], None
    boundaries = []  # (step, identities, rss) at each batch change
    start_step = hook.step
    started = time.perf_counter()
    for batch in loader:
        if current is None:
            current = {
                "step": hook.step, "tokens": hook.consumed_tokens, "lr": engine.get_lr()[0],
                "global_batch": engine.train_batch_size(),
                "grad_accum": engine.gradient_accumulation_steps(),
                "micro_batch": engine.train_micro_batch_size_per_gpu(),
                "global_samples": int(engine.global_samples),
                "samples": 0, "losses": [],
            }
        boundary = engine.is_gradient_accumulation_boundary()
        loss = engine(batch)
        engine.backward(loss)
        current["samples"] += len(batch["x"])
        current["losses"].append(loss.item())
        engine.step()
        if naive:
            if boundary:
                planned = hook.plan.at_samples(engine.global_samples)
                engine.set_train_batch_size(planned.global_batch)
                steps.append(current)
                current = None
            continue
        if not hook.at_boundary:
            continue
        steps.append(current)
        if current["global_batch"] != hook.setting.global_batch:
            ids = [id(engine), id(engine.optimizer), id(engine.basic_optimizer), id(engine.module)]
            boundaries.append({"step": hook.step, "same_objects": ids == identity,
                               "rss": rss_bytes()})
        current = None
        done = hook.step - start_step
        if hook.step in case.get("save_at_steps", []):
            save_checkpoint(engine, case["save_dir"])
        if case.get("kill_at_step") == hook.step:
            dist.barrier()
            os.kill(os.getpid(), signal.SIGKILL)
        if case.get("max_steps") and done >= case["max_steps"]:
            break
    elapsed = time.perf_counter() - started
    result = {
        "steps": steps,
        "boundaries": boundaries,
        "weights": gathered_weights(engine),
        "final": {"step": hook.step, "tokens": hook.consumed_tokens,
                  "samples": hook.consumed_samples, "global_samples": int(engine.global_samples),
                  "global_steps": int(engine.global_steps)},
        "plan_steps": hook.plan.optimizer_steps,
        "dp_size": hook.plan.dp_size,
        "optimizer_type": type(basic_optimizer).__name__,
        "engine_optimizer_type": type(engine.optimizer).__name__,
        "hook_seconds": hook.hook_seconds,
        "elapsed": elapsed,
        "fsynced": [os.path.basename(p) for p in fsynced] if fsynced is not None else None,
    }
    engine.destroy()
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--spec", required=True)
    parser.add_argument("--local_rank", type=int, default=int(os.environ.get("LOCAL_RANK", 0)))
    cli = parser.parse_args()
    spec = json.loads(Path(cli.spec).read_text())
    rank = int(os.environ.get("RANK", "0"))
    out = Path(f"{spec['out']}.rank{rank}.json")
    results = {"cases": {}}
    for case in spec["cases"]:
        try:
            results["cases"][case["name"]] = run_case(case, cli.local_rank)
        except SeesawConfigError as error:
            if not case.get("expect_error"):
                raise
            results["cases"][case["name"]] = {"error": str(error)}
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(results))
        os.replace(tmp, out)
        dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
