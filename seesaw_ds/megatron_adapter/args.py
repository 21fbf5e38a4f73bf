"""Megatron-LM arguments under ``--seesaw-config``: the plan decides, conflicts are refused.

With ``--seesaw-config FILE`` the seesaw section owns the batch schedule, the LR schedule and
the training length. :func:`configure_megatron_args` checks Megatron-LM's parsed arguments
against the config and rewrites the few it derives from the plan:

- ``global_batch_size`` = the config's ``train_batch_size``, and ``lr``, ``weight_decay``,
  ``adam_beta1/2``, ``adam_eps`` = the config's ``optimizer.params`` (a flag may repeat a
  value, not change it: :data:`OPTIMIZER_FLAGS`);
- ``train_samples`` = the samples the plan consumes (``--train-iters`` / ``--train-samples``
  may repeat the plan's optimizer steps / samples), ``train_iters`` = None (sample-based);
- the micro-batch is ``--micro-batch-size``: a ``micro_batch_first`` growth policy is laid
  out with accumulation (Megatron-LM keeps the micro-batch fixed), said once at start-up;
- the data-parallel size of the plan is Megatron-LM's micro-batch divisor, data-parallel
  size x ``gtp_weight_remat_size`` (``--tensor-parallel-num-weight-shards`` / TP).

Every Megatron-LM flag that would set a second batch or LR schedule is refused, naming the
seesaw key that does its job (:data:`REPLACED_FLAGS`).

Note: a flag counts as given when its value differs from the parser's default
(:func:`explicit_flags`, recorded by the patch right after parsing).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

from seesaw_ds.config import load_config_file, seesaw_section_of
from seesaw_ds.config.section import SeesawSection
from seesaw_ds.errors import SeesawConfigError
from seesaw_ds.megatron_adapter.samples import plan_samples
from seesaw_ds.schedules import Plan

__all__ = [
    "REPLACED_FLAGS",
    "OPTIMIZER_FLAGS",
    "explicit_flags",
    "megatron_dp_size",
    "megatron_section",
    "plan_from_megatron_args",
    "configure_megatron_args",
    "step_schedule_for_args",
]

_WD = (
    "Seesaw keeps weight decay constant at the config's optimizer.params.weight_decay "
    "(or --weight-decay)"
)
_RESUME = (
    "the seesaw scheduler always resumes at the checkpoint's consumed samples and refuses a "
    "checkpoint of another plan"
)
_WARMUP = "set seesaw.lr_schedule.warmup_tokens or warmup_fraction"
_WSD_LENGTH = "set seesaw.lr_schedule.decay_tokens or decay_fraction (type 'wsd')"

#: Megatron-LM argument (dest) -> (its flag, what does its job under --seesaw-config).
REPLACED_FLAGS: Dict[str, Tuple[str, str]] = {
    "step_batch_size_schedule": ("--step-batch-size-schedule",
                                 "the plan sets every global batch from seesaw.batch_schedule"),
    "rampup_batch_size": ("--rampup-batch-size",
                          "use seesaw.batch_schedule 'linear_ramp' (final_batch, "
                          "batch_increment, ramp_tokens)"),
    "decrease_batch_size_if_needed": (
        "--decrease-batch-size-if-needed",
        "seesaw.batch_multiple keeps every planned batch a multiple of micro-batch x "
        "data-parallel size"),
    "lr_decay_style": ("--lr-decay-style", "set seesaw.lr_schedule.type"),
    "lr_decay_iters": ("--lr-decay-iters", "the decay spans seesaw.total_tokens"),
    "lr_decay_samples": ("--lr-decay-samples", "the decay spans seesaw.total_tokens"),
    "lr_warmup_fraction": ("--lr-warmup-fraction", "set seesaw.lr_schedule.warmup_fraction"),
    "lr_warmup_iters": ("--lr-warmup-iters", _WARMUP),
    "lr_warmup_samples": ("--lr-warmup-samples", _WARMUP),
    "lr_warmup_init": ("--lr-warmup-init", "set seesaw.lr_schedule.warmup_start_factor"),
    "min_lr": ("--min-lr", "set seesaw.lr_schedule.final_factor (or seesaw.min_lr)"),
    "decoupled_min_lr": ("--decoupled-min-lr",
                         "seesaw.lr_schedule.final_factor scales every param group"),
    "lr_wsd_decay_style": ("--lr-wsd-decay-style",
                           "set seesaw.lr_schedule.tail with type 'wsd'"),
    "lr_wsd_decay_iters": ("--lr-wsd-decay-iters", _WSD_LENGTH),
    "lr_wsd_decay_samples": ("--lr-wsd-decay-samples", _WSD_LENGTH),
    "start_weight_decay": ("--start-weight-decay", _WD),
    "end_weight_decay": ("--end-weight-decay", _WD),
    "weight_decay_incr_style": ("--weight-decay-incr-style", _WD),
    "override_opt_param_scheduler": ("--override-opt-param-scheduler", _RESUME),
    "use_checkpoint_opt_param_scheduler": ("--use-checkpoint-opt-param-scheduler", _RESUME),
    "override_ckpt_iteration": (
        "--override-ckpt-iteration",
        "it would set consumed samples = iteration x --global-batch-size, wrong once the "
        "batch has grown; the checkpoint's own consumed samples are used"),
    "phase_transition_iterations": (
        "--phase-transition-iterations", "the plan is one run over seesaw.total_tokens"),
}


#: Megatron-LM argument (dest) -> (its flag, the config's optimizer.params key, index).
#: Taken from the config when not given; given and different is an error.
OPTIMIZER_FLAGS: Dict[str, Tuple[str, str, Optional[int]]] = {
    "lr": ("--lr", "lr", None),
    "weight_decay": ("--weight-decay", "weight_decay", None),
    "adam_beta1": ("--adam-beta1", "betas", 0),
    "adam_beta2": ("--adam-beta2", "betas", 1),
    "adam_eps": ("--adam-eps", "eps", None),
}


def explicit_flags(parser: Any, args: Any) -> Tuple[str, ...]:
    """The dests of :data:`REPLACED_FLAGS` and :data:`OPTIMIZER_FLAGS` whose parsed value
    differs from the parser default (given on the command line)."""
    return tuple(
        dest for dest in (*REPLACED_FLAGS, *OPTIMIZER_FLAGS)
        if hasattr(args, dest) and getattr(args, dest) != parser.get_default(dest)
    )


def megatron_dp_size(args: Any) -> int:
    """Megatron-LM's micro-batch divisor: data-parallel size x gtp_weight_remat_size."""
    return int(args.data_parallel_size) * int(getattr(args, "gtp_weight_remat_size", 1) or 1)


