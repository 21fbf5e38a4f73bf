"""Check the seesaw patch against Megatron-LM's own code, on CPU (run by check_megatron_lm.sh).

Usage: ``python patches/check_megatron_lm.py PATCHED_CHECKOUT`` with the patched copy of
Megatron-LM first on ``PYTHONPATH`` (the shell script makes the copy and applies the patch).

Real Megatron-LM code used: ``parse_and_validate_args`` (its argparse parser and
``validate_args``), ``set_global_variables``, ``get_optimizer_param_scheduler``,
``get_train_valid_test_num_samples``, ``unset_global_variables``, the checkout's own
``megatron.core.num_microbatches_calculator`` globals, ``save_checkpoint`` /
``load_checkpoint`` (``torch`` and ``torch_dist``, one gloo rank),
``build_pretraining_data_loader`` (single and cyclic samplers), ``get_forward_backward_func``
(no pipelining, stub model) and ``forward_backward_pipelining_with_interleaving`` up to its
checks of the micro-batch count, the patched ``_interval_due``. Replayed, not run: the
per-iteration bookkeeping of ``train()`` / ``train_step()`` (calculator update, the patched
micro-batch-change checkpoint condition, ``--iterations-to-skip``, the scheduler's
``step(increment=num_microbatches x micro x dp x gtp)`` after a successful update only,
consumed samples += the iteration's batch): ``train()`` needs a DDP-wrapped CUDA model and
``initialize_megatron``. The optimizer is a torch AdamW with Megatron-style param groups
(``max_lr``, ``min_lr``, ``wd_mult``, one group with a tensor LR as under
``--optimizer-cuda-graph``): Megatron's own optimizer needs a DDP-wrapped CUDA model.

Stubbed: ``triton`` (a GPU compiler, imported at module level by Megatron-LM's MoE/SSM
kernels) when it is not importable; on Python 3.11, ``typing.override`` (3.12+, imported by
``megatron/training/models/hybrid.py`` on Megatron-LM main) comes from typing_extensions;
``device="cuda"`` tensor creation inside the schedules and ``read_metadata`` goes to the CPU
(:func:`cuda_to_cpu`); ``torch.cuda.get_rng_state`` / ``synchronize`` / ``current_device``
answer for the CPU once the one-rank process group is set up; ``get_device_arch_version``
answers 9 in the gtp and 64-rank layout checks.

Prints one ``PASS name: ...`` / ``FAIL name: ...`` / ``SKIP name: ...`` line per check and
exits 1 if any check failed.
"""

from __future__ import annotations

import contextlib
import glob
import importlib.abc
import importlib.machinery
import importlib.util
import io
import json
import logging
import os
import sys
import tempfile
import traceback
import types
import typing

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = {"PASS": 0, "FAIL": 0, "SKIP": 0}


def report(status: str, name: str, detail: str) -> None:
    RESULTS[status] += 1
    print(f"{status} {name}: {detail}", flush=True)


# ---- CPU-only stubs ------------------------------------------------------------------------


class _StubMeta(type):
    def __getattr__(cls, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _stub_type(f"{cls.__name__}.{name}")


class _Stub(metaclass=_StubMeta):
    """Anything: a decorator that returns the function, a callable, an attribute bag."""

    def __init__(self, *args, **kwargs):
        pass

    def __call__(self, *args, **kwargs):
        if len(args) == 1 and callable(args[0]) and not kwargs:
            return args[0]
        return _Stub()

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Stub()

    def __getitem__(self, key):
        return _Stub()


def _stub_type(name):
    return _StubMeta(name, (_Stub,), {})


class _StubModule(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _stub_type(f"{self.__name__}.{name}")


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self, roots):
        self.roots = roots

    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in self.roots:
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec):
        module = _StubModule(spec.name)
        module.__path__ = []
        module.__version__ = "0.0.0"
        return module

    def exec_module(self, module):
        pass


def install_stubs() -> list:
    stubbed = []
    if importlib.util.find_spec("triton") is None:
        sys.meta_path.insert(0, _StubFinder({"triton"}))
        stubbed.append("triton (GPU kernel compiler, not installed here)")
    if not hasattr(typing, "override"):
        import typing_extensions

        typing.override = typing_extensions.override
        stubbed.append(
            f"typing.override from typing_extensions (Python {sys.version.split()[0]} < 3.12)"
        )
    return stubbed


# ---- Megatron-LM argument parsing ------------------------------------------------------------

MODEL_ARGS = [
    "--num-layers", "2", "--hidden-size", "64", "--num-attention-heads", "4",
    "--tokenizer-type", "NullTokenizer",
    "--vocab-size", "1024", "--mock-data", "--eval-interval", "1000", "--eval-iters", "10",
]


class ParseResult:
    def __init__(self, args, code, stdout, stderr):
        self.args, self.code, self.stdout, self.stderr = args, code, stdout, stderr


def reset_megatron_globals() -> None:
    from megatron.core import num_microbatches_calculator as calculators
    from megatron.training import global_vars

    global_vars.unset_global_variables()
    calculators.destroy_num_microbatches_calculator()


def parse(argv, world_size=8, model_args=None) -> ParseResult:
    """Megatron-LM's real parse_and_validate_args (+ set_global_variables) on ``argv``."""
    from megatron.training.arguments import parse_and_validate_args

    reset_megatron_globals()
    os.environ["WORLD_SIZE"], os.environ["RANK"], os.environ["LOCAL_RANK"] = (
        str(world_size), "0", "0")
    sys.argv = ["pretrain_gpt.py", *(MODEL_ARGS if model_args is None else model_args), *argv]
    out, err = io.StringIO(), io.StringIO()
    args, code = None, 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            args = parse_and_validate_args()
        except SystemExit as stop:
            code = stop.code
        except BaseException:  # noqa: BLE001 - the traceback itself is what we report
            traceback.print_exc()
            code = "traceback"
    return ParseResult(args, code, out.getvalue(), err.getvalue())


def seesaw_argv(config, micro=None, extra=()):
    seq_length = 1024
    if config.endswith(".json") and os.path.exists(config):
        with open(config) as handle:
            seq_length = json.load(handle)["seesaw"]["seq_length"]
        micro = micro or layout_of(config)[0]
    micro = micro or 2
    return ["--seq-length", str(seq_length), "--max-position-embeddings", str(seq_length),
            "--micro-batch-size", str(micro), "--seesaw-config", config, *extra]


def layout_of(config):
    """(micro-batch, world size) for a shipped config: micro <= 2, dp <= 8, micro x dp
    dividing seesaw.batch_multiple (or train_batch_size)."""
    with open(config) as handle:
        data = json.load(handle)
    multiple = data["seesaw"].get("batch_multiple") or data["train_batch_size"]
    micro = min(2, data.get("train_micro_batch_size_per_gpu", 2))
    world = 8
    while world > 1 and multiple % (micro * world):
        world //= 2
    return micro, world


def plan_for(args):
    from seesaw_ds.megatron_adapter import plan_from_megatron_args

    return plan_from_megatron_args(args)


# ---- replay of train()'s bookkeeping ---------------------------------------------------------


def megatron_style_optimizer(args, optimizer_type=None):
    import torch

    weights = [torch.nn.Parameter(torch.zeros(2)) for _ in range(3)]
    return (optimizer_type or torch.optim.AdamW)([
        {"params": [weights[0]], "max_lr": args.lr, "min_lr": args.min_lr, "wd_mult": 1.0},
        {"params": [weights[1]], "max_lr": args.lr, "min_lr": args.min_lr, "wd_mult": 0.0},
        {"params": [weights[2]], "max_lr": args.lr, "min_lr": args.min_lr, "wd_mult": 1.0,
         "lr": torch.tensor(0.0, dtype=torch.float32)},
    ], lr=0.0)


