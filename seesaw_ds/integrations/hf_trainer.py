"""HF ``Trainer`` on a Seesaw plan: :class:`SeesawTrainer`, exact at every step.

The stock ``Trainer`` cannot follow a plan: it fixes ``gradient_accumulation_steps`` at start,
its loop decides the accumulation boundary from that number, and accelerate's engine wrapper
calls ``engine.step()`` only there. :class:`SeesawTrainer` keeps the ``Trainer`` (arguments,
callbacks, logging, evaluation, saving) and changes three things:

* **one Trainer step = one optimizer step of the plan.** The train dataloader yields one
  :class:`PlanWindow` per optimizer step: this rank's micro-batches of that step, in the
  global sample order of :class:`~seesaw_ds.deepspeed_adapter.SeesawDataLoader` (same seed,
  same samples). The ``Trainer`` runs with ``gradient_accumulation_steps = 1``;
* **the window trains through the DeepSpeed engine.** :meth:`SeesawTrainer.training_step`
  runs ``engine(micro)``, ``engine.backward(loss)``, ``engine.step()`` for each micro-batch;
  the :class:`~seesaw_ds.deepspeed_adapter.SeesawEngineHook` attached to the engine owns the
  accumulation boundary and sets each step's global batch, GAS, micro-batch and LR from the
  plan, exactly as with ``seesaw_ds.initialize``;
* **the LR is the plan's.** The engine's scheduler is a
  :class:`~seesaw_ds.deepspeed_adapter.SeesawLRScheduler` on the plan's token clock (built
  through the Trainer's ``create_scheduler``, which DeepSpeed calls with its optimizer).

Use::

    args = TrainingArguments(output_dir="out", deepspeed="ds_config.json")  # has "seesaw"
    trainer = SeesawTrainer(model=model, args=args, train_dataset=dataset,
                            data_collator=collator)
    trainer.train()

Note:
    ``SeesawTrainer`` writes into ``args`` what the plan decides (the DeepSpeed config
    without ``seesaw``, ``per_device_train_batch_size`` = first micro-batch,
    ``gradient_accumulation_steps`` = 1, ``max_steps`` = the plan's optimizer steps,
    ``learning_rate`` / Adam betas / eps / weight decay / ``max_grad_norm`` = the config's),
    so HF's consistency checks and logs agree with the engine.
Limitations:
    The DeepSpeed config must hold an ``optimizer`` section (its ``params.lr`` is the peak
    LR; ``"auto"`` takes ``args.learning_rate``); a client optimizer (``optimizers=``) or an
    HF scheduler cannot be driven by the plan and is refused. A map-style ``train_dataset``
    is required. ``resume_from_checkpoint`` continues exactly (clock, batch, data position
    from the engine checkpoint; the run's Seesaw fingerprint is checked), on the same
    number of ranks. Each micro-batch's loss is its own mean, divided by the
    step's GAS (DeepSpeed's scaling): with padded, variable-length labels this weighs tokens
    like DeepSpeed does, not like HF's ``num_items_in_batch``.
"""

from __future__ import annotations

import copy
import logging
import os
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
import torch.utils.data
from transformers import Trainer, TrainerCallback

from seesaw_ds.config import load_config_file
from seesaw_ds.deepspeed_adapter.engine_hook import SeesawEngineHook
from seesaw_ds.deepspeed_adapter.initialize import prepare_config
from seesaw_ds.deepspeed_adapter.sampler import GlobalSampleOrder, SeesawBatchSampler
from seesaw_ds.deepspeed_adapter.scheduler import SeesawLRScheduler
from seesaw_ds.deepspeed_adapter.state import SeesawState
from seesaw_ds.deepspeed_adapter.validation import ValidatedConfig
from seesaw_ds.errors import SeesawConfigError
from seesaw_ds.schedules import Plan

__all__ = ["SeesawTrainer", "PlanWindow", "PlanWindowSampler", "trainer_ds_config"]

_log = logging.getLogger(__name__)

#: ``optimizer.params`` keys HF fills from ``TrainingArguments`` when they read "auto".
_AUTO_OPTIMIZER_PARAMS = {
    "lr": lambda args: args.learning_rate,
    "betas": lambda args: [args.adam_beta1, args.adam_beta2],
    "eps": lambda args: args.adam_epsilon,
    "weight_decay": lambda args: args.weight_decay,
}


_HF_DEFAULT_MICRO_BATCH = 8  # TrainingArguments.per_device_train_batch_size's default

# ---- the DeepSpeed config: plan first, then what HF and DeepSpeed are handed ----------------


