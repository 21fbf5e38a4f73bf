"""Prepare a training folder: corpus -> tokenizer (trained or loaded) -> indexed dataset.

The folder holds ``tokenizer.model``, ``corpus_text_document.{bin,idx}``, a ``cache/``
for megatron-core's sample indices and ``manifest.json``. Re-running with unchanged
inputs and parameters reuses it without retraining or re-tokenizing.

Note:
    All user mistakes (no files matched, empty corpus, unreadable named file, bad vocab
    size, bad tokenizer model) raise :class:`SeesawConfigError` naming the path or field,
    before the expensive steps where possible.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import asdict, dataclass
from typing import Callable, Optional, Sequence

import sentencepiece

from seesaw_ds.atomic_files import check_directory_creatable
from seesaw_ds.data.corpus import PARAGRAPHS, Corpus, CorpusStats, find_files
from seesaw_ds.data.indexed import write_indexed_dataset
from seesaw_ds.data.parallel import default_workers
from seesaw_ds.data.progress import PrepareProgress
from seesaw_ds.data.manifest import (
    FORMAT_VERSION,
    MANIFEST_NAME,
    fingerprint,
    first_difference,
    outputs_intact,
    read_manifest,
    write_json_atomic,
)
from seesaw_ds.data.tokenizer import (
    SentencePieceTokenizer,
    TokenizerTrainConfig,
    load_tokenizer,
    train_tokenizer,
)
from seesaw_ds.errors import SeesawConfigError

__all__ = ["PreparedData", "prepare", "check_prepared", "load_prepared", "DATA_NAME", "TOKENIZER_NAME",
           "CACHE_DIR", "DEFAULT_VOCAB_SIZE"]

DATA_NAME = "corpus_text_document"
TOKENIZER_NAME = "tokenizer.model"
CACHE_DIR = "cache"
DEFAULT_VOCAB_SIZE = 2048


@dataclass(frozen=True)
class PreparedData:
    """A prepared folder; ``reused`` tells whether ``prepare`` skipped all work."""

    out_dir: str
    data_prefix: str
    tokenizer_path: str
    cache_dir: str
    vocab_size: int
    eod: int
    num_documents: int
    num_tokens: int
    reused: bool = False

    @property
    def blend(self):
        """megatron-core's ``blend``: this folder's one prefix."""
        return [self.data_prefix], None

    @property
    def where(self) -> str:
        return self.out_dir

    @property
    def manifest_path(self) -> str:
        return os.path.join(self.out_dir, MANIFEST_NAME)

    def load_tokenizer(self) -> SentencePieceTokenizer:
        return load_tokenizer(self.tokenizer_path)


def _from_manifest(out_dir: str, manifest: dict, reused: bool) -> PreparedData:
    outputs = manifest["outputs"]
    return PreparedData(
        out_dir=out_dir,
        data_prefix=os.path.join(out_dir, DATA_NAME),
        tokenizer_path=os.path.join(out_dir, TOKENIZER_NAME),
        cache_dir=os.path.join(out_dir, CACHE_DIR),
        vocab_size=outputs["vocab_size"],
        eod=outputs["eod"],
        num_documents=outputs["num_documents"],
        num_tokens=outputs["num_tokens"],
        reused=reused,
    )


def load_prepared(out_dir: str) -> PreparedData:
    """The prepared folder at ``out_dir``, read from its manifest.

    Raises:
        SeesawConfigError: no complete prepared data there.
    """
    out_dir = os.path.abspath(out_dir)
    manifest = read_manifest(out_dir)
    if manifest is None or not outputs_intact(out_dir, manifest):
        raise SeesawConfigError(
            f"data: {out_dir} holds no complete prepared data (missing or stale "
            f"{MANIFEST_NAME}); run `seesaw-ds prepare --out {out_dir}` first."
        )
    return _from_manifest(out_dir, manifest, reused=True)


def _check_out_dir(out_dir: str) -> str:
    if not out_dir:
        raise SeesawConfigError("out_dir (--out) must name a directory.")
    out_dir = os.path.abspath(os.path.expanduser(out_dir))
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise SeesawConfigError(f"out_dir: {out_dir} exists and is not a directory.")
    check_directory_creatable(f"out_dir (--out) {out_dir}", out_dir)
    return out_dir


@dataclass
class _Request:
    """What one ``prepare`` call asks for, worked out without writing anything."""

    out_dir: str
    params: dict
    input_fingerprint: dict
    files: list
    text_options: dict
    tokenizer: Optional[SentencePieceTokenizer]
    train_config: Optional[TokenizerTrainConfig]


def _request(inputs, out_dir, *, vocab_size=None, tokenizer_model=None, text_field="text",
             max_bytes=None, encoding="utf-8", encoding_errors="strict",
             doc_separator=PARAGRAPHS, include_tests=False, seed=1234) -> _Request:
    """(The defaults are :func:`prepare`'s; a test keeps them equal.)"""
    out_dir = _check_out_dir(out_dir)
    train_config = None
    if tokenizer_model is not None:
        tokenizer = load_tokenizer(tokenizer_model)
        if vocab_size is not None and vocab_size != tokenizer.vocab_size:
            raise SeesawConfigError(
                f"vocab_size = {vocab_size} disagrees with tokenizer_model {tokenizer_model} "
                f"(vocab {tokenizer.vocab_size}); drop --vocab-size or use another model."
            )
        tokenizer_params = {"loaded_sha256": tokenizer.sha256}
    else:
        tokenizer = None
        train_config = TokenizerTrainConfig(
            vocab_size=DEFAULT_VOCAB_SIZE if vocab_size is None else vocab_size, seed=seed)
        tokenizer_params = {"trained": asdict(train_config)}
    text_options = dict(text_field=text_field, max_bytes=max_bytes, encoding=encoding,
                        encoding_errors=encoding_errors, doc_separator=doc_separator)
    Corpus([], **text_options)  # validates the options
    files = find_files(inputs, include_tests=include_tests)
    params = {
        "format_version": FORMAT_VERSION,
        "inputs": list(inputs) if inputs else "stdlib",
        "include_tests": bool(include_tests) if not inputs else None,
        "text_field": text_field,
        "max_bytes": max_bytes,
        "encoding": encoding,
        "encoding_errors": encoding_errors,
        "doc_separator": doc_separator,
        "tokenizer": tokenizer_params,
        "sentencepiece_version": sentencepiece.__version__,
    }
    return _Request(out_dir, params, fingerprint(files), files, text_options, tokenizer,
                    train_config)


def _existing(request: _Request, force: bool, force_flag: str) -> Optional[dict]:
    """The manifest of a complete folder to reuse as is; None: build (nothing complete is
    there, or ``force``).

    Raises:
        SeesawConfigError: the folder holds data prepared with other options or inputs.
    """
    manifest = read_manifest(request.out_dir)
    if force or manifest is None:
        return None
    difference = first_difference(manifest, request.params, request.input_fingerprint)
    if difference is not None:
        name, recorded, requested = difference
        raise SeesawConfigError(
            f"prepare: {request.out_dir} holds data prepared with {name} = {recorded}, this "
            f"run asks for {requested}; pass {force_flag} to rebuild it (runs reading it will "
            "see other data), or choose another output folder.")
    return manifest if outputs_intact(request.out_dir, manifest) else None


def _check_workers(workers: Optional[int]) -> int:
    if workers is None:
        return default_workers()
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise SeesawConfigError(f"workers = {workers!r} must be a positive integer (--workers).")
    return workers


def _empty(files, stats: CorpusStats) -> None:
    names = ", ".join(source.path for source in files[:3])
    more = f" and {len(files) - 3} more" if len(files) > 3 else ""
    raise SeesawConfigError(
        f"inputs: the corpus is empty: no non-blank text in {names}{more}"
        f"{f' ({len(stats.skipped)} unreadable files skipped)' if stats.skipped else ''};"
        " give files that contain text.")


def check_prepared(inputs: Optional[Sequence[str]], out_dir: str, *, force: bool = False,
                   force_flag: str = "--force", **options) -> bool:
    """What :func:`prepare` with these arguments would do, decided without writing: True to
    reuse ``out_dir``, False to build it. Cheap (lists and stats the input files), so a
    trainer calls it before starting any process.

    Raises:
        SeesawConfigError: as :func:`prepare` would before its expensive steps, including an
            existing folder prepared with other options or inputs (unless ``force``).
    """
    request = _request(inputs, out_dir, **options)
    return _existing(request, force, force_flag) is not None


def prepare(
    inputs: Optional[Sequence[str]],
    out_dir: str,
    *,
    vocab_size: Optional[int] = None,
    tokenizer_model: Optional[str] = None,
    text_field: str = "text",
    max_bytes: Optional[int] = None,
    encoding: str = "utf-8",
    encoding_errors: str = "strict",
    doc_separator: str = PARAGRAPHS,
    include_tests: bool = False,
    seed: int = 1234,
    workers: Optional[int] = None,
    progress: bool = True,
    progress_interval: Optional[float] = 30.0,
    force: bool = False,
    force_flag: str = "--force",
    log: Callable[[str], None] = print,
) -> PreparedData:
    """Build (or reuse) the prepared folder ``out_dir`` from ``inputs``.

    ``inputs`` are files, directories or globs (``.txt``, ``.py``, ``.md``, ``.jsonl``);
    None uses the standard library's sources. ``vocab_size`` (default 2048) trains a BPE
    tokenizer; ``tokenizer_model`` loads one instead. ``max_bytes`` caps the corpus.
    ``encoding`` / ``encoding_errors`` decode the files; ``doc_separator`` splits ``.txt``
    files into documents (blank-line paragraphs by default; see
    :mod:`seesaw_ds.data.corpus`).

    A folder prepared before with the same options and unchanged input files is reused. One
    prepared with other options (or from input files that changed since) is never rebuilt
    silently: that is a :class:`SeesawConfigError` naming the first differing option, unless
    ``force`` (``force_flag`` is how the caller's user spells it, for the message).

    ``workers`` processes tokenize (default: this machine's cores); the output does not
    depend on it. Files are streamed (memory does not grow with their size), compressed ones
    (``.gz``, ``.zst``, ``.bz2``) read in place. ``progress``: a bar (on a terminal);
    otherwise a plain progress line every ``progress_interval`` seconds through ``log``.
    A trained tokenizer sees a sample of ``max_sentences`` lines drawn uniformly from all
    inputs (sentencepiece's reservoir sampling over every line of the corpus).
    """
    request = _request(inputs, out_dir, vocab_size=vocab_size, tokenizer_model=tokenizer_model,
                       text_field=text_field, max_bytes=max_bytes, encoding=encoding,
                       encoding_errors=encoding_errors, doc_separator=doc_separator,
                       include_tests=include_tests, seed=seed)
    out_dir, tokenizer, train_config = request.out_dir, request.tokenizer, request.train_config
    files, params, input_fingerprint = request.files, request.params, request.input_fingerprint
    workers = _check_workers(workers)
    manifest = _existing(request, force, force_flag)
    if manifest is not None:
        log(f"prepare: reusing {out_dir} (inputs and parameters unchanged)")
        return _from_manifest(out_dir, manifest, reused=True)

    corpus = Corpus(files, **request.text_options)
    first = CorpusStats()
    if next(corpus.documents(first), None) is None:  # cheap: stops at the first document
        _empty(files, first)
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as error:
        raise SeesawConfigError(
            f"out_dir (--out) {out_dir} cannot be created ({error.strerror}): choose a "
            "writable path.") from None
    for stale in (os.path.join(out_dir, MANIFEST_NAME), os.path.join(out_dir, CACHE_DIR)):
        if os.path.isdir(stale):
            shutil.rmtree(stale)
        elif os.path.exists(stale):
            os.remove(stale)

    total_bytes = sum(source.size for source in files)
    log(f"prepare: {len(files)} files, {total_bytes / 1e6:.2f} MB on disk, {workers} workers")
    if tokenizer is None:
        log(f"prepare: training a BPE tokenizer (vocab_size {train_config.vocab_size}) on a "
            f"sample of up to {train_config.max_sentences} lines drawn from all inputs")
        sample_stats = CorpusStats()
        try:
            tokenizer = train_tokenizer(corpus.documents(sample_stats), train_config)
        except SeesawConfigError:
            if sample_stats.num_documents == 0:
                _empty(files, sample_stats)
            raise
    tokenizer.save(os.path.join(out_dir, TOKENIZER_NAME))

    data_prefix = os.path.join(out_dir, DATA_NAME)
    stats = CorpusStats()
    reporter = PrepareProgress(total_bytes, bar=progress, log=log,
                               interval=progress_interval)
    try:
        indexed = write_indexed_dataset(
            corpus.documents(stats), tokenizer, data_prefix, workers=workers,
            on_chunk=lambda documents, tokens: reporter.update(stats.input_bytes, tokens))
    finally:
        seconds = reporter.close()
    if stats.num_documents == 0:
        for path in (f"{data_prefix}.bin", f"{data_prefix}.idx"):
            os.remove(path)
        _empty(files, stats)
    log(f"prepare: {stats.num_documents} documents, {stats.num_bytes / 1e6:.2f} MB of text, "
        f"{indexed.num_tokens} tokens in {seconds:.1f} s ({indexed.num_tokens / seconds / 1e6:.2f}M "
        f"tokens/s, {stats.num_bytes / seconds / 1e6:.2f} MB/s)"
        + (f", {len(stats.skipped)} unreadable files skipped" if stats.skipped else ""))

    output_names = [TOKENIZER_NAME, f"{DATA_NAME}.bin", f"{DATA_NAME}.idx"]
    write_json_atomic(os.path.join(out_dir, MANIFEST_NAME), {
        "params": params,
        "input_fingerprint": input_fingerprint,
        "skipped_files": stats.skipped,
        "outputs": {
            "vocab_size": tokenizer.vocab_size,
            "eod": tokenizer.eod,
            "tokenizer_sha256": tokenizer.sha256,
            "num_documents": indexed.num_documents,
            "num_tokens": indexed.num_tokens,
            "num_bytes": stats.num_bytes,
        },
        "output_sizes": {
            name: os.path.getsize(os.path.join(out_dir, name)) for name in output_names
        },
    })
    log(f"prepare: wrote {indexed.num_documents} documents, {indexed.num_tokens} tokens "
        f"(vocab {tokenizer.vocab_size}) to {out_dir}")
    return _from_manifest(out_dir, read_manifest(out_dir), reused=False)