def build_scheduler(args):
    from megatron.training.training import get_optimizer_param_scheduler

    optimizer = megatron_style_optimizer(args)
    return optimizer, get_optimizer_param_scheduler(optimizer)


class Replay:
    """train()'s per-iteration bookkeeping, recording what each iteration used."""

    def __init__(self, args, scheduler, optimizer):
        self.args, self.scheduler, self.optimizer = args, scheduler, optimizer
        self.records = {}
        self.microbatch_change_saves = 0
        self.after_iteration = None

    def run(self, start_iteration, stop_at=None, failed_updates=()):
        from megatron.core.num_microbatches_calculator import (
            get_current_global_batch_size,
            get_current_running_global_batch_size,
            get_num_microbatches,
            update_num_microbatches,
        )

        args = self.args
        gtp = getattr(args, "gtp_weight_remat_size", 1)
        dp_world = args.data_parallel_size * gtp
        iteration = start_iteration
        num_microbatches = get_num_microbatches()
        while iteration < args.train_iters:
            if stop_at is not None and iteration == stop_at:
                return iteration
            update_num_microbatches(args.consumed_train_samples, consistency_check=False)
            # the patched condition of train()'s checkpoint at a micro-batch-count change
            if get_num_microbatches() != num_microbatches and iteration != 0 and (
                getattr(args, "seesaw_config", None) is None
            ):
                self.microbatch_change_saves += 1
            num_microbatches = get_num_microbatches()
            update_num_microbatches(args.consumed_train_samples, consistency_check=True)
            if (iteration + 1) in args.iterations_to_skip:
                batch = dp_world * args.micro_batch_size * get_num_microbatches()
                self.records[iteration] = (args.consumed_train_samples, batch,
                                           get_num_microbatches(), None)
                iteration += 1
                args.consumed_train_samples += batch
                continue
            # train_step: the optimizer step uses the LR now in the param groups
            lrs = [group["lr"] for group in self.optimizer.param_groups]
            lrs = [lr.item() if hasattr(lr, "item") else lr for lr in lrs]
            self.records[iteration] = (args.consumed_train_samples,
                                       get_current_global_batch_size(),
                                       get_num_microbatches(), lrs)
            if iteration not in failed_updates:
                increment = (get_num_microbatches() * args.micro_batch_size
                             * args.data_parallel_size * gtp)
                self.scheduler.step(increment=increment)
            iteration += 1
            args.consumed_train_samples += dp_world * args.micro_batch_size * (
                get_num_microbatches())
            assert get_current_global_batch_size() == get_current_running_global_batch_size()
            if self.after_iteration is not None:  # train()'s logging, eval and save
                self.after_iteration(iteration)
        return iteration


def compare_with_plan(plan, records, dp_world, micro):
    """Iterations whose (start samples, batch, micro-batches, LR of each group) are off."""
    import torch

    off, steps = [], 0
    for step, tokens, setting in plan.iter_steps():
        steps += 1
        record = records.get(step)
        if record is None:
            off.append((step, "missing"))
            continue
        samples, batch, micro_batches, lrs = record
        expected_mb = setting.global_batch // (micro * dp_world)
        bad = (samples * plan.seq_length != tokens or batch != setting.global_batch
               or micro_batches != expected_mb)
        if lrs is not None:
            tensor_lr = float(torch.tensor(setting.lr, dtype=torch.float32))
            bad = bad or lrs[0] != setting.lr or lrs[1] != setting.lr or lrs[2] != tensor_lr
        if bad:
            off.append((step, record, (tokens, setting.global_batch, expected_mb, setting.lr)))
    extra = sorted(set(records) - set(range(steps)))
    return steps, off, extra


# ---- the checks --------------------------------------------------------------------------------


def check_shipped_config(path):
    from megatron.training.training import get_train_valid_test_num_samples
    from seesaw_ds.config import load_config_file
    from seesaw_ds.megatron_adapter import plan_samples

    name = f"shipped:{os.path.basename(path)}"
    result = parse(seesaw_argv(path), world_size=layout_of(path)[1])
    if result.code != 0:
        return report("FAIL", name, f"did not start: exit {result.code}: {result.stderr.strip()}")
    args = result.args
    config = load_config_file(path)
    plan = plan_for(args)
    samples = plan_samples(plan)
    startup = [line for line in result.stdout.splitlines()
               if line.startswith(f"[seesaw] {path}")]
    optimizer, scheduler = build_scheduler(args)
    dataset_samples = get_train_valid_test_num_samples()[0]
    replay = Replay(args, scheduler, optimizer)
    replay.run(0)
    steps, off, extra = compare_with_plan(plan, replay.records, args.data_parallel_size,
                                          args.micro_batch_size)
    problems = []
    if len(startup) != 1 or "laid out as 'accumulation'" not in startup[0]:
        problems.append(f"start-up lines {startup}")
    if (args.global_batch_size, args.lr) != (config["train_batch_size"],
                                             config["optimizer"]["params"]["lr"]):
        problems.append("batch/lr not from the config")
    if args.train_samples != samples or dataset_samples != samples:
        problems.append(f"train samples {args.train_samples}, dataset {dataset_samples}, "
                        f"plan {samples}")
    if args.train_iters != plan.optimizer_steps or off or extra:
        problems.append(f"{len(off)} iterations off the plan, extra {extra[:3]}, first "
                        f"{off[:2]}")
    if replay.microbatch_change_saves:
        problems.append(f"{replay.microbatch_change_saves} micro-batch-change checkpoints")
    detail = (f"{steps} iterations, batch {plan.initial_batch}->"
              f"{max(p.global_batch for p in plan.phases)}, train samples {args.train_samples}"
              f" = dataset {dataset_samples} = plan {samples}, {len(off)} of {steps} "
              f"iterations off the plan (batch, micro-batches, LR)")
    report("FAIL" if problems else "PASS", name, "; ".join(problems) or detail)


