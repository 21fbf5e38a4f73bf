"""The token clock of a run: how far the plan has got, shared by scheduler, hook and loader.

No torch import: the state is plain numbers plus the pure :class:`~seesaw_ds.schedules.Plan`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional

from seesaw_ds.errors import SeesawConfigError
from seesaw_ds.schedules import Plan, StepSetting

__all__ = ["SeesawState", "STATE_FORMAT"]

STATE_FORMAT = 1


def _as_lists(fingerprint) -> list:
    return [[float(start), int(batch), float(mult)] for start, batch, mult in fingerprint]


@dataclass
class SeesawState:
    """Where a run stands on its plan.

    Attributes:
        plan: the pure plan (LR and batch per consumed token).
        consumed_samples: global samples (sequences) consumed by finished optimizer steps.
        step: optimizer steps finished.
        setting: the setting of the next optimizer step, ``plan.at_samples(consumed_samples)``.

    Note:
        ``setting`` always describes the step that has not run yet: the LR it uses and the
        batch it consumes change together, on the step whose start crosses a milestone.
    """

    plan: Plan
    consumed_samples: int = 0
    step: int = 0
    setting: StepSetting = field(init=False)
    #: While True, :meth:`load_dict` continues a saved clock on a different plan (set by
    #: ``load_checkpoint(..., allow_plan_change=True)`` for the duration of the load).
    allow_plan_change: bool = field(default=False, repr=False, compare=False)

    #: Set while the clock sits where this rank count cannot lay the plan out: a later job
    #: of a chain (``seesaw.batch_multiple_stages``) before its checkpoint is loaded. The
    #: setting is then the first one it can run (the engine's starting layout) and a step
    #: raises this error.
    waiting: Optional[SeesawConfigError] = field(default=None, init=False, repr=False,
                                                 compare=False)

    def __post_init__(self) -> None:
        try:
            self.setting = self.plan.at_samples(self.consumed_samples)
        except SeesawConfigError as error:
            if not self.plan.staged or self.consumed_samples:
                raise
            self.waiting = error
            self.setting = self.plan.at_tokens(self.plan.first_runnable_tokens())

    def check_runnable(self) -> None:
        """Raise the stage error if no checkpoint moved the clock to where this job runs."""
        if self.waiting is not None:
            raise self.waiting

    @property
    def consumed_tokens(self) -> int:
        return self.consumed_samples * self.plan.seq_length

    @property
    def finished(self) -> bool:
        """True once the plan's token budget is consumed."""
        return self.plan.is_finished(self.consumed_tokens)

    def advance(self) -> StepSetting:
        """Record one finished optimizer step of ``setting.global_batch`` samples."""
        self.check_runnable()
        self.consumed_samples += self.setting.global_batch
        self.step += 1
        self.setting = self.plan.at_samples(self.consumed_samples)
        return self.setting

    def replace_plan(self, plan: Plan) -> None:
        """Continue on ``plan`` from the current token count (e.g. a capped batch).

        Raises:
            SeesawConfigError: the new plan has another sequence length or rank layout.
        """
        if plan.seq_length != self.plan.seq_length or plan.dp_size != self.plan.dp_size:
            raise SeesawConfigError(
                f"a replacement plan must keep seq_length ({self.plan.seq_length}) and the "
                f"data-parallel size ({self.plan.dp_size}); got {plan.seq_length} and "
                f"{plan.dp_size}."
            )
        self.plan = plan
        self.setting = plan.at_samples(self.consumed_samples)

    def to_dict(self) -> Dict[str, Any]:
        """A JSON-ready snapshot (what a checkpoint stores)."""
        setting = self.setting
        return {
            "format": STATE_FORMAT,
            "consumed_samples": int(self.consumed_samples),
            "consumed_tokens": int(self.consumed_tokens),
            "step": int(self.step),
            "lr": setting.lr,
            "global_batch": setting.global_batch,
            "micro_batch": setting.micro_batch,
            "grad_accum": setting.grad_accum,
            "phase_index": setting.phase_index,
            "dp_size": self.plan.dp_size,
            "seq_length": self.plan.seq_length,
            "batch_multiple": self.plan.batch_multiple,
            "plan_fingerprint": _as_lists(self.plan.fingerprint()),
        }

    def load_dict(self, saved: Dict[str, Any]) -> None:
        """Continue the clock of ``saved`` (from :meth:`to_dict`) on this state's plan.

        The plan may be laid out for another data-parallel size; its phases (token
        boundaries, batches, LR multipliers) must be the saved ones, unless
        ``allow_plan_change`` is set: then the clock (samples, steps) continues on this plan
        from the saved token count.

        Raises:
            SeesawConfigError: the saved run followed a different plan.
        """
        if saved.get("seq_length") != self.plan.seq_length:
            raise SeesawConfigError(
                f"seesaw.seq_length = {self.plan.seq_length} but the checkpoint was trained "
                f"with {saved.get('seq_length')}: the token clock needs the same value."
            )
        same = _as_lists(saved.get("plan_fingerprint", [])) == _as_lists(self.plan.fingerprint())
        if not same and not self.allow_plan_change:
            hint = ""
            if saved.get("dp_size") != self.plan.dp_size:
                hint = (
                    f" The data-parallel size changed ({saved.get('dp_size')} -> "
                    f"{self.plan.dp_size}) and batches are rounded to "
                    f"{self.plan.batch_multiple} now vs {saved.get('batch_multiple')} then: "
                    f"set seesaw.batch_multiple = {saved.get('batch_multiple')}."
                )
            raise SeesawConfigError(
                "the checkpoint followed a different Seesaw plan than this config builds "
                "(phases differ): resume with the seesaw section and optimizer lr the run "
                "started with, or continue on the new plan on purpose with "
                f"allow_plan_change (seesaw_ds.train --allow-plan-change).{hint}"
            )
        self.consumed_samples = int(saved["consumed_samples"])
        self.step = int(saved["step"])
        self.setting = self.plan.at_samples(self.consumed_samples)
        self.waiting = None
