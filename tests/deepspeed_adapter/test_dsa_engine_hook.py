"""The engine hook against a stand-in engine with DeepSpeed 0.19.8's boundary semantics.

The real engine is exercised by test_dsa_multirank.py; this file pins the mechanism down in
milliseconds: windows of exactly the planned GAS, loss scale, samples, logging, overflow.
"""

import itertools
import logging
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dsa_common import tiny_config
from seesaw_ds.config import plan_from_ds_config
from seesaw_ds.deepspeed_adapter import (SeesawEngineHook, SeesawLRScheduler, SeesawState,
                                         SeesawStepLogger)
from seesaw_ds.deepspeed_adapter.logging_ import EVENT_PREFIX


class Monitor:
    enabled = True

    def __init__(self):
        self.events = []

    def write_events(self, events):
        self.events.extend(events)


class FakeEngine:
    """DeepSpeedEngine's batch bookkeeping (engine.py 0.19.8), nothing else."""

    def __init__(self, scheduler, dp=2, micro=2, gas=2, overflow_steps=()):
        self.lr_scheduler = scheduler
        self.optimizer = scheduler.optimizer
        self.dp_world_size = dp
        self.micro, self.gas = micro, gas
        self.micro_steps = self.global_steps = self.global_samples = 0
        self._boundary = None
        self.global_rank = 0
        self.monitor = Monitor()
        self.overflow_steps = set(overflow_steps)
        self.windows = []  # (micro-batches, loss scale) per optimizer step
        self._window = []

    # DeepSpeed's API used by the hook
    def train_batch_size(self):
        return self.micro * self.gas * self.dp_world_size

    def train_micro_batch_size_per_gpu(self):
        return self.micro

    def gradient_accumulation_steps(self):
        return self.gas

    def steps_per_print(self):
        return 10

    def set_train_batch_size(self, batch):
        assert batch % (self.micro * self.dp_world_size) == 0
        self.gas = batch // (self.micro * self.dp_world_size)

    def set_train_micro_batch_size(self, micro):
        self.micro = micro

    def set_gradient_accumulation_boundary(self, value):
        self._boundary = value

    def is_gradient_accumulation_boundary(self):
        if self._boundary is None:
            return (self.micro_steps + 1) % self.gas == 0
        return self._boundary

    def backward(self, micro_batch_size):
        assert micro_batch_size == self.micro
        self._window.append((micro_batch_size, 1.0 / self.gas))

    def step(self, lr_kwargs=None):
        if self.is_gradient_accumulation_boundary():
            if self.global_steps not in self.overflow_steps:
                self.lr_scheduler.step()
            self.global_steps += 1
            self.global_samples += self.train_batch_size()
            self.windows.append(self._window)
            self._window = []
        self.micro_steps += 1


def build(dp=2, overflow_steps=(), logger=None, **section):
    plan = plan_from_ds_config(tiny_config(**section), dp)
    state = SeesawState(plan)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=plan.peak_lr)
    scheduler = SeesawLRScheduler(optimizer, state)
    first = plan.at_tokens(0)
    engine = FakeEngine(scheduler, dp, first.micro_batch, first.grad_accum, overflow_steps)
    hook = SeesawEngineHook(engine, state, scheduler,
                            logger=None if logger is None else logger(engine))
    return plan, engine, hook


def drive(engine, hook):
    lrs = []
    while not hook.finished:
        if hook.at_boundary:
            lrs.append(engine.optimizer.param_groups[0]["lr"])
        engine.backward(engine.train_micro_batch_size_per_gpu())
        engine.step()
    return lrs


@pytest.mark.parametrize("section", [{}, {"growth_policy": "micro_batch_first",
                                          "max_micro_batch": 8}])
def test_every_window_is_exactly_the_planned_batch(section):
    plan, engine, hook = build(**section)
    lrs = drive(engine, hook)
    planned = [s for _, _, s in plan.iter_steps()]
    assert len(engine.windows) == len(planned) == plan.optimizer_steps
    for window, setting in zip(engine.windows, planned):
        assert len(window) == setting.grad_accum
        assert sum(size for size, _ in window) * engine.dp_world_size == setting.global_batch
        assert all(scale == 1.0 / setting.grad_accum for _, scale in window)
    assert lrs == [s.lr for s in planned]
    assert engine.global_samples == hook.consumed_samples == plan.trained_tokens // 4


