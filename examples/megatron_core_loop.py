"""A training loop of your own on megatron-core that follows a seesaw plan (no Megatron-LM).

    torchrun --nproc_per_node 1 examples/megatron_core_loop.py ds_configs/tiny_seesaw.json

(On a machine without CUDA add ``--cpu``: megatron-core's schedules allocate a token counter
on "cuda"; :class:`CudaToCpu` puts it on the CPU.)

Three seesaw-ds calls, the rest is megatron-core as you would use it anyway:

1. ``plan = megatron_section(seesaw_section_of(config)).build_plan(...)``: the plan, laid
   out with accumulation at your fixed micro-batch (megatron-core keeps it fixed).
2. ``install_calculator(plan)``: megatron-core's global ``update_num_microbatches`` /
   ``get_num_microbatches`` / ``get_current_global_batch_size`` follow the plan.
3. ``SeesawParamScheduler(optimizer, plan)`` + ``calculator.follow(scheduler.set_consumed_samples)``:
   every param group's LR is the plan's at the same consumed-sample count as the batch.

The loop asks the calculator for the step's micro-batch count, hands it to megatron-core's
``get_forward_backward_func()`` schedule, steps the optimizer, and advances the one clock:
consumed samples. See docs/megatron_core.md.
"""

from __future__ import annotations

import argparse
import contextlib
import os
from typing import Callable, Dict, Iterator, List, Optional

import torch
import torch.distributed as dist
from megatron.core import parallel_state
from megatron.core.num_microbatches_calculator import (
    get_current_global_batch_size,
    get_num_microbatches,
    update_num_microbatches,
)
from megatron.core.pipeline_parallel import get_forward_backward_func
from megatron.core.transformer.transformer_config import TransformerConfig

from seesaw_ds.config import load_config_file, seesaw_section_of
from seesaw_ds.megatron_adapter import (SeesawParamScheduler, install_calculator,
                                        megatron_section)

FEATURES = 16


class CudaToCpu(torch.overrides.TorchFunctionMode):
    """Tensors megatron-core creates with ``device="cuda"`` are made on the CPU (``--cpu``)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if str(kwargs.get("device", "")).startswith("cuda"):
            kwargs["device"] = "cpu"
        return func(*args, **kwargs)


class TinyRegression(torch.nn.Module):
    """A stand-in for your model: megatron-core's schedules read ``config``,
    ``model_type`` and ``set_input_tensor`` (pipeline input) from it."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(FEATURES, 1)
        self.config = TransformerConfig(num_layers=1, hidden_size=FEATURES,
                                        num_attention_heads=1)
        self.model_type = None

    def set_input_tensor(self, tensor) -> None:  # no pipeline parallelism here
        pass

    def forward(self, inputs):
        return self.linear(inputs)


def micro_batches(first_sample: int, count: int, micro: int, rank: int, dp: int,
                  device: str) -> Iterator:
    """``count`` micro-batches of this rank's samples from ``first_sample`` on (the data
    position is the consumed-sample count, as in Megatron's samplers)."""
    truth = torch.linspace(-1.0, 1.0, FEATURES)
    for index in range(count):
        start = first_sample + (index * dp + rank) * micro
        generator = torch.Generator().manual_seed(start)
        inputs = torch.randn(micro, FEATURES, generator=generator)
        yield inputs.to(device), (inputs @ truth[:, None]).to(device)


def forward_step(data_iterator, model):
    inputs, targets = next(data_iterator)
    outputs = model(inputs)

    def loss_func(output):
        loss = torch.nn.functional.mse_loss(output, targets)
        return loss, {"loss": loss.detach()}

    return outputs, loss_func


def train(config_path: str, max_steps: Optional[int] = None,
          on_step: Optional[Callable[[Dict], None]] = None) -> List[Dict]:
    """Train the toy model along the plan of ``config_path``; one record per step."""
    config = load_config_file(config_path)
    params = config["optimizer"]["params"]
    micro = config["train_micro_batch_size_per_gpu"]
    dp = parallel_state.get_data_parallel_world_size()
    rank = parallel_state.get_data_parallel_rank()
    plan = megatron_section(seesaw_section_of(config)).build_plan(
        peak_lr=params["lr"], initial_batch=config["train_batch_size"], micro_batch=micro,
        dp_size=dp)
    calculator = install_calculator(plan, rank=dist.get_rank())

    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    model = TinyRegression().to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.0, betas=tuple(params["betas"]),
                                  eps=params["eps"], weight_decay=params["weight_decay"])
    scheduler = SeesawParamScheduler(optimizer, plan, weight_decay=params["weight_decay"])
    calculator.follow(scheduler.set_consumed_samples)
    forward_backward = get_forward_backward_func()

    consumed, records = 0, []
    while not plan.is_finished(consumed * plan.seq_length):
        if max_steps is not None and len(records) == max_steps:
            break
        update_num_microbatches(consumed, consistency_check=True)  # batch and LR, one count
        count = get_num_microbatches()
        lr = optimizer.param_groups[0]["lr"]
        losses = forward_backward(
            forward_step_func=forward_step,
            data_iterator=micro_batches(consumed, count, micro, rank, dp, device), model=model,
            num_microbatches=count, seq_length=plan.seq_length, micro_batch_size=micro,
            forward_only=False)
        if dp > 1:
            for param in model.parameters():
                dist.all_reduce(param.grad, group=parallel_state.get_data_parallel_group())
                param.grad /= dp
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        batch = get_current_global_batch_size()
        scheduler.step(increment=batch)  # Megatron-LM's call after a successful update
        record = {"step": len(records), "consumed_samples": consumed, "global_batch": batch,
                  "micro_batches": count, "lr": lr, "forward_passes": len(losses),
                  "loss": float(sum(item["loss"] for item in losses) / len(losses))}
        records.append(record)
        if on_step is not None:
            on_step(record)
        consumed += batch
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", help="a seesaw-ds config (train_batch_size, "
                        "train_micro_batch_size_per_gpu, optimizer.params, seesaw)")
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--cpu", action="store_true", help="no CUDA here (see CudaToCpu)")
    options = parser.parse_args()
    dist.init_process_group("gloo" if options.cpu else "nccl")
    if not options.cpu:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    parallel_state.initialize_model_parallel()

    def show(record):
        if dist.get_rank() == 0 and (record["step"] % 20 == 0 or
                                     record["micro_batches"] != show.last):
            print(f"step {record['step']}: batch {record['global_batch']} "
                  f"({record['micro_batches']} micro-batches), lr {record['lr']:.3g}, "
                  f"loss {record['loss']:.4g}", flush=True)
        show.last = record["micro_batches"]

    show.last = None
    with CudaToCpu() if options.cpu else contextlib.nullcontext():
        records = train(options.config, options.max_steps, on_step=show)
    if dist.get_rank() == 0:
        print(f"{len(records)} steps, {records[-1]['consumed_samples'] + records[-1]['global_batch']}"
              " samples", flush=True)
    parallel_state.destroy_model_parallel()
    dist.destroy_process_group()


if __name__ == "__main__":
    os.environ.setdefault("CUDA_DEVICE_MAX_CONNECTIONS", "1")
    main()
