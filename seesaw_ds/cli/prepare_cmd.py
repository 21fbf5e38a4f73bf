"""``seesaw-ds prepare [INPUTS...] --out DIR``: tokenize a corpus for training.

Note:
    The data modules (and megatron-core, slow to import) load inside :func:`run`, so
    building the CLI parser stays fast.
"""

from __future__ import annotations

import argparse
import sys

from seesaw_ds.data.corpus import ENCODING_ERRORS, PARAGRAPHS, WHOLE_FILE
from seesaw_ds.errors import SeesawConfigError

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "prepare",
        help="train/load a tokenizer and write a megatron-core indexed dataset",
        description="Read text files (.txt, .py, .md, or .jsonl with a text field; .gz, .zst "
        "and .bz2 compressed .txt/.jsonl/.json read in place, streamed; a .txt "
        "file is split into documents at blank lines unless --doc-separator says otherwise), "
        "train a sentencepiece BPE tokenizer (or load one) and write DIR/corpus_text_document."
        "{bin,idx} plus a manifest. With no INPUTS the Python standard library's own "
        "sources are used, so no download is needed. Re-running with unchanged inputs and "
        "options reuses DIR; DIR prepared with other options or inputs is refused (one line "
        "naming the option) unless --force.",
    )
    parser.add_argument("inputs", nargs="*", metavar="INPUT",
                        help="files, directories or globs (quote globs); default: the "
                        "Python standard library's .py files")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--vocab-size", type=int, default=None,
                        help="BPE vocabulary size to train (default 2048)")
    parser.add_argument("--tokenizer-model", metavar="FILE.model", default=None,
                        help="use this sentencepiece model instead of training one")
    parser.add_argument("--text-field", default="text",
                        help="JSONL key that holds the text (default: text)")
    parser.add_argument("--max-bytes", type=int, default=None,
                        help="cap the corpus at this many bytes of text")
    parser.add_argument("--encoding", default="utf-8",
                        help="text encoding of the input files (default utf-8; e.g. latin-1, "
                        "cp1252)")
    parser.add_argument("--encoding-errors", default="strict", choices=ENCODING_ERRORS,
                        help="undecodable bytes: strict (error, default), replace (U+FFFD), "
                        "ignore (drop) or backslashreplace (\\xNN)")
    parser.add_argument("--doc-separator", default=PARAGRAPHS, metavar="SEP",
                        help=f"how .txt files split into documents: {PARAGRAPHS!r} (default: "
                        f"paragraphs), {WHOLE_FILE!r} (one document per file) or a literal "
                        "string such as '<|endoftext|>' (\\n, \\t understood)")
    parser.add_argument("--include-tests", action="store_true",
                        help="default corpus only: also use the stdlib's test folders")
    parser.add_argument("--seed", type=int, default=1234, help="tokenizer training seed")
    parser.add_argument("--workers", type=int, default=None, metavar="N",
                        help="tokenizer processes (default: this machine's cores); the output "
                        "is identical for any N")
    parser.add_argument("--seq-length", type=int, default=None,
                        help="also check that train and valid splits hold sequences of "
                        "this length")
    parser.add_argument("--split", default="98,2,0",
                        help="train,valid,test weights for the --seq-length check "
                        "(default 98,2,0)")
    parser.add_argument("--force", action="store_true", help="rebuild DIR, even when it is up to date or "
                        "was prepared with other options or inputs")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress: neither the bar (on a terminal) nor the plain "
                        "progress line every 30 s (elsewhere)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.max_bytes is not None and args.max_bytes < 1:
        raise SeesawConfigError(f"--max-bytes = {args.max_bytes} must be >= 1.")
    if args.seq_length is not None and args.seq_length < 1:
        raise SeesawConfigError(f"--seq-length = {args.seq_length} must be >= 1.")
    from seesaw_ds.data.prepare import prepare

    prepared = prepare(
        args.inputs or None,
        args.out,
        vocab_size=args.vocab_size,
        tokenizer_model=args.tokenizer_model,
        text_field=args.text_field,
        max_bytes=args.max_bytes,
        encoding=args.encoding,
        encoding_errors=args.encoding_errors,
        doc_separator=args.doc_separator,
        include_tests=args.include_tests,
        seed=args.seed,
        workers=args.workers,
        progress=not args.no_progress and sys.stderr.isatty(),  # no bar in a log file
        progress_interval=None if args.no_progress else 30.0,
        force=args.force,
    )
    if args.seq_length is not None:
        from seesaw_ds.data.gpt_data import build_gpt_datasets

        train, valid = build_gpt_datasets(prepared, args.seq_length, split=args.split)
        print(f"prepare: seq_length {args.seq_length}, split {args.split}: "
              f"{len(train)} train and {len(valid)} valid sequences per epoch")
    return 0