def check_skip_and_resume(config):
    """A failed update, an --iterations-to-skip iteration and a save/resume mid-run."""
    name = "replay:skipped-update+iterations-to-skip+resume"
    argv = seesaw_argv(config, extra=["--iterations-to-skip", "31"])
    result = parse(argv)
    if result.code != 0:
        return report("FAIL", name, result.stderr.strip())
    args = result.args
    plan = plan_for(args)
    optimizer, scheduler = build_scheduler(args)
    replay = Replay(args, scheduler, optimizer)
    changes = [i for i, (_, _, setting) in enumerate(plan.iter_steps())
               if i and setting.global_batch != plan.at_tokens(0).global_batch]
    resume_at = changes[len(changes) // 3] if changes else plan.optimizer_steps // 2
    failed = {10, resume_at - 1}  # the second one right before the save
    stopped = replay.run(0, stop_at=resume_at, failed_updates=failed)
    saved = {"iteration": stopped, "consumed_train_samples": args.consumed_train_samples,
             "opt_param_scheduler": json.loads(json.dumps(scheduler.state_dict()))}
    # resume: fresh process state, the same command line, load_checkpoint's restore steps
    from megatron.core.num_microbatches_calculator import update_num_microbatches

    result = parse(argv)
    args = result.args
    optimizer, scheduler = build_scheduler(args)
    args.consumed_train_samples = saved["consumed_train_samples"]
    update_num_microbatches(consumed_samples=args.consumed_train_samples, verbose=True)
    scheduler.load_state_dict(saved["opt_param_scheduler"])
    resumed = Replay(args, scheduler, optimizer)
    resumed.records = replay.records
    resumed.run(saved["iteration"], failed_updates=failed)
    steps, off, extra = compare_with_plan(plan, resumed.records, args.data_parallel_size,
                                          args.micro_batch_size)
    detail = (f"failed updates at iterations {sorted(failed)}, --iterations-to-skip 31, "
              f"saved after iteration {resume_at - 1} and resumed: {len(off)} of {steps} "
              "iterations off the plan (batch, micro-batches, LR)")
    report("FAIL" if off or extra else "PASS", name,
           detail + (f"; first {off[:2]}" if off else ""))


def check_gtp(config):
    name = "layout:gtp-weight-remat"
    probe = parse(seesaw_argv(config))
    if not hasattr(probe.args, "tensor_parallel_num_weight_shards"):
        return report("SKIP", name, "this Megatron-LM has no --tensor-parallel-num-weight-shards")
    import megatron.training.arguments as arguments

    real_arch = arguments.get_device_arch_version
    arguments.get_device_arch_version = lambda: 9  # CUDA-only query: answer "Hopper"
    try:
        result = parse(seesaw_argv(config, extra=["--tensor-parallel-num-weight-shards", "2"]),
                       world_size=8)
    finally:
        arguments.get_device_arch_version = real_arch
    if result.code != 0:
        return report("FAIL", name, result.stderr.strip())
    args = result.args
    plan = plan_for(args)
    optimizer, scheduler = build_scheduler(args)
    replay = Replay(args, scheduler, optimizer)
    replay.run(0)
    dp_world = args.data_parallel_size * args.gtp_weight_remat_size
    steps, off, extra = compare_with_plan(plan, replay.records, dp_world, args.micro_batch_size)
    ok = args.gtp_weight_remat_size == 2 and args.data_parallel_size == 4 and plan.dp_size == 8
    report("PASS" if ok and not off and not extra else "FAIL", name,
           f"world 8, --tensor-parallel-num-weight-shards 2: dp {args.data_parallel_size} x gtp "
           f"{args.gtp_weight_remat_size}, plan divisor {plan.dp_size}, {len(off)} of {steps} "
           "iterations off the plan (get_device_arch_version stubbed to 9: it asks CUDA)")


def check_cuda_graph_lr(config):
    name = "lr:optimizer-cuda-graph-tensor"
    result = parse(seesaw_argv(config, extra=["--optimizer-cuda-graph"]))
    if result.code != 0:
        return report("SKIP", name, f"--optimizer-cuda-graph refused on CPU by Megatron-LM: "
                      f"{result.stderr.strip().splitlines()[-1:]}")
    args = result.args
    optimizer, scheduler = build_scheduler(args)
    tensor = optimizer.param_groups[2]["lr"]
    replay = Replay(args, scheduler, optimizer)
    replay.run(0, stop_at=500)
    same = optimizer.param_groups[2]["lr"] is tensor
    report("PASS" if same else "FAIL", name,
           f"the tensor LR is filled in place over 500 iterations (same object: {same}); "
           "its values are compared in every replay")


def check_no_microbatch_checkpoint(config):
    """The patched train() skips its save at a micro-batch-count change under the plan."""
    import inspect

    from megatron.training import training

    name = "checkpoint:no-save-at-microbatch-change"
    source = inspect.getsource(training.train).replace("\\\n", " ")
    condition = [" ".join(line.split()) for line in source.splitlines()
                 if "get_num_microbatches() != num_microbatches and iteration != 0" in line]
    guarded = any("getattr(args, 'seesaw_config', None) is None" in line for line in condition)
    result = parse(seesaw_argv(config))
    steps = [setting.grad_accum for _, _, setting in plan_for(result.args).iter_steps()]
    changes = sum(1 for before, after in zip(steps, steps[1:]) if before != after)
    report("PASS" if guarded and changes else "FAIL", name,
           f"train()'s condition {condition}: its save is skipped at the {changes} "
           "micro-batch-count changes of this plan (every checkpoint restores the batch)")


def check_lengths(config):
    from seesaw_ds.megatron_adapter import plan_samples

    result = parse(seesaw_argv(config))
    plan = plan_for(result.args)
    samples = plan_samples(plan)
    for flag, value in (("--train-iters", plan.optimizer_steps), ("--train-samples", samples)):
        again = parse(seesaw_argv(config, extra=[flag, str(value)]))
        ok = again.code == 0 and again.args.train_samples == samples
        report("PASS" if ok else "FAIL", f"length:{flag}-equal",
               f"{flag} {value} equals the plan: accepted (exit {again.code})")


def check_bad_input(name, argv, expect, world_size=8):
    result = parse(argv, world_size)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    ok = (result.code == 2 and len(lines) == 1 and "Traceback" not in result.stderr
          and all(part in lines[0] for part in expect))
    shown = lines[0] if len(lines) == 1 else f"{len(lines)} lines: {lines[-3:]}"
    report("PASS" if ok else "FAIL", f"bad:{name}", f"exit {result.code}: {shown}")


def bad_inputs(config, tmp):
    probe = parse(seesaw_argv(config))
    args = probe.args
    plan = plan_for(args)
    from seesaw_ds.megatron_adapter import REPLACED_FLAGS, plan_samples

    samples = plan_samples(plan)
    values = {
        "step_batch_size_schedule": ["0:256 1B:512"], "rampup_batch_size": ["16", "16", "1000"],
        "decrease_batch_size_if_needed": [], "lr_decay_style": ["cosine"],
        "lr_decay_iters": ["1000"], "lr_decay_samples": ["100000"],
        "lr_warmup_fraction": ["0.01"], "lr_warmup_iters": ["100"],
        "lr_warmup_samples": ["1000"], "lr_warmup_init": ["0.0001"], "min_lr": ["0.0003"],
        "decoupled_min_lr": ["0.0001"], "lr_wsd_decay_style": ["linear"],
        "lr_wsd_decay_iters": ["100"], "lr_wsd_decay_samples": ["1000"],
        "start_weight_decay": ["0.0"], "end_weight_decay": ["0.1"],
        "weight_decay_incr_style": ["linear"], "override_opt_param_scheduler": [],
        "use_checkpoint_opt_param_scheduler": [], "override_ckpt_iteration": ["10"],
        "phase_transition_iterations": ["100,200"],
    }
    for dest, (flag, replacement) in REPLACED_FLAGS.items():
        if not hasattr(args, dest):
            report("SKIP", f"bad:{flag}", "not a flag of this Megatron-LM")
            continue
        check_bad_input(flag, seesaw_argv(config, extra=[flag, *values[dest]]),
                        [f"{flag} cannot be combined with --seesaw-config: {replacement}."])
    check_bad_input("--global-batch-size", seesaw_argv(config, extra=["--global-batch-size",
                    "128"]), ["--global-batch-size 128", "train_batch_size = 256"])
    check_bad_input("--lr", seesaw_argv(config, extra=["--lr", "0.001"]),
                    ["--lr 0.001", "optimizer.params.lr = 0.003"])
    check_bad_input("--adam-beta2", seesaw_argv(config, extra=["--adam-beta2", "0.98"]),
                    ["--adam-beta2 0.98", "optimizer.params.betas[1] = 0.95"])
    check_bad_input("--train-iters", seesaw_argv(config, extra=["--train-iters", "100"]),
                    ["--train-iters 100", f"{plan.optimizer_steps} iterations"])
    short = samples - 1103
    check_bad_input("--train-samples", seesaw_argv(config, extra=["--train-samples",
                    str(short)]), [f"--train-samples {short}", f"{samples} samples"])
    check_bad_input("--seq-length", [
                    "--seq-length", "2048", "--max-position-embeddings", "2048",
                    "--micro-batch-size", "2", "--seesaw-config", config],
                    ["seesaw.seq_length = 1024", "--seq-length 2048"])
    check_bad_input("micro-x-dp", seesaw_argv(config, micro=4),
                    ["seesaw.batch_multiple = 16", "= 32"])
    only_seesaw = os.path.join(tmp, "seesaw_only.yaml")
    with open(only_seesaw, "w") as handle:
        handle.write("seesaw:\n  total_tokens: 1.0e8\n  seq_length: 1024\n"
                     "  batch_growth: 2.0\n  lr_schedule: {type: cosine}\n")
    check_bad_input("batch-not-multiple", seesaw_argv(only_seesaw, extra=[
        "--global-batch-size", "100", "--lr", "0.001"]), ["train_batch_size = 100", "16"])
    check_bad_input("missing-config", seesaw_argv(os.path.join(tmp, "missing.json")),
                    ["cannot read config", "missing.json"])



# ---- issue 16: a user's real command line ----------------------------------------------------


def cuda_to_cpu():
    """A torch function mode that creates on the CPU what Megatron's code creates with
    ``device="cuda"`` (a token counter in the schedules, the iteration all-reduce in
    ``read_metadata``): the one CUDA stub these checks need to run that code."""
    import torch

    class CudaToCpu(torch.overrides.TorchFunctionMode):
        def __torch_function__(self, func, types_, args=(), kwargs=None):
            kwargs = dict(kwargs or {})
            if str(kwargs.get("device", "")).startswith("cuda"):
                kwargs["device"] = "cpu"
            return func(*args, **kwargs)

    return CudaToCpu()


class _ScheduleChecksPassed(Exception):
    """Raised where forward_backward_pipelining_with_interleaving has done its checks of the
    micro-batch count and starts to build tensors."""


def interleaved_schedule_accepts(num_microbatches, pp, group):
    """Megatron's real forward_backward_pipelining_with_interleaving on a stub model: True
    when it gets past its micro-batch checks, else the ValueError/RuntimeError it raises."""
    import torch
    from megatron.core.model_parallel_config import ModelParallelConfig
    from megatron.core.pipeline_parallel import schedules

    class Config(ModelParallelConfig):
        @property
        def hidden_size(self):  # first read right after the checks: stop there
            raise _ScheduleChecksPassed()

    config = Config(pipeline_model_parallel_size=pp, virtual_pipeline_model_parallel_size=2,
                    microbatch_group_size_per_vp_stage=group, pipeline_dtype=torch.float32)

    class Chunk(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.config = config
            self.model_type = None

    class Group:
        def __init__(self, size):
            self._size = size

        def size(self):
            return self._size

        def rank(self):
            return 0

    p2p = types.SimpleNamespace(config=config, pp_group=Group(pp))
    groups = types.SimpleNamespace(tp=Group(1), cp=Group(1))
    try:
        with cuda_to_cpu():  # a token counter allocated on "cuda" before the checks
            schedules.forward_backward_pipelining_with_interleaving(
                forward_step_func=None, data_iterator=[iter(()), iter(())],
                model=[Chunk(), Chunk()], num_microbatches=num_microbatches, seq_length=1024,
                micro_batch_size=2, p2p_communicator=p2p, pg_collection=groups)
    except _ScheduleChecksPassed:
        return True
    except (ValueError, RuntimeError) as error:
        return error
    return True


def check_interleaved_pipeline(config):
    """150M B=256 on PP 2 with virtual stages, DP 8: every micro-batch count the calculator
    gives over the whole run passes Megatron's own interleaved schedule."""
    name = "pipeline:interleaved-pp2-vpp2-dp8"
    probe = interleaved_schedule_accepts(3, 2, None)
    if probe is True or "remainder" not in str(probe):
        return report("FAIL", name, f"the real schedule accepted M=3 at PP 2: {probe}")
    result = parse(seesaw_argv(config, extra=[
        "--num-layers", "12", "--pipeline-model-parallel-size", "2",
        "--num-virtual-stages-per-pipeline-rank", "2"]), world_size=16)
    if result.code != 0:
        return report("FAIL", name, f"exit {result.code}: {result.stderr.strip()[-300:]}")
    args = result.args
    optimizer, scheduler = build_scheduler(args)
    replay = Replay(args, scheduler, optimizer)
    replay.run(0)
    counts = sorted({record[2] for record in replay.records.values()})
    group = getattr(args, "microbatch_group_size_per_vp_stage", None)
    refused = {count: interleaved_schedule_accepts(count, 2, group) for count in counts}
    refused = {count: str(error)[:80] for count, error in refused.items() if error is not True}
    plan = plan_for(args)
    steps, off, extra = compare_with_plan(plan, replay.records, args.data_parallel_size,
                                          args.micro_batch_size)
    ok = (not refused and not off and not extra and args.virtual_pipeline_model_parallel_size
          == 2 and args.data_parallel_size == 8)
    report("PASS" if ok else "FAIL", name,
           f"vpp {args.virtual_pipeline_model_parallel_size}, dp {args.data_parallel_size}, "
           f"batch multiple {plan.batch_multiple}: {len(counts)} distinct micro-batch counts "
           f"over {steps} iterations, refused by forward_backward_pipelining_with_interleaving"
           f": {refused or 'none'}; {len(off)} iterations off the plan")


def frozen_microbatch_inputs(config):
    """Features that freeze the micro-batch count: refused by name, one line."""
    cases = [("--cuda-graph-impl", ["--cuda-graph-impl", "full_iteration"],
              "--cuda-graph-impl full_iteration cannot be combined with --seesaw-config"),
             ("--cuda-graph-impl-te", ["--cuda-graph-impl", "transformer_engine"],
              "--cuda-graph-impl transformer_engine cannot be combined"),
             ("--enable-cuda-graph", ["--enable-cuda-graph"],
              "--enable-cuda-graph cannot be combined with --seesaw-config"),
             ("--external-cuda-graph", ["--external-cuda-graph"],
              "--external-cuda-graph cannot be combined with --seesaw-config"),
             ("--hybrid-context-parallel", ["--hybrid-context-parallel"],
              "--hybrid-context-parallel cannot be combined with --seesaw-config")]
    for name, extra, expect in cases:
        check_bad_input(f"frozen:{name}", seesaw_argv(config, extra=extra), [expect])


def conflict_inputs(config):
    """Every conflict in one line; a written flag at Megatron's default is compared."""
    check_bad_input("all-at-once", seesaw_argv(config, extra=[
        "--lr-decay-style", "cosine", "--min-lr", "0.0", "--weight-decay", "0.01",
        "--train-iters", "100"]),
        ["4 conflicts with --seesaw-config, all listed: (1) --lr-decay-style cannot",
         "(2) --min-lr cannot", "(3) --weight-decay 0.01 differs", "(4) --train-iters 100"])
    check_bad_input("written-default:--weight-decay", seesaw_argv(config, extra=[
        "--weight-decay", "0.01"]),
        ["--weight-decay 0.01 differs from the config's optimizer.params.weight_decay = 0.0"])
    check_bad_input("written-default:--lr-decay-style", seesaw_argv(config, extra=[
        "--lr-decay-style", "linear"]),
        ["--lr-decay-style cannot be combined with --seesaw-config"])


def _config_copy(config, tmp, name, **seesaw_or_optimizer):
    with open(config) as handle:
        data = json.load(handle)
    data["seesaw"].update(seesaw_or_optimizer.pop("seesaw", {}))
    data["optimizer"]["params"].update(seesaw_or_optimizer.pop("params", {}))
    path = os.path.join(tmp, name)
    with open(path, "w") as handle:
        json.dump(data, handle)
    return path


def _call_one_line(call):
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            call()
        except SystemExit as stop:
            code = stop.code
        except BaseException:  # noqa: BLE001
            traceback.print_exc()
            code = "traceback"
    return code, [line for line in err.getvalue().splitlines() if line.strip()]


def check_resume_refusals(config, tmp):
    """(a) another peak LR, (b) a checkpoint of a run without the plan (refused, then joined
    with --seesaw-join-checkpoint): the scheduler state Megatron-LM's load_checkpoint hands
    to load_state_dict, refused in one line with exit 2."""
    from megatron.core.num_microbatches_calculator import update_num_microbatches

    result = parse(seesaw_argv(config))
    args = result.args
    optimizer, scheduler = build_scheduler(args)
    Replay(args, scheduler, optimizer).run(0, stop_at=3000)
    saved = json.loads(json.dumps(scheduler.state_dict()))
    consumed = args.consumed_train_samples
    half = _config_copy(config, tmp, "half_lr.json", params={"lr": 0.0015})
    args = parse(seesaw_argv(half)).args
    optimizer, scheduler = build_scheduler(args)
    code, lines = _call_one_line(lambda: scheduler.load_state_dict(saved))
    ok = code == 2 and len(lines) == 1 and "different seesaw plan" in lines[0]
    report("PASS" if ok else "FAIL", "resume:changed-peak-lr",
           f"a checkpoint of peak lr 0.003 loaded under peak 0.0015: exit {code}, {lines}")
    # a checkpoint of Megatron-LM's own scheduler (no --seesaw-config)
    plain = parse(["--seq-length", "1024", "--max-position-embeddings", "1024",
                   "--micro-batch-size", "2", "--global-batch-size", "256", "--lr", "0.003",
                   "--lr-decay-style", "cosine", "--train-samples", "3222672"])
    if plain.code != 0:
        return report("FAIL", "resume:non-seesaw-checkpoint", plain.stderr.strip()[-300:])
    _, megatron_scheduler = build_scheduler(plain.args)
    megatron_scheduler.step(increment=consumed)
    foreign = json.loads(json.dumps(megatron_scheduler.state_dict()))
    for flag, expect_code in (([], 2), (["--seesaw-join-checkpoint"], 0)):
        args = parse(seesaw_argv(config, extra=flag)).args
        optimizer, scheduler = build_scheduler(args)
        args.consumed_train_samples = consumed  # what load_checkpoint restores first
        update_num_microbatches(consumed_samples=consumed, verbose=False)
        code, lines = _call_one_line(lambda: scheduler.load_state_dict(foreign))
        plan = plan_for(args)
        lr_ok = optimizer.param_groups[0]["lr"] == plan.at_samples(consumed).lr
        if expect_code == 2:
            ok = code == 2 and len(lines) == 1 and "--seesaw-join-checkpoint" in lines[0]
            detail = f"Megatron's OptimizerParamScheduler state: exit {code}, {lines}"
        else:
            ok = code == 0 and not lines and lr_ok and scheduler.num_steps == consumed
            detail = (f"with --seesaw-join-checkpoint: accepted at {scheduler.num_steps} "
                      f"samples, LR = the plan's there: {lr_ok}")
        report("PASS" if ok else "FAIL",
               "resume:non-seesaw-checkpoint" + ("+join" if flag else ""), detail)


def check_seesaw_checkpoint_without_config():
    """The patched load_checkpoint refuses a seesaw checkpoint without --seesaw-config, one
    line naming the flag (its guard read from the source, the refusal called)."""
    import inspect

    from megatron.training import checkpointing

    from seesaw_ds.megatron_adapter.megatron_lm import refuse_seesaw_checkpoint

    name = "resume:seesaw-checkpoint-without-config"
    source = " ".join(inspect.getsource(checkpointing.load_checkpoint).split())
    guard = ("if getattr(args, 'seesaw_config', None) is None and 'plan' in state_dict.get( "
             "'opt_param_scheduler', {}):")
    before = source.find(guard) < source.find(
        "opt_param_scheduler.load_state_dict(state_dict['opt_param_scheduler'])")
    code, lines = _call_one_line(lambda: refuse_seesaw_checkpoint("ckpt/iter_0003000"))
    ok = guard in source and before and code == 2 and len(lines) == 1 and (
        "--seesaw-config FILE" in lines[0])
    report("PASS" if ok else "FAIL", name,
           f"guard before the scheduler load: {guard in source and before}; exit {code}, "
           f"{lines}")


def check_token_intervals(config, tmp):
    """seesaw.save/eval_interval_tokens: the patched train() conditions (_interval_due, run
    for real on every iteration) save and evaluate once per interval of tokens."""
    from megatron.training import training

    name = "interval:tokens"
    path = _config_copy(config, tmp, "intervals.json",
                        seesaw={"save_interval_tokens": "1B", "eval_interval_tokens": "250M"})
    no_eval_interval = MODEL_ARGS[:MODEL_ARGS.index("--eval-interval")] + MODEL_ARGS[
        MODEL_ARGS.index("--eval-interval") + 2:]
    result = parse(seesaw_argv(path, extra=["--save", os.path.join(tmp, "ckpt")]),
                   model_args=no_eval_interval)
    if result.code != 0 or not hasattr(training, "_interval_due"):
        return report("FAIL", name, f"exit {result.code}: {result.stderr.strip()[-300:]}")
    args = result.args
    optimizer, scheduler = build_scheduler(args)
    replay = Replay(args, scheduler, optimizer)
    saves, evals = [], []

    def after_iteration(iteration):
        if training._interval_due(args, "save", iteration):
            saves.append(args.consumed_train_samples * 1024)
        if training._interval_due(args, "eval", iteration):
            evals.append(args.consumed_train_samples * 1024)

    replay.after_iteration = after_iteration
    replay.run(0)
    save_slots = [int(tokens // 1e9) for tokens in saves]
    eval_slots = [int(tokens // 2.5e8) for tokens in evals]
    ok = save_slots == [1, 2, 3] and eval_slots == list(range(1, 14))
    report("PASS" if ok else "FAIL", name,
           f"saves at tokens {[f'{t:.4g}' for t in saves]}, {len(evals)} evals (one per "
           f"250M tokens: {eval_slots == list(range(1, 14))}); --save-interval set to "
           f"{args.save_interval}, --eval-interval {args.eval_interval} (initial batch)")
    result = parse(seesaw_argv(config, extra=["--save", os.path.join(tmp, "ckpt"),
                                              "--save-interval", "1000"]))
    lines = [line for line in result.stdout.splitlines() if "counts iterations" in line]
    ok = result.code == 0 and len(lines) == 2 and "every 2.621e+08 tokens at batch 256, " \
        "every 2.589e+09 at batch 2528" in lines[0]
    report("PASS" if ok else "FAIL", "interval:iterations-converted-at-start-up",
           f"{lines}")
    check_bad_input("interval:both", seesaw_argv(path, extra=["--eval-interval", "1000"]),
                    ["--eval-interval 1000 and seesaw.eval_interval_tokens = 250M both set"])


def check_seesaw_metrics(config):
    """training_log's hook writes the plan's phase, tokens, batch and the LR the step used."""
    import inspect

    from megatron.training import training

    from seesaw_ds.megatron_adapter.megatron_lm import log_metrics

    name = "log:seesaw-metrics"
    hooked = "log_metrics(writer, wandb_writer, iteration, args)" in inspect.getsource(
        training.training_log)
    args = parse(seesaw_argv(config)).args
    optimizer, scheduler = build_scheduler(args)
    replay = Replay(args, scheduler, optimizer)
    logged = {}

    class Writer:
        def add_scalar(self, key, value, iteration):
            logged.setdefault(iteration, {})[key] = value

    def after_iteration(iteration):
        log_metrics(Writer(), None, iteration, args)

    replay.after_iteration = after_iteration
    replay.run(0, stop_at=4000)
    plan = plan_for(args)
    wrong = [it for it, (samples, batch, _, lrs) in replay.records.items()
             if logged[it + 1]["seesaw/lr"] != lrs[0] or logged[it + 1]["seesaw/global-batch"]
             != batch or logged[it + 1]["seesaw/tokens"] != (samples + batch) * 1024
             or logged[it + 1]["seesaw/phase"] != plan.at_samples(samples).phase_index]
    report("PASS" if hooked and not wrong else "FAIL", name,
           f"hook in training_log: {hooked}; seesaw/lr, global-batch, tokens, phase of 4000 "
           f"iterations equal the LR and batch each used: {not wrong} (first off {wrong[:2]})")



_PROCESS_GROUP = []


def one_rank_process_group():
    """torch.distributed (gloo, world 1) and megatron-core's parallel_state, once."""
    import torch
    import torch.distributed as dist
    from megatron.core import parallel_state

    if not _PROCESS_GROUP:
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        with __import__("socket").socket() as sock:
            sock.bind(("127.0.0.1", 0))
            os.environ["MASTER_PORT"] = str(sock.getsockname()[1])
        dist.init_process_group("gloo", rank=0, world_size=1)
        parallel_state.initialize_model_parallel()
        # CUDA queries of save/load_checkpoint and dist_checkpointing, answered for the CPU
        torch.cuda.get_rng_state = torch.get_rng_state
        torch.cuda.synchronize = lambda *args, **kwargs: None
        torch.cuda.current_device = lambda: "cpu"
        _PROCESS_GROUP.append(True)


def _checkpoint_model():
    import torch
    from megatron.core.dist_checkpointing import ShardedTensor

    class Model(torch.nn.Module):
        """What save/load_checkpoint read of a model chunk: its state dict (torch format)
        or its sharded state dict (torch_dist: one shard per tensor on one rank)."""

        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(4, 4)

        def state_dict_for_save_checkpoint(self, prefix="", keep_vars=False):
            return self.state_dict(prefix=prefix, keep_vars=keep_vars)

        def sharded_state_dict(self, prefix="", sharded_offsets=(), metadata=None):
            return {key: ShardedTensor.from_rank_offsets(key, value, replica_id=0)
                    for key, value in self.state_dict(prefix=prefix).items()}

    return [Model()]


def _checkpointable_adamw():
    import torch

    class AdamW(torch.optim.AdamW):
        """torch AdamW with what save/load_checkpoint call on Megatron's optimizer (its
        state saved whole, as common state, under torch_dist)."""

        is_stub_optimizer = False

        def sharded_state_dict(self, model_sharded_state_dict, is_loading=False, **kwargs):
            return self.state_dict()

    return AdamW


def _trained_state(args):
    """Model, optimizer (with AdamW state) and scheduler as the training loop builds them."""
    import torch

    from megatron.training.training import get_optimizer_param_scheduler

    model = _checkpoint_model()
    optimizer = megatron_style_optimizer(args, _checkpointable_adamw())
    optimizer.add_param_group({"params": list(model[0].parameters()), "max_lr": args.lr,
                               "min_lr": args.min_lr, "wd_mult": 1.0})
    scheduler = get_optimizer_param_scheduler(optimizer)
    for param in model[0].parameters():
        param.grad = torch.ones_like(param)
    optimizer.step()  # AdamW state (exp_avg, exp_avg_sq) to save and restore
    optimizer.zero_grad()
    return model, optimizer, scheduler


def _real_save(args, iteration, model, optimizer, scheduler):
    from megatron.training.checkpointing import save_checkpoint

    with cuda_to_cpu(), contextlib.redirect_stdout(io.StringIO()):
        save_checkpoint(iteration, model, optimizer, scheduler, 0)


def _real_load(args, model, optimizer, scheduler):
    from megatron.training.checkpointing import load_checkpoint

    with cuda_to_cpu(), contextlib.redirect_stdout(io.StringIO()):
        return load_checkpoint(model, optimizer, scheduler)


def _ckpt_argv(directory, extra=(), ckpt_format="torch"):
    return ["--save", directory, "--load", directory, "--ckpt-format", ckpt_format,
            "--save-interval", "1000", "--no-save-rng", "--no-load-rng", *extra]


def check_real_checkpoint(config, tmp, ckpt_format="torch"):
    """Megatron-LM's own save_checkpoint / load_checkpoint (one gloo rank) mid-run, with
    failed updates right before the save: every iteration before and after equals the plan;
    model, AdamW state, consumed samples and scheduler come back."""
    import torch

    name = f"checkpoint:real-save-load-{ckpt_format}"
    one_rank_process_group()
    directory = os.path.join(tmp, f"ckpt_seesaw_{ckpt_format}")
    argv = seesaw_argv(config, extra=_ckpt_argv(directory, ckpt_format=ckpt_format))
    result = parse(argv, world_size=1)
    if result.code != 0:
        return report("FAIL", name, result.stderr.strip()[-300:])
    args = result.args
    plan = plan_for(args)
    model, optimizer, scheduler = _trained_state(args)
    replay = Replay(args, scheduler, optimizer)
    resume_at = 4433
    failed = {10, resume_at - 1}
    stopped = replay.run(0, stop_at=resume_at, failed_updates=failed)
    _real_save(args, stopped, model, optimizer, scheduler)
    saved_samples = args.consumed_train_samples
    saved_state = [dict(state) for state in optimizer.state.values()]
    weights = [param.detach().clone() for param in model[0].parameters()]

    args = parse(argv, world_size=1).args
    model, optimizer, scheduler = _trained_state(args)
    iteration, _ = _real_load(args, model, optimizer, scheduler)
    restored = (iteration == stopped and args.consumed_train_samples == saved_samples
                and all(torch.equal(a, b) for a, b in zip(weights, model[0].parameters()))
                and all(torch.equal(old["exp_avg"], new["exp_avg"]) for old, new in
                        zip(saved_state, optimizer.state.values())))
    resumed = Replay(args, scheduler, optimizer)
    resumed.records = replay.records
    resumed.run(iteration, failed_updates=failed)
    steps, off, extra = compare_with_plan(plan, resumed.records, 1, args.micro_batch_size)
    files = sorted(os.listdir(os.path.join(directory, f"iter_{stopped:07d}")))
    report("PASS" if restored and not off and not extra else "FAIL", name,
           f"{files}: saved at iteration {stopped} ({saved_samples} samples, failed updates "
           f"{sorted(failed)}), loaded by load_checkpoint: iteration, consumed samples, "
           f"weights and AdamW state restored: {restored}; {len(off)} of {steps} iterations "
           f"off the plan (first {off[:1]})")
    return directory


def check_real_checkpoint_refusals(config, tmp, seesaw_directory):
    """The refusals of resume through Megatron-LM's own load_checkpoint: a checkpoint of a
    run without the plan (then joined), a seesaw checkpoint without --seesaw-config."""
    one_rank_process_group()
    plain_directory = os.path.join(tmp, "ckpt_plain")
    plain_argv = ["--seq-length", "1024", "--max-position-embeddings", "1024",
                  "--micro-batch-size", "2", "--global-batch-size", "256", "--lr", "0.003",
                  "--lr-decay-style", "cosine", "--train-samples", "3222672"]
    args = parse(plain_argv + _ckpt_argv(plain_directory), world_size=1).args
    model, optimizer, scheduler = _trained_state(args)
    args.consumed_train_samples = 256 * 3000
    scheduler.step(increment=256 * 3000)
    _real_save(args, 3000, model, optimizer, scheduler)
    for extra, name in (([], "checkpoint:real-load-non-seesaw"),
                        (["--seesaw-join-checkpoint"], "checkpoint:real-load-non-seesaw+join")):
        args = parse(seesaw_argv(config, extra=_ckpt_argv(plain_directory, extra)),
                     world_size=1).args
        model, optimizer, scheduler = _trained_state(args)
        code, lines = _call_one_line(lambda: _real_load(args, model, optimizer, scheduler))
        ours = [line for line in lines if line.startswith("--seesaw-config:")]
        if not extra:
            ok = code == 2 and len(ours) == 1 and "--seesaw-join-checkpoint" in ours[0] and \
                not any("Traceback" in line for line in lines)
            detail = f"exit {code}: {ours}"
        else:
            lr = plan_for(args).at_samples(256 * 3000).lr
            ok = code == 0 and scheduler.num_steps == 256 * 3000 and \
                optimizer.param_groups[0]["lr"] == lr
            detail = (f"exit {code}, plan entered at {scheduler.num_steps} samples, LR the "
                      f"plan's there: {optimizer.param_groups[0]['lr'] == lr}")
        report("PASS" if ok else "FAIL", name, detail)
    check_seesaw_checkpoint_refused_without_config(seesaw_directory, "torch")


_PLAIN_ARGV = ["--seq-length", "1024", "--max-position-embeddings", "1024",
               "--micro-batch-size", "2", "--global-batch-size", "256", "--lr", "0.003",
               "--lr-decay-style", "cosine", "--train-samples", "3222672"]


def check_seesaw_checkpoint_refused_without_config(directory, ckpt_format):
    name = f"checkpoint:real-load-seesaw-without-config-{ckpt_format}"
    if directory is None:
        return report("FAIL", name, "no checkpoint was saved")
    args = parse(_PLAIN_ARGV + _ckpt_argv(directory, ckpt_format=ckpt_format),
                 world_size=1).args
    model, optimizer, scheduler = _trained_state(args)
    code, lines = _call_one_line(lambda: _real_load(args, model, optimizer, scheduler))
    ours = [line for line in lines if line.startswith("--seesaw-config:")]
    ok = code == 2 and len(ours) == 1 and "--seesaw-config FILE" in ours[0] and not any(
        "Traceback" in line for line in lines)
    report("PASS" if ok else "FAIL", name, f"exit {code}: {ours}")


def real_checkpoints(config, tmp):
    directory = None
    try:
        directory = check_real_checkpoint(config, tmp)
    finally:
        check_real_checkpoint_refusals(config, tmp, directory)
    check_seesaw_checkpoint_refused_without_config(
        check_real_checkpoint(config, tmp, "torch_dist"), "torch_dist")



def check_real_samplers(config):
    """Megatron-LM's own build_pretraining_data_loader (single and cyclic samplers) read by
    the plan's steps: each step takes exactly the next global batch of samples, and a loader
    rebuilt at a checkpoint's consumed samples continues where the first one was."""
    import torch
    from megatron.training.datasets.data_samplers import build_pretraining_data_loader

    one_rank_process_group()
    for kind in ("single", "cyclic"):
        name = f"data:real-sampler-{kind}"
        result = parse(seesaw_argv(config, extra=["--num-workers", "0", "--dataloader-type",
                                                  kind]), world_size=1)
        if result.code != 0:
            report("FAIL", name, result.stderr.strip()[-300:])
            continue
        args = result.args
        plan = plan_for(args)

        class Indices(torch.utils.data.Dataset):
            def __len__(self):
                return args.train_samples

            def __getitem__(self, index):
                return index

        def read(loader, count):
            return [int(i) for _ in range(count) for i in next(loader)]

        loader = iter(build_pretraining_data_loader(Indices(), 0))
        steps = list(plan.iter_steps())
        resume_at = len(steps) // 2
        seen, problems, resumed = [], [], None
        for index, (_, tokens, setting) in enumerate(steps):
            consumed = tokens // plan.seq_length
            if index == resume_at:
                resumed = iter(build_pretraining_data_loader(Indices(), consumed))
            taken = read(loader, setting.grad_accum)
            if resumed is not None and read(resumed, setting.grad_accum) != taken:
                problems.append(f"resumed loader differs at step {index}")
            if kind == "single" and taken != list(range(consumed,
                                                          consumed + setting.global_batch)):
                problems.append(f"step {index} read {taken[:3]}.., not from {consumed}")
            seen += taken
        if sorted(seen) != list(range(args.train_samples)):
            problems.append(f"{len(seen)} samples read, {len(set(seen))} distinct, of "
                            f"{args.train_samples}")
        report("FAIL" if problems else "PASS", name,
               "; ".join(problems[:2]) or
               f"{len(steps)} steps of {plan.initial_batch}->"
               f"{max(p.global_batch for p in plan.phases)} samples read every one of the "
               f"{args.train_samples} train samples once; a loader rebuilt at step "
               f"{resume_at}'s consumed samples reads the same")



def check_parallel_layout(config):
    """TP 2 + sequence parallel + PP 2 with virtual stages + CP 2 + distributed optimizer +
    torch_dist on 64 ranks: Megatron-LM's parser derives DP 8, and every iteration of the
    plan (rounded for the interleaved schedule) is what the calculator and scheduler give."""
    import megatron.training.arguments as arguments

    name = "layout:tp2-sp-pp2-vpp2-cp2-distopt-world64"
    real_arch = getattr(arguments, "get_device_arch_version", None)
    arguments.get_device_arch_version = lambda: 9  # a CUDA query: answer "Hopper"
    os.environ["CUDA_DEVICE_MAX_CONNECTIONS"] = "1"
    try:
        result = parse(seesaw_argv(config, extra=[
            "--num-layers", "12", "--tensor-model-parallel-size", "2", "--sequence-parallel",
            "--pipeline-model-parallel-size", "2", "--num-virtual-stages-per-pipeline-rank",
            "2", "--context-parallel-size", "2", "--use-distributed-optimizer",
            "--ckpt-format", "torch_dist"]), world_size=64)
    finally:
        if real_arch is not None:
            arguments.get_device_arch_version = real_arch
    if result.code != 0:
        return report("FAIL", name, f"exit {result.code}: {result.stderr.strip()[-400:]}")
    args = result.args
    plan = plan_for(args)
    optimizer, scheduler = build_scheduler(args)
    replay = Replay(args, scheduler, optimizer)
    replay.run(0)
    steps, off, extra = compare_with_plan(plan, replay.records, args.data_parallel_size,
                                          args.micro_batch_size)
    counts = {record[2] for record in replay.records.values()}
    odd = sorted(count for count in counts if count % 2)
    ok = (args.data_parallel_size, args.virtual_pipeline_model_parallel_size) == (8, 2) and \
        not off and not extra and not odd and args.sequence_parallel
    report("PASS" if ok else "FAIL", name,
           f"tp {args.tensor_model_parallel_size}, sp {args.sequence_parallel}, pp "
           f"{args.pipeline_model_parallel_size} x vpp "
           f"{args.virtual_pipeline_model_parallel_size}, cp {args.context_parallel_size}, "
           f"dp {args.data_parallel_size}: {len(off)} of {steps} iterations off the plan, "
           f"odd micro-batch counts {odd[:3] or 'none'}")


def check_real_forward_backward(config):
    """The checkout's own get_forward_backward_func() schedule (no pipelining, one gloo rank)
    on a stub model, at every plan step whose micro-batch count differs from the step before
    and at the short last step: it runs exactly get_num_microbatches() micro-batches, each
    the next micro-batch of the step's samples."""
    import torch
    from megatron.core.num_microbatches_calculator import (get_num_microbatches,
                                                           update_num_microbatches)
    from megatron.core.pipeline_parallel import get_forward_backward_func
    from megatron.core.transformer.transformer_config import TransformerConfig

    name = "schedule:real-forward-backward"
    one_rank_process_group()
    result = parse(seesaw_argv(config), world_size=1)
    if result.code != 0:
        return report("FAIL", name, result.stderr.strip()[-300:])
    args = result.args
    plan = plan_for(args)
    model = torch.nn.Linear(1, 1)
    model.config = TransformerConfig(num_layers=1, hidden_size=4, num_attention_heads=1)
    model.model_type = None
    model.set_input_tensor = lambda tensor: None
    seen = []

    def forward_step(data_iterator, model):
        first = next(data_iterator)
        seen.append(first)
        output = model(torch.ones(args.micro_batch_size, 1))
        return output, lambda out: (out.sum() * 0, {})

    steps = list(plan.iter_steps())
    checked, problems, previous = 0, [], None
    for index, (_, tokens, setting) in enumerate(steps):
        if setting.grad_accum == previous and index != len(steps) - 1:
            continue
        previous = setting.grad_accum
        consumed = tokens // plan.seq_length
        update_num_microbatches(consumed, consistency_check=True)
        count = get_num_microbatches()
        seen.clear()
        starts = iter(range(consumed, consumed + setting.global_batch, args.micro_batch_size))
        with cuda_to_cpu():
            get_forward_backward_func()(
                forward_step_func=forward_step, data_iterator=starts, model=model,
                num_microbatches=count, seq_length=plan.seq_length,
                micro_batch_size=args.micro_batch_size, forward_only=False)
        expected = list(range(consumed, consumed + setting.global_batch,
                              args.micro_batch_size))
        if seen != expected:
            problems.append(f"step {index}: {len(seen)} micro-batches, expected "
                            f"{len(expected)}")
        checked += 1
    report("FAIL" if problems else "PASS", name,
           "; ".join(problems[:2]) or
           f"{get_forward_backward_func().__name__} ran {checked} planned steps (every change "
           f"of the micro-batch count, the last step of {steps[-1][2].global_batch} samples "
           "included) with exactly their micro-batches")


def run_pretrain_gpt(checkout, argv) -> None:
    """``python pretrain_gpt.py ARGV`` of the patched copy, with the CPU stubs."""
    import runpy

    install_stubs()
    os.environ.setdefault("WORLD_SIZE", "8")
    sys.argv = ["pretrain_gpt.py", *argv]
    runpy.run_path(os.path.join(checkout, "pretrain_gpt.py"), run_name="__main__")


def pretrain_gpt(checkout, argv):
    import subprocess

    command = [sys.executable, "-W", "ignore", os.path.abspath(__file__), checkout,
               "--pretrain-gpt", *MODEL_ARGS, *argv]
    env = dict(os.environ, WORLD_SIZE="8", RANK="0", LOCAL_RANK="0")
    return subprocess.run(command, capture_output=True, text=True, cwd=checkout, env=env,
                          timeout=600)


def check_pretrain_gpt(checkout, config, tmp):
    """The real entry point: a bad input ends in one line; a good one gets past parsing."""
    missing = os.path.join(tmp, "missing.json")
    done = pretrain_gpt(checkout, seesaw_argv(missing))
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    ok = done.returncode == 2 and len(lines) == 1 and lines[0].startswith("--seesaw-config:")
    report("PASS" if ok else "FAIL", "pretrain_gpt.py:bad-input",
           f"exit {done.returncode}, stderr {lines if len(lines) < 4 else lines[-3:]}")
    done = pretrain_gpt(checkout, seesaw_argv(config))
    startup = [line for line in done.stdout.splitlines()
               if line.startswith(f"[seesaw] {config}")]
    cuda = "Megatron requires CUDA" in done.stderr
    ok = len(startup) == 1 and "train samples" in startup[0] and cuda
    report("PASS" if ok else "FAIL", "pretrain_gpt.py:start",
           f"start-up line {startup}; then stops at initialize_megatron's CUDA check on CPU: "
           f"{cuda}")


def main(argv) -> int:
    checkout = os.path.abspath(argv[1])
    if argv[2:3] == ["--pretrain-gpt"]:
        run_pretrain_gpt(checkout, argv[3:])
        return 0
    stubbed = install_stubs()
    import megatron.core
    import megatron.training

    for module in (megatron.training, megatron.core):
        if not os.path.abspath(module.__file__).startswith(checkout + os.sep):
            print(f"FAIL setup: {module.__name__} comes from {module.__file__}, not {checkout}")
            return 1
    print(f"python {sys.version.split()[0]}; megatron.training and megatron.core from "
          f"{checkout}; stubbed: {', '.join(stubbed) or 'nothing'}", flush=True)
    import warnings

    warnings.simplefilter("ignore")
    logging.disable(logging.INFO)  # megatron's INFO lines (calculator, tokenizer)
    configs = sorted(glob.glob(os.path.join(REPO, "ds_configs", "*_seesaw.json")))
    main_config = os.path.join(REPO, "ds_configs", "150m_b256_seesaw.json")
    with tempfile.TemporaryDirectory() as tmp:
        checks = [(f"shipped:{os.path.basename(path)}", check_shipped_config, (path,))
                  for path in configs]
        checks += [("replay", check_skip_and_resume, (main_config,)),
                   ("layout:gtp-weight-remat", check_gtp, (main_config,)),
                   ("lr:optimizer-cuda-graph-tensor", check_cuda_graph_lr, (main_config,)),
                   ("checkpoint:no-save-at-microbatch-change",
                    check_no_microbatch_checkpoint, (main_config,)),
                   ("length", check_lengths, (main_config,)),
                   ("bad", bad_inputs, (main_config, tmp)),
                   ("pipeline:interleaved-pp2-vpp2-dp8", check_interleaved_pipeline,
                    (main_config,)),
                   ("bad:frozen", frozen_microbatch_inputs, (main_config,)),
                   ("bad:conflicts", conflict_inputs, (main_config,)),
                   ("resume", check_resume_refusals, (main_config, tmp)),
                   ("resume:seesaw-checkpoint-without-config",
                    check_seesaw_checkpoint_without_config, ()),
                   ("interval", check_token_intervals, (main_config, tmp)),
                   ("log:seesaw-metrics", check_seesaw_metrics, (main_config,)),
                   ("checkpoint:real", real_checkpoints, (main_config, tmp)),
                   ("layout:tp2-sp-pp2-vpp2-cp2-distopt-world64", check_parallel_layout,
                    (main_config,)),
                   ("schedule:real-forward-backward", check_real_forward_backward,
                    (os.path.join(REPO, "ds_configs", "tiny_seesaw.json"),)),
                   ("data:real-sampler", check_real_samplers,
                    (os.path.join(REPO, "ds_configs", "tiny_seesaw.json"),)),
                   ("pretrain_gpt.py", check_pretrain_gpt, (checkout, main_config, tmp))]
        for name, check, check_args in checks:
            try:
                check(*check_args)
            except Exception:  # noqa: BLE001 - report and go on with the other checks
                report("FAIL", name, traceback.format_exc().replace("\n", " | "))
    print(f"{RESULTS['PASS']} passed, {RESULTS['FAIL']} failed, {RESULTS['SKIP']} skipped",
          flush=True)
    return 1 if RESULTS["FAIL"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
