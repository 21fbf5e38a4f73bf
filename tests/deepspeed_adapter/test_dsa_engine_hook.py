"""The engine hook against a stand-in engine with DeepSpeed 0.19.8's boundary semantics.

The real engine is exercised by test_dsa_multirank.py; this file pins the mechanism down in
milliseconds: windows of exactly the planned GAS, loss scale, samples, logging, overflow.
"""

import pytest
import torch

from dsa_common import tiny_config
from seesaw_ds.config import plan_from_ds_config
from seesaw_ds.deepspeed_adapter import SeesawEngineHook, SeesawLRScheduler, SeesawState
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


def build(dp=2, overflow_steps=(), **section):
    plan = plan_from_ds_config(tiny_config(**section), dp)
    state = SeesawState(plan)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=plan.peak_lr)
    scheduler = SeesawLRScheduler(optimizer, state)
    first = plan.at_tokens(0)
    engine = FakeEngine(scheduler, dp, first.micro_batch, first.grad_accum, overflow_steps)
    hook = SeesawEngineHook(engine, state, scheduler)
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


def test_monitor_events_and_stdout_every_steps_per_print(capsys):
    plan, engine, hook = build()
    drive(engine, hook)
    names = {name for name, _, _ in engine.monitor.events}
    assert names == {EVENT_PREFIX + k for k in
                     ("lr", "global_batch", "micro_batch", "grad_accum", "consumed_tokens")}
    batches = [v for name, v, _ in engine.monitor.events if name.endswith("global_batch")]
    assert batches == [s.global_batch for _, _, s in plan.iter_steps()]
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[seesaw]")]
    assert len(lines) == plan.optimizer_steps // 10
    assert lines[0].startswith("[seesaw] step=10 tokens=320 ")


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