def megatron_section(section: SeesawSection) -> SeesawSection:
    """The section laid out as Megatron-LM runs it: accumulation at a fixed micro-batch."""
    if section.optimizer_scaling.enabled:
        raise SeesawConfigError(
            "seesaw.keep_weight_decay_timescale / keep_beta2_half_life are DeepSpeed-only for "
            "now (the Megatron-LM param scheduler keeps weight decay and betas constant): "
            "remove them from the config given to --seesaw-config.")
    return dataclasses.replace(section, growth_policy="accumulation", max_micro_batch=None)


def _seq_length(args: Any) -> Optional[int]:
    value = getattr(args, "seq_length", None)
    return value if value is not None else getattr(args, "encoder_seq_length", None)


def plan_from_megatron_args(args: Any) -> Plan:
    """The plan for ``args.seesaw_config`` and Megatron's (already configured) arguments.

    ``args.global_batch_size`` is the initial batch, ``args.lr`` the peak,
    ``args.micro_batch_size`` and :func:`megatron_dp_size` the layout (accumulation).
    """
    config = load_config_file(args.seesaw_config)
    section = seesaw_section_of(config)
    seq_length = _seq_length(args)
    if seq_length is not None and seq_length != section.seq_length:
        raise SeesawConfigError(
            f"seesaw.seq_length = {section.seq_length} differs from --seq-length "
            f"{seq_length}: make them equal."
        )
    if getattr(args, "rampup_batch_size", None):
        flag, replacement = REPLACED_FLAGS["rampup_batch_size"]
        raise SeesawConfigError(_conflict(flag, replacement))
    return megatron_section(section).build_plan(
        peak_lr=args.lr,
        initial_batch=args.global_batch_size,
        micro_batch=args.micro_batch_size,
        dp_size=megatron_dp_size(args),
    )


def configure_megatron_args(
    args: Any, explicit: Tuple[str, ...] = (), log: Optional[Callable[[str], None]] = None
) -> Plan:
    """Check Megatron-LM's arguments against ``args.seesaw_config`` and derive the rest.

    Args:
        args: Megatron-LM's parsed arguments, with ``data_parallel_size`` already set.
        explicit: dests given on the command line (:func:`explicit_flags`).
        log: where the one start-up line goes (``None``: nowhere).

    Returns the plan. Raises SeesawConfigError naming the flag and the seesaw key.
    """
    for dest in explicit:
        if dest in REPLACED_FLAGS:
            raise SeesawConfigError(_conflict(*REPLACED_FLAGS[dest]))
    config = load_config_file(args.seesaw_config)
    section = seesaw_section_of(config)
    args.global_batch_size = _initial_batch(args, config)
    _optimizer_from_config(args, config, explicit)
    plan = plan_from_megatron_args(args)
    samples = plan_samples(plan)
    _check_length(args, plan, samples)
    args.train_samples = samples
    args.train_iters = None
    if log is not None:
        log(_startup_line(args, section, plan, samples))
    return plan


