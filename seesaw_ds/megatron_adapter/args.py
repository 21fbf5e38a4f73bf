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

Features that fix the micro-batch count for the whole run (CUDA graphs, hybrid context
parallel, RL) are refused by name (:data:`FROZEN_MICROBATCH`). Under the interleaved pipeline
schedule the plan's batches are rounded so that every step's micro-batch count is one
Megatron accepts (:mod:`seesaw_ds.megatron_adapter.pipeline`). Every conflict is reported at
once, in one line.

Note: a flag counts as given when it was written on the command line, even at Megatron-LM's
default value (:func:`explicit_flags`, recorded by the patch right after parsing).
"""

from __future__ import annotations

import dataclasses
import math
import sys
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from seesaw_ds.config import load_config_file, seesaw_section_of
from seesaw_ds.config.section import SeesawSection, parse_token_count
from seesaw_ds.errors import SeesawConfigError
from seesaw_ds.megatron_adapter.pipeline import (check_plan_micro_batches, pipeline_multiple,
                                                 pipeline_schedule)
from seesaw_ds.megatron_adapter.samples import plan_samples
from seesaw_ds.schedules import Plan

__all__ = [
    "REPLACED_FLAGS",
    "OPTIMIZER_FLAGS",
    "FROZEN_MICROBATCH",
    "INTERVAL_KEYS",
    "explicit_flags",
    "interval_crossed",
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


_GRAPHS = (
    "CUDA graphs capture the micro-batch count at warm-up and replay it, so a grown batch's "
    "extra micro-batches would be read and dropped while the LR cut still applies; run "
    "without CUDA graphs (--optimizer-cuda-graph, which captures only the optimizer step, "
    "is fine)")

#: Megatron-LM argument (dest) -> (its flag, why it cannot follow a growing batch). Refused
#: when enabled, whether written on the command line or not.
FROZEN_MICROBATCH: Dict[str, Tuple[str, str]] = {
    "cuda_graph_impl": ("--cuda-graph-impl", _GRAPHS),
    "enable_cuda_graph": ("--enable-cuda-graph", _GRAPHS),
    "external_cuda_graph": ("--external-cuda-graph", _GRAPHS),
    "hybrid_context_parallel": (
        "--hybrid-context-parallel",
        "its sampler cuts batches of the fixed --global-batch-size, not the plan's"),
    "perform_rl_step": (
        "--perform-rl-step",
        "RL training re-creates Megatron's own micro-batch calculator, replacing the plan's"),
    "rl_use_sequence_packing": (
        "--rl-use-sequence-packing",
        "sequence packing reconfigures the micro-batch calculator"),
}

#: seesaw key -> Megatron-LM argument it replaces (an interval in tokens, not iterations).
INTERVAL_KEYS: Dict[str, str] = {
    "save_interval_tokens": "save_interval",
    "eval_interval_tokens": "eval_interval",
}


def _option_dests(parser: Any) -> Dict[str, str]:
    return {option: action.dest for action in parser._actions
            for option in action.option_strings}


def explicit_flags(parser: Any, args: Any = None,
                   argv: Optional[Sequence[str]] = None) -> Tuple[str, ...]:
    """The dests of the flags written on the command line ``argv`` (default
    ``sys.argv[1:]``), in the order written, even when a value equals the parser default.

    ``--flag value`` and ``--flag=value`` count (Megatron-LM's parser has
    ``allow_abbrev=False``, so no abbreviation can stand for a flag).
    """
    dests = _option_dests(parser)
    argv = sys.argv[1:] if argv is None else argv
    written: List[str] = []
    for token in argv:
        if not token.startswith("-"):
            continue
        dest = dests.get(token.split("=", 1)[0])
        if dest is not None and dest not in written:
            written.append(dest)
    return tuple(written)


def interval_crossed(consumed_after: int, batch: int, interval_samples: int) -> bool:
    """Whether the step that consumed ``batch`` samples and ended at ``consumed_after``
    crossed a multiple of ``interval_samples``."""
    return consumed_after // interval_samples > (consumed_after - batch) // interval_samples


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
    ``args.micro_batch_size`` and :func:`megatron_dp_size` the layout (accumulation). Under
    the interleaved pipeline schedule the batch multiple is raised to a multiple of
    micro-batch x data-parallel size x ``microbatch_group_size_per_vp_stage``, and every
    step's micro-batch count is checked against the schedule.
    """
    config = load_config_file(args.seesaw_config)
    section = megatron_section(seesaw_section_of(config))
    seq_length = _seq_length(args)
    if seq_length is not None and seq_length != section.seq_length:
        raise SeesawConfigError(
            f"seesaw.seq_length = {section.seq_length} differs from --seq-length "
            f"{seq_length}: make them equal."
        )
    if getattr(args, "rampup_batch_size", None):
        flag, replacement = REPLACED_FLAGS["rampup_batch_size"]
        raise SeesawConfigError(_conflict(flag, replacement))
    schedule = pipeline_schedule(args)
    schedule.check()
    micro, dp = args.micro_batch_size, megatron_dp_size(args)
    if schedule.interleaved:
        multiple = pipeline_multiple(schedule, micro, dp, section.batch_multiple)
        if args.global_batch_size % multiple:
            raise SeesawConfigError(
                f"train_batch_size = {args.global_batch_size} is not a multiple of {multiple}"
                f" (seesaw.batch_multiple = {section.batch_multiple or micro * dp} raised to a"
                f" multiple of micro-batch x data-parallel size x group = {micro} x {dp} x "
                f"{schedule.group_size}): {schedule.describe()} needs every step's "
                "micro-batch count to be a multiple of the group; change train_batch_size.")
        section = dataclasses.replace(section, batch_multiple=multiple)
    plan = section.build_plan(peak_lr=args.lr, initial_batch=args.global_batch_size,
                              micro_batch=micro, dp_size=dp)
    check_plan_micro_batches(plan, schedule)
    return plan


