"""Check a DeepSpeed config with a ``seesaw`` section before any engine is built.

:func:`validate_ds_config` turns every mistake we can see from the config alone into one
:class:`~seesaw_ds.errors.SeesawConfigError` naming the field and the fix, and returns the
config to hand to ``deepspeed.initialize``: without the ``seesaw`` key, with the batch
triple of the plan's first step, and with the CPU choices settled.

No torch or deepspeed import: the device is a parameter, so the checks are unit-testable.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Tuple

from seesaw_ds.config import SeesawSection, plan_from_ds_config
from seesaw_ds.config import seesaw_section_of
from seesaw_ds.errors import SeesawConfigError, text_number_hint
from seesaw_ds.schedules import Plan

__all__ = ["ValidatedConfig", "validate_ds_config", "ZERO_TESTED_OPTIMIZERS"]

# Config optimizer names whose DeepSpeed implementation ZeRO accepts without
# ``zero_allow_untested_optimizer`` (deepspeed/runtime/zero/utils.py, 0.19.8).
ZERO_TESTED_OPTIMIZERS = ("adam", "adamw", "adagrad", "lion", "muon")
_ADAM_NAMES = ("adam", "adamw")


@dataclass(frozen=True)
class ValidatedConfig:
    """The outcome of :func:`validate_ds_config`.

    Attributes:
        ds_config: the dict to pass to ``deepspeed.initialize`` (a copy; ``seesaw`` removed,
            ``train_batch_size`` / ``train_micro_batch_size_per_gpu`` /
            ``gradient_accumulation_steps`` set to the plan's first step).
        section: the parsed ``seesaw`` section.
        plan: the plan for ``dp_size`` data-parallel ranks.
        dp_size: data-parallel size the plan was built for.
        notes: decisions taken on the user's behalf, to log once on rank 0.
    """

    ds_config: Dict[str, Any]
    section: SeesawSection
    plan: Plan
    dp_size: int
    notes: Tuple[str, ...] = ()


def _enabled(config: Mapping[str, Any], key: str) -> bool:
    section = config.get(key)
    return isinstance(section, Mapping) and section.get("enabled") in (True, "true", "auto")


def _zero_stage(config: Mapping[str, Any]) -> int:
    zero = config.get("zero_optimization") or {}
    stage = zero.get("stage", 0) if isinstance(zero, Mapping) else 0
    if isinstance(stage, bool) or not isinstance(stage, int) or not 0 <= stage <= 3:
        raise SeesawConfigError(
            f"zero_optimization.stage = {stage!r} must be 0, 1, 2 or 3."
        )
    return stage


def _offloads_optimizer(config: Mapping[str, Any]) -> bool:
    zero = config.get("zero_optimization") or {}
    offload = zero.get("offload_optimizer") if isinstance(zero, Mapping) else None
    return isinstance(offload, Mapping) and offload.get("device", "none") not in (None, "none")


def _check_precision(config: Mapping[str, Any], device: str) -> None:
    if _enabled(config, "fp16") and device == "cpu":
        raise SeesawConfigError(
            "fp16.enabled = true is not supported by DeepSpeed on CPU: use "
            "\"bf16\": {\"enabled\": true} or fp32 (remove the fp16 section)."
        )
    if _enabled(config, "fp16") and _enabled(config, "bf16"):
        raise SeesawConfigError(
            "fp16.enabled and bf16.enabled are both true: keep one of them."
        )


def _check_batch_control(config: Mapping[str, Any]) -> None:
    if config.get("managed_gradient_accumulation") is False:
        raise SeesawConfigError(
            "managed_gradient_accumulation = false: Seesaw drives the accumulation boundary "
            "itself and needs DeepSpeed's managed mode; remove the key."
        )
    if _enabled(config, "elasticity"):
        raise SeesawConfigError(
            "elasticity.enabled = true: DeepSpeed elasticity also rewrites the batch size; "
            "Seesaw owns the batch, so disable elasticity."
        )


def _check_parallel_layout(config: Mapping[str, Any]) -> None:
    """Refuse layouts other than data parallelism (+ ZeRO) before DeepSpeed asserts on them."""
    for key, field in (
        ("sequence_parallel_size", "sequence_parallel_size"),
        ("autotp_size", "tensor_parallel.autotp_size"),
        ("tp_size", "tensor_parallel.tp_size"),
    ):
        holder = config if key == "sequence_parallel_size" else config.get("tensor_parallel")
        if not isinstance(holder, Mapping) or holder.get(key) in (None, 0, 1):
            continue
        raise SeesawConfigError(
            f"{field} = {holder[key]!r}: Seesaw schedules data-parallel runs only (ZeRO 0-3); "
            f"sequence and tensor parallelism change the data-parallel size the plan is laid "
            f"out for. Remove {field} (or set it to 1)."
        )


def _check_checkpoint_engine(config: Mapping[str, Any]) -> None:
    """Decoupled checkpoint engines write ``latest`` themselves, later: refused."""
    checkpoint = config.get("checkpoint")
    writer = checkpoint.get("writer") if isinstance(checkpoint, Mapping) else None
    if isinstance(writer, Mapping) and writer.get("decoupled"):
        raise SeesawConfigError(
            "checkpoint.writer.decoupled = true: a decoupled checkpoint engine writes "
            "'latest' itself, in the background, before the Seesaw state (token clock, batch, "
            "data position) is in the tag, so a resume could find a tag without it. Remove "
            "\"decoupled\" (the writer itself is fine)."
        )
    if config.get("datastates_ckpt") not in (None, False):
        raise SeesawConfigError(
            "datastates_ckpt is set: the DataStates checkpoint engine is decoupled (it "
            "writes 'latest' itself, asynchronously), which Seesaw's checkpoints do not "
            "support. Remove datastates_ckpt."
        )


def _check_numbers(value: Any, path: str) -> None:
    """Every float in the DeepSpeed part of the config is finite (JSON allows NaN/Infinity)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise SeesawConfigError(f"{path} = {value!r} must be a finite number.")
    if isinstance(value, Mapping):
        for key, item in value.items():
            _check_numbers(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check_numbers(item, f"{path}[{index}]")


def _check_optimizer_params(config: Mapping[str, Any]) -> None:
    """Optimizer hyper-parameters are numbers (lists of numbers), not text."""
    optimizer = config.get("optimizer")
    params = optimizer.get("params") if isinstance(optimizer, Mapping) else None
    if not isinstance(params, Mapping):
        return
    for key, value in params.items():
        for item in value if isinstance(value, (list, tuple)) else (value,):
            hint = text_number_hint(item)
            if hint:
                raise SeesawConfigError(
                    f"optimizer.params.{key} = {value!r} must be a number.{hint}"
                )


def _settle_optimizer(
    config: Dict[str, Any], device: str, zero_stage: int, client_optimizer: bool
) -> Tuple[str, ...]:
    """Check the optimizer section; return notes about choices made."""
    optimizer = config.get("optimizer")
    if client_optimizer or not isinstance(optimizer, Mapping):
        return ()
    name = str(optimizer.get("type", "")).lower()
    notes = []
    if zero_stage >= 1 and name not in ZERO_TESTED_OPTIMIZERS and not config.get(
        "zero_allow_untested_optimizer"
    ):
        raise SeesawConfigError(
            f"optimizer.type = {optimizer.get('type')!r} with zero_optimization.stage = "
            f"{zero_stage}: DeepSpeed refuses optimizers it has not tested with ZeRO; add "
            "\"zero_allow_untested_optimizer\": true or use Adam/AdamW."
        )
    params = optimizer.get("params")
    if name in _ADAM_NAMES and device == "cpu" and _offloads_optimizer(config):
        notes.append(
            "zero_optimization.offload_optimizer with Adam/AdamW: DeepSpeed JIT-compiles "
            "DeepSpeedCPUAdam (~2 minutes, once per TORCH_EXTENSIONS_DIR)."
        )
    if name in _ADAM_NAMES and device == "cpu" and not _offloads_optimizer(config):
        params = dict(params or {})
        if "torch_adam" not in params:
            params["torch_adam"] = True
            config["optimizer"] = dict(optimizer, params=params)
            notes.append(
                f"optimizer.type = {optimizer.get('type')!r} on CPU: using torch's "
                "implementation (optimizer.params.torch_adam = true) instead of FusedAdam, "
                "whose CPU build takes ~2 minutes on first use. Set torch_adam explicitly "
                "to choose."
            )
        elif params["torch_adam"] is False:
            notes.append(
                "optimizer.params.torch_adam = false on CPU: DeepSpeed JIT-compiles FusedAdam "
                "(~2 minutes, once per TORCH_EXTENSIONS_DIR)."
            )
    return tuple(notes)


def validate_ds_config(
    config: Mapping[str, Any],
    dp_size: int,
    device: str = "cpu",
    peak_lr: Optional[float] = None,
    client_optimizer: bool = False,
) -> ValidatedConfig:
    """Validate ``config`` for ``dp_size`` data-parallel ranks on ``device``.

    Args:
        config: the DeepSpeed config as a dict (JSON/YAML already loaded).
        dp_size: data-parallel world size of the run.
        device: accelerator name ("cpu", "cuda", ...); decides the CPU-only checks.
        peak_lr: the peak LR when no ``optimizer`` section gives it (client optimizer).
        client_optimizer: True when the user passes an optimizer object or callable,
            so the ``optimizer`` section is not DeepSpeed's to build.

    Raises:
        SeesawConfigError: one error, naming the field and the fix.

    Note:
        The plan is built here, so every batch it will ever ask for is checked against
        micro-batch x data-parallel size now, not at the step where it would fail.
    """
    if not isinstance(config, Mapping):
        raise SeesawConfigError(
            f"the DeepSpeed config must be a mapping (JSON object), got {type(config).__name__}."
        )
    if isinstance(dp_size, bool) or not isinstance(dp_size, int) or dp_size < 1:
        raise SeesawConfigError(f"data-parallel size = {dp_size!r} must be a positive integer.")
    section = seesaw_section_of(config)  # refuses a scheduler section; unknown/missing keys
    ds_config = copy.deepcopy(dict(config))
    del ds_config["seesaw"]
    # steps_per_print = Infinity (what accelerate writes) means "never print": accepted
    _check_numbers({key: value for key, value in ds_config.items()
                    if not (key == "steps_per_print" and value == math.inf)}, "")
    _check_optimizer_params(ds_config)
    _check_parallel_layout(ds_config)
    _check_checkpoint_engine(ds_config)
    _check_precision(ds_config, device)
    _check_batch_control(ds_config)
    stage = _zero_stage(ds_config)
    # also checks train_batch_size vs micro x GAS x world (or a later stage of a chain)
    plan = plan_from_ds_config(config, dp_size, peak_lr=peak_lr, section=section)
    notes = _settle_optimizer(ds_config, device, stage, client_optimizer)
    # a chain job on a later stage starts the engine on its first runnable batch; the hook
    # sets the batch of the resumed position before the first step
    first = plan.at_tokens(plan.first_runnable_tokens())
    ds_config["train_batch_size"] = first.global_batch
    ds_config["train_micro_batch_size_per_gpu"] = first.micro_batch
    ds_config["gradient_accumulation_steps"] = first.grad_accum
    return ValidatedConfig(ds_config, section, plan, dp_size, notes)
