"""``seesaw_ds.initialize``: ``deepspeed.initialize`` with a Seesaw plan behind it.

Same arguments, same return value ``(engine, optimizer, training_dataloader,
lr_scheduler)``. The config (dict, path, or ``args.deepspeed_config``) must hold a
``seesaw`` section; it is validated completely before DeepSpeed builds anything. Then:

* the LR scheduler is :class:`SeesawLRScheduler`, handed to DeepSpeed as a callable;
* ``engine.seesaw`` is a :class:`SeesawEngineHook` that makes each optimizer step use the
  plan's batch, GAS and micro-batch, exactly;
* ``training_data`` (a map-style dataset) comes back as a :class:`SeesawDataLoader` in plan
  order; an iterable dataset as a :class:`PlanIterableLoader` drawing the plan's sizes.

Without ``training_data`` the loop feeds its own batches: every training forward is checked
against the plan's micro-batch (``engine.seesaw.batch_sampler(dataset)`` gives a
``DataLoader`` of yours the planned ones), and a plan that changes the configured
micro-batch (``growth_policy: micro_batch_first``) is refused here, since a ``DataLoader``
with a fixed ``batch_size`` cannot follow it.
"""

from __future__ import annotations

import copy
import logging
import os
from typing import Any, Callable, Dict, Optional, Tuple, Union

from seesaw_ds.config import load_config_file
from seesaw_ds.deepspeed_adapter.data_contract import (check_contract_options,
                                                       first_micro_batch_change)
from seesaw_ds.deepspeed_adapter.drivers import refuse_foreign_driver
from seesaw_ds.deepspeed_adapter.engine_hook import SeesawEngineHook
from seesaw_ds.deepspeed_adapter.iterable import STREAMS
from seesaw_ds.deepspeed_adapter.scheduler import SeesawLRScheduler
from seesaw_ds.deepspeed_adapter.state import SeesawState
from seesaw_ds.deepspeed_adapter.validation import ValidatedConfig, validate_ds_config
from seesaw_ds.errors import SeesawConfigError

__all__ = ["initialize", "prepare_config", "data_parallel_size"]

_log = logging.getLogger(__name__)
_DEFAULT_PORT = 29500


def _config_source(args: Any, config: Any, config_params: Any) -> Union[str, Dict[str, Any]]:
    if config is None and config_params is not None:
        config = config_params
    from_args = getattr(args, "deepspeed_config", None) or getattr(args, "deepscale_config", None)
    if config is not None and from_args is not None:
        raise SeesawConfigError(
            "both config= and args.deepspeed_config are given: pass the config once."
        )
    config = config if config is not None else from_args
    if config is None:
        raise SeesawConfigError(
            "no DeepSpeed config: pass config= (dict or path) or --deepspeed_config PATH."
        )
    return config


def _args_without_config(args: Any) -> Any:
    """A shallow copy of ``args`` whose config fields are None (we pass config= instead)."""
    if args is None or not any(
        getattr(args, name, None) is not None for name in ("deepspeed_config", "deepscale_config")
    ):
        return args
    clean = copy.copy(args)
    for name in ("deepspeed_config", "deepscale_config"):
        if hasattr(clean, name):
            setattr(clean, name, None)
    return clean


def data_parallel_size(mpu: Any = None) -> int:
    """Data-parallel size of the job, before DeepSpeed is initialized if need be."""
    if mpu is not None:
        return int(mpu.get_data_parallel_world_size())
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return int(os.environ.get("WORLD_SIZE", "1"))


def _device_name() -> str:
    from deepspeed.accelerator import get_accelerator

    return get_accelerator().device_name()


def _client_peak_lr(optimizer: Any) -> Optional[float]:
    groups = getattr(optimizer, "param_groups", None)
    if groups:
        return float(groups[0]["lr"])
    return None


def prepare_config(
    config: Union[str, os.PathLike, Dict[str, Any]],
    dp_size: int,
    device: Optional[str] = None,
    optimizer: Any = None,
) -> ValidatedConfig:
    """Load (if a path) and validate a config; what :func:`initialize` does first.

    ``device`` defaults to DeepSpeed's accelerator ("cpu", "cuda", ...), which decides the
    CPU-only checks (fp16, FusedAdam); pass it to avoid importing deepspeed.
    """
    if isinstance(config, (str, os.PathLike)):
        config = load_config_file(config)
    if device is None:
        device = _device_name()
    return validate_ds_config(
        config, dp_size, device=device, peak_lr=_client_peak_lr(optimizer),
        client_optimizer=optimizer is not None,
    )


