"""A tiny prepared dataset for tests and smoke runs (seconds to build, no download).

Note:
    The tiny corpus (the first 400 KB of the stdlib sources) has only ~14 documents, too
    few for the default split '98,2,0': use :data:`TINY_SPLIT` with it.
"""

from __future__ import annotations

from seesaw_ds.data.prepare import PreparedData, prepare

__all__ = ["TINY_MAX_BYTES", "TINY_VOCAB", "TINY_SPLIT", "TINY_SEQ", "make_tiny_prepared"]

TINY_MAX_BYTES = 400_000
TINY_VOCAB = 512
TINY_SPLIT = "80,20,0"
TINY_SEQ = 64


def make_tiny_prepared(out_dir: str, **overrides) -> PreparedData:
    """``prepare`` the default corpus capped at ``TINY_MAX_BYTES`` with vocab ``TINY_VOCAB``,
    quietly; ``overrides`` go to :func:`~seesaw_ds.data.prepare.prepare`."""
    options = dict(vocab_size=TINY_VOCAB, max_bytes=TINY_MAX_BYTES, progress=False,
                   log=lambda message: None)
    options.update(overrides)
    return prepare(None, str(out_dir), **options)