def configure_megatron_args(
    args: Any, explicit: Tuple[str, ...] = (), log: Optional[Callable[[str], None]] = None
) -> Plan:
    """Check Megatron-LM's arguments against ``args.seesaw_config`` and derive the rest.

    Args:
        args: Megatron-LM's parsed arguments, with ``data_parallel_size`` already set.
        explicit: dests written on the command line (:func:`explicit_flags`).
        log: where the start-up lines go (``None``: nowhere).

    Returns the plan. Raises one SeesawConfigError listing every conflict found (each names
    the flag and the seesaw key).
    """
    written = set(explicit)
    problems: List[str] = [_conflict(*REPLACED_FLAGS[dest]) for dest in REPLACED_FLAGS
                           if dest in written]
    problems += _frozen_microbatch(args, written)
    config = load_config_file(args.seesaw_config)
    section = seesaw_section_of(config)
    batch = _collect(problems, lambda: _initial_batch(args, config))
    if batch is not None:
        args.global_batch_size = batch
    problems += _optimizer_from_config(args, config, written)
    plan = None
    if batch is not None and args.lr is not None:
        plan = _collect(problems, lambda: plan_from_megatron_args(args))
    if plan is not None:
        samples = plan_samples(plan)
        problems += _length_problems(args, plan, samples)
        problems += _token_intervals(args, config, plan, written)
    if problems:
        raise SeesawConfigError(_joined(problems))
    args.train_samples = samples
    args.train_iters = None
    if log is not None:
        log(_startup_line(args, section, plan, samples))
        for line in _interval_lines(args, plan):
            log(line)
    return plan


def step_schedule_for_args(args: Any) -> str:
    """The ``--step-batch-size-schedule`` string for these arguments."""
    return plan_from_megatron_args(args).megatron_step_schedule()


def _collect(problems: List[str], call: Callable[[], Any]) -> Any:
    try:
        return call()
    except SeesawConfigError as error:
        if str(error) not in problems:
            problems.append(str(error))
        return None


def _joined(problems: List[str]) -> str:
    if len(problems) == 1:
        return problems[0]
    listed = " ".join(f"({number}) {problem}" for number, problem in enumerate(problems, 1))
    return f"{len(problems)} conflicts with --seesaw-config, all listed: {listed}"


def _conflict(flag: str, replacement: str) -> str:
    return f"{flag} cannot be combined with --seesaw-config: {replacement}. Remove {flag}."


def _frozen_microbatch(args: Any, written: set) -> List[str]:
    problems = []
    for dest, (flag, reason) in FROZEN_MICROBATCH.items():
        value = getattr(args, dest, None)
        if dest == "cuda_graph_impl":
            if value in (None, "none"):
                continue
            # validate_args turns --enable/--external-cuda-graph into --cuda-graph-impl
            named = [FROZEN_MICROBATCH[old][0] for old in ("enable_cuda_graph",
                                                            "external_cuda_graph")
                     if old in written]
            if named and dest not in written:
                problems.append(_conflict(named[0], reason))
                continue
            flag = f"{flag} {value}"
        elif not value:
            continue
        problems.append(_conflict(flag, reason))
    return problems


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


