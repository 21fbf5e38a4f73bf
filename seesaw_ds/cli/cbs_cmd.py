"""``seesaw-ds cbs``: measure the critical batch size of a run by branching from its
checkpoints (Merrill et al., arXiv 2505.23971); see ``docs/cbs.md``."""

from __future__ import annotations

import argparse
import os

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "cbs",
        help="measure the critical batch by branching from a run's checkpoints",
        description="From each checkpoint of a finished (or stopped) run of `python -m "
        "seesaw_ds.train`, train short branches at several constant batches with the LR "
        "rule lr_ckpt x sqrt(B / B_ckpt) and a fixed token budget; the critical batch at "
        "that checkpoint is the largest batch whose validation loss after the branch is "
        "within --tolerance of the smallest batch's. Writes OUT/cbs.json and OUT/cbs.png "
        "(critical batch against tokens with a power-law fit). Each branch is a normal run "
        "in OUT/t<tokens>/B<batch>/, skipped when finished: rerun to resume.",
    )
    parser.add_argument("--run-config", required=True, help="the base run's YAML run config")
    parser.add_argument("--deepspeed_config", "--deepspeed-config", dest="deepspeed_config",
                        required=True, help="the base run's DeepSpeed JSON config")
    parser.add_argument("--base-output-dir", default=None,
                        help="the base run's output dir, if it was overridden with "
                        "--output-dir (its checkpoints are read from there)")
    parser.add_argument("--out", required=True, help="folder for the branches and results")
    parser.add_argument("--batches", required=True,
                        help="comma-separated global batches to branch at, e.g. 8,16,32,64")
    parser.add_argument("--branch-tokens", required=True,
                        help="tokens each branch trains (rounded up to whole steps of "
                        "every batch), e.g. 2e4")
    parser.add_argument("--tolerance", type=float, default=0.01,
                        help="relative loss tolerance against the smallest batch (0.01)")
    parser.add_argument("--max-tokens", default=None,
                        help="use checkpoints up to this token count only")
    parser.add_argument("--at-tokens", default=None,
                        help="comma-separated token counts: branch only from the checkpoint "
                        "nearest each (e.g. 6e4,2.5e5,1e6); default every checkpoint")
    parser.add_argument("--nproc", type=int, default=1,
                        help="ranks per branch (torchrun when > 1)")
    parser.add_argument("--keep-checkpoints", action="store_true",
                        help="keep each finished branch's checkpoints (deleted by default)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from seesaw_ds.cbs.branching import parse_batches
    from seesaw_ds.cbs.measure import measure, plot_cbs
    from seesaw_ds.config import parse_token_count
    from seesaw_ds.errors import SeesawConfigError

    batches = parse_batches(args.batches)
    tokens = parse_token_count("--branch-tokens", args.branch_tokens)
    max_tokens = (None if args.max_tokens is None
                  else parse_token_count("--max-tokens", args.max_tokens))
    at_tokens = (None if args.at_tokens is None else
                 [parse_token_count("--at-tokens", part) for part in
                  str(args.at_tokens).split(",") if part.strip()])
    if at_tokens is not None and not at_tokens:
        raise SeesawConfigError(f"cbs: --at-tokens = {args.at_tokens!r} lists no token "
                                "count; give e.g. --at-tokens 6e4,2.5e5,1e6.")
    if args.nproc < 1:
        raise SeesawConfigError(f"cbs: --nproc = {args.nproc} must be >= 1.")
    record = measure(args.run_config, args.deepspeed_config, args.out, batches, tokens,
                     args.tolerance, base_output_dir=args.base_output_dir,
                     max_tokens=max_tokens, at_tokens=at_tokens, nproc=args.nproc,
                     keep_checkpoints=args.keep_checkpoints)
    png = os.path.join(args.out, "cbs.png")
    plot_cbs(record, png)
    print(f"cbs: {os.path.join(args.out, 'cbs.json')} and {png}")
    for row in record["checkpoints"]:
        print(f"  {row['tokens']:>12,} tokens  B* = {row['critical_batch']}"
              + ("+" if row["censored"] else ""))
    fit = record["fit"]
    print(f"  fit: B*(t) = {fit['a']:.4g} x t^{fit['b']:.3f}")
    return 0
