"""Find the input text files and read them as documents.

Documents: a ``.jsonl`` line's ``text_field`` (also ``.jsonl.gz``/``.zst``/``.bz2``, and
``.json.gz``/``.zst``/``.bz2`` as C4 names its JSON-lines shards); a ``.py`` or ``.md``
file as a whole; a
``.txt`` file split by ``doc_separator``: blank-line paragraphs by default
(:data:`PARAGRAPHS`), ``"file"`` for the whole file, or any literal string (``\\n`` and
``\\t`` in it stand for newline and tab, so ``--doc-separator '\\n\\n\\n'`` works from
a shell). Files are decoded with ``encoding`` (default UTF-8) and Python's
``encoding_errors`` policy: ``strict`` (default: an undecodable byte is an error),
``replace`` (U+FFFD), ``ignore`` (dropped) or ``backslashreplace`` (``\\xNN``).

Files are read as streams (:mod:`seesaw_ds.data.streams`): compressed ones in place, and
memory stays bounded by the largest document, not the file.

The default corpus is embedded: the Python standard library's own ``.py`` sources, so
preparing data never needs a download.

Note:
    Problems are split in two kinds. A file that cannot be read (permissions, not in the
    given encoding) is an error when its path was named explicitly, and is skipped with a
    warning when it came from a glob, a directory or the default corpus. A JSONL line that
    is not a JSON object with a string ``text_field`` is always an error: it means a wrong
    field name.
"""

from __future__ import annotations

import codecs
import glob
import json
import os
import re
import sysconfig
import warnings
from dataclasses import dataclass, field
from typing import Iterator, List, Optional, Sequence

from seesaw_ds.data.streams import COMPRESSIONS, TextStream, UndecodableText, strip_compression
from seesaw_ds.errors import SeesawConfigError

__all__ = [
    "SUPPORTED_SUFFIXES",
    "PARAGRAPHS",
    "WHOLE_FILE",
    "ENCODING_ERRORS",
    "split_documents",
    "check_text_options",
    "SourceFile",
    "Corpus",
    "CorpusStats",
    "document_kind",
    "split_stream",
    "stdlib_files",
    "find_files",
]

_PLAIN_SUFFIXES = (".txt", ".py", ".md", ".jsonl")
SUPPORTED_SUFFIXES = _PLAIN_SUFFIXES + tuple(
    base + compression for base in (".txt", ".jsonl", ".json") for compression in COMPRESSIONS)
PARAGRAPHS = "blank-line"  # doc_separator: documents are blank-line separated paragraphs
WHOLE_FILE = "file"  # doc_separator: a .txt file is one document
ENCODING_ERRORS = ("strict", "replace", "ignore", "backslashreplace")
_BLANK_LINE = re.compile(r"\n[^\S\n]*\n")
_TEST_DIRS = frozenset({"test", "tests", "idle_test"})
_SKIP_DIRS = frozenset({"site-packages", "dist-packages", "__pycache__"})


@dataclass(frozen=True)
class SourceFile:
    """One input file; ``explicit`` when the user named this exact path."""

    path: str
    explicit: bool
    size: int
    mtime_ns: int


def _source(path: str, explicit: bool) -> SourceFile:
    stat = os.stat(path)
    return SourceFile(os.path.abspath(path), explicit, stat.st_size, stat.st_mtime_ns)


def _walk_sorted(root: str, suffixes: Sequence[str], include_tests: bool) -> List[str]:
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        skip = _SKIP_DIRS if include_tests else _SKIP_DIRS | _TEST_DIRS
        dirnames[:] = sorted(name for name in dirnames if name not in skip)
        found.extend(
            os.path.join(dirpath, name) for name in filenames if name.endswith(tuple(suffixes))
        )
    return sorted(found, key=lambda path: os.path.relpath(path, root))


def stdlib_files(include_tests: bool = False) -> List[str]:
    """The standard library's ``.py`` files, sorted by relative path (deterministic).

    Note:
        ``site-packages`` is skipped, and so are ``test``/``tests``/``idle_test`` folders
        unless ``include_tests``. The corpus depends on the Python version; the prepare
        manifest records its fingerprint.
    """
    return _walk_sorted(sysconfig.get_paths()["stdlib"], (".py",), include_tests)