def _check_model(model: Any) -> None:
    if model is None:
        raise SeesawConfigError("model is missing: seesaw_ds.initialize(model=..., ...).")
    from deepspeed.pipe import PipelineModule

    if isinstance(model, PipelineModule):
        raise SeesawConfigError(
            "model is a PipelineModule: Seesaw supports data parallelism (ZeRO 0-3) only."
        )


def _is_iterable_data(training_data: Any) -> bool:
    """An iterable dataset: torch's IterableDataset, or __iter__ without map-style access."""
    from torch.utils.data import IterableDataset

    if isinstance(training_data, IterableDataset):
        return True
    map_style = hasattr(training_data, "__len__") and hasattr(training_data, "__getitem__")
    return hasattr(training_data, "__iter__") and not map_style


def _check_training_data(training_data: Any) -> None:
    """Map-style and non-empty, or iterable; checked before DeepSpeed builds anything."""
    from torch.utils.data import DataLoader

    if isinstance(training_data, DataLoader) and training_data.batch_sampler is not None:
        raise SeesawConfigError(
            "training_data is a DataLoader that yields batches: pass its dataset (Seesaw "
            "batches it), or a DataLoader with batch_size=None that yields single samples."
        )
    if training_data is None or _is_iterable_data(training_data):
        return
    if not (hasattr(training_data, "__len__") and hasattr(training_data, "__getitem__")):
        raise SeesawConfigError(
            f"training_data is a {type(training_data).__name__} without __len__ and "
            "__getitem__ nor __iter__: pass a map-style dataset (read by index in one global "
            "order) or an iterable one (drawn in the plan's micro-batches)."
        )
    try:
        size = len(training_data)
    except TypeError as error:
        raise SeesawConfigError(
            f"training_data has no usable len() ({error}): pass a map-style dataset."
        ) from None
    if size < 1:
        raise SeesawConfigError("training_data is empty: the plan needs at least one sample.")


def _check_mesh(mesh_param: Any) -> None:
    """``mesh_param=(dp, sp)``: only a sequence-parallel size of 1 is supported."""
    if mesh_param is None:
        return
    if not isinstance(mesh_param, (tuple, list)) or len(mesh_param) != 2:
        raise SeesawConfigError(
            f"mesh_param = {mesh_param!r} must be a (data_parallel, sequence_parallel) pair."
        )
    if mesh_param[1] not in (None, 1):
        raise SeesawConfigError(
            f"mesh_param = {tuple(mesh_param)!r} asks for sequence parallelism of "
            f"{mesh_param[1]}: Seesaw schedules data-parallel runs only; drop mesh_param or "
            "use (data_parallel_size, 1)."
        )


def _check_local_rank(args: Any) -> None:
    local_rank = getattr(args, "local_rank", None)
    env_rank = os.environ.get("LOCAL_RANK")
    if isinstance(local_rank, int) and local_rank >= 0 and env_rank is not None:
        if int(env_rank) != local_rank:
            raise SeesawConfigError(
                f"args.local_rank = {local_rank} but LOCAL_RANK = {env_rank}: default "
                "--local_rank to int(os.environ['LOCAL_RANK']) (or -1) in your argument parser."
            )


def _check_data_options(sample_count: Any, past_end: str, iterable_stream: str) -> None:
    check_contract_options(sample_count, past_end)
    if iterable_stream not in STREAMS:
        raise SeesawConfigError(
            f"iterable_stream = {iterable_stream!r} is unknown: use 'rank' (the iterable "
            "yields this rank's samples) or 'global' (every rank reads the same stream)."
        )


def _check_own_loader_micro_batch(plan: Any, training_data: Any) -> None:
    """Without training_data the user's loader has a fixed micro-batch: the plan must too."""
    change = first_micro_batch_change(plan)
    if training_data is not None or change is None:
        return
    step, micro = change
    raise SeesawConfigError(
        f"seesaw.growth_policy = {plan.growth_policy!r} changes the per-GPU micro-batch "
        f"from train_micro_batch_size_per_gpu = {plan.micro_batch} to {micro} at optimizer "
        f"step {step}, which a DataLoader of your own cannot follow: pass training_data= "
        "(then feed your DataLoader with batch_sampler=engine.seesaw.batch_sampler()), or "
        "use growth_policy 'accumulation'."
    )


def _data_parallel_rank(engine: Any, mpu: Any) -> int:
    if mpu is not None:
        return int(mpu.get_data_parallel_rank())
    from deepspeed.utils import groups

    return int(groups._get_data_parallel_rank())


