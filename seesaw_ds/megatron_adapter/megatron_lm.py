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
    plan_from_megatron_args,
)

__all__ = ["record_explicit_flags", "configure_args", "install", "build_param_scheduler"]

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
    """Remember which flags that the plan replaces were given (``args._seesaw_explicit``)."""
    args._seesaw_explicit = explicit_flags(parser, args)


def configure_args(args: Any) -> None:
    """Validate against the seesaw config and set batch, LR and length from the plan."""

    def log(line: str) -> None:
        if getattr(args, "rank", 0) == 0:
            print(line, flush=True)

    _one_line_exit(lambda: configure_megatron_args(
        args, getattr(args, "_seesaw_explicit", ()), log=log))


def install(args: Any):
    """Install the plan's calculator as megatron-core's global one; returns it."""
    from seesaw_ds.megatron_adapter.calculator import install_calculator

    if getattr(args, "train_samples", None) is None:
        _fail(
            "it was not applied by validate_args (with --yaml-cfg Megatron-LM skips it): "
            "pass the arguments on the command line."
        )
    calculator = _one_line_exit(
        lambda: install_calculator(plan_from_megatron_args(args), rank=getattr(args, "rank", 0))
    )
    args.train_iters = calculator.plan.optimizer_steps
    return calculator


def build_param_scheduler(optimizer: Any, args: Any):
    """The plan's LR scheduler for ``optimizer``, set from the calculator's sample count."""
    from megatron.core import num_microbatches_calculator as calculators

    from seesaw_ds.megatron_adapter.calculator import SeesawMicroBatchesCalculator
    from seesaw_ds.megatron_adapter.param_scheduler import SeesawParamScheduler

    calculator = calculators._GLOBAL_NUM_MICROBATCHES_CALCULATOR
    if not isinstance(calculator, SeesawMicroBatchesCalculator):
        raise RuntimeError("--seesaw-config: set_global_variables did not install the plan.")
    scheduler = SeesawParamScheduler(optimizer, calculator.plan, weight_decay=args.weight_decay)
    calculator.follow(scheduler.set_consumed_samples)
    return scheduler