def _has_magic(pattern: str) -> bool:
    return any(char in pattern for char in "*?[")


def find_files(inputs: Optional[Sequence[str]], include_tests: bool = False) -> List[SourceFile]:
    """Resolve paths, directories and globs to a sorted, de-duplicated file list.

    ``None`` or an empty list selects the embedded stdlib corpus. A directory contributes
    its supported files recursively; a glob keeps the supported files it matches.
    """
    if not inputs:
        return [_source(path, explicit=False) for path in stdlib_files(include_tests)]
    files: List[SourceFile] = []
    seen = set()
    for pattern in inputs:
        if _has_magic(pattern):
            matches = sorted(glob.glob(os.path.expanduser(pattern), recursive=True))
            if not matches:
                raise SeesawConfigError(
                    f"inputs: no files matched the glob {pattern!r}; check the pattern "
                    "(quote it so the shell does not expand it) or the working directory."
                )
            paths = [path for path in matches if os.path.isfile(path)]
            for directory in (path for path in matches if os.path.isdir(path)):
                paths.extend(_walk_sorted(directory, SUPPORTED_SUFFIXES, True))
            paths = [path for path in paths if path.endswith(SUPPORTED_SUFFIXES)]
            if not paths:
                raise SeesawConfigError(
                    f"inputs: the glob {pattern!r} matched {len(matches)} paths but no "
                    f"{'/'.join(SUPPORTED_SUFFIXES)} files; point it at text files."
                )
            explicit = False
        else:
            path = os.path.expanduser(pattern)
            if os.path.isdir(path):
                paths = _walk_sorted(path, SUPPORTED_SUFFIXES, True)
                if not paths:
                    raise SeesawConfigError(
                        f"inputs: the directory {pattern!r} holds no "
                        f"{'/'.join(SUPPORTED_SUFFIXES)} files."
                    )
                explicit = False
            elif os.path.isfile(path):
                if not path.endswith(SUPPORTED_SUFFIXES):
                    raise SeesawConfigError(
                        f"inputs: {pattern!r} is not a supported file type; use "
                        f"{', '.join(SUPPORTED_SUFFIXES)} files."
                    )
                paths, explicit = [path], True
            else:
                raise SeesawConfigError(
                    f"inputs: {pattern!r} does not exist; give an existing file, "
                    "directory or glob."
                )
        for path in paths:
            key = os.path.abspath(path)
            if key not in seen:
                seen.add(key)
                files.append(_source(path, explicit))
    return files


def check_text_options(encoding: str, encoding_errors: str, doc_separator: str) -> None:
    """Refuse an unknown encoding, errors policy or an empty separator (one clear error)."""
    if not isinstance(encoding, str) or not encoding:
        raise SeesawConfigError(f"encoding = {encoding!r} must name a text encoding.")
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise SeesawConfigError(
            f"encoding = {encoding!r} is not a text encoding Python knows; use e.g. utf-8, "
            "latin-1 or cp1252 (--encoding)."
        ) from None
    if encoding_errors not in ENCODING_ERRORS:
        raise SeesawConfigError(
            f"encoding_errors = {encoding_errors!r} is not one of {list(ENCODING_ERRORS)} "
            "(--encoding-errors)."
        )
    if not isinstance(doc_separator, str) or not doc_separator:
        raise SeesawConfigError(
            f"doc_separator = {doc_separator!r} must be {PARAGRAPHS!r}, {WHOLE_FILE!r} or a "
            "non-empty string (--doc-separator)."
        )


def document_kind(path: str) -> str:
    """How ``path`` splits into documents: ``jsonl``, ``txt`` or ``whole`` (``.py``/``.md``)."""
    name = strip_compression(path)
    if name.endswith((".jsonl", ".json")):
        return "jsonl"
    return "txt" if name.endswith(".txt") else "whole"