def _load(config: Any) -> Dict[str, Any]:
    if isinstance(config, dict):
        return copy.deepcopy(config)
    if isinstance(config, (str, os.PathLike)) and os.path.isfile(config):
        return load_config_file(config)
    raise SeesawConfigError(
        f"TrainingArguments.deepspeed = {config!r} is neither a dict nor a config file: "
        "SeesawTrainer reads the Seesaw plan from it; pass the DeepSpeed config (with its "
        "seesaw section) as a dict or a JSON/YAML path."
    )


def trainer_ds_config(
    config: Any, args: Any, dp_size: int, device: Optional[str] = None
) -> Tuple[ValidatedConfig, Dict[str, Any]]:
    """Validate ``config`` (dict or path, with a ``seesaw`` section) for a ``Trainer`` run.

    Returns ``(validated, hf_config)``: the plan, and the DeepSpeed config for HF (no
    ``seesaw``; "auto" in ``optimizer.params``, ``gradient_clipping`` and
    ``fp16``/``bf16.enabled`` resolved from ``args`` as HF does; the batch triple
    of a GAS-1 Trainer step at the plan's first micro-batch: the engine hook sets each
    step's real triple before its first micro-batch).

    Raises:
        SeesawConfigError: no ``optimizer`` section, or any config mistake (one line).
    """
    config = _load(config)
    optimizer = config.get("optimizer")
    if not isinstance(optimizer, dict):
        raise SeesawConfigError(
            "the DeepSpeed config has no optimizer section: SeesawTrainer needs DeepSpeed's "
            "optimizer (its params.lr is the peak LR) so the plan's scheduler drives it; add "
            "\"optimizer\": {\"type\": \"AdamW\", \"params\": {\"lr\": \"auto\"}}."
        )
    if config.get("train_batch_size") == "auto":
        raise SeesawConfigError(
            "train_batch_size = \"auto\": the Seesaw plan starts from the config's "
            "train_batch_size (the initial global batch in sequences); write the number."
        )
    params = dict(optimizer.get("params") or {})
    for key, from_args in _AUTO_OPTIMIZER_PARAMS.items():
        if params.get(key) == "auto":
            params[key] = from_args(args)
    config["optimizer"] = dict(optimizer, params=params)
    if config.get("gradient_clipping", "auto") == "auto":
        config["gradient_clipping"] = args.max_grad_norm
    for precision in ("fp16", "bf16"):  # HF's "auto": the TrainingArguments flag
        section = config.get(precision)
        if isinstance(section, dict) and section.get("enabled") == "auto":
            config[precision] = dict(section, enabled=bool(
                getattr(args, precision, False) or getattr(args, f"{precision}_full_eval", False)))
    validated = prepare_config(config, dp_size, device=device)
    first = validated.plan.at_tokens(validated.plan.first_runnable_tokens())
    hf_config = copy.deepcopy(validated.ds_config)
    hf_config["train_micro_batch_size_per_gpu"] = first.micro_batch
    hf_config["gradient_accumulation_steps"] = 1
    hf_config["train_batch_size"] = first.micro_batch * dp_size
    return validated, hf_config


def _align_args(args: Any, validated: ValidatedConfig, hf_config: Dict[str, Any]) -> None:
    """Write the plan's decisions into ``args`` and rebuild HF's DeepSpeed plugin from them."""
    from accelerate.utils import DeepSpeedPlugin
    from transformers.integrations.deepspeed import HfTrainerDeepSpeedConfig

    if args.gradient_accumulation_steps != 1:
        raise SeesawConfigError(
            f"TrainingArguments.gradient_accumulation_steps = "
            f"{args.gradient_accumulation_steps}: the Seesaw plan sets the accumulation of "
            "every step (from the DeepSpeed config's batch triple and its growth); leave it at 1."
        )
    if getattr(args, "auto_find_batch_size", False):
        raise SeesawConfigError(
            "TrainingArguments.auto_find_batch_size = True: the Seesaw plan sets every step's "
            "micro-batch (from train_micro_batch_size_per_gpu); set it to False."
        )
    plan = validated.plan
    if args.max_steps > plan.optimizer_steps:
        raise SeesawConfigError(
            f"TrainingArguments.max_steps = {args.max_steps} but the plan ends after "
            f"{plan.optimizer_steps} optimizer steps ({plan.total_tokens:.0f} tokens): leave "
            "max_steps at -1 (the plan's end) or set it to at most that."
        )
    if args.max_steps <= 0:
        args.max_steps = plan.optimizer_steps
    params = hf_config["optimizer"]["params"]
    micro = hf_config["train_micro_batch_size_per_gpu"]
    if args.per_device_train_batch_size not in (micro, _HF_DEFAULT_MICRO_BATCH):
        _log.warning(
            "SeesawTrainer: per_device_train_batch_size %s -> %s: the plan's micro-batch comes "
            "from the DeepSpeed config (train_micro_batch_size_per_gpu and seesaw growth).",
            args.per_device_train_batch_size, micro)
    args.per_device_train_batch_size = micro
    args.learning_rate = float(params["lr"])
    if "betas" in params:
        args.adam_beta1, args.adam_beta2 = (float(b) for b in params["betas"])
    if "eps" in params:
        args.adam_epsilon = float(params["eps"])
    if "weight_decay" in params:
        args.weight_decay = float(params["weight_decay"])
    args.max_grad_norm = float(hf_config["gradient_clipping"])
    args.deepspeed = hf_config
    args.hf_deepspeed_config = HfTrainerDeepSpeedConfig(hf_config)
    args.hf_deepspeed_config.trainer_config_process(args)
    args.deepspeed_plugin = DeepSpeedPlugin(hf_ds_config=args.hf_deepspeed_config)