def initialize(
    args: Any = None,
    model: Any = None,
    optimizer: Any = None,
    model_parameters: Any = None,
    training_data: Any = None,
    lr_scheduler: Any = None,
    distributed_port: int = _DEFAULT_PORT,
    mpu: Any = None,
    dist_init_required: Optional[bool] = None,
    collate_fn: Optional[Callable] = None,
    config: Any = None,
    mesh_param: Any = None,
    config_params: Any = None,
    *,
    shuffle: bool = True,
    dataloader_num_workers: int = 0,
    sample_count: Any = None,
    past_end: str = "error",
    iterable_stream: str = "rank",
) -> Tuple[Any, Any, Any, SeesawLRScheduler]:
    """Drop-in for ``deepspeed.initialize`` that runs the config's Seesaw plan.

    Arguments are those of ``deepspeed.initialize`` (0.19), plus keyword-only:

    * ``shuffle`` and ``dataloader_num_workers``: the returned map-style loader;
    * ``iterable_stream``: ``"rank"`` (an iterable ``training_data`` yields this rank's
      samples) or ``"global"`` (every rank reads the same stream and keeps its share);
    * ``sample_count``: a callable ``(args, kwargs) -> int`` counting a forward's samples
      (default: dimension 0 of its first tensor), or False to skip the per-forward check;
    * ``past_end``: ``"error"`` (default) raises at a forward or ``engine.step()`` after the
      plan's end; ``"warn"`` logs once and trains on at the last setting.

    Returns:
        ``(engine, optimizer, training_dataloader, lr_scheduler)``: the DeepSpeed engine
        (with ``engine.seesaw``), its optimizer, a :class:`SeesawDataLoader` over
        ``training_data`` (a :class:`PlanIterableLoader` for an iterable dataset; None
        without it) and the :class:`SeesawLRScheduler`.

    Raises:
        SeesawConfigError: before any engine is built, for any config mistake.

    Note:
        On CPU, an ``Adam``/``AdamW`` config optimizer without ``torch_adam`` uses torch's
        implementation (logged), avoiding a ~2 minute FusedAdam compile.
    Limitations:
        ``lr_scheduler`` must be None (Seesaw owns the LR); data parallelism (ZeRO 0-3)
        only: a ``PipelineModule``, ``sequence_parallel_size`` > 1, ``tensor_parallel`` or a
        ``mesh_param`` with a sequence-parallel size > 1 are refused before DeepSpeed is
        called; ``training_data`` must be map-style and non-empty, or iterable (checked
        first too). Without ``training_data``, a plan whose per-rank micro-batch leaves the
        configured one (``growth_policy: micro_batch_first``) is refused.
        A call from accelerate's ``Accelerator.prepare`` (a shimmed ``deepspeed.initialize``)
        is refused first: accelerate's engine wrapper fixes the accumulation and calls
        ``engine.step()`` itself (see :mod:`seesaw_ds.deepspeed_adapter.drivers`).
    """
    refuse_foreign_driver()  # accelerate's prepare: one line naming the supported paths
    if lr_scheduler is not None:
        raise SeesawConfigError(
            "lr_scheduler= is set: Seesaw owns the LR schedule; remove the argument and put "
            "warmup/decay into seesaw.lr_schedule."
        )
    _check_model(model)
    _check_local_rank(args)
    _check_mesh(mesh_param)
    _check_training_data(training_data)
    _check_data_options(sample_count, past_end, iterable_stream)
    source = _config_source(args, config, config_params)
    dp_size = data_parallel_size(mpu)
    device = _device_name()
    validated = prepare_config(source, dp_size, device=device, optimizer=optimizer)
    rank = int(os.environ.get("RANK", "0"))
    for note in validated.notes:
        if rank == 0:
            _log.warning("seesaw: %s", note)
    _check_own_loader_micro_batch(validated.plan, training_data)
    state = SeesawState(validated.plan)

    import deepspeed

    engine, built_optimizer, _, scheduler = deepspeed.initialize(
        args=_args_without_config(args),
        model=model,
        optimizer=optimizer,
        model_parameters=model_parameters,
        training_data=None,
        lr_scheduler=SeesawLRScheduler.factory(state),
        distributed_port=distributed_port,
        mpu=mpu,
        dist_init_required=dist_init_required,
        config=validated.ds_config,
        mesh_param=mesh_param,
    )
    hook = SeesawEngineHook(
        engine, state, scheduler, dp_rank=_data_parallel_rank(engine, mpu),
        data_seed=validated.section.data_seed, section=validated.section,
        sample_count=sample_count, past_end=past_end,
    )
    engine.seesaw = hook
    loader = None
    if training_data is not None and _is_iterable_data(training_data):
        loader = hook.iterable_loader(training_data, collate_fn=collate_fn,
                                      stream=iterable_stream)
    elif training_data is not None:
        loader = hook.make_loader(
            training_data, collate_fn=collate_fn, shuffle=shuffle,
            num_workers=dataloader_num_workers,
        )
    return engine, built_optimizer, loader, scheduler
