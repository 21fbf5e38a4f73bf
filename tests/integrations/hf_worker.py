"""One rank of an HF Trainer job (run by test_hf_trainer.py under the deepspeed launcher).

A tiny randomly initialised GPT-2 from ``transformers`` (no download) and a token dataset
written here train with :class:`SeesawTrainer`. A forward pre-hook records what the model
really consumed (sample ids = first token), the optimizer's LR at each forward and the
engine's GAS; a callback cuts the record into optimizer steps. Each rank writes JSON.
"""

import argparse
import json
import os
import sys

import torch
from transformers import (GPT2Config, GPT2LMHeadModel, Trainer, TrainerCallback,
                          TrainingArguments)

from seesaw_ds.errors import SeesawConfigError
from seesaw_ds.integrations.hf_trainer import SeesawTrainer

N_SAMPLES, VOCAB = 120, 128


class TokenData(torch.utils.data.Dataset):
    """Sample i: ``seq`` random tokens whose first token is i (so the model's input names it)."""

    def __init__(self, seq: int, n: int = N_SAMPLES) -> None:
        gen = torch.Generator().manual_seed(3)
        self.ids = torch.randint(0, VOCAB, (n, seq), generator=gen)
        self.ids[:, 0] = torch.arange(n)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index):
        return {"input_ids": self.ids[index], "labels": self.ids[index]}


def make_model() -> GPT2LMHeadModel:
    torch.manual_seed(0)
    config = GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=VOCAB, n_positions=32,
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    return GPT2LMHeadModel(config)


class StepRecorder(TrainerCallback):
    def __init__(self, forwards):
        self.forwards, self.steps = forwards, []

    def on_step_end(self, args, state, control, **kwargs):
        self.steps.append({"global_step": state.global_step, "forwards": list(self.forwards)})
        self.forwards.clear()


class AccelerateBackward(SeesawTrainer):
    """A user's override: HF's own training_step (accelerator.backward) per micro-batch."""

    def training_step(self, model, inputs, num_items_in_batch=None):
        return sum(Trainer.training_step(self, model, micro) for micro in inputs)


MODES = {"seesaw": SeesawTrainer, "accelerate_backward": AccelerateBackward}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--spec", required=True)
    parser.add_argument("--local_rank", type=int, default=-1)
    spec = json.loads(open(parser.parse_args().spec).read())
    config = spec["config"]
    rank = int(os.environ.get("RANK", "0"))
    out = {"rank": rank}
    args = TrainingArguments(
        output_dir=spec["out"] + ".hf", deepspeed=config, report_to=[], logging_steps=1,
        save_strategy="steps" if spec.get("save_steps") else "no",
        save_steps=spec.get("save_steps") or 500, use_cpu=True, max_steps=spec.get("max_steps", -1),
        gradient_accumulation_steps=spec.get("gas", 1), disable_tqdm=True,
        eval_strategy="steps" if spec.get("eval_steps") else "no",
        eval_steps=spec.get("eval_steps"), per_device_eval_batch_size=3,
    )
    model = make_model()
    forwards = []
    trainer_box = {}

    def record(module, inputs, kwargs):
        engine = trainer_box["trainer"].model_wrapped
        forwards.append({"ids": kwargs["input_ids"][:, 0].tolist(),
                         "lr": engine.optimizer.param_groups[0]["lr"],
                         "gas": engine.gradient_accumulation_steps()})

    model.register_forward_pre_hook(record, with_kwargs=True)
    recorder = StepRecorder(forwards)
    try:
        trainer = MODES[spec.get("mode", "seesaw")](model=model, args=args,
                                train_dataset=TokenData(config["seesaw"]["seq_length"]),
                                eval_dataset=TokenData(config["seesaw"]["seq_length"], 12),
                                callbacks=[recorder])
        trainer_box["trainer"] = trainer
        result = trainer.train(resume_from_checkpoint=spec.get("resume"))
    except SeesawConfigError as error:
        out["error"] = str(error)
    else:
        hook = trainer.seesaw
        out.update(steps=recorder.steps, global_step=result.global_step,
                   consumed_tokens=hook.consumed_tokens, hook_step=hook.step,
                   log_lrs=[e["learning_rate"] for e in trainer.state.log_history
                            if "learning_rate" in e],
                   eval_losses=[e["eval_loss"] for e in trainer.state.log_history
                                if "eval_loss" in e],
                   weights=[p.detach().double().flatten().tolist()
                            for p in trainer.model.parameters()] if rank == 0 else None)
    with open(f"{spec['out']}.rank{rank}.json", "w") as handle:
        json.dump(out, handle)
    if torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    sys.exit(0)


if __name__ == "__main__":
    main()