def _separator(doc_separator: str):
    """The compiled pattern between documents of a .txt file, None for a whole file."""
    if doc_separator == WHOLE_FILE:
        return None
    if doc_separator == PARAGRAPHS:
        return _BLANK_LINE
    return re.compile(re.escape(doc_separator.replace("\\n", "\n").replace("\\t", "\t")))


def _keep(pieces: Iterator[str]) -> Iterator[str]:
    return (piece.strip("\r\n") for piece in pieces if piece.strip())


def split_stream(chunks: Iterator[str], doc_separator: str = PARAGRAPHS) -> Iterator[str]:
    """:func:`split_documents` of the text that ``chunks`` concatenate, one chunk at a time.

    Note:
        Exact for any chunking: a separator found in the buffer is the one the whole text
        holds there (a separator cannot be completed by later text once a full one follows
        it), and the unfinished tail is carried into the next chunk. Memory holds the
        largest document plus a chunk.
    """
    pattern = _separator(doc_separator)
    if pattern is None:
        yield from _keep(iter(["".join(chunks)]))
        return

    def pieces() -> Iterator[str]:
        buffer = ""
        for chunk in chunks:
            buffer += chunk
            start = 0
            for match in pattern.finditer(buffer):
                yield buffer[start:match.start()]
                start = match.end()
            buffer = buffer[start:]
        yield buffer

    yield from _keep(pieces())


def _lines(chunks: Iterator[str]) -> Iterator[str]:
    """The ``\\n``-separated lines of the text ``chunks`` concatenate (newlines dropped)."""
    rest = ""
    for chunk in chunks:
        lines = (rest + chunk).split("\n")
        rest = lines.pop()
        yield from lines
    if rest:
        yield rest


def split_documents(text: str, doc_separator: str = PARAGRAPHS) -> List[str]:
    """The documents of a plain-text file (see the module docstring); blank ones dropped."""
    if doc_separator == WHOLE_FILE:
        pieces = [text]
    elif doc_separator == PARAGRAPHS:
        pieces = _BLANK_LINE.split(text)
    else:
        pieces = text.split(doc_separator.replace("\\n", "\n").replace("\\t", "\t"))
    return [piece.strip("\r\n") for piece in pieces if piece.strip()]


@dataclass
class CorpusStats:
    """What a full pass over the corpus saw."""

    num_documents: int = 0
    num_bytes: int = 0
    skipped: List[str] = field(default_factory=list)
    input_bytes: int = 0  # bytes read from the files on disk (compressed size if compressed)


