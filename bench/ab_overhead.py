"""A/B benchmark: plain ``deepspeed.initialize`` vs ``seesaw_ds.initialize`` (one table).

    python bench/ab_overhead.py                    # 2 CPU ranks, 120 interleaved rounds
    python bench/ab_overhead.py --rounds 200

Same model (the tiny GPT, one copy per engine from the same seed), same data (random tokens,
map-style), same DeepSpeed config (ZeRO-1, torch AdamW, ``csv_monitor`` on), on 2 ranks
under torchrun. Four engines live in the same processes:

- ``plain B0`` / ``plain 2xB0``: ``deepspeed.initialize`` with a constant batch, DeepSpeed's
  own loader (``training_data=``) and monitor;
- ``seesaw constant``: ``seesaw_ds.initialize`` with a constant-batch plan at B0 (its loader,
  hook, scheduler and monitor events);
- ``seesaw growing``: ``seesaw_ds.initialize`` with a Seesaw plan whose batch doubles
  (B0 -> 2xB0) halfway through the timed rounds.

After warm-up, every **round** runs one optimizer step of each engine, in an order that
rotates from round to round, so the four steps of a round see the same machine (other jobs,
clock, caches): the comparison is paired step by step, not run against run. A step is timed
from fetching its first micro-batch to the ``engine.step()`` that closes it (loader, hook,
scheduler and monitor writes inside), on two clocks: wall time and the main thread's CPU time
(``time.thread_time``). Ratios per round: ``seesaw constant / plain B0``, and ``seesaw
growing`` over the plain engine of the batch it trained in that round; the table gives the
median over rounds with a bootstrap 95% interval of that median. Target: < 1.005.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SEQ, VOCAB, B0, MICRO, WARMUP = 128, 2048, 16, 4, 5
VARIANTS = ("plain_B0", "plain_2xB0", "seesaw_constant", "seesaw_growing")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=120,
                        help="timed rounds (one step of every engine each)")
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--out", default=None, help="(internal) result file")
    parser.add_argument("--json", default=None, help="write the raw timings here")
    parser.add_argument("--local_rank", type=int, default=int(os.environ.get("LOCAL_RANK", 0)))
    return parser.parse_args(argv)


def ds_config(batch: int, monitor_dir: str, name: str, seesaw=None) -> dict:
    config = {
        "train_batch_size": batch, "train_micro_batch_size_per_gpu": MICRO,
        "gradient_clipping": 1.0, "steps_per_print": 10 ** 9,
        "optimizer": {"type": "AdamW", "params": {"lr": 1e-3, "betas": [0.9, 0.95],
                                                  "torch_adam": True}},
        "zero_optimization": {"stage": 1},
        "csv_monitor": {"enabled": True, "output_path": monitor_dir, "job_name": name},
    }
    if seesaw is not None:
        config["seesaw"] = seesaw
    return config


def seesaw_section(growing: bool, rounds: int) -> dict:
    """Constant plan over more tokens than the run needs, or Seesaw over a step-decay base
    whose one milestone (LR / 2 -> batch x 2) falls after WARMUP + rounds / 2 steps at B0."""
    first = (WARMUP + rounds // 2) * B0 * SEQ
    total = (first + (rounds + 2) * 2 * B0 * SEQ if growing
             else (WARMUP + rounds + 2) * B0 * SEQ)
    section = {"total_tokens": total, "seq_length": SEQ, "data_seed": 1}
    if not growing:
        return dict(section, batch_schedule="constant")
    return dict(section, batch_schedule="seesaw", batch_growth=2.0,
                lr_schedule={"type": "step", "milestones": [first], "gamma": 0.5})


class RandomTokens:
    """Map-style dataset of fixed random sequences, identical on every rank."""

    def __init__(self, size: int) -> None:
        import torch

        generator = torch.Generator().manual_seed(0)
        self.tokens = torch.randint(0, VOCAB, (size, SEQ), generator=generator)

    def __len__(self) -> int:
        return len(self.tokens)

    def __getitem__(self, index):
        row = self.tokens[index]
        return {"tokens": row, "labels": row}


class Engine:
    """One engine of the A/B, with its loader; ``step()`` times one optimizer step."""

    def __init__(self, variant: str, rounds: int, local_rank: int, monitor_dir: str) -> None:
        import deepspeed
        import torch

        import seesaw_ds
        from seesaw_ds.model.shapes import build_model

        torch.manual_seed(0)
        model = build_model("tiny", vocab_size=VOCAB, seq_length=SEQ)
        data = RandomTokens(2 * (WARMUP + rounds + 2) * 2 * B0)
        args = argparse.Namespace(local_rank=local_rank, deepspeed_config=None)
        self.plain = variant.startswith("plain")
        if self.plain:
            config = ds_config(2 * B0 if variant == "plain_2xB0" else B0, monitor_dir, variant)
            initialize = deepspeed.initialize
        else:
            config = ds_config(B0, monitor_dir, variant,
                               seesaw_section(variant == "seesaw_growing", rounds))
            initialize = seesaw_ds.initialize
        self.engine, _, loader, _ = initialize(
            args=args, model=model, model_parameters=model.parameters(), training_data=data,
            config=config)
        self.iterator = iter(loader)

    def batch(self) -> int:
        """The global batch of the next step."""
        engine = self.engine
        return engine.train_batch_size() if self.plain else engine.seesaw.setting.global_batch

    def step(self) -> tuple:
        """(wall seconds, main-thread CPU seconds, global batch) of one optimizer step."""
        engine, batch = self.engine, self.batch()
        started, cpu_started = time.perf_counter(), time.thread_time()
        while True:
            batch_data = next(self.iterator)
            out = engine(batch_data["tokens"].to(engine.device),
                         batch_data["labels"].to(engine.device))
            engine.backward(out.loss)
            closing = engine.is_gradient_accumulation_boundary()
            engine.step()
            if closing:
                break
        return time.perf_counter() - started, time.thread_time() - cpu_started, batch


def worker(args) -> None:
    import deepspeed
    import torch.distributed as dist

    deepspeed.init_distributed(dist_backend="gloo")
    rank = dist.get_rank()
    monitor = tempfile.mkdtemp(prefix="ab_monitor_")
    engines = {name: Engine(name, args.rounds, args.local_rank, monitor) for name in VARIANTS}
    for engine in engines.values():
        for _ in range(WARMUP):
            engine.step()
    rounds = []
    for index in range(args.rounds):
        order = VARIANTS[index % 4:] + VARIANTS[:index % 4]  # rotate who goes first
        dist.barrier()
        rounds.append({name: engines[name].step() for name in order})
        if rank == 0 and (index + 1) % 20 == 0:
            print(f"A/B: {index + 1}/{args.rounds} rounds", flush=True)
    for engine in engines.values():
        engine.engine.destroy()
    if rank == 0:
        Path(args.out).write_text(json.dumps(rounds))
    dist.barrier()
    dist.destroy_process_group()


def _median_interval(values: list, draws: int = 2000) -> tuple:
    """Median and a bootstrap 95% interval of the median (fixed seed: reproducible)."""
    import random

    generator = random.Random(0)
    medians = sorted(statistics.median(generator.choices(values, k=len(values)))
                     for _ in range(draws))
    return statistics.median(values), medians[int(0.025 * draws)], medians[int(0.975 * draws)]


def summarize(rounds: list, column: int) -> dict:
    """Paired per-round ratios of one clock: column 0 wall seconds, 1 main-thread CPU."""
    constant, growing = [], []
    for entry in rounds:
        plain = {B0: entry["plain_B0"][column], 2 * B0: entry["plain_2xB0"][column]}
        constant.append(entry["seesaw_constant"][column] / plain[B0])
        step = entry["seesaw_growing"]
        growing.append(step[column] / plain[step[2]])
    steps = {name: statistics.median(entry[name][column] for entry in rounds)
             for name in VARIANTS}
    grown = sum(1 for entry in rounds if entry["seesaw_growing"][2] == 2 * B0)
    return {"median_step_seconds": steps, "constant": _median_interval(constant),
            "growing": _median_interval(growing), "rounds": len(rounds),
            "growing_rounds_at_2xB0": grown}


def main() -> int:
    args = parse_args()
    if "LOCAL_RANK" in os.environ:
        worker(args)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "ab.json")
        env = dict(os.environ, DS_ACCELERATOR=os.environ.get("DS_ACCELERATOR", "cpu"),
                   OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node",
                   str(args.nproc), str(Path(__file__).resolve()), "--rounds",
                   str(args.rounds), "--out", out]
        print(f"A/B: 4 engines, {args.rounds} interleaved rounds on {args.nproc} ranks ...",
              flush=True)
        subprocess.run(command, check=True, env=env, cwd=REPO)
        rounds = json.loads(Path(out).read_text())
    wall, cpu = summarize(rounds, 0), summarize(rounds, 1)
    print(f"\ntiny GPT (1.3M params), seq {SEQ}, B0 {B0} = {args.nproc} ranks x micro {MICRO} x "
          f"GAS {B0 // (args.nproc * MICRO)}, ZeRO-1, csv_monitor on; {wall['rounds']} rounds "
          f"of one step per engine ({wall['growing_rounds_at_2xB0']} of them with the growing "
          f"run at {2 * B0})")
    print(f"{'variant':<36} {'wall ms':>8} {'CPU ms':>8}")
    print("-" * 54)
    labels = {"plain_B0": f"deepspeed.initialize, B={B0}",
              "plain_2xB0": f"deepspeed.initialize, B={2 * B0}",
              "seesaw_constant": f"seesaw_ds.initialize, constant {B0}",
              "seesaw_growing": f"seesaw_ds.initialize, {B0}->{2 * B0}"}
    for name in labels:
        print(f"{labels[name]:<36} {1000 * wall['median_step_seconds'][name]:>8.2f} "
              f"{1000 * cpu['median_step_seconds'][name]:>8.2f}")
    print(f"\n{'paired ratio: median over rounds [95% CI]':<44} {'wall':>22} {'CPU':>22}")
    for key, label in (("constant", "seesaw constant / plain"),
                       ("growing", "seesaw growing / plain at the same batch")):
        print(f"{label:<44} " + " ".join(
            f"{clock[key][0]:>7.4f} [{clock[key][1]:.4f}, {clock[key][2]:.4f}]"
            for clock in (wall, cpu)))
    worst = max(cpu["constant"][0], cpu["growing"][0])
    print(f"target < 1.005 (main-thread CPU time, medians): "
          f"{'met' if worst < 1.005 else 'MISSED'} ({worst:.4f})")
    if args.json:
        Path(args.json).write_text(json.dumps({"wall": wall, "cpu": cpu, "rounds": rounds},
                                              indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