def test_naive_set_train_batch_size_gives_a_short_window():
    plan, engine, hook = build()
    hook.detach()
    assert "step" not in engine.__dict__
    while engine.global_samples * plan.seq_length < plan.total_tokens:
        boundary = engine.is_gradient_accumulation_boundary()
        engine.backward(engine.micro)
        engine.step()
        if boundary:
            engine.set_train_batch_size(plan.at_samples(engine.global_samples).global_batch)
    sizes = [len(w) for w in engine.windows]
    planned = [s.grad_accum for _, _, s in plan.iter_steps()]
    assert sizes != planned[: len(sizes)]  # the trap the hook avoids
    assert min(sizes[55:58]) < 4


def test_monitor_events_every_step():
    plan, engine, hook = build()
    drive(engine, hook)
    names = {name for name, _, _ in engine.monitor.events}
    assert names == {EVENT_PREFIX + k for k in
                     ("lr", "global_batch", "micro_batch", "grad_accum", "consumed_tokens")}
    batches = [v for name, v, _ in engine.monitor.events if name.endswith("global_batch")]
    assert batches == [s.global_batch for _, _, s in plan.iter_steps()]


def _expected_lines(plan, every, losses):
    """The seesaw_ds logger's lines for a run of ``plan``, written out from the plan alone
    (a clock that advances 1 s per reading: one at the start line, one per progress line)."""
    steps = list(plan.iter_steps())
    total_steps, phases = plan.optimizer_steps, len(plan.phases)
    lines, previous, mark = [], None, None
    for index, start, s in steps:
        number, tokens = index + 1, start + s.global_batch * plan.seq_length
        phase = f"phase={s.phase_index + 1}/{phases}"
        if previous is None:
            mark = tokens
            lines.append(
                f"[seesaw] start step=1 tokens=0: global_batch={s.global_batch} "
                f"micro_batch={s.micro_batch} grad_accum={s.grad_accum} lr={s.lr:.6g} {phase}; "
                f"plan: {total_steps} steps, {plan.trained_tokens} tokens (constant batch: "
                f"{plan.baseline_optimizer_steps} steps)")
        elif (s.global_batch, s.grad_accum) != (previous.global_batch, previous.grad_accum):
            lines.append(
                f"[seesaw] batch change at step={number} tokens={start}: global_batch "
                f"{previous.global_batch} -> {s.global_batch}, grad_accum {previous.grad_accum}"
                f" -> {s.grad_accum}, micro_batch {s.micro_batch}, lr={s.lr:.6g}, {phase}")
        if number % every == 0 or number == total_steps:
            rate = tokens - mark  # tokens per (fake) second since the last reading
            eta = round((plan.trained_tokens - tokens) / rate)
            window = losses[(number - 1) // every * every:number]
            mean = sum(window) / len(window)
            lines.append(
                f"[seesaw] step={number}/{total_steps} tokens={tokens} "
                f"({min(100.0, 100.0 * tokens / plan.total_tokens):.1f}%) lr={s.lr:.6g} "
                f"global_batch={s.global_batch} micro_batch={s.micro_batch} "
                f"grad_accum={s.grad_accum} {phase} loss={mean:.4f} tok/s={rate:.0f} "
                f"eta={eta // 3600}:{eta // 60 % 60:02d}:{eta % 60:02d}")
            mark = tokens
        previous = s
    return lines


def test_logger_lines_at_start_every_batch_change_and_every_steps_per_print(caplog):
    caplog.set_level(logging.INFO, logger="seesaw_ds")
    ticks = itertools.count()
    plan, engine, hook = build(
        logger=lambda engine: SeesawStepLogger(engine, 10, clock=lambda: next(ticks)))
    losses = [0.5 + 0.01 * k for k in range(plan.optimizer_steps)]
    while not hook.finished:
        engine.backward(engine.train_micro_batch_size_per_gpu())
        if hook.micro_in_window == 0:
            hook.report_loss(torch.tensor(losses[hook.step]))  # one value per step
        engine.step()
    lines = [r.getMessage() for r in caplog.records if r.name == "seesaw_ds"]
    expected = _expected_lines(plan, 10, losses)
    assert lines == expected
    changes = [line for line in lines if "batch change" in line]
    # growth 8 -> 16 -> 32 ... and the short last step's smaller batch, each exactly once
    assert len(changes) == len({s.global_batch for _, _, s in plan.iter_steps()}) >= 3
    assert len([line for line in lines if "tok/s=" in line]) == plan.optimizer_steps // 10 + 1
    # pinned, as a user reads them (the tiny plan: 69 steps, growth 2 at step 56, 65, 68)
    for line in (
            "[seesaw] batch change at step=56 tokens=1760: global_batch 8 -> 16, grad_accum 2 "
            "-> 4, micro_batch 2, lr=0.0353553, phase=3/5",
            "[seesaw] step=60/69 tokens=2080 (69.3%) lr=0.0353553 global_batch=16 "
            "micro_batch=2 grad_accum=4 phase=3/5 loss=1.0450 tok/s=480 eta=0:00:02",
            "[seesaw] batch change at step=69 tokens=2976: global_batch 64 -> 8, grad_accum "
            "16 -> 2, micro_batch 2, lr=0.00500877, phase=5/5"):
        assert line in lines
    assert lines[-1].startswith("[seesaw] step=69/69 tokens=3008 (100.0%) ")


def test_no_progress_line_on_other_ranks_or_without_steps_per_print(caplog):
    caplog.set_level(logging.INFO, logger="seesaw_ds")
    plan, engine, hook = build(logger=lambda engine: SeesawStepLogger(engine, float("inf")))
    drive(engine, hook)
    lines = [r.getMessage() for r in caplog.records if r.name == "seesaw_ds"]
    assert lines and not [line for line in lines if "tok/s" in line]  # start and changes only
    caplog.clear()
    def other_rank(engine):
        engine.global_rank = 1
        return SeesawStepLogger(engine, 1)

    plan, engine, hook = build(logger=other_rank)
    drive(engine, hook)
    assert not [r for r in caplog.records if r.name == "seesaw_ds"]


def test_lines_reach_stdout_when_logging_is_not_configured():
    script = (
        "import sys; sys.path.insert(0, %r)\n"
        "from test_dsa_engine_hook import build, drive\n"
        "plan, engine, hook = build()\n"
        "drive(engine, hook)\n" % str(Path(__file__).parent))
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert out[0].startswith("[seesaw] start step=1 tokens=0: global_batch=8 ")
    assert len([line for line in out if line.startswith("[seesaw] step=")]) == 7


def test_a_skipped_update_still_advances_the_token_clock():
    plan, engine, hook = build(overflow_steps={3, 56})
    drive(engine, hook)
    assert hook.step == plan.optimizer_steps
    assert [len(w) for w in engine.windows] == [s.grad_accum for _, _, s in plan.iter_steps()]


def test_replace_plan_between_steps_takes_effect_on_the_next_step():
    plan, engine, hook = build()
    capped = plan_from_ds_config(tiny_config(max_batch=16), 2)
    while hook.step < 60:
        engine.backward(engine.micro)
        engine.step()
    engine.backward(engine.micro)
    engine.step()
    with pytest.raises(RuntimeError, match="inside an accumulation window"):
        hook.replace_plan(capped)
    while not hook.at_boundary:
        engine.backward(engine.micro)
        engine.step()
    done = len(engine.windows)
    follow = SeesawState(capped, consumed_samples=hook.consumed_samples)
    hook.replace_plan(capped)
    assert engine.optimizer.param_groups[0]["lr"] == follow.setting.lr
    drive(engine, hook)
    expected = []
    while not follow.finished:
        expected.append(follow.setting.grad_accum)
        follow.advance()
    assert [len(w) for w in engine.windows[done:]] == expected
    assert max(expected) == 4  # capped at 16 = 2 x 4 x 2


def test_a_step_after_the_plans_end_raises_unless_asked_to_warn(caplog):
    from seesaw_ds.errors import SeesawConfigError

    plan, engine, hook = build()
    drive(engine, hook)
    steps = hook.step
    engine.backward(engine.micro)
    with pytest.raises(SeesawConfigError, match=r"^seesaw: engine.step\(\) after the end of "
                       rf"the plan: {plan.trained_tokens} of 3000 tokens are consumed in "
                       rf"{steps} optimizer steps; stop the loop when"):
        engine.step()
    assert hook.step == steps and engine.global_steps == steps  # nothing was applied
    hook.contract.past_end = "warn"
    for _ in range(3 * hook.setting.grad_accum):
        engine.backward(engine.micro)
        engine.step()
    assert hook.step == steps + 3
    assert sum("after the end of the plan" in r.getMessage() for r in caplog.records) == 1
