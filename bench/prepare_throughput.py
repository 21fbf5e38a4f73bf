"""Tokenization throughput: ``seesaw-ds prepare`` against Megatron-LM's
``tools/preprocess_data.py``, same corpus, same tokenizer, same worker counts, one run.

    MEGATRON_LM_DIR=/path/to/Megatron-LM python bench/prepare_throughput.py [--mb 200]

The corpus is JSON lines made from the Python standard library's sources (blank-line
paragraphs, repeated until ``--mb`` MB), so it needs no download. The tokenizer is a
sentencepiece BPE model trained by ``prepare`` on a few MB of the same text (or
``--tokenizer-model``); Megatron reads it as ``GPTSentencePieceTokenizer`` (eod = ``</s>``,
like ours). For each worker count both tools run as separate processes; we record wall
seconds (process start to exit, imports included), tokens/s, tokens/s per worker, MB/s of
input, CPU seconds of the process tree (tokens per CPU second does not depend on how
busy the machine is, wall rates do), the peak resident memory of the whole process tree (sampled every 50 ms; forked
workers' shared pages count once per process) and whether the ``.bin``/``.idx`` files of
all runs are byte-identical. A table goes to stdout and the record to
``bench/records/prepare_throughput.{json,md}``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
RECORDS = REPO / "bench" / "records"


def make_corpus(path: Path, megabytes: float) -> dict:
    """JSON lines of stdlib paragraphs, repeated to ``megabytes`` MB of file."""
    from seesaw_ds.data.corpus import stdlib_files

    paragraphs = []
    for source in stdlib_files():
        with open(source, encoding="utf-8", errors="replace") as handle:
            paragraphs += [p for p in re.split(r"\n\s*\n", handle.read()) if p.strip()]
    lines = [json.dumps({"text": p}) + "\n" for p in paragraphs]
    target, written, documents = megabytes * 1e6, 0, 0
    with open(path, "w", encoding="utf-8") as out:
        while written < target:
            for line in lines:
                out.write(line)
                written += len(line.encode())
                documents += 1
                if written >= target:
                    break
    return {"bytes": path.stat().st_size, "documents": documents,
            "distinct_documents": len(lines)}


def _peak_tree_rss(process: psutil.Process, stop: threading.Event, peak: list) -> None:
    while not stop.is_set():
        try:
            members = [process] + process.children(recursive=True)
            total = 0
            for member in members:
                try:
                    total += member.memory_info().rss
                except psutil.Error:
                    pass
            peak[0] = max(peak[0], total)
        except psutil.Error:
            pass
        time.sleep(0.05)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(command, env) -> dict:
    """Wall seconds, CPU seconds of the whole process tree (workers are joined, so their
    time reaches us) and the tree's peak resident memory."""
    cpu = _children_cpu()
    started = time.perf_counter()
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, cwd=str(REPO))
    stop, peak = threading.Event(), [0]
    sampler = threading.Thread(target=_peak_tree_rss,
                               args=(psutil.Process(proc.pid), stop, peak), daemon=True)
    sampler.start()
    output, _ = proc.communicate()
    wall = time.perf_counter() - started
    stop.set()
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"{command[:4]} failed ({proc.returncode}):\n{output[-3000:]}")
    return {"wall_s": wall, "cpu_s": _children_cpu() - cpu, "peak_rss_mb": peak[0] / 2 ** 20}


