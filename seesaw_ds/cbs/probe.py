"""Drives the critical-batch guard inside a DeepSpeed training loop.

Measurements (every ``PROBE_EVERY`` optimizer steps):

- small batch: before the window's first micro-batch, the gradients of a fixed set of small
  batches of the window's samples (:class:`~seesaw_ds.cbs.probe_layout.ProbeSize`: the
  starting layout's per-rank micro-batches, kept in the checkpoint, so a run resumed on
  another rank count measures the same samples), each taken with ``torch.autograd.grad`` on
  the unwrapped module (no ``.grad`` is touched), squared norms averaged over the chunks;
- big batch: the step's global gradient norm (DeepSpeed's ``get_global_grad_norm()``, or
  the all-reduced ``.grad`` of ZeRO stage 0 read just before ``engine.step()``).

Both are all-reduced, so every rank feeds the guard the same numbers and takes the same
decision. After every step the guard judges the growth the plan wants next (and keeps
re-judging while it holds one back); a changed decision rebuilds the plan from the ladder
(the plan without the guard's limits) and hands it to the engine hook
(``engine.seesaw.replace_plan``); checkpoints keep the guard state in
``<tag>/cbs_guard.json`` so a resume re-applies the limits before the plan check.

Limitations:
    ZeRO stage 3 (partitioned parameters) is not supported, nor ZeRO 1/2 with
    ``zero_optimization.compute_grad_norm: false`` (no global norm to read); the probe
    costs one extra forward+backward of a micro-batch per rank every ``PROBE_EVERY`` steps
    (on a layout other than the starting one, of the chunks the rank measures, read from the
    dataset when its own micro-batch does not hold them).
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable, Optional

from seesaw_ds.cbs.adaptive import AdaptiveGrowth
from seesaw_ds.cbs.guard import CriticalBatchGuard
from seesaw_ds.cbs.probe_layout import ProbeSize, probe_chunks
from seesaw_ds.distributed import all_mean, world_size
from seesaw_ds.errors import SeesawConfigError

__all__ = ["GuardDriver", "PROBE_EVERY", "check_guard_supported"]

PROBE_EVERY = 4
GUARD_FILE = "cbs_guard.json"


def _measuring_feature(section) -> Optional[str]:
    """The config field whose online policy needs the noise-scale probe, if any."""
    if section.batch_schedule_name == "adaptive":
        return "seesaw.batch_schedule 'adaptive'"
    return "seesaw.cbs_guard" if section.cbs_guard.enabled else None


def check_guard_supported(section, zero_stage: int, compute_grad_norm: bool = True) -> None:
    """Refuse (``SeesawConfigError``) an online policy (the guard, the adaptive schedule)
    that cannot measure in this setup.

    Cheap and pure, so ``seesaw_ds.train`` runs it before any process group exists.
    """
    if section.cbs_guard.enabled and section.batch_schedule_name != "seesaw":
        raise SeesawConfigError(
            "seesaw.cbs_guard applies to batch_schedule 'seesaw' only (the 'adaptive' "
            "schedule measures the critical batch itself): disable it or switch the "
            "schedule.")
    feature = _measuring_feature(section)
    if feature is None:
        return
    if zero_stage >= 3:
        raise SeesawConfigError(
            f"{feature} needs ZeRO stage 0-2 (its probe reads full parameters): lower "
            "zero_optimization.stage or use another schedule.")
    if zero_stage in (1, 2) and not compute_grad_norm:
        raise SeesawConfigError(
            f"{feature} reads the global gradient norm, which ZeRO 1/2 skips with "
            "zero_optimization.compute_grad_norm = false: remove that key.")


def _starting_probe_size(policy, ladder) -> ProbeSize:
    """The ranks' first micro-batches, or ``adaptive.probe_samples``-sample small batches
    over the same samples (at least one)."""
    samples = getattr(getattr(policy, "schedule", None), "probe_samples", None)
    if samples is None:
        return ProbeSize(ladder.micro_batch, ladder.dp_size)
    return ProbeSize(samples, max(1, ladder.micro_batch * ladder.dp_size // samples))


class GuardDriver:
    """Feeds an online policy (the critical-batch guard, or the adaptive schedule's growth)
    with measurements and hands its plans to the engine hook."""

    def __init__(self, policy, engine: Any, log: Callable[[str], None],
                 name: str = "cbs_guard") -> None:
        self.guard = policy
        self.name = name
        self.engine = engine
        self.ladder = engine.seesaw.plan  # the plan as configured, without the guard's limits
        # The probe in samples: this layout's first micro-batches, unless a checkpoint says.
        self.probe_size = _starting_probe_size(policy, self.ladder)
        self.log = log
        self.small_sq: Optional[float] = None
        self.small_batch: Optional[int] = None
        self.big_sq_before: Optional[float] = None
        self.decisions = []
        self._warned_blind = False
        # Written into every checkpoint tag before ``latest`` moves (see save_checkpoint).
        engine.seesaw.checkpoint_sidecars[GUARD_FILE] = self.state_dict

    @classmethod
    def maybe(cls, section, engine: Any, log) -> Optional["GuardDriver"]:
        """A driver if ``seesaw.cbs_guard`` is enabled, after checking it can run."""
        if _measuring_feature(section) is None:
            return None
        compute_grad_norm = getattr(engine, "zero_compute_grad_norm", lambda: True)()
        check_guard_supported(section, int(engine.zero_optimization_stage()),
                              bool(compute_grad_norm))
        if section.batch_schedule_name == "adaptive":
            return cls(AdaptiveGrowth(engine.seesaw.plan.batch_schedule), engine, log,
                       name="adaptive")
        return cls(CriticalBatchGuard(section.cbs_guard), engine, log)

    # ---- measurements ----------------------------------------------------------------------

    def probe(self, batch) -> None:
        """Small-batch gradient norms of the probe's chunks of this window (every few
        steps); ``batch`` is this rank's first micro-batch of the window."""
        self.small_sq = None
        hook = self.engine.seesaw
        if hook.step % PROBE_EVERY:
            return
        size = self.probe_size
        local = 0.0
        for chunk, row in probe_chunks(size, hook.plan.dp_size, hook.dp_rank,
                                       int(batch["tokens"].shape[0])):
            if row is not None:
                part = {key: value[row:row + size.chunk_samples] for key, value in batch.items()}
            else:
                part = self._samples(hook.consumed_samples + chunk * size.chunk_samples,
                                     size.chunk_samples)
            local += self._sq_norm(part)
        self.small_sq = all_mean([local])[0] * (world_size() / size.chunks)
        self.small_batch = size.chunk_samples

    def _sq_norm(self, batch):
        """``|g|^2`` of the mean loss over ``batch`` (a 0-d tensor on the model's device)."""
        import torch

        module = self.engine.module
        params = [p for p in module.parameters() if p.requires_grad]
        loss = module(batch["tokens"], batch["labels"]).loss
        grads = torch.autograd.grad(loss, params)
        return sum(g.detach().float().pow(2).sum() for g in grads)  # stays on the device

    def _samples(self, start: int, count: int):
        """Samples ``start ..`` of the run's stream, which no rank holds in this window's
        first micro-batch (the run was resumed on another layout)."""
        loader = self.engine.seesaw.loader
        if loader is None:
            raise RuntimeError(
                f"the {self.name} probe measures samples {start}..{start + count - 1}, which "
                "no rank's first micro-batch holds on this layout: build the loader with "
                "engine.seesaw.make_loader (seesaw_ds.initialize(training_data=...)).")
        batch = loader.samples(start, count)  # collated on the CPU, as the loader's
        device = next(self.engine.module.parameters()).device
        return {key: value.to(device) if hasattr(value, "to") else value
                for key, value in batch.items()}

    def before_step(self) -> None:
        """On ZeRO 0 the reduced gradients sit in ``.grad`` right before the step."""
        self.big_sq_before = None
        if self.small_sq is None or int(self.engine.zero_optimization_stage()) != 0:
            return
        grads = [p.grad for p in self.engine.module.parameters() if p.grad is not None]
        if grads:
            self.big_sq_before = float(sum(g.detach().float().pow(2).sum() for g in grads))

    def after_step(self, setting, hook) -> None:
        """Add this step's measurement (if probed), then judge a growth that is due now."""
        if self.small_sq is not None:
            norm = self.engine.get_global_grad_norm()
            big_sq = float(norm) ** 2 if norm is not None else self.big_sq_before
            if big_sq is None and not self._warned_blind:
                self._warned_blind = True  # once: the guard cannot see this setup
                self.log("[cbs_guard] no global gradient norm after the step (neither "
                         "get_global_grad_norm() nor ZeRO-0 .grad): the guard cannot measure")
            if big_sq is not None and setting.global_batch > self.small_batch:
                self.guard.observe(self.small_batch, self.small_sq, setting.global_batch,
                                   big_sq)
        if hook.finished:
            return
        decision = self.guard.decide(self.ladder, hook.consumed_tokens, setting.global_batch)
        if decision.changed:
            hook.replace_plan(self.guard.plan_for(self.ladder))
            _, floor, cap = self.guard.limits[-1].to_list()
            self.decisions.append({"tokens": hook.consumed_tokens, "step": hook.step,
                                   "floor": floor, "cap": cap, "reason": decision.reason})
            self.log(f"[{self.name}] from {hook.consumed_tokens:,} tokens: "
                     f"{decision.reason}")
        elif decision.reason.startswith("warn"):
            self.decisions.append({"tokens": hook.consumed_tokens, "step": hook.step,
                                   "reason": decision.reason})
            self.log(f"[{self.name}] {decision.reason}")

    # ---- persistence ---------------------------------------------------------------------

    def state_dict(self) -> dict:
        return {"guard": self.guard.state_dict(), "decisions": self.decisions,
                "probe": self.probe_size.to_dict()}

    def restore(self, checkpoint_dir: str, tag: Optional[str] = None,
                allow_plan_change: bool = False) -> None:
        """Re-apply a saved hold before the engine's checkpoint (and plan check) loads.

        ``tag`` defaults to the one ``latest`` names. A tag trained with this policy but
        without its ``cbs_guard.json`` (or with a damaged one) is refused, naming the file,
        unless ``allow_plan_change`` (then the policy starts afresh).
        """
        from seesaw_ds.deepspeed_adapter.checkpoint_tags import (read_latest, read_sidecar,
                                                                 tags_hint)

        tag = tag or read_latest(checkpoint_dir)
        if tag is None or not os.path.isdir(os.path.join(checkpoint_dir, tag)):
            return
        path = os.path.join(checkpoint_dir, tag, GUARD_FILE)
        fix = (f"restore it, resume another tag with --resume-tag "
               f"({tags_hint(checkpoint_dir, exclude=tag)}), or let the {self.name} start "
               "afresh with --allow-plan-change")
        if not os.path.isfile(path):
            saved = read_sidecar(checkpoint_dir, tag, required=False) or {}
            fingerprint = saved.get("run_fingerprint") or {}
            used = (fingerprint.get("seesaw.cbs_guard.enabled") is True
                    or fingerprint.get("seesaw.batch_schedule") == "adaptive")
            if used and not allow_plan_change:
                raise SeesawConfigError(
                    f"{path} is missing: checkpoint {tag} was trained with the {self.name}, "
                    f"whose decisions (the batch it held or raised) are in that file; {fix}.")
            return
        try:
            with open(path, encoding="utf-8") as handle:
                saved = json.load(handle)
            self.guard.load_state_dict(saved["guard"])
            decisions = saved["decisions"]
            if not isinstance(decisions, list):
                raise TypeError("decisions is not a list")
            # older checkpoints have no probe size: they keep this layout's
            probe_size = ProbeSize.from_dict(saved["probe"]) if "probe" in saved else None
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError,
                AttributeError, IndexError) as error:
            if allow_plan_change:
                return
            raise SeesawConfigError(
                f"{path} is damaged ({type(error).__name__}: {str(error)[:80]}); {fix}."
            ) from None
        self.decisions = decisions
        if probe_size is not None:
            self.probe_size = probe_size
        if self.guard.limits:
            self.engine.seesaw.replace_plan(self.guard.plan_for(self.ladder))

    def summary(self) -> dict:
        estimate = self.guard.estimator.estimate()
        summary = {"b_simple": estimate.b_simple, "measurements": estimate.samples,
                   "skipped_measurements": estimate.skipped, "held_at": self.guard.held_at,
                   "limits": [limit.to_list() for limit in self.guard.limits],
                   "decisions": self.decisions}
        confidence = getattr(getattr(self.guard, "schedule", None), "confidence", None)
        if confidence is not None:  # adaptive.confidence: the interval the rule judged
            summary["b_simple_interval"] = self.guard.estimator.interval(confidence)
        return summary