def _optimizer_from_config(args: Any, config: Mapping[str, Any], written: set) -> List[str]:
    optimizer = config.get("optimizer")
    params = optimizer.get("params") if isinstance(optimizer, Mapping) else None
    params = params if isinstance(params, Mapping) else {}
    problems = []
    for dest, (flag, key, index) in OPTIMIZER_FLAGS.items():
        value = params.get(key)
        field = f"optimizer.params.{key}"
        if index is not None and value is not None:
            if not isinstance(value, (list, tuple)) or len(value) != 2:
                problems.append(f"{field} = {value!r} must be a pair [beta1, beta2].")
                continue
            value, field = value[index], f"{field}[{index}]"
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or (
            dest == "lr" and value == 0
        ):
            problems.append(f"{field} = {value!r} must be a positive number.")
            continue
        given = getattr(args, dest, None)
        if (dest in written or dest == "lr") and given is not None and (
            float(given) != float(value)
        ):
            problems.append(
                f"{flag} {given} differs from the config's {field} = {value}: drop {flag} "
                "or make them equal (the config states it once for DeepSpeed and Megatron).")
            continue
        setattr(args, dest, float(value))
    if args.lr is None:
        problems.append(
            f"{args.seesaw_config} has no optimizer.params.lr: give the peak LR as --lr.")
    return problems


def _length_problems(args: Any, plan: Plan, samples: int) -> List[str]:
    problems = []
    iters = getattr(args, "train_iters", None)
    if iters is not None and iters != plan.optimizer_steps:
        problems.append(
            f"--train-iters {iters} differs from the plan's {plan.optimizer_steps} iterations "
            f"({samples} samples over seesaw.total_tokens = {plan.total_tokens:.6g}): the plan "
            "sets the training length, drop --train-iters.")
    given = getattr(args, "train_samples", None)
    if given is not None and given != samples:
        problems.append(
            f"--train-samples {given} differs from the {samples} samples the plan consumes "
            f"(seesaw.total_tokens = {plan.total_tokens:.6g}, last step included): the plan "
            "sets the training length, drop --train-samples.")
    return problems


def _token_intervals(args: Any, config: Mapping[str, Any], plan: Plan,
                     written: set) -> List[str]:
    """``seesaw.save/eval_interval_tokens`` -> ``args.seesaw_save/eval_interval_samples``
    (and ``args.save/eval_interval`` = the same spacing at the initial batch, which
    Megatron-LM uses for its own counts)."""
    section = config.get("seesaw", {})
    problems = []
    for key, dest in INTERVAL_KEYS.items():
        setattr(args, f"seesaw_{dest}_samples", None)
        if section.get(key) is None:
            continue
        flag = "--" + dest.replace("_", "-")
        try:
            tokens = parse_token_count(f"seesaw.{key}", section[key])
        except SeesawConfigError as error:
            problems.append(str(error))
            continue
        if dest in written:
            problems.append(
                f"{flag} {getattr(args, dest, None)} and seesaw.{key} = {section[key]} both set "
                f"the spacing: drop {flag} (the config's interval is in tokens and keeps its "
                "spacing as the batch grows).")
            continue
        samples = max(1, math.ceil(tokens / plan.seq_length))
        setattr(args, f"seesaw_{dest}_samples", samples)
        setattr(args, dest, max(1, math.ceil(samples / plan.initial_batch)))
    return problems


def _interval_lines(args: Any, plan: Plan) -> List[str]:
    """The token spacing of intervals still counted in iterations, at the first and last
    batch (said once at start-up)."""
    lines = []
    first = plan.initial_batch
    last = max(phase.global_batch for phase in plan.phases)
    for key, dest in INTERVAL_KEYS.items():
        every = getattr(args, dest, None)
        if not every or getattr(args, f"seesaw_{dest}_samples", None) or first == last:
            continue
        if dest == "save_interval" and not getattr(args, "save", None):
            continue
        tokens = every * plan.seq_length
        lines.append(
            f"[seesaw] --{dest.replace('_', '-')} {every} counts iterations: every "
            f"{tokens * first:.4g} tokens at batch {first}, every {tokens * last:.4g} at batch "
            f"{last}; set seesaw.{key} to keep the spacing in tokens.")
    return lines


def _startup_line(args: Any, section: SeesawSection, plan: Plan, samples: int) -> str:
    layout = (
        f"growth_policy '{section.growth_policy}' laid out as 'accumulation' (Megatron-LM "
        f"keeps --micro-batch-size {args.micro_batch_size} fixed)"
        if section.growth_policy != "accumulation"
        else f"accumulation at --micro-batch-size {args.micro_batch_size}"
    )
    configured = section.batch_multiple or args.micro_batch_size * megatron_dp_size(args)
    raised = (f", batch multiple {configured} raised to {plan.batch_multiple} for "
              f"{pipeline_schedule(args).describe()}"
              if plan.batch_multiple != configured else "")
    return (
        f"[seesaw] {args.seesaw_config}: {layout}, data-parallel x gtp = "
        f"{megatron_dp_size(args)}{raised}; global batch {plan.initial_batch} -> "
        f"{max(p.global_batch for p in plan.phases)}, peak lr {plan.peak_lr:g}; "
        f"{plan.optimizer_steps} iterations, train samples {samples}."
    )