def digest(prefix: str) -> dict:
    out = {}
    for suffix in ("bin", "idx"):
        sha = hashlib.sha256()
        with open(f"{prefix}.{suffix}", "rb") as handle:
            while block := handle.read(1 << 24):
                sha.update(block)
        out[suffix] = sha.hexdigest()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=200.0, help="corpus size (default 200)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--tokenizer-model", default=None)
    parser.add_argument("--vocab-size", type=int, default=8192)
    parser.add_argument("--megatron-lm", default=os.environ.get("MEGATRON_LM_DIR"),
                        help="Megatron-LM checkout (default $MEGATRON_LM_DIR)")
    parser.add_argument("--workdir", default=None, help="scratch folder (default: a temp dir)")
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    if not args.megatron_lm or not os.path.isfile(
            os.path.join(args.megatron_lm, "tools", "preprocess_data.py")):
        raise SystemExit("give a Megatron-LM checkout: MEGATRON_LM_DIR or --megatron-lm")
    work = Path(args.workdir or tempfile.mkdtemp(prefix="prepare_bench_"))
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, DS_ACCELERATOR="cpu", OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))

    corpus_path = work / "corpus.jsonl"
    corpus = make_corpus(corpus_path, args.mb)
    print(f"corpus: {corpus['bytes'] / 1e6:.1f} MB, {corpus['documents']} documents "
          f"({corpus['distinct_documents']} distinct paragraphs of the stdlib, repeated)")
    model = args.tokenizer_model
    if model is None:
        from seesaw_ds.data.prepare import prepare

        model = prepare(None, str(work / "tokenizer"), vocab_size=args.vocab_size,
                        max_bytes=8_000_000, progress=False,
                        log=lambda message: None).tokenizer_path
    from seesaw_ds.data.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(model)
    itemsize = 2 if tokenizer.vocab_size < 65500 else 4

    runs = []
    startup_corpus = work / "one_document.jsonl"
    startup_corpus.write_text(json.dumps({"text": "x = 1"}) + "\n")
    for workers in args.workers:
        ours = work / f"ours_w{workers}"
        command = [sys.executable, "-m", "seesaw_ds.cli.main", "prepare", str(corpus_path),
                   "--out", str(ours), "--tokenizer-model", model, "--workers", str(workers),
                   "--no-progress", "--force"]
        megatron_prefix = work / f"megatron_w{workers}"
        megatron = [sys.executable, str(REPO / "bench" / "_megatron_preprocess.py"),
                    args.megatron_lm, "--input", str(corpus_path), "--output-prefix",
                    str(megatron_prefix), "--tokenizer-type", "GPTSentencePieceTokenizer",
                    "--tokenizer-model", model, "--workers", str(workers), "--append-eod",
                    "--log-interval", "1000000"]
        for tool, cmd, prefix in (("seesaw-ds prepare", command,
                                   str(ours / "corpus_text_document")),
                                  ("Megatron-LM preprocess_data.py", megatron,
                                   f"{megatron_prefix}_text_document")):
            startup_cmd = [startup_corpus if part == str(corpus_path) else part for part in cmd]
            startup_cmd = [str(part) for part in startup_cmd]
            startup = timed(startup_cmd, env)["wall_s"]  # imports, pool start, one document
            result = timed(cmd, env)
            result["startup_s"] = startup
            tokens = os.path.getsize(f"{prefix}.bin") // itemsize
            result.update(tool=tool, workers=workers, tokens=tokens,
                          tokens_per_s=tokens / result["wall_s"],
                          tokens_per_s_per_worker=tokens / result["wall_s"] / workers,
                          tokens_per_s_after_startup=tokens / max(result["wall_s"] - startup, 1e-9),
                          tokens_per_cpu_s=tokens / result["cpu_s"],
                          mb_per_s=corpus["bytes"] / 1e6 / result["wall_s"],
                          sha256=digest(prefix))
            runs.append(result)
            print(f"{tool:32s} workers {workers}: {result['wall_s']:.1f} s, "
                  f"{result['tokens_per_s'] / 1e6:.2f}M tokens/s, peak {result['peak_rss_mb']:.0f} MB",
                  flush=True)

    identical = len({json.dumps(run["sha256"], sort_keys=True) for run in runs}) == 1
    rows = ["| tool | workers | wall s (startup s) | MB/s | tokens/s | tokens/s per worker | "
            "tokens/s after startup | CPU s (tree) | tokens per CPU s | peak RSS (tree) | "
            "speed-up vs 1 worker |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for run in runs:
        base = next(r for r in runs if r["tool"] == run["tool"] and r["workers"] == min(args.workers))
        rows.append(f"| {run['tool']} | {run['workers']} | {run['wall_s']:.1f} "
                    f"({run['startup_s']:.1f}) | "
                    f"{run['mb_per_s']:.2f} | {run['tokens_per_s'] / 1e6:.3f}M | "
                    f"{run['tokens_per_s_per_worker'] / 1e6:.3f}M | "
                    f"{run['tokens_per_s_after_startup'] / 1e6:.3f}M | {run['cpu_s']:.1f} | "
                    f"{run['tokens_per_cpu_s'] / 1e6:.3f}M | {run['peak_rss_mb']:.0f} MB | "
                    f"{base['wall_s'] / run['wall_s']:.2f}x |")
    ratios = []
    for workers in args.workers:
        ours, theirs = (next(r for r in runs if r["tool"].startswith(name) and r["workers"] == workers)
                        for name in ("seesaw", "Megatron"))
        ratios.append(f"{workers} worker(s): ours/Megatron throughput "
                      f"{theirs['wall_s'] / ours['wall_s']:.2f}x (wall), "
                      f"{ours['tokens_per_s_after_startup'] / theirs['tokens_per_s_after_startup']:.2f}x "
                      f"(after startup), {ours['tokens_per_cpu_s'] / theirs['tokens_per_cpu_s']:.2f}x "
                      "(tokens per CPU second), peak memory "
                      f"{ours['peak_rss_mb']:.0f} vs {theirs['peak_rss_mb']:.0f} MB")
    load = os.getloadavg()
    machine = (f"{platform.processor() or platform.machine()}, {psutil.cpu_count()} cores, "
               f"load average {load[0]:.1f} at the end (a shared, busy box)")
    table = "\n".join(rows)
    summary = (f"{table}\n\n" + "\n".join(f"- {line}" for line in ratios)
               + f"\n- token streams identical across tools and worker counts: {identical} "
               f"({runs[0]['tokens']} tokens, vocab {tokenizer.vocab_size})\n- corpus: "
               f"{corpus['bytes'] / 1e6:.1f} MB JSONL, {corpus['documents']} documents; "
               f"machine: {machine}\n")
    print("\n" + summary)
    if not args.no_record:
        RECORDS.mkdir(exist_ok=True)
        (RECORDS / "prepare_throughput.json").write_text(json.dumps(
            {"corpus": corpus, "vocab_size": tokenizer.vocab_size, "machine": machine,
             "identical": identical, "runs": runs}, indent=1) + "\n")
        (RECORDS / "prepare_throughput.md").write_text(
            "# prepare throughput (bench/prepare_throughput.py)\n\n" + summary)
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
