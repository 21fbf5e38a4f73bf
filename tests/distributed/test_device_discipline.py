"""Every tensor the training path hands to a collective lives on the accelerator's device.

NCCL has no CPU device: ``dist.all_reduce`` on a CPU tensor raises "No backend type
associated with device type cpu", while gloo (every other test here) takes any device. These
tests build that situation on a CPU-only machine, with c10d's own device routing:

- a stand-in device ``standin`` (torch's PrivateUse1 key, set up as a Python backend): its
  tensors are wrappers around CPU tensors that compute on the CPU, refuse to mix with CPU
  tensors (as CUDA kernels do), and go through c10d's PrivateUse1 kernel in collectives, which
  picks the backend registered for the device;
- a process group whose only backend (torch's ``FakeProcessGroup``: one rank, the data left
  as it is, i.e. the mean over one rank) is registered for ``standin``, so c10d refuses a CPU
  tensor with NCCL's message;
- DeepSpeed's accelerator replaced by its CPU accelerator reporting ``standin:0`` as the
  current device, as the CUDA accelerator reports ``cuda:N``.

``all_mean``, ``seesaw_ds.train._evaluate`` and the critical-batch probe run under it.
"""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
import torch.distributed as dist
from torch.utils._pytree import tree_leaves, tree_map

registration = pytest.importorskip("torch.utils.backend_registration")
if not hasattr(registration, "_setup_privateuseone_for_python_backend"):
    pytest.skip("this torch has no Python PrivateUse1 backend", allow_module_level=True)

DEVICE = "standin"
BACKEND = "standin_only"
_TO_DEVICE = torch._C.DispatchKeySet(torch._C.DispatchKey.PrivateUse1)
_COPIES = (torch.ops.aten.copy_.default, torch.ops.aten._copy_from.default,
           torch.ops.aten._to_copy.default)


class StandIn(torch.Tensor):
    """A tensor on the ``standin`` device: a CPU tensor inside; collectives see the device."""

    @staticmethod
    def __new__(cls, inner: torch.Tensor):
        tensor = torch.Tensor._make_wrapper_subclass(
            cls, inner.shape, dtype=inner.dtype, device=f"{DEVICE}:0", strides=inner.stride(),
            requires_grad=inner.requires_grad)
        tensor.inner = inner
        return tensor

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func.namespace == "c10d":  # c10d's kernel routes by device type
            return func.redispatch(_TO_DEVICE, *args, **kwargs)

        if func not in _COPIES and any(type(value) is torch.Tensor and value.dim() > 0
                                       for value in tree_leaves((args, kwargs))):
            raise RuntimeError(f"{func}: expected all tensors on {DEVICE}, got a CPU tensor")

        def unwrap(value):
            if isinstance(value, StandIn):
                return value.inner
            if isinstance(value, torch.device) and value.type == DEVICE:
                return torch.device("cpu")
            return value

        out = func(*tree_map(unwrap, args), **tree_map(unwrap, kwargs))
        if args and isinstance(args[0], StandIn) and out is args[0].inner:
            return args[0]  # in place
        device = kwargs.get("device")
        if func is torch.ops.aten._to_copy.default and device is not None \
                and torch.device(device).type == "cpu":
            return out  # .cpu(): back to the host
        return tree_map(lambda v: StandIn(v) if type(v) is torch.Tensor else v, out)


def _register_device() -> None:
    """The ``standin`` device (PrivateUse1 renamed) and a process-group backend for it only."""
    if torch._C._get_privateuse1_backend_name() == DEVICE:
        return
    registration._setup_privateuseone_for_python_backend(DEVICE)
    library = torch.library.Library("aten", "IMPL")

    def empty_strided(size, stride, dtype=None, layout=None, device=None, pin_memory=None):
        return StandIn(torch.empty_strided(size, stride, dtype=dtype))

    def empty(size, dtype=None, layout=None, device=None, pin_memory=None,
              memory_format=None):
        return StandIn(torch.empty(size, dtype=dtype))

    def copy_from(source, target, non_blocking=False):
        inner = target.inner if isinstance(target, StandIn) else target
        inner.copy_(source.inner if isinstance(source, StandIn) else source)
        return target

    library.impl("empty_strided", empty_strided, "PrivateUse1")
    library.impl("empty.memory_format", empty, "PrivateUse1")
    library.impl("_copy_from", copy_from, "PrivateUse1")
    _register_device.library = library  # kept alive: dropping it unregisters the kernels

    def fake_backend(common, options):
        from torch._C._distributed_c10d import FakeProcessGroup

        return FakeProcessGroup._create_internal(common.group_rank, common.group_size, options)

    dist.Backend.register_backend(BACKEND, fake_backend, extended_api=True, devices=[DEVICE])