class Corpus:
    """Re-iterable documents from ``files``, capped at ``max_bytes`` of UTF-8 text.

    Args:
        files: the inputs (:func:`find_files`).
        text_field: the JSONL key holding the text.
        max_bytes: cap on the corpus, in UTF-8 bytes.
        encoding / encoding_errors: how files are decoded (module docstring).
        doc_separator: how ``.txt`` files split into documents (module docstring).

    Note:
        Documents are taken in file order until their total size reaches ``max_bytes``;
        the last one is cut to fit. Blank documents are dropped. Each skipped file is
        warned about once per ``Corpus``.
    """

    def __init__(
        self, files: Sequence[SourceFile], text_field: str = "text",
        max_bytes: Optional[int] = None, encoding: str = "utf-8",
        encoding_errors: str = "strict", doc_separator: str = PARAGRAPHS,
    ) -> None:
        if not isinstance(text_field, str) or not text_field:
            raise SeesawConfigError("text_field must be a non-empty string (the JSONL key).")
        if max_bytes is not None and (
                isinstance(max_bytes, bool) or int(max_bytes) != max_bytes or max_bytes < 1):
            raise SeesawConfigError(
                f"max_bytes = {max_bytes!r} must be a positive integer or None.")
        check_text_options(encoding, encoding_errors, doc_separator)
        self.files = list(files)
        self.encoding, self.encoding_errors = encoding, encoding_errors
        self.doc_separator = doc_separator
        self.text_field = text_field
        self.max_bytes = None if max_bytes is None else int(max_bytes)
        self._warned: set = set()

    def _unreadable(self, source: SourceFile, error: Exception, started: bool) -> None:
        """A file that failed while being read: an error when named explicitly, else warned
        about once and skipped (from the failure on, when documents were already read)."""
        if isinstance(error, UndecodableText):
            name = "UTF-8" if codecs.lookup(self.encoding).name == "utf-8" else self.encoding
            reason = f"is not valid {name} ({error})"
            fix = ("give its encoding with --encoding (data.encoding), e.g. latin-1 or "
                   "cp1252, or --encoding-errors replace to substitute undecodable bytes")
        else:
            reason = f"cannot be read ({getattr(error, 'strerror', None) or error})"
            fix = "fix it or remove it from the inputs"
        if source.explicit:
            raise SeesawConfigError(f"inputs: {source.path} {reason}; {fix}.") from None
        if source.path not in self._warned:
            self._warned.add(source.path)
            rest = " the rest of it" if started else ""
            warnings.warn(f"skipping{rest} {source.path}: it {reason}", stacklevel=4)

    def _jsonl_documents(self, source: SourceFile, chunks: Iterator[str]) -> Iterator[str]:
        for number, line in enumerate(_lines(chunks), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                raise SeesawConfigError(
                    f"inputs: {source.path}:{number} is not valid JSON; each JSONL line "
                    "must be one JSON object."
                ) from None
            value = record.get(self.text_field) if isinstance(record, dict) else None
            if not isinstance(value, str):
                raise SeesawConfigError(
                    f"inputs: {source.path}:{number} has no string field "
                    f"{self.text_field!r}; set text_field (--text-field) to the key that "
                    "holds the text."
                )
            yield value

    def _file_documents(self, source: SourceFile, stats: Optional[CorpusStats]) -> Iterator[str]:
        """The documents of one file, streamed; ``stats.input_bytes`` follows the reading."""
        if source.path in self._warned:
            return
        started = False
        counted = 0
        try:
            with TextStream(source.path, self.encoding, self.encoding_errors) as stream:
                chunks = stream.chunks()
                kind = document_kind(source.path)
                if kind == "jsonl":
                    documents = self._jsonl_documents(source, chunks)
                elif kind == "txt":
                    documents = split_stream(chunks, self.doc_separator)
                else:
                    documents = iter(["".join(chunks)])
                for document in documents:
                    started = True
                    if stats is not None:
                        now = stream.bytes_read
                        stats.input_bytes += now - counted
                        counted = now
                    yield document
                if stats is not None:
                    stats.input_bytes += source.size - counted
        except (OSError, UndecodableText) as error:
            if stats is not None:
                stats.input_bytes += source.size - counted
            self._unreadable(source, error, started)

    def documents(self, stats: Optional[CorpusStats] = None) -> Iterator[str]:
        """Yield the documents in a fixed order; fill ``stats`` when given."""
        budget = self.max_bytes
        for source in self.files:
            for document in self._file_documents(source, stats):
                if not document.strip():
                    continue
                data = document.encode("utf-8")
                if budget is not None and len(data) > budget:
                    document = data[:budget].decode("utf-8", errors="ignore")
                    data = document.encode("utf-8")
                if stats is not None:
                    stats.num_documents += 1
                    stats.num_bytes += len(data)
                yield document
                if budget is not None:
                    budget -= len(data)
                    if budget <= 0:
                        if stats is not None:
                            stats.skipped = sorted(self._warned)
                        return
        if stats is not None:
            stats.skipped = sorted(self._warned)

    def scan(self) -> CorpusStats:
        """One pass that counts documents; raises when the corpus is empty.

        Raises:
            SeesawConfigError: no non-blank document in any file (naming the inputs).
        """
        stats = CorpusStats()
        for _ in self.documents(stats):
            pass
        stats.skipped = sorted(self._warned)
        if stats.num_documents == 0:
            names = ", ".join(source.path for source in self.files[:3])
            more = f" and {len(self.files) - 3} more" if len(self.files) > 3 else ""
            raise SeesawConfigError(
                f"inputs: the corpus is empty: no non-blank text in {names}{more}"
                f"{f' ({len(stats.skipped)} unreadable files skipped)' if stats.skipped else ''};"
                " give files that contain text."
            )
        return stats
