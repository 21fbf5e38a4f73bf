"""The four calls ``patches/megatron-lm-seesaw.patch`` adds to Megatron-LM.

The patch calls them only with ``--seesaw-config``. Each turns a user mistake into one line
on stderr and exit status 2, before any model is built:

1. :func:`record_explicit_flags` in ``parse_args``: which replaced flags were given.
2. :func:`configure_args` in ``validate_args``, once the data-parallel size is known and
   before Megatron-LM's own batch checks: refuse conflicts, take batch, LR and training
   length from the plan (see :mod:`seesaw_ds.megatron_adapter.args`).
3. :func:`install` in ``set_global_variables``: the plan's calculator replaces Megatron's,
   ``train_iters`` = the plan's iterations.
4. :func:`build_param_scheduler` in ``get_optimizer_param_scheduler``: the plan's LR,
   following the calculator's consumed-sample count.

Also called by the patch: :func:`log_metrics` (``training_log``: the plan's phase, tokens,
batch and the LR the step used, to TensorBoard and W&B), :func:`interval_due` (``train()``'s save and eval conditions:
``seesaw.save_interval_tokens`` / ``eval_interval_tokens``) and
:func:`refuse_seesaw_checkpoint` (``load_checkpoint`` without ``--seesaw-config`` of a
checkpoint that holds a seesaw plan). A refusal met later, inside ``load_checkpoint`` or
``train()`` (another plan's checkpoint, a batch the layout cannot run), is the same one line
and exit status 2.

Note: the patch also skips Megatron-LM's checkpoint at every micro-batch-count change
under ``--seesaw-config``: every checkpoint already restores the batch (it is a function of
the saved consumed samples), and the plan's last step may take fewer micro-batches.
"""

from __future__ import annotations

import sys
from typing import Any, Callable, TypeVar

from seesaw_ds.errors import SeesawConfigError
from seesaw_ds.megatron_adapter.args import (
    configure_megatron_args,
    explicit_flags,
    interval_crossed,
    plan_from_megatron_args,
)
from seesaw_ds.megatron_adapter.pipeline import pipeline_schedule
from seesaw_ds.megatron_adapter.samples import plan_samples

__all__ = ["record_explicit_flags", "configure_args", "install", "build_param_scheduler",
           "interval_due", "refuse_seesaw_checkpoint", "seesaw_metrics", "log_metrics"]

_T = TypeVar("_T")


