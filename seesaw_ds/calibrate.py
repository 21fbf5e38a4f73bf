"""Measure a throughput file on the hardware this runs on (``seesaw-ds calibrate``).

For the run config's model and the DeepSpeed config's sequence length and precision it
measures, on one device (the GPU when there is one, else the CPU):

1. forward + backward seconds of one micro-batch at several micro-batch sizes,
2. one AdamW step (torch's fused kernel on a GPU),
3. the all-reduce cost: inside the process group when launched on several ranks
   (``torchrun``/``deepspeed``: the real interconnect), otherwise between two local gloo
   processes (loopback), fitted to the ring all-reduce over the ``r`` ranks that took the
   timings, ``t = 2 (r-1)/r * bytes / busbw + 2 (r-1) * latency``
   (:func:`seesaw_ds.layout.network.fit_ring`); or, with ``nccl_tests``, read from
   nccl-tests' ``all_reduce_perf`` output (one node: inside a node; several: across nodes),

and writes the JSON that ``seesaw-ds plan --throughput`` reads
(:mod:`seesaw_ds.layout.throughput`), plus how it was measured.

Limitations:
    The optimizer is torch's AdamW, not DeepSpeed's FusedAdam or a ZeRO-sharded step; the
    gradients are all-reduced unsharded. Single-process all-reduce figures are a loopback,
    not a network: give the cluster's nccl-tests output instead (or hand-edit the file).
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Callable, Dict, List, Optional, Sequence

from seesaw_ds.distributed import free_port, register_clean_exit
from seesaw_ds.errors import SeesawConfigError

__all__ = ["default_micro_sizes", "measure_compute", "measure_allreduce", "fit_alpha_beta",
           "network_from_nccl_tests", "calibrate"]

_ALLREDUCE_SIZES = (2**12, 2**16, 2**20, 2**22)


def default_micro_sizes(ds_config: dict) -> List[int]:
    """Powers of two up to the config's ``seesaw.max_micro_batch`` (else its micro-batch,
    at least 16)."""
    section = ds_config.get("seesaw") or {}
    largest = section.get("max_micro_batch") or max(
        16, int(ds_config.get("train_micro_batch_size_per_gpu") or 1))
    sizes, size = [], 1
    while size <= largest:
        sizes.append(size)
        size *= 2
    return sizes


def _timer(device) -> Callable[[Callable[[], None], int], float]:
    import torch

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def timed(fn, repeats: int) -> float:
        fn()  # warm-up
        sync()
        samples = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            sync()
            samples.append(time.perf_counter() - start)
        return statistics.median(samples)

    return timed


def measure_compute(shape: str, vocab_size: int, seq_length: int, micro_sizes: Sequence[int],
                    repeats: int, bf16: bool, tick: Callable[[str], None] = lambda s: None):
    """(micro_batch_seconds, optimizer_seconds, gradient_bytes, device name)."""
    import torch

    from seesaw_ds.model.shapes import build_model

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if bf16 else torch.float32
    model = build_model(shape, vocab_size=vocab_size, seq_length=seq_length).to(device, dtype)
    fused = {"fused": True} if device.type == "cuda" else {}
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), **fused)
    timed = _timer(device)
    seconds: Dict[int, float] = {}
    for micro in micro_sizes:
        tick(f"fwd+bwd micro {micro}")
        tokens = torch.randint(0, vocab_size, (micro, seq_length), device=device)

        def step():
            model(tokens, tokens).loss.backward()

        seconds[micro] = timed(step, repeats)
    tick("optimizer step")
    optimizer_seconds = timed(optimizer.step, repeats)
    grad_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return seconds, optimizer_seconds, grad_bytes, name


def fit_alpha_beta(times: Dict[int, float], ranks: int = 2):
    """Ring all-reduce fit over ``ranks`` ranks: (latency per hop, bus bytes per second)."""
    from seesaw_ds.layout.network import fit_ring

    return fit_ring(times, ranks)


def network_from_nccl_tests(paths: Sequence[str]) -> dict:
    """A throughput file's ``network`` object from nccl-tests ``all_reduce_perf`` outputs:
    a one-node run gives ``intra_node``, a multi-node run ``inter_node`` (its busbw)."""
    from seesaw_ds.layout.nccl_tests import parse_all_reduce_perf

    network: dict = {}
    for path in paths:
        try:
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
        except OSError as error:
            raise SeesawConfigError(f"--nccl-tests {path}: {error.strerror}.") from None
        result = parse_all_reduce_perf(text, f"--nccl-tests {path}")
        key = "intra_node" if result.nodes == 1 else "inter_node"
        if key in network:
            raise SeesawConfigError(f"--nccl-tests: two {key.replace('_', '-')} runs; give one "
                                    "run on one node and at most one across nodes.")
        network[key] = {"bus_bytes_per_second": result.bus_bytes_per_second,
                        "latency_seconds": result.latency_seconds,
                        "source": f"{path}: {result.ranks} ranks on {result.nodes} node(s)"}
        if result.nodes > 1:
            network["gpus_per_node"] = result.gpus_per_node
    if "intra_node" not in network:
        raise SeesawConfigError("--nccl-tests needs a one-node all_reduce_perf run (inside a "
                                "node), optionally with one across nodes.")
    return network


def _allreduce_times(sizes: Sequence[int], repeats: int, device) -> Dict[int, float]:
    import torch
    import torch.distributed as dist

    timed = _timer(device)
    results = {}
    for size in sizes:
        tensor = torch.ones(max(1, size // 4), device=device)
        results[size] = timed(lambda: dist.all_reduce(tensor), repeats)
    return results


def _loopback_worker(rank: int, port: int, sizes, repeats: int, queue) -> None:
    import torch
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    register_clean_exit()
    results = _allreduce_times(sizes, repeats, torch.device("cpu"))
    if rank == 0:
        queue.put(results)
    dist.barrier()
    dist.destroy_process_group()


def measure_allreduce(sizes: Sequence[int], repeats: int):
    """All-reduce seconds per size and where they come from: the running process group when
    there is one with >= 2 ranks, else two local gloo processes."""
    import torch
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        device = torch.device("cuda", torch.cuda.current_device()) \
            if dist.get_backend() == "nccl" else torch.device("cpu")
        times = _allreduce_times(sizes, repeats, device)
        return times, f"{dist.get_backend()}, {dist.get_world_size()} ranks", \
            dist.get_world_size()
    import torch.multiprocessing as mp

    port = free_port()
    context = mp.get_context("spawn")
    queue = context.Queue()
    workers = [context.Process(target=_loopback_worker, args=(r, port, sizes, repeats, queue))
               for r in range(2)]
    for worker in workers:
        worker.start()
    times = queue.get(timeout=600)
    for worker in workers:
        worker.join()
    return times, "gloo loopback, 2 local processes", 2


def calibrate(run_config: str, ds_config_path: str, micro_sizes: Optional[Sequence[int]] = None,
              repeats: int = 3, progress: bool = True,
              nccl_tests: Sequence[str] = ()) -> dict:
    """Measure and return the throughput mapping (validated like a file); with
    ``nccl_tests`` the network comes from those outputs instead of a measurement."""
    from seesaw_ds.config import load_config_file, seesaw_section_of
    from seesaw_ds.layout import throughput_from_dict

    shape, vocab = _model_of(run_config)
    ds_config = load_config_file(ds_config_path)
    section = seesaw_section_of(ds_config)
    sizes = sorted(set(micro_sizes or default_micro_sizes(ds_config)))
    if not sizes or sizes[0] < 1:
        raise SeesawConfigError(f"--micro {sizes} must list positive micro-batch sizes.")
    if repeats < 1:
        raise SeesawConfigError(f"--repeats = {repeats} must be >= 1.")
    bf16 = bool((ds_config.get("bf16") or {}).get("enabled"))
    network = network_from_nccl_tests(nccl_tests) if nccl_tests else None
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(sizes) + 2, desc="calibrate", unit="piece")

    def tick(label: str) -> None:
        if bar is not None:
            if bar.n or label != f"fwd+bwd micro {sizes[0]}":
                bar.update(1)
            bar.set_postfix_str(label)

    seconds, optimizer_seconds, grad_bytes, device = measure_compute(
        shape, vocab, section.seq_length, sizes, repeats, bf16, tick)
    tick("all-reduce")
    if network is None:
        all_sizes = sorted(set(_ALLREDUCE_SIZES) | {grad_bytes})
        times, source, ranks = measure_allreduce(all_sizes, repeats)
        alpha, bandwidth = fit_alpha_beta(times, ranks)
    if bar is not None:
        bar.update(bar.total - bar.n)
        bar.close()
    data = {
        "source": "measured by seesaw-ds calibrate",
        "device": device,
        "model_shape": shape,
        "seq_length": section.seq_length,
        "dtype": "bf16" if bf16 else "fp32",
        "micro_batch_seconds": {str(size): value for size, value in seconds.items()},
        "optimizer_seconds": optimizer_seconds,
        "gradient_bytes": grad_bytes,
    }
    if network is None:
        data.update({
            "allreduce_source": source,
            "allreduce_seconds": {str(size): value for size, value in times.items()},
            "allreduce_latency_seconds": alpha,
            "allreduce_bytes_per_second": bandwidth,
        })
    else:
        data.update({"allreduce_source": "nccl-tests: " + ", ".join(nccl_tests),
                     "network": network})
    throughput_from_dict(data, "measured throughput")
    return data


def _model_of(run_config: str):
    """(shape, vocab size) from a run config's ``model`` and ``data`` sections only, so that
    the launch templates with ``${VAR}`` paths work unresolved. With a tokenizer model the
    vocabulary is the shape's default (the tokenizer is not read here)."""
    from seesaw_ds.config import load_config_file
    from seesaw_ds.model.shapes import model_config

    raw = load_config_file(run_config)
    model, data = raw.get("model") or {}, raw.get("data") or {}
    if not isinstance(model, dict) or not isinstance(data, dict):
        raise SeesawConfigError(f"run config {run_config}: model and data must be mappings.")
    shape = model.get("shape", "tiny")
    default = model_config(shape).vocab_size  # an unknown shape is refused here
    vocab = data.get("vocab_size", 2048) if data.get("tokenizer_model") is None else default
    if isinstance(vocab, bool) or not isinstance(vocab, int) or vocab < 1:
        raise SeesawConfigError(f"run config {run_config}: data.vocab_size = {vocab!r} must "
                                "be a positive integer.")
    return shape, vocab