def step_schedule_for_args(args: Any) -> str:
    """The ``--step-batch-size-schedule`` string for these arguments."""
    return plan_from_megatron_args(args).megatron_step_schedule()


def _conflict(flag: str, replacement: str) -> str:
    return f"{flag} cannot be combined with --seesaw-config: {replacement}. Remove {flag}."


def _initial_batch(args: Any, config: Mapping[str, Any]) -> int:
    from_config = config.get("train_batch_size")
    given = getattr(args, "_is_global_batch_size_explicitly_specified", None)
    given = args.global_batch_size is not None if given is None else given
    if from_config is None:
        if not given:
            raise SeesawConfigError(
                f"{args.seesaw_config} has no train_batch_size: give the initial global "
                "batch as --global-batch-size (or add train_batch_size to the config)."
            )
        return int(args.global_batch_size)
    if isinstance(from_config, bool) or not isinstance(from_config, int) or from_config <= 0:
        raise SeesawConfigError(f"train_batch_size = {from_config!r} must be a positive integer.")
    if given and args.global_batch_size != from_config:
        raise SeesawConfigError(
            f"--global-batch-size {args.global_batch_size} differs from the config's "
            f"train_batch_size = {from_config} (the plan's initial batch): drop "
            "--global-batch-size or make them equal."
        )
    return from_config


def _optimizer_from_config(args: Any, config: Mapping[str, Any], explicit) -> None:
    optimizer = config.get("optimizer")
    params = optimizer.get("params") if isinstance(optimizer, Mapping) else None
    params = params if isinstance(params, Mapping) else {}
    for dest, (flag, key, index) in OPTIMIZER_FLAGS.items():
        value = params.get(key)
        field = f"optimizer.params.{key}"
        if index is not None and value is not None:
            if not isinstance(value, (list, tuple)) or len(value) != 2:
                raise SeesawConfigError(f"{field} = {value!r} must be a pair [beta1, beta2].")
            value, field = value[index], f"{field}[{index}]"
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or (
            dest == "lr" and value == 0
        ):
            raise SeesawConfigError(f"{field} = {value!r} must be a positive number.")
        given = getattr(args, dest, None)
        if (dest in explicit or dest == "lr") and given is not None and (
            float(given) != float(value)
        ):
            raise SeesawConfigError(
                f"{flag} {given} differs from the config's {field} = {value}: drop {flag} "
                "or make them equal (the config states it once for DeepSpeed and Megatron)."
            )
        setattr(args, dest, float(value))
    if args.lr is None:
        raise SeesawConfigError(
            f"{args.seesaw_config} has no optimizer.params.lr: give the peak LR as --lr."
        )


def _check_length(args: Any, plan: Plan, samples: int) -> None:
    iters = getattr(args, "train_iters", None)
    if iters is not None and iters != plan.optimizer_steps:
        raise SeesawConfigError(
            f"--train-iters {iters} differs from the plan's {plan.optimizer_steps} iterations "
            f"({samples} samples over seesaw.total_tokens = {plan.total_tokens:.6g}): the plan "
            "sets the training length, drop --train-iters."
        )
    given = getattr(args, "train_samples", None)
    if given is not None and given != samples:
        raise SeesawConfigError(
            f"--train-samples {given} differs from the {samples} samples the plan consumes "
            f"(seesaw.total_tokens = {plan.total_tokens:.6g}, last step included): the plan "
            "sets the training length, drop --train-samples."
        )


def _startup_line(args: Any, section: SeesawSection, plan: Plan, samples: int) -> str:
    layout = (
        f"growth_policy '{section.growth_policy}' laid out as 'accumulation' (Megatron-LM "
        f"keeps --micro-batch-size {args.micro_batch_size} fixed)"
        if section.growth_policy != "accumulation"
        else f"accumulation at --micro-batch-size {args.micro_batch_size}"
    )
    return (
        f"[seesaw] {args.seesaw_config}: {layout}, data-parallel x gtp = "
        f"{megatron_dp_size(args)}; global batch {plan.initial_batch} -> "
        f"{max(p.global_batch for p in plan.phases)}, peak lr {plan.peak_lr:g}; "
        f"{plan.optimizer_steps} iterations, train samples {samples}."
    )
