"""A plain DeepSpeed training script with Seesaw: the only change is ``seesaw_ds.initialize``.

Run (2 CPU ranks)::

    deepspeed --num_gpus 2 launch/train_example.py --deepspeed_config ds_configs/tiny_seesaw.json

(or ``bash launch/run_example.sh``). The model is a tiny next-token MLP on a synthetic
Markov-chain corpus, so the loss falls within seconds. Compare batch schedules by editing
the ``seesaw`` section of the JSON only (e.g. ``"batch_schedule": "constant"`` for the
cosine baseline): the data order is the same for every schedule.
"""

import argparse
import time

import deepspeed
import numpy as np
import torch
from torch import nn

import seesaw_ds


def get_args():
    parser = argparse.ArgumentParser(description="DeepSpeed + Seesaw example")
    parser.add_argument("--local_rank", type=int, default=-1)
    parser.add_argument("--seq_length", type=int, default=128)
    parser.add_argument("--vocab", type=int, default=64)
    parser.add_argument("--max_steps", type=int, default=0, help="stop early (0: run the plan)")
    parser.add_argument("--log_every", type=int, default=25)
    parser.add_argument("--checkpoint_dir", default=None, help="resume from / save to here")
    parser.add_argument("--save_every", type=int, default=0)
    parser = deepspeed.add_config_arguments(parser)
    return parser.parse_args()


class MarkovCorpus(torch.utils.data.Dataset):
    """Sequences from a fixed random Markov chain; items are {"tokens": [seq_length + 1]}."""

    def __init__(self, vocab, seq_length, size=4096, seed=0):
        rng = np.random.default_rng(seed)
        table = rng.dirichlet(np.full(vocab, 0.1), size=vocab).cumsum(axis=1)
        tokens = np.empty((size, seq_length + 1), dtype=np.int64)
        tokens[:, 0] = rng.integers(vocab, size=size)
        for t in range(seq_length):
            u = rng.random((size, 1))
            tokens[:, t + 1] = np.minimum((table[tokens[:, t]] < u).sum(axis=1), vocab - 1)
        self.tokens = torch.from_numpy(tokens)

    def __len__(self):
        return len(self.tokens)

    def __getitem__(self, index):
        return {"tokens": self.tokens[index]}


class TinyLM(nn.Module):
    def __init__(self, vocab, width=64):
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.mlp = nn.Sequential(
            nn.Linear(width, 2 * width), nn.GELU(), nn.Linear(2 * width, vocab))

    def forward(self, batch):
        tokens = batch["tokens"]
        logits = self.mlp(self.embed(tokens[:, :-1]))
        return nn.functional.cross_entropy(logits.flatten(0, 1).float(), tokens[:, 1:].flatten())


def main():
    args = get_args()
    deepspeed.init_distributed()
    torch.manual_seed(0)
    model = TinyLM(args.vocab)
    corpus = MarkovCorpus(args.vocab, args.seq_length)

    # The one Seesaw line (was: deepspeed.initialize(...)).
    engine, optimizer, loader, lr_scheduler = seesaw_ds.initialize(
        args=args, model=model, model_parameters=model.parameters(), training_data=corpus)

    if args.checkpoint_dir:
        engine.load_checkpoint(args.checkpoint_dir)  # restores the Seesaw clock and batch too

    rank0 = engine.global_rank == 0
    last_step, started = engine.global_steps, time.time()
    for batch in loader:
        loss = engine({key: value.to(engine.device) for key, value in batch.items()})
        engine.backward(loss)
        engine.step()
        if engine.global_steps == last_step:
            continue  # inside a gradient accumulation window
        last_step = engine.global_steps
        if rank0 and (last_step % args.log_every == 0 or last_step <= 3):
            print(f"[example] step {last_step} loss {loss.item():.4f} "
                  f"lr {engine.get_lr()[0]:.3g} global_batch={engine.train_batch_size()} "
                  f"tokens={engine.seesaw.consumed_tokens}", flush=True)
        if args.checkpoint_dir and args.save_every and last_step % args.save_every == 0:
            engine.save_checkpoint(args.checkpoint_dir)
        if args.max_steps and last_step >= args.max_steps:
            break
    if args.checkpoint_dir:
        engine.save_checkpoint(args.checkpoint_dir)
    if rank0:
        print(f"[example] done: {engine.global_steps} optimizer steps, "
              f"{engine.seesaw.consumed_tokens} tokens, {time.time() - started:.1f}s", flush=True)
    engine.destroy()
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
