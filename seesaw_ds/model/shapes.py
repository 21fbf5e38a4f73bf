"""Named model shapes: the Seesaw paper's 150M/300M/600M, and tiny CPU shapes.

The paper's sizes count non-embedding parameters (see ``count_parameters``); its runs
use vocab 32128 (the T5 tokenizer's 32100, padded) and sequence length 1024.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Dict, Optional

from seesaw_ds.errors import SeesawConfigError
from seesaw_ds.model.gpt import GPT, GPTConfig

__all__ = ["SHAPES", "model_config", "build_model"]

PAPER_VOCAB = 32128


@dataclass(frozen=True)
class _Shape:
    d_model: int
    n_layers: int
    n_heads: int
    d_mlp: int
    vocab_size: int
    seq_length: int


SHAPES: Dict[str, _Shape] = {
    "150m": _Shape(1024, 12, 16, 4096, PAPER_VOCAB, 1024),
    "300m": _Shape(1024, 24, 16, 4096, PAPER_VOCAB, 1024),
    "600m": _Shape(1408, 24, 22, 5632, PAPER_VOCAB, 1024),
    "tiny": _Shape(128, 4, 4, 512, 2048, 128),
    "micro": _Shape(64, 2, 4, 256, 512, 64),
}


def model_config(
    shape: str,
    vocab_size: Optional[int] = None,
    seq_length: Optional[int] = None,
    **overrides,
) -> GPTConfig:
    """The :class:`GPTConfig` of a named shape; ``vocab_size``/``seq_length`` and any other
    ``GPTConfig`` field (e.g. ``z_loss_coef``) can be overridden."""
    if shape not in SHAPES:
        raise SeesawConfigError(
            f"model.shape = {shape!r} is unknown; choose one of {', '.join(SHAPES)}.")
    base = SHAPES[shape]
    config = GPTConfig(
        vocab_size=base.vocab_size if vocab_size is None else vocab_size,
        seq_length=base.seq_length if seq_length is None else seq_length,
        d_model=base.d_model, n_layers=base.n_layers, n_heads=base.n_heads, d_mlp=base.d_mlp,
    )
    unknown = set(overrides) - set(GPTConfig.__dataclass_fields__)
    if unknown:
        raise SeesawConfigError(
            f"model: unknown field(s) {', '.join(sorted(unknown))}; GPTConfig has "
            f"{', '.join(GPTConfig.__dataclass_fields__)}.")
    return replace(config, **overrides)


def build_model(
    shape: str,
    vocab_size: Optional[int] = None,
    seq_length: Optional[int] = None,
    seed: int = 0,
    **overrides,
) -> GPT:
    """A freshly initialized :class:`GPT` of a named shape (see :func:`model_config`)."""
    return GPT(model_config(shape, vocab_size, seq_length, **overrides), seed=seed)
