"""2-rank worker: the CBS guard's measurements under ZeRO 0/1/2, clipping on and off.

``torchrun --nproc_per_node 2 guard_worker.py SPEC.json`` builds one engine per case in a
single process group (real ``seesaw_ds.initialize``, megatron-core ``GPTDataset``, the
``micro`` GPT), runs the training loop of ``seesaw_ds.train`` with a ``GuardDriver`` for a
few optimizer steps and writes ``{out}.rank{r}.json``: per case the guard's measurements
(``small_batch, small_sq, big_batch, big_sq`` as fed to the estimator), the per-micro-batch
losses, or the ``SeesawConfigError`` that refused the case. A spec::

    {"prepared": DIR, "split": "80,20,0", "out": PATH, "steps": 5,
     "cases": [{"name": str, "stage": 0-3, "clip": float, "guard": bool,
                "compute_grad_norm": bool?}]}
"""

from __future__ import annotations

import json
import sys

import torch.distributed as dist

import seesaw_ds
from seesaw_ds.cbs.probe import GuardDriver
from seesaw_ds.config import seesaw_section_of
from seesaw_ds.data.gpt_data import build_gpt_datasets
from seesaw_ds.errors import SeesawConfigError
from seesaw_ds.model.shapes import build_model

SEQ = 64


def ds_config(case: dict) -> dict:
    zero = {"stage": case["stage"]}
    if "compute_grad_norm" in case:
        zero["compute_grad_norm"] = case["compute_grad_norm"]
    return {
        "train_batch_size": 8, "train_micro_batch_size_per_gpu": 2,
        "gradient_clipping": case["clip"], "steps_per_print": 10 ** 9,
        "optimizer": {"type": "AdamW", "params": {"lr": 3e-3, "betas": [0.9, 0.95],
                                                  "weight_decay": 0.0, "torch_adam": True}},
        "zero_optimization": zero,
        "zero_allow_untested_optimizer": True,
        "seesaw": {
            "total_tokens": 65536, "seq_length": SEQ, "batch_growth": 2.0,
            "lr_schedule": {"type": "cosine", "warmup_fraction": 0.1,
                            "warmup_start_factor": 0.1, "final_factor": 0.1},
            "cbs_guard": {"enabled": bool(case["guard"]), "ema_decay": 0.0, "min_samples": 1,
                          "safety_factor": 1e9},
        },
    }


def run_case(case: dict, train, vocab_size: int, steps: int) -> dict:
    model = build_model("micro", vocab_size=vocab_size, seq_length=SEQ, seed=0)
    config = ds_config(case)
    engine, _, loader, _ = seesaw_ds.initialize(
        model=model, model_parameters=model.parameters(), training_data=train, config=config)
    hook = engine.seesaw
    try:
        section = seesaw_section_of(config)
        guard = GuardDriver.maybe(section, engine, lambda message: None)
    except SeesawConfigError as error:
        engine.destroy()
        return {"refused": str(error)}
    measurements, losses = [], []
    if guard is not None:
        observe = guard.guard.observe

        def recording_observe(*values):
            measurements.append([float(v) for v in values])
            return observe(*values)

        guard.guard.observe = recording_observe
    for batch in loader:  # the loop of seesaw_ds.train._Session.train
        if guard is not None and hook.at_boundary:
            guard.probe(batch)
        out = engine(batch["tokens"], batch["labels"])
        engine.backward(out.loss)
        losses.append(float(out.ce))
        if guard is not None and engine.is_gradient_accumulation_boundary():
            guard.before_step()
        setting = hook.setting
        engine.step()
        if not hook.at_boundary:
            continue
        if guard is not None:
            guard.after_step(setting, hook)
        if hook.step >= steps:
            break
    engine.destroy()
    return {"measurements": measurements, "losses": losses}


def main() -> None:
    with open(sys.argv[1], encoding="utf-8") as handle:
        spec = json.load(handle)
    import deepspeed

    deepspeed.init_distributed(dist_backend="gloo")
    train, _ = build_gpt_datasets(spec["prepared"], SEQ, split=spec["split"],
                                  train_samples=65536 // SEQ)
    from seesaw_ds.data.prepare import load_prepared

    vocab = load_prepared(spec["prepared"]).vocab_size
    results = {}
    for case in spec["cases"]:
        results[case["name"]] = run_case(case, train, vocab, spec["steps"])
    with open(f"{spec['out']}.rank{dist.get_rank()}.json", "w", encoding="utf-8") as handle:
        json.dump(results, handle)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