# ---- data: one item per optimizer step ---------------------------------------------------------


class PlanWindow:
    """This rank's micro-batches of one optimizer step (what the train dataloader yields).

    Attributes:
        start: consumed samples (global) when the step starts; the clock must be there.
        micro_batches: the collated micro-batches, in order.
    """

    def __init__(self, start: int, micro_batches: List[Any]) -> None:
        self.start = int(start)
        self.micro_batches = list(micro_batches)

    def __len__(self) -> int:
        return len(self.micro_batches)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.micro_batches)

    def __contains__(self, key: object) -> bool:
        return False  # not a batch dict: the Trainer must not count its labels

    def pin_memory(self) -> "PlanWindow":
        from torch.utils.data._utils.pin_memory import pin_memory

        return PlanWindow(self.start, [pin_memory(batch) for batch in self.micro_batches])

    def __repr__(self) -> str:
        return f"PlanWindow(start={self.start}, micro_batches={len(self)})"


class PlanWindowSampler:
    """A ``batch_sampler``: per optimizer step, ``(start, micro, index)`` keys of this rank.

    The order is :class:`SeesawBatchSampler`'s (micro-batch ``j`` of rank ``r`` of a step
    starting at sample ``s`` holds stream samples ``s + (j * dp + r) * m ...``), cut per step.

    Args:
        plan / order / dp_rank / dp_size: as for :class:`SeesawBatchSampler`.
        state: the run's clock: each iteration starts at ``state.consumed_samples``.
    """

    def __init__(self, plan: Plan, order: GlobalSampleOrder, dp_rank: int, dp_size: int,
                 state: SeesawState) -> None:
        self.plan, self.order = plan, order
        self.dp_rank, self.dp_size, self.state = int(dp_rank), int(dp_size), state

    def _micro_sampler(self) -> SeesawBatchSampler:
        return SeesawBatchSampler(self.state.plan, self.order, self.dp_rank, self.dp_size,
                                  start_samples=self.state.consumed_samples)

    def __iter__(self) -> Iterator[List[Tuple[int, int, int]]]:
        sampler = self._micro_sampler()
        for start, first, micro_batch, accum in sampler.windows():
            yield [(start, micro, index) for micro in range(first, accum)
                   for index in sampler.micro_indices(start, micro, micro_batch)]

    def __len__(self) -> int:
        return sum(1 for _ in self._micro_sampler().windows())


class _KeyedDataset(torch.utils.data.Dataset):
    """``dataset[(start, micro, index)]`` -> ``(start, micro, dataset[index])``."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: Tuple[int, int, int]) -> Tuple[int, int, Any]:
        start, micro, index = key
        return start, micro, self.dataset[index]


class _WindowCollate:
    """Groups one step's items by micro-batch and collates each group with ``collate``."""

    def __init__(self, collate: Callable[[List[Any]], Any]) -> None:
        self.collate = collate

    def __call__(self, items: Sequence[Tuple[int, int, Any]]) -> PlanWindow:
        groups: Dict[int, List[Any]] = {}
        for _, micro, item in items:
            groups.setdefault(micro, []).append(item)
        return PlanWindow(items[0][0], [self.collate(groups[m]) for m in sorted(groups)])


