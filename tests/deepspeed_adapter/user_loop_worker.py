"""Multi-rank worker: a user's own loop, model and data under ``seesaw_ds.initialize``.

Nothing of the package's model or loader is used: a tiny language model and token datasets
written here, fed through the data paths a DeepSpeed user takes. ``--spec spec.json`` runs
the cases one after another in one process group; each case is::

    {"name": str, "config": ds_config, "data": "ours" | "sampler" | "sampler_default" |
     "iterable" | "global_stream" | "distributed_sampler", "call": "positional" | "kwargs",
     "stop_at_step": k?, "save_dir": dir?, "resume_from": dir?, "past_end": str?,
     "extra_steps": n?, "dataset_size": n?, "expect_error": bool?}

Per optimizer step it records the engine's global batch, GAS, micro-batch and LR, the
tokens consumed before the step, the samples this rank fed and their ids.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

import seesaw_ds  # noqa: E402
from seesaw_ds.errors import SeesawConfigError  # noqa: E402

VOCAB, SEQ = 32, 4
N_SAMPLES = 150


class TinyLM(nn.Module):
    """Embedding -> linear next-token model; ``forward(tokens, ids=None)`` returns the loss."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(VOCAB, 16)
        self.head = nn.Linear(16, VOCAB)

    def forward(self, tokens: torch.Tensor, ids: torch.Tensor = None) -> torch.Tensor:
        logits = self.head(self.embed(tokens[:, :-1]))
        return nn.functional.cross_entropy(logits.reshape(-1, VOCAB), tokens[:, 1:].reshape(-1))


def sample(index: int) -> dict:
    gen = torch.Generator().manual_seed(1000 + index)
    return {"tokens": torch.randint(0, VOCAB, (SEQ,), generator=gen), "ids": torch.tensor(index)}


class TokenData(torch.utils.data.Dataset):
    def __init__(self, n: int = N_SAMPLES) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> dict:
        return sample(index)


class RankStream(torch.utils.data.IterableDataset):
    """This rank's shard of an endless token stream: ids rank, rank + dp, rank + 2 dp, ..."""

    def __iter__(self):
        index = dist.get_rank()
        while True:
            yield sample(index)
            index += dist.get_world_size()


class GlobalStream(torch.utils.data.IterableDataset):
    """The whole run's samples in Seesaw's global order, the same on every rank."""

    def __init__(self, data_seed: int) -> None:
        from seesaw_ds.deepspeed_adapter import GlobalSampleOrder

        self.order = GlobalSampleOrder(N_SAMPLES, data_seed)

    def __iter__(self):
        index = 0
        while True:
            yield sample(self.order[index])
            index += 1


def user_collate(items):
    return {"tokens": torch.stack([i["tokens"] for i in items]),
            "ids": torch.stack([i["ids"] for i in items])}


def build(case: dict, local_rank: int):
    data = case.get("data", "ours")
    dataset = TokenData(case.get("dataset_size", N_SAMPLES))
    training_data = {"ours": dataset, "sampler_default": dataset,
                     "iterable": RankStream(),
                     "global_stream": GlobalStream(case["config"]["seesaw"]["data_seed"]),
                     }.get(data)
    engine, _, loader, _ = seesaw_ds.initialize(
        args=argparse.Namespace(local_rank=local_rank), model=TinyLM(),
        config=case["config"], training_data=training_data,
        past_end=case.get("past_end", "error"),
        iterable_stream="global" if data == "global_stream" else "rank",
    )
    hook = engine.seesaw
    if case.get("resume_from"):
        path, _ = engine.load_checkpoint(case["resume_from"])
        assert path is not None, "nothing to resume"
    if data in ("sampler", "sampler_default"):  # the user's own DataLoader, our sampler
        sampler = hook.batch_sampler(dataset if data == "sampler" else None)
        loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler,
                                             collate_fn=user_collate, num_workers=1)
    elif data == "distributed_sampler":  # a plain DeepSpeed user's loader, epochs repeated
        drop_last = case.get("drop_last", True)
        plain = torch.utils.data.DataLoader(
            dataset, batch_size=case["config"]["train_micro_batch_size_per_gpu"],
            sampler=torch.utils.data.DistributedSampler(dataset, shuffle=False,
                                                        drop_last=drop_last),
            collate_fn=user_collate, drop_last=drop_last)
        loader = (batch for _ in range(100) for batch in plain)
    return engine, loader


def run_case(case: dict, local_rank: int) -> dict:
    steps, current, error = [], None, None
    engine = None
    try:
        engine, loader = build(case, local_rank)
        hook = engine.seesaw
        extra = case.get("extra_steps")  # without it the loop runs until its data ends
        end = hook.plan.optimizer_steps + extra if extra is not None else None
        for batch in loader:
            if current is None:
                current = {"step": hook.step, "tokens": hook.consumed_tokens,
                           "lr": engine.get_lr()[0], "global_batch": engine.train_batch_size(),
                           "grad_accum": engine.gradient_accumulation_steps(),
                           "micro_batch": engine.train_micro_batch_size_per_gpu(),
                           "samples": 0, "ids": []}
            if case.get("call") == "kwargs":
                loss = engine(**batch)
            else:
                loss = engine(batch["tokens"])
            engine.backward(loss)
            current["samples"] += len(batch["ids"])
            current["ids"] += batch["ids"].tolist()
            engine.step()
            if not hook.at_boundary:
                continue
            steps.append(current)
            current = None
            if hook.step == case.get("stop_at_step"):
                engine.save_checkpoint(case["save_dir"])
                break
            if end is not None and hook.step >= end:
                break
    except SeesawConfigError as caught:
        if not case.get("expect_error"):
            raise
        error = str(caught)
    result = {"steps": steps, "error": error}
    if engine is not None:
        hook = engine.seesaw
        result.update(final_step=hook.step, final_tokens=hook.consumed_tokens,
                      checked_forwards=hook.contract.checked_forwards,
                      plan_steps=hook.plan.optimizer_steps)
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
        results["cases"][case["name"]] = run_case(case, cli.local_rank)
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(results))
        os.replace(tmp, out)
        if not dist.is_initialized():  # a case refused before DeepSpeed started
            import deepspeed

            deepspeed.init_distributed()
        dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
