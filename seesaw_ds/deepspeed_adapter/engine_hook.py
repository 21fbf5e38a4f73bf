"""The engine hook: makes a live DeepSpeed engine follow the plan's batch, exactly.

DeepSpeed decides the accumulation boundary as ``(micro_steps + 1) % GAS == 0`` over the
whole run, so changing GAS at a micro-step count that is not a multiple of the new GAS gives
one short window (and wrong weights). The hook owns the boundary instead:

* it counts micro-batches in the current window (``micro_in_window``) and, before every
  micro-batch, tells the engine whether that micro-batch closes the window
  (``engine.set_gradient_accumulation_boundary``: DeepSpeed's documented manual override,
  honoured by ZeRO 0-3 in ``backward`` and ``step``);
* right after the ``engine.step()`` that closed a window (where DeepSpeed has already called
  the scheduler, which advanced the token clock), it writes the next step's global batch,
  GAS and micro-batch into the engine (``set_train_micro_batch_size`` /
  ``set_train_batch_size``: plain integers; nothing is rebuilt).

So the window of optimizer step ``k`` is exactly ``plan.at_tokens(T_k).grad_accum``
micro-batches, its loss is scaled by that GAS, ``global_samples`` grows by its batch, and
the LR it uses is read from the same lookup.

It also wraps ``engine.forward`` to hold the user's data path to the plan
(:class:`~seesaw_ds.deepspeed_adapter.data_contract.DataContract`): every training forward
must carry the plan's micro-batch, and nothing trains past the plan's end.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Dict, Optional

from seesaw_ds.deepspeed_adapter.data_contract import DataContract
from seesaw_ds.deepspeed_adapter.logging_ import SeesawStepLogger, StepRecord
from seesaw_ds.deepspeed_adapter.scheduler import SeesawLRScheduler
from seesaw_ds.deepspeed_adapter.state import SeesawState
from seesaw_ds.distributed import register_clean_exit
from seesaw_ds.errors import SeesawConfigError
from seesaw_ds.schedules import Plan, StepSetting

__all__ = ["SeesawEngineHook"]


class SeesawEngineHook:
    """Attached to a DeepSpeed engine as ``engine.seesaw``; wraps ``engine.step``.

    Args:
        engine: a ``DeepSpeedEngine`` built with ``scheduler`` as its ``lr_scheduler``.
        state: the shared token clock.
        scheduler: the engine's :class:`SeesawLRScheduler`.
        dp_rank: this rank's data-parallel index (for :meth:`make_loader`).
        data_seed: seed of the global sample order (``seesaw.data_seed``).
        logger: per-step logging (default: monitor events every step; the ``seesaw_ds``
            logger's start, batch-change and every-``steps_per_print`` progress lines).
        section: the parsed ``seesaw`` section; checkpoints save the run's fingerprint from
            it, and a resume with other values is refused naming the field.
        sample_count / past_end: the data contract's options (see
            :class:`~seesaw_ds.deepspeed_adapter.data_contract.DataContract`): how a
            forward's samples are counted (False: not checked), and ``"error"`` or
            ``"warn"`` for a forward or step after the plan's end.

    Use exactly one ``engine.step()`` after every ``engine.backward()``, as with plain
    DeepSpeed. ``engine.save_checkpoint`` / ``engine.load_checkpoint`` keep their DeepSpeed
    signatures and become :func:`save_checkpoint` / :func:`load_checkpoint` (clock, batch,
    data position included; ``latest`` written atomically). Read ``engine.seesaw.setting``
    (next step's LR and batch), ``consumed_tokens``, ``consumed_samples``, ``step``,
    ``at_boundary`` and ``finished``.

    Every training forward (train mode, gradients on) is checked against the plan's
    micro-batch, and a forward or step after the plan's end raises (one line each).

    Limitations:
        Data parallelism with ZeRO 0-3 only (no pipeline engine). ``forward``, ``step``,
        ``save_checkpoint`` and ``load_checkpoint`` are instance attributes while attached;
        :meth:`detach` restores DeepSpeed's.
    """

    def __init__(
        self,
        engine: Any,
        state: SeesawState,
        scheduler: SeesawLRScheduler,
        dp_rank: int = 0,
        data_seed: int = 1234,
        logger: Optional[SeesawStepLogger] = None,
        section: Any = None,
        sample_count: Any = None,
        past_end: str = "error",
    ) -> None:
        dp_size = int(getattr(engine, "dp_world_size", state.plan.dp_size))
        if dp_size != state.plan.dp_size:
            raise SeesawConfigError(
                f"the engine has data-parallel size {dp_size} but the plan was built for "
                f"{state.plan.dp_size}: check WORLD_SIZE and model/pipeline parallel settings."
            )
        if getattr(engine, "lr_scheduler", scheduler) is not scheduler:
            raise SeesawConfigError(
                "the engine's lr_scheduler is not the Seesaw scheduler: build the engine with "
                "seesaw_ds.initialize (or pass SeesawLRScheduler.factory(state) as lr_scheduler)."
            )
        register_clean_exit()  # a CPU (gloo) job must not abort as it exits
        self.engine = engine
        self.state = state
        self.scheduler = scheduler
        self.dp_rank = int(dp_rank)
        self.data_seed = int(data_seed)
        self.section = section
        self.logger = logger or SeesawStepLogger(engine, _steps_per_print(engine))
        self.loader = None  # the attached data reader whose position checkpoints keep
        self.contract = DataContract(self, sample_count, past_end)
        self.resumed_loader_state: Optional[dict] = None  # set by load_checkpoint
        self.checkpoint_sidecars: Dict[str, Callable[[], Any]] = {}  # see save_checkpoint
        self.micro_in_window = 0
        self.hook_seconds = 0.0  # wall time spent in this hook outside DeepSpeed's step
        self.hook_cpu_seconds = 0.0  # the same as this thread's CPU time
        self._deepspeed_step: Callable = engine.step
        self._deepspeed_forward: Optional[Callable] = getattr(engine, "forward", None)
        engine.step = self._step
        if self._deepspeed_forward is not None:
            engine.forward = self._forward
        engine.save_checkpoint = self._save_checkpoint
        engine.load_checkpoint = self._load_checkpoint
        self.sync()

    # ---- what the training loop reads ----------------------------------------------------

    @property
    def plan(self) -> Plan:
        return self.state.plan

    @property
    def setting(self) -> StepSetting:
        """LR, global batch, micro-batch, GAS of the optimizer step in progress/next."""
        return self.state.setting

    @property
    def consumed_samples(self) -> int:
        return self.state.consumed_samples

    @property
    def consumed_tokens(self) -> int:
        return self.state.consumed_tokens

    @property
    def step(self) -> int:
        """Optimizer steps finished."""
        return self.state.step

    @property
    def finished(self) -> bool:
        return self.state.finished

    @property
    def at_boundary(self) -> bool:
        """True between optimizer steps (no micro-batch of the next window consumed yet)."""
        return self.micro_in_window == 0

    def report_loss(self, loss: Any) -> None:
        """Give this micro-batch's (or step's) loss to the progress line (rank 0 shows the
        mean of what it was given since its last line, every ``steps_per_print`` steps); a
        tensor is not read until then, so this costs no device sync."""
        self.logger.report_loss(loss)

    # ---- the hook -------------------------------------------------------------------------

    def _forward(self, *inputs: Any, **kwargs: Any) -> Any:
        if self.engine.module.training and _grad_enabled():
            self.contract.before_forward(inputs, kwargs)
        return self._deepspeed_forward(*inputs, **kwargs)

    def _step(self, lr_kwargs: Optional[dict] = None) -> None:
        self.state.check_runnable()
        self.contract.before_step()
        setting = self.state.setting
        closes_window = self.micro_in_window + 1 >= setting.grad_accum
        steps_before = self.state.step
        self._deepspeed_step(lr_kwargs)
        started, started_cpu = time.perf_counter(), time.thread_time()
        if closes_window:
            if self.state.step == steps_before:
                # DeepSpeed skipped the scheduler (fp16 overflow): the data is consumed anyway.
                self.scheduler.step()
            self.micro_in_window = 0
            self.logger.log(StepRecord(
                self.state.step, setting, self.state.consumed_samples, self.state.consumed_tokens
            ), self.plan)
            self.apply_setting()
        else:
            self.micro_in_window += 1
        self._arm_boundary()
        self.hook_seconds += time.perf_counter() - started
        self.hook_cpu_seconds += time.thread_time() - started_cpu

    def apply_setting(self) -> None:
        """Write the next step's micro-batch, global batch and GAS into the engine."""
        setting, engine = self.state.setting, self.engine
        if engine.train_micro_batch_size_per_gpu() != setting.micro_batch:
            engine.set_train_micro_batch_size(setting.micro_batch)
        if (
            engine.train_batch_size() != setting.global_batch
            or engine.gradient_accumulation_steps() != setting.grad_accum
        ):
            engine.set_train_batch_size(setting.global_batch)
        optimizer = getattr(engine, "optimizer", None)
        if isinstance(getattr(optimizer, "gradient_accumulation_steps", None), int):
            optimizer.gradient_accumulation_steps = setting.grad_accum  # ZeRO 1/2 CPU offload
        timer = getattr(engine, "tput_timer", None)
        if timer is not None and hasattr(timer, "batch_size"):
            timer.batch_size = setting.global_batch
        if engine.gradient_accumulation_steps() != setting.grad_accum:  # pragma: no cover
            raise RuntimeError(
                f"engine GAS {engine.gradient_accumulation_steps()} != planned "
                f"{setting.grad_accum}"
            )

    def _arm_boundary(self) -> None:
        closes = self.micro_in_window + 1 >= self.state.setting.grad_accum
        self.engine.set_gradient_accumulation_boundary(closes)

    def sync(self) -> None:
        """Re-apply the clock to the engine (after construction or a checkpoint load)."""
        self.micro_in_window = 0
        self.scheduler.apply()
        self.apply_setting()
        self._arm_boundary()
        if self.loader is not None:
            self.loader.set_position(self.state.consumed_samples)

    def replace_plan(self, plan: Plan) -> None:
        """Continue on another plan from the current token count, between optimizer steps.

        The next step takes its LR, batch, GAS and micro-batch from ``plan``; the attached
        loader follows it. Used by the critical-batch guard to cap the batch. A resume must
        replace the plan the same way before loading (the checkpoint's plan is checked).
        """
        if not self.at_boundary:
            raise RuntimeError(
                "replace_plan inside an accumulation window: call it right after the "
                "engine.step() that finishes an optimizer step."
            )
        self.state.replace_plan(plan)
        if self.loader is not None:
            self.loader.plan = plan
        self.sync()

    def detach(self) -> None:
        """Give ``forward``, ``step``, checkpointing and the accumulation boundary back to
        DeepSpeed."""
        for name in ("forward", "step", "save_checkpoint", "load_checkpoint"):
            self.engine.__dict__.pop(name, None)
        self.engine.set_gradient_accumulation_boundary(None)

    # ---- checkpoints: engine.save_checkpoint / load_checkpoint keep DeepSpeed's signature -----

    def _save_checkpoint(
        self, save_dir: str, tag: Optional[str] = None, client_state: Optional[dict] = None,
        save_latest: bool = True, exclude_frozen_parameters: bool = False,
    ) -> bool:
        """DeepSpeed's signature; False when ``latest`` already holds this step (skipped)."""
        from seesaw_ds.deepspeed_adapter.checkpoint import save_checkpoint_if_new

        return save_checkpoint_if_new(self.engine, save_dir, tag, client_state, save_latest,
                                      exclude_frozen_parameters)[1]

    def _load_checkpoint(self, load_dir: str, tag: Optional[str] = None, **kwargs: Any):
        """DeepSpeed's signature plus ``allow_plan_change`` (see :func:`load_checkpoint`)."""
        from seesaw_ds.deepspeed_adapter.checkpoint import load_checkpoint

        return load_checkpoint(self.engine, load_dir, tag, **kwargs)

    # ---- data ----------------------------------------------------------------------------

    def make_loader(
        self,
        dataset: Any,
        collate_fn: Optional[Callable] = None,
        shuffle: bool = True,
        num_workers: int = 0,
        pin_memory: bool = False,
    ):
        """A :class:`SeesawDataLoader` for ``dataset`` on this rank, tied to this clock.

        The loader is attached: checkpoints save its position and loads restore it.
        """
        from seesaw_ds.deepspeed_adapter.sampler import SeesawDataLoader

        return self._attach(SeesawDataLoader(
            dataset, self.plan, self.dp_rank, self.plan.dp_size, self.data_seed,
            collate_fn=collate_fn, shuffle=shuffle, num_workers=num_workers,
            pin_memory=pin_memory, state=self.state,
        ))

    def batch_sampler(self, dataset: Any = None, shuffle: bool = True):
        """A ``batch_sampler`` for your own ``torch.utils.data.DataLoader`` over ``dataset``.

        ``DataLoader(dataset, batch_sampler=engine.seesaw.batch_sampler(dataset),
        collate_fn=..., num_workers=..., pin_memory=...)`` yields this rank's planned
        micro-batches in the same global sample order as the loader of
        ``seesaw_ds.initialize(training_data=...)``, and ends with the plan. ``dataset``
        defaults to that ``training_data``. The sampler becomes the attached reader:
        checkpoints save its position (see
        :class:`~seesaw_ds.deepspeed_adapter.batch_sampler.PlanBatchSampler`).
        """
        from seesaw_ds.deepspeed_adapter.batch_sampler import PlanBatchSampler

        if dataset is None:
            dataset = getattr(self.loader, "dataset", None)
            if dataset is None:
                raise SeesawConfigError(
                    "engine.seesaw.batch_sampler() needs the dataset: pass it, or give "
                    "training_data= to seesaw_ds.initialize."
                )
        return self._attach(PlanBatchSampler(dataset, self.plan, self.dp_rank,
                                             self.plan.dp_size, self.data_seed,
                                             shuffle=shuffle, clock=self))

    def iterable_loader(
        self,
        iterable: Any,
        collate_fn: Optional[Callable] = None,
        stream: str = "rank",
        skip: bool = True,
    ):
        """Micro-batches of the plan's size drawn from an iterable dataset, resumably.

        Attached like :meth:`make_loader` (see
        :class:`~seesaw_ds.deepspeed_adapter.iterable.PlanIterableLoader`): checkpoints save
        the samples drawn; a resume skips them in a fresh iterator.
        """
        from seesaw_ds.deepspeed_adapter.iterable import PlanIterableLoader

        return self._attach(PlanIterableLoader(iterable, self.plan, self.dp_rank,
                                               self.plan.dp_size, collate_fn=collate_fn,
                                               stream=stream, clock=self, skip=skip))

    def _attach(self, reader: Any) -> Any:
        """Make ``reader`` the attached one; after a resume, check it reads the saved data."""
        if self.resumed_loader_state:
            reader.check_state_dict(self.resumed_loader_state)
        self.loader = reader
        return reader

    def __repr__(self) -> str:
        return (
            f"SeesawEngineHook(step={self.step}, consumed_tokens={self.consumed_tokens}, "
            f"micro_in_window={self.micro_in_window}, setting={self.setting})"
        )


def _grad_enabled() -> bool:
    import torch

    return torch.is_grad_enabled()


def _steps_per_print(engine: Any) -> Optional[int]:
    getter = getattr(engine, "steps_per_print", None)
    value = getter() if callable(getter) else None
    return None if isinstance(value, float) and not math.isfinite(value) else value  # inf: never
