"""``seesaw-ds calibrate``: measure a throughput file for ``seesaw-ds plan --throughput``."""

from __future__ import annotations

import argparse

from seesaw_ds.atomic_files import write_json_atomic

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "calibrate",
        help="measure fwd+bwd per micro-batch size, the optimizer step and all-reduce cost",
        description="Measure, on this machine, forward+backward seconds per micro-batch size, "
        "one optimizer step and the all-reduce cost (alpha-beta) at the model's gradient "
        "size; write the throughput JSON that `seesaw-ds plan --throughput` reads. Run it "
        "under torchrun/deepspeed on several ranks to measure the real interconnect.",
    )
    parser.add_argument("--run-config", required=True, help="YAML run config (model shape)")
    parser.add_argument("--deepspeed_config", "--deepspeed-config", dest="deepspeed_config",
                        required=True, help="DeepSpeed JSON config (seq length, bf16)")
    parser.add_argument("--out", required=True, help="throughput JSON to write")
    parser.add_argument("--micro", type=int, nargs="+", default=None,
                        help="micro-batch sizes (default: powers of two up to "
                        "seesaw.max_micro_batch, else 16)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats per piece")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--nccl-tests", nargs="+", default=(), metavar="OUT.txt",
                        help="nccl-tests all_reduce_perf outputs (one node; optionally one "
                        "across nodes) to use as the network instead of measuring it here")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from seesaw_ds.calibrate import calibrate

    data = calibrate(args.run_config, args.deepspeed_config, args.micro, args.repeats,
                     progress=not args.no_progress, nccl_tests=args.nccl_tests)
    rank = 0
    try:
        import torch.distributed as dist

        rank = dist.get_rank() if dist.is_initialized() else 0
    except ImportError:
        pass
    if rank == 0:
        write_json_atomic(args.out, data, indent=2)
        print(f"throughput written to {args.out} ({data['device']}, all-reduce: "
              f"{data['allreduce_source']})")
    return 0