@pytest.fixture
def accelerator():
    """A one-rank process group that knows only the ``standin`` device; DeepSpeed's
    accelerator reports ``standin:0`` as its current device."""
    from deepspeed.accelerator import get_accelerator, set_accelerator
    from deepspeed.accelerator.cpu_accelerator import CPU_Accelerator

    class StandInAccelerator(CPU_Accelerator):
        def device_name(self, device_index=None):
            return DEVICE

        def current_device_name(self):
            return f"{DEVICE}:0"

    _register_device()
    previous = get_accelerator()
    assert not dist.is_initialized()
    dist.init_process_group(BACKEND, store=dist.HashStore(), rank=0, world_size=1,
                            timeout=datetime.timedelta(seconds=30))
    set_accelerator(StandInAccelerator())
    try:
        yield torch.device(f"{DEVICE}:0")
    finally:
        set_accelerator(previous)
        dist.destroy_process_group()


def test_the_stand_in_refuses_a_cpu_tensor_as_nccl_does(accelerator):
    with pytest.raises(RuntimeError, match="No backend type associated with device type cpu"):
        dist.all_reduce(torch.ones(2, dtype=torch.float64))
    on_device = torch.tensor([1.0, 2.0], device=accelerator)
    dist.all_reduce(on_device)
    assert on_device.cpu().tolist() == [1.0, 2.0]


def test_all_mean_reduces_on_the_accelerator_device(accelerator):
    from seesaw_ds import distributed

    assert distributed.all_mean([1.5, 2.0, -3.25]) == [1.5, 2.0, -3.25]
    loss = torch.tensor(2.5, device=accelerator)  # a loss kept on the device
    assert distributed.all_mean([loss, 4.0]) == [2.5, 4.0]
    assert distributed.all_mean([torch.tensor([7.0])]) == [7.0]  # host tensors move too
    assert distributed.current_device() == accelerator


class _Model(torch.nn.Module):
    """A stand-in LM (an embedding and a mean-square loss) that runs on the stand-in device."""

    def __init__(self, device) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.embed = torch.nn.Embedding(16, 4)
        with torch.no_grad():
            self.embed.weight.copy_(torch.randn(16, 4, generator=generator))
        self.to(device)
        self.device = device

    def forward(self, tokens, labels):
        ce = (self.embed(tokens) - labels.unsqueeze(-1).float()).pow(2).mean()
        return SimpleNamespace(loss=ce, ce=ce.detach())


def _batches(count: int):
    generator = torch.Generator().manual_seed(1)
    return [{"tokens": torch.randint(0, 16, (2, 8), generator=generator),
             "labels": torch.randint(0, 3, (2, 8), generator=generator)} for _ in range(count)]


def test_evaluate_moves_batches_and_reduces_on_the_device(accelerator):
    from seesaw_ds.train import _evaluate

    model, batches = _Model(accelerator), _batches(3)  # host batches, as the loader's
    reference = _Model("cpu")
    expected = sum(float(reference(b["tokens"], b["labels"]).ce) for b in batches) / 3
    assert _evaluate(model, batches) == pytest.approx(expected, rel=1e-6)
    assert model.training  # back in training mode


def test_probe_norm_is_reduced_on_the_device(request):
    """Runs in a fresh interpreter: torch's autograd engine sizes its per-device queues when
    it first runs, so a backward pass taken by an earlier test (before the stand-in device
    existed) leaves it without a queue for ``standin:0``."""
    if os.environ.get("SEESAW_STANDIN_FRESH") != "1":
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
             f"{__file__}::test_probe_norm_is_reduced_on_the_device"],
            env=dict(os.environ, SEESAW_STANDIN_FRESH="1"), capture_output=True, text=True,
            timeout=300)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
        return
    _probe_norm_is_reduced_on_the_device(request.getfixturevalue("accelerator"))


def _probe_norm_is_reduced_on_the_device(accelerator):
    from seesaw_ds.cbs.probe import GuardDriver

    model = _Model(accelerator)
    plan = SimpleNamespace(micro_batch=2, dp_size=1)  # the probe: one chunk of 2 samples
    hook = SimpleNamespace(plan=plan, step=0, checkpoint_sidecars={}, dp_rank=0,
                           consumed_samples=0)
    engine = SimpleNamespace(seesaw=hook, module=model)
    driver = GuardDriver(policy=None, engine=engine, log=print)
    batch = _batches(1)[0]
    driver.probe({key: value.to(accelerator) for key, value in batch.items()})

    reference = _Model("cpu")
    loss = reference(batch["tokens"], batch["labels"]).loss
    (grad,) = torch.autograd.grad(loss, [reference.embed.weight])
    assert driver.small_sq == pytest.approx(float(grad.pow(2).sum()), rel=1e-5)
    assert driver.small_batch == 2