def _fail(message: str) -> None:
    print(f"--seesaw-config: error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(2)


def _one_line_exit(call: Callable[[], _T]) -> _T:
    try:
        return call()
    except SeesawConfigError as error:
        message = str(error)
    _fail(message)


def record_explicit_flags(parser: Any, args: Any) -> None:
    """Remember which flags were written on the command line (``args._seesaw_explicit``),
    whatever their values."""
    args._seesaw_explicit = explicit_flags(parser, args)


def configure_args(args: Any) -> None:
    """Validate against the seesaw config and set batch, LR and length from the plan."""

    def log(line: str) -> None:
        if getattr(args, "rank", 0) == 0:
            print(line, flush=True)

    _one_line_exit(lambda: configure_megatron_args(
        args, getattr(args, "_seesaw_explicit", ()), log=log))


def install(args: Any):
    """Install the plan's calculator as megatron-core's global one; returns it.

    The plan is built again from the arguments ``validate_args`` has finished (a virtual
    pipeline size derived from ``--pipeline-model-parallel-layout`` is known only now): its
    micro-batch counts are checked against the pipeline schedule, and ``train_samples``
    follows it if the rounding changed (said in one line; the dataset is built later).
    """
    if getattr(args, "train_samples", None) is None:
        _fail(
            "it was not applied by validate_args (with --yaml-cfg Megatron-LM skips it): "
            "pass the arguments on the command line."
        )
    plan = _one_line_exit(lambda: plan_from_megatron_args(args))
    samples = plan_samples(plan)
    if samples != args.train_samples:  # virtual stages only validate_args could derive
        if getattr(args, "rank", 0) == 0:
            print(f"[seesaw] rounded for {pipeline_schedule(args).describe()} (known after "
                  f"validate_args): batch multiple {plan.batch_multiple}, "
                  f"{plan.optimizer_steps} iterations, train samples {samples}.", flush=True)
        args.train_samples = samples
    calculator = _one_line_exit(
        lambda: _install_calculator(plan, rank=getattr(args, "rank", 0)))
    args.train_iters = calculator.plan.optimizer_steps
    return calculator


def _install_calculator(plan, rank: int):
    from megatron.core import num_microbatches_calculator as calculators

    from seesaw_ds.megatron_adapter.calculator import SeesawMicroBatchesCalculator

    class OneLineCalculator(SeesawMicroBatchesCalculator):
        """A batch the layout cannot run, met inside ``train()``: one line, exit 2."""

        def update(self, consumed_samples, consistency_check, verbose=False):
            return _one_line_exit(lambda: SeesawMicroBatchesCalculator.update(
                self, consumed_samples, consistency_check, verbose))

    calculator = OneLineCalculator(plan, rank)
    calculators._GLOBAL_NUM_MICROBATCHES_CALCULATOR = calculator
    return calculator


def build_param_scheduler(optimizer: Any, args: Any):
    """The plan's LR scheduler for ``optimizer``, set from the calculator's sample count."""
    from megatron.core import num_microbatches_calculator as calculators

    from seesaw_ds.megatron_adapter.calculator import SeesawMicroBatchesCalculator
    from seesaw_ds.megatron_adapter.param_scheduler import SeesawParamScheduler

    class OneLineScheduler(SeesawParamScheduler):
        """A checkpoint refused inside ``load_checkpoint``: one line, exit 2."""

        def load_state_dict(self, state_dict):
            _one_line_exit(lambda: SeesawParamScheduler.load_state_dict(self, state_dict))

    calculator = calculators._GLOBAL_NUM_MICROBATCHES_CALCULATOR
    if not isinstance(calculator, SeesawMicroBatchesCalculator):
        raise RuntimeError("--seesaw-config: set_global_variables did not install the plan.")
    scheduler = OneLineScheduler(
        optimizer, calculator.plan, weight_decay=args.weight_decay,
        join_checkpoint=bool(getattr(args, "seesaw_join_checkpoint", False)))
    calculator.follow(scheduler.set_consumed_samples)
    return scheduler


def interval_due(args: Any, kind: str, iteration: int) -> bool:
    """``train()``'s save (``kind`` 'save') or eval ('eval') condition after an iteration.

    With ``seesaw.<kind>_interval_tokens`` in the config: whether the step just taken
    crossed a multiple of that many tokens (consumed samples, so the spacing in tokens stays
    as the batch grows); otherwise Megatron-LM's ``iteration % --<kind>-interval == 0``.
    """
    samples = getattr(args, f"seesaw_{kind}_interval_samples", None)
    if not samples:
        return iteration % getattr(args, f"{kind}_interval") == 0
    from megatron.core.num_microbatches_calculator import get_current_global_batch_size

    return interval_crossed(int(args.consumed_train_samples),
                            int(get_current_global_batch_size()), int(samples))


def refuse_seesaw_checkpoint(checkpoint_name: Any) -> None:
    """``load_checkpoint`` without ``--seesaw-config`` met a checkpoint of a seesaw run."""
    _fail(
        f"{checkpoint_name} was trained with --seesaw-config: its LR and batch follow a "
        "seesaw plan that Megatron-LM's own scheduler cannot continue. Resume with the same "
        "--seesaw-config FILE (or --finetune to start a new schedule on its weights).")


def seesaw_metrics(args: Any) -> dict:
    """What the step just taken followed: ``seesaw/phase``, ``seesaw/tokens`` (consumed
    after it), ``seesaw/global-batch`` and ``seesaw/lr`` (the LR it used, peak group; Megatron's
    own ``learning-rate`` already shows the next step's)."""
    from megatron.core import num_microbatches_calculator as calculators

    calculator = calculators._GLOBAL_NUM_MICROBATCHES_CALCULATOR
    plan = calculator.plan
    setting = plan.at_samples(calculator.consumed_samples)
    return {
        "seesaw/phase": setting.phase_index,
        "seesaw/tokens": int(args.consumed_train_samples) * plan.seq_length,
        "seesaw/global-batch": setting.global_batch,
        "seesaw/lr": setting.lr,
    }


def log_metrics(writer: Any, wandb_writer: Any, iteration: int, args: Any) -> None:
    """``training_log``'s hook: :func:`seesaw_metrics` to TensorBoard and W&B."""
    metrics = seesaw_metrics(args)
    if writer is not None:
        for name, value in metrics.items():
            writer.add_scalar(name, value, iteration)
    if wandb_writer:
        wandb_writer.log(metrics, iteration)
