"""Read an input file as a stream of decoded text, plain or compressed, in bounded memory.

``.gz``, ``.bz2`` and ``.zst`` files are decompressed on the fly (``.zst`` needs the
``zstandard`` package: ``pip install zstandard``). Text is decoded incrementally with the
given encoding and errors policy, and newlines are made universal (``\\r\\n`` and ``\\r``
become ``\\n``), exactly as ``open(path, encoding=...)`` reads them.

Note:
    :class:`TextStream` counts the bytes read from the file on disk (compressed bytes for a
    compressed file), which is what progress reports measure against the files' sizes. A
    decoding error is raised as :class:`UndecodableText`, whose ``offset`` is the position
    of the bad byte in the (decompressed) file.
"""

from __future__ import annotations

import bz2
import codecs
import gzip
import io
from typing import BinaryIO, Iterator, Optional

from seesaw_ds.errors import SeesawConfigError

__all__ = ["COMPRESSIONS", "CHUNK_BYTES", "strip_compression", "UndecodableText", "TextStream"]

COMPRESSIONS = (".gz", ".bz2", ".zst")
CHUNK_BYTES = 1 << 20


def strip_compression(path: str) -> str:
    """``path`` without a trailing ``.gz``/``.bz2``/``.zst`` (the name its contents have)."""
    for suffix in COMPRESSIONS:
        if path.endswith(suffix):
            return path[: -len(suffix)]
    return path


class UndecodableText(ValueError):
    """A byte the encoding cannot decode, at ``offset`` of the decompressed file."""

    def __init__(self, byte: bytes, offset: int) -> None:
        super().__init__(f"byte 0x{byte.hex()} at offset {offset}")
        self.byte, self.offset = byte, offset


def _zstd_reader(raw: BinaryIO) -> BinaryIO:
    try:
        import zstandard
    except ImportError:
        raise SeesawConfigError(
            f"inputs: {getattr(raw, 'name', 'a file')} is zstd-compressed; install the "
            "zstandard package (pip install zstandard) to read it."
        ) from None
    return zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)


class TextStream:
    """Decoded text chunks of one file; ``bytes_read`` is the position in the file on disk.

    Use as a context manager; iterate :meth:`chunks`.
    """

    def __init__(self, path: str, encoding: str = "utf-8", errors: str = "strict",
                 chunk_bytes: int = CHUNK_BYTES) -> None:
        self.path, self.encoding, self.errors = path, encoding, errors
        self.chunk_bytes = chunk_bytes
        self._raw: Optional[BinaryIO] = None
        self._stream: Optional[BinaryIO] = None

    def __enter__(self) -> "TextStream":
        self._raw = open(self.path, "rb")
        if self.path.endswith(".gz"):
            self._stream = gzip.GzipFile(fileobj=self._raw, mode="rb")
        elif self.path.endswith(".bz2"):
            self._stream = bz2.BZ2File(self._raw, mode="rb")
        elif self.path.endswith(".zst"):
            self._stream = _zstd_reader(self._raw)
        else:
            self._stream = self._raw
        return self

    def __exit__(self, *exc) -> None:
        if self._stream is not None and self._stream is not self._raw:
            self._stream.close()
        if self._raw is not None:
            self._raw.close()

    @property
    def bytes_read(self) -> int:
        return self._raw.tell() if self._raw is not None and not self._raw.closed else 0

    def _read(self) -> bytes:
        try:
            return self._stream.read(self.chunk_bytes)
        except OSError:
            raise
        except Exception as error:  # zlib.error, EOFError (truncated), zstandard.ZstdError
            raise OSError(f"not valid compressed data: {error}") from None

    def chunks(self) -> Iterator[str]:
        """Decoded text, about ``chunk_bytes`` per chunk.

        Raises:
            UndecodableText: a byte the encoding cannot decode (``errors`` = strict).
            OSError: the file cannot be read (or is not valid compressed data).
        """
        decoder = codecs.getincrementaldecoder(self.encoding)(self.errors)
        newlines = io.IncrementalNewlineDecoder(None, translate=True)
        position = 0  # decompressed bytes before this chunk
        while True:
            data = self._read()
            final = not data
            pending = len(decoder.getstate()[0])
            try:
                text = decoder.decode(data, final)
            except UnicodeDecodeError as error:
                raise UndecodableText(error.object[error.start:error.start + 1],
                                      position - pending + error.start) from None
            position += len(data)
            text = newlines.decode(text, final)
            if text:
                yield text
            if final:
                return