class _NoAccelerateBackward:
    """Stands in for accelerate's ``DeepSpeedEngineWrapper`` once the hook owns the engine:
    ``accelerator.backward`` would set the boundary and call ``engine.step()`` on accelerate's
    fixed accumulation, so it is refused; the gradient norm still reads through."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine

    def backward(self, loss: Any, **kwargs: Any) -> None:
        raise SeesawConfigError(
            "accelerator.backward() on a Seesaw engine: accelerate's DeepSpeedEngineWrapper "
            "decides the accumulation boundary and calls engine.step() itself, which cannot "
            "follow the plan; keep SeesawTrainer.training_step (engine.backward, engine.step "
            "per micro-batch)."
        )

    def get_global_grad_norm(self) -> Any:
        norm = self.engine.get_global_grad_norm()
        return norm.item() if hasattr(norm, "item") else norm


class _AttachHook(TrainerCallback):
    """Attaches the engine hook once the Trainer has built the engine, before any step."""

    def __init__(self, trainer: "SeesawTrainer") -> None:
        self.trainer = trainer

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.trainer._seesaw_hook(self.trainer.model_wrapped)


# ---- the Trainer ----------------------------------------------------------------------------------


class SeesawTrainer(Trainer):
    """An HF ``Trainer`` that runs the Seesaw plan of ``args.deepspeed`` exactly.

    Same arguments as ``Trainer``; ``args.deepspeed`` is a DeepSpeed config (dict or path)
    with a ``seesaw`` section. After training, ``trainer.seesaw`` is the engine's
    :class:`SeesawEngineHook` (``consumed_tokens``, ``step``, ``setting``, ``finished``).

    Raises:
        SeesawConfigError: at construction, for any config mistake or an argument the plan
            cannot follow (one line naming it).
    """

    def __init__(self, model: Any = None, args: Any = None, *positional: Any, **kwargs: Any):
        if args is None or not getattr(args, "deepspeed", None):
            raise SeesawConfigError(
                "SeesawTrainer needs TrainingArguments(deepspeed=...) naming a DeepSpeed "
                "config with a seesaw section: the plan lives there."
            )
        optimizers = kwargs.get("optimizers", (None, None))
        if positional or any(part is not None for part in optimizers):
            raise SeesawConfigError(
                "SeesawTrainer takes model, args and keyword arguments only, without "
                "optimizers=: the optimizer comes from the DeepSpeed config's optimizer "
                "section and the LR from the Seesaw plan."
            )
        validated, hf_config = trainer_ds_config(args.deepspeed, args, args.world_size)
        _align_args(args, validated, hf_config)
        self.seesaw_config = validated
        self.seesaw_state = SeesawState(validated.plan)
        self.seesaw: Optional[SeesawEngineHook] = None
        self._seesaw_step_lr: Optional[float] = None
        super().__init__(model=model, args=args, **kwargs)
        self._attach_after_prepare()
        self.add_callback(_AttachHook(self))
        if self.train_dataset is not None and not (
            hasattr(self.train_dataset, "__len__") and hasattr(self.train_dataset, "__getitem__")
        ):
            raise SeesawConfigError(
                f"train_dataset is a {type(self.train_dataset).__name__} without __len__ and "
                "__getitem__: SeesawTrainer addresses samples by index to keep the plan's "
                "global order; pass a map-style dataset."
            )

    # ---- the engine: hooked as soon as accelerate has built it --------------------------

    def _attach_after_prepare(self) -> None:
        """Wrap this Trainer's ``accelerator.prepare`` so the DeepSpeed engine it returns gets
        the hook at once: before the Trainer loads a checkpoint into it (the hook's
        ``load_checkpoint`` then restores clock, batch and checks the run's fingerprint)."""
        prepare = self.accelerator.prepare

        def prepare_then_attach(*objects: Any, **kwargs: Any) -> Any:
            result = prepare(*objects, **kwargs)
            from deepspeed import DeepSpeedEngine

            for item in result if isinstance(result, tuple) else (result,):
                if isinstance(item, DeepSpeedEngine):
                    self._seesaw_hook(item)
            return result

        self.accelerator.prepare = prepare_then_attach

    def get_resumed_dataloader(self, dataloader: Any, num_batches: int) -> Any:
        """No skipping: the plan's sampler starts at the restored token clock."""
        del num_batches
        return dataloader

    # ---- the plan's scheduler, built where DeepSpeed builds its scheduler -------------------

    def create_scheduler(self, num_training_steps: int, optimizer: Any = None):
        """DeepSpeed calls this (through accelerate) with its optimizer: return the plan's
        scheduler on the shared clock; the engine steps it."""
        if optimizer is not None:
            return SeesawLRScheduler(optimizer, self.seesaw_state)
        if self.lr_scheduler is None:
            raise SeesawConfigError(  # pragma: no cover - the config optimizer path sets it
                "SeesawTrainer found no engine scheduler: keep the DeepSpeed config's "
                "optimizer section and pass no optimizers= to the Trainer."
            )
        return self.lr_scheduler

    # ---- data --------------------------------------------------------------------------------

    def get_train_dataloader(self) -> torch.utils.data.DataLoader:
        """One :class:`PlanWindow` per optimizer step, this rank's share, not re-sharded."""
        if self.train_dataset is None:
            raise ValueError("Trainer: training requires a train_dataset.")
        dataset = self.train_dataset
        collator = self.data_collator
        try:
            import datasets

            if isinstance(dataset, datasets.Dataset):
                dataset = self._remove_unused_columns(dataset, description="training")
            else:
                collator = self._get_collator_with_removed_columns(collator, "training")
        except ImportError:
            collator = self._get_collator_with_removed_columns(collator, "training")
        section = self.seesaw_config.section
        plan = self.seesaw_state.plan
        order = GlobalSampleOrder(len(dataset), section.data_seed)
        sampler = PlanWindowSampler(plan, order, self.args.process_index, plan.dp_size,
                                    self.seesaw_state)
        workers = self.args.dataloader_num_workers
        return torch.utils.data.DataLoader(
            _KeyedDataset(dataset), batch_sampler=sampler, collate_fn=_WindowCollate(collator),
            num_workers=workers,
            pin_memory=self.args.dataloader_pin_memory and torch.cuda.is_available(),
            persistent_workers=self.args.dataloader_persistent_workers if workers else False,
        )

    # ---- one optimizer step of the plan ---------------------------------------------------

    def _seesaw_hook(self, engine: Any) -> SeesawEngineHook:
        hook = getattr(engine, "seesaw", None)
        if isinstance(hook, SeesawEngineHook):
            return hook
        scheduler = getattr(engine, "lr_scheduler", None)
        if not isinstance(scheduler, SeesawLRScheduler):
            raise SeesawConfigError(
                "the DeepSpeed engine's scheduler is not the Seesaw scheduler: SeesawTrainer "
                "needs the Trainer's DeepSpeed path (TrainingArguments(deepspeed=...)) and no "
                "scheduler section or optimizers= override."
            )
        hook = SeesawEngineHook(
            engine, self.seesaw_state, scheduler, dp_rank=self.args.process_index,
            data_seed=self.seesaw_config.section.data_seed, section=self.seesaw_config.section,
        )
        engine.seesaw = hook
        self.seesaw = hook
        if getattr(self.accelerator, "deepspeed_engine_wrapped", None) is not None:
            self.accelerator.deepspeed_engine_wrapped = _NoAccelerateBackward(engine)
        return hook

    def training_step(self, model: Any, inputs: Any, num_items_in_batch: Any = None):
        """Train one :class:`PlanWindow`: every micro-batch through the engine.

        Returns the mean of the micro-batch losses (what the Trainer logs as loss).
        """
        del num_items_in_batch  # each micro-batch's loss is its mean; the engine scales by GAS
        if not isinstance(inputs, PlanWindow):
            raise SeesawConfigError(
                f"SeesawTrainer.training_step got a {type(inputs).__name__}, not a PlanWindow: "
                "keep SeesawTrainer.get_train_dataloader (it yields the plan's steps)."
            )
        hook = self._seesaw_hook(model)
        setting, state = hook.setting, self.seesaw_state
        if inputs.start != state.consumed_samples or len(inputs) != setting.grad_accum:
            raise RuntimeError(
                f"step {state.step}: the dataloader gave {len(inputs)} micro-batches from "
                f"sample {inputs.start}, the plan expects {setting.grad_accum} from sample "
                f"{state.consumed_samples}."
            )
        self._seesaw_step_lr = setting.lr
        model.train()
        losses = []
        for micro in inputs:
            micro = self._prepare_inputs(micro)
            with self.compute_loss_context_manager():
                loss = self.compute_loss(model, micro)
            model.backward(loss)
            model.step()
            losses.append(loss.detach())
        return torch.stack(losses).mean()

    def floating_point_ops(self, inputs: Any) -> int:
        if isinstance(inputs, PlanWindow):
            return sum(super(SeesawTrainer, self).floating_point_ops(mb) for mb in inputs)
        return super().floating_point_ops(inputs)

    def _track_num_input_tokens(self, inputs: Any) -> None:
        if isinstance(inputs, PlanWindow):
            for micro in inputs:
                super()._track_num_input_tokens(micro)
            return
        super()._track_num_input_tokens(inputs)

    def _get_learning_rate(self) -> float:
        """The LR the last optimizer step used (the engine already set the next one)."""
        if self._seesaw_step_lr is not None:
            return self._seesaw_step_lr
        return super()._get_learning_rate()
