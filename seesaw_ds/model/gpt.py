"""A plain-PyTorch GPT shaped like the Seesaw paper's models.

Pre-LN decoder: RoPE, QK-layernorm, GELU MLP, untied input/output embeddings, no biases,
causal ``scaled_dot_product_attention``, and a z-loss (``coef * logsumexp(logits)^2``)
added to the cross-entropy.

Note:
    Why not megatron-core's ``GPTModel``: on a CPU-only machine its stock RoPE
    (``rotary_pos_embedding.get_emb``) and local attention (the global memory buffer)
    call ``torch.cuda.current_device()`` in ``forward`` (checked with megatron-core 0.16.1
    and torch CPU: "Torch not compiled with CUDA enabled"), and its DDP and pipeline
    schedules assume CUDA too. This model runs anywhere and wraps cleanly in DeepSpeed.

Limitations:
    No dropout, no KV cache, no padding mask (sequences are packed by the dataset).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, NamedTuple, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from seesaw_ds.errors import SeesawConfigError

__all__ = ["GPTConfig", "LMOutput", "GPT", "count_parameters"]


@dataclass(frozen=True)
class GPTConfig:
    """Model shape and loss settings. ``seq_length`` is the longest accepted input."""

    vocab_size: int
    seq_length: int
    d_model: int
    n_layers: int
    n_heads: int
    d_mlp: int
    z_loss_coef: float = 1e-4
    rope_base: float = 10000.0
    norm_eps: float = 1e-5
    init_std: float = 0.02

    def __post_init__(self) -> None:
        for name in ("vocab_size", "seq_length", "d_model", "n_layers", "n_heads", "d_mlp"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SeesawConfigError(f"model.{name} = {value!r} must be a positive integer.")
        if self.d_model % self.n_heads or (self.d_model // self.n_heads) % 2:
            raise SeesawConfigError(
                f"model.d_model = {self.d_model} must split into n_heads = {self.n_heads} "
                "heads of an even size (RoPE rotates pairs)."
            )
        if self.z_loss_coef < 0:
            raise SeesawConfigError(f"model.z_loss_coef = {self.z_loss_coef} must be >= 0.")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads


class LMOutput(NamedTuple):
    """``loss`` (CE + z-loss, for backward); ``ce`` and ``z_loss`` detached, for logs."""

    loss: torch.Tensor
    ce: torch.Tensor
    z_loss: torch.Tensor


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    first, second = x.chunk(2, dim=-1)
    return torch.cat((-second, first), dim=-1)


class _Rotary:
    """cos/sin tables per (length, device), computed in float32 and kept out of the
    module's buffers so ``module.to(bfloat16)`` cannot round them."""

    def __init__(self, head_dim: int, base: float) -> None:
        self.head_dim, self.base = head_dim, base
        self._cache: Dict[Tuple[int, torch.device], Tuple[torch.Tensor, torch.Tensor]] = {}

    def tables(self, length: int, device: torch.device) -> Tuple[torch.Tensor, torch.Tensor]:
        key = (length, device)
        if key not in self._cache:
            half = torch.arange(0, self.head_dim, 2, device=device, dtype=torch.float32)
            inv_freq = 1.0 / (self.base ** (half / self.head_dim))
            angles = torch.outer(torch.arange(length, device=device, dtype=torch.float32),
                                 inv_freq)
            angles = torch.cat((angles, angles), dim=-1)
            self._cache[key] = (angles.cos(), angles.sin())
        return self._cache[key]

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """Rotate ``x`` of shape (batch, heads, length, head_dim)."""
        cos, sin = self.tables(x.shape[-2], x.device)
        x32 = x.float()
        return (x32 * cos + _rotate_half(x32) * sin).to(x.dtype)


class _Attention(nn.Module):
    def __init__(self, config: GPTConfig, rotary: _Rotary) -> None:
        super().__init__()
        self.n_heads, self.head_dim = config.n_heads, config.head_dim
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model, bias=False)
        self.q_norm = nn.LayerNorm(config.head_dim, eps=config.norm_eps, bias=False)
        self.k_norm = nn.LayerNorm(config.head_dim, eps=config.norm_eps, bias=False)
        self.proj = nn.Linear(config.d_model, config.d_model, bias=False)
        self.rotary = rotary

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        qkv = self.qkv(x).view(batch, length, 3, self.n_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (batch, heads, length, head_dim)
        q = self.rotary.apply(self.q_norm(q)).to(v.dtype)
        k = self.rotary.apply(self.k_norm(k)).to(v.dtype)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(out.transpose(1, 2).reshape(batch, length, width))


class _MLP(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.up = nn.Linear(config.d_model, config.d_mlp, bias=False)
        self.proj = nn.Linear(config.d_mlp, config.d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(F.gelu(self.up(x)))


class _Block(nn.Module):
    def __init__(self, config: GPTConfig, rotary: _Rotary) -> None:
        super().__init__()
        self.attn_norm = nn.LayerNorm(config.d_model, eps=config.norm_eps, bias=False)
        self.attn = _Attention(config, rotary)
        self.mlp_norm = nn.LayerNorm(config.d_model, eps=config.norm_eps, bias=False)
        self.mlp = _MLP(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.attn_norm(x))
        return x + self.mlp(self.mlp_norm(x))


class GPT(nn.Module):
    """Decoder-only LM. ``forward(tokens)`` gives logits; with ``labels``, an :class:`LMOutput`.

    Note:
        Init is deterministic given ``seed`` (normal(0, ``init_std``); residual output
        projections scaled by ``1/sqrt(2 * n_layers)``; norms at 1). Parameters on the
        meta device are left uninitialized, so big shapes can be counted for free.
    """

    def __init__(self, config: GPTConfig, seed: int = 0) -> None:
        super().__init__()
        self.config = config
        rotary = _Rotary(config.head_dim, config.rope_base)
        self.embed = nn.Embedding(config.vocab_size, config.d_model)
        self.blocks = nn.ModuleList(_Block(config, rotary) for _ in range(config.n_layers))
        self.final_norm = nn.LayerNorm(config.d_model, eps=config.norm_eps, bias=False)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.reset_parameters(seed)

    @torch.no_grad()
    def reset_parameters(self, seed: int = 0) -> None:
        """Re-draw every weight from a generator seeded with ``seed``."""
        generator = torch.Generator().manual_seed(seed)
        residual_std = self.config.init_std / math.sqrt(2 * self.config.n_layers)
        for name, param in self.named_parameters():
            if param.is_meta:
                continue
            if "norm" in name:
                param.fill_(1.0)
                continue
            std = residual_std if name.endswith("proj.weight") else self.config.init_std
            values = torch.empty(param.shape, dtype=torch.float32).normal_(
                0.0, std, generator=generator)
            param.copy_(values)

    def forward(
        self,
        tokens: torch.Tensor,
        labels: Optional[torch.Tensor] = None,
        loss_mask: Optional[torch.Tensor] = None,
    ) -> Union[torch.Tensor, LMOutput]:
        """``tokens`` (batch, length) int64 -> logits (batch, length, vocab), or the loss.

        ``loss_mask`` (same shape as ``labels``) weights the per-token losses; the mean is
        over its sum.
        """
        if tokens.shape[-1] > self.config.seq_length:
            raise ValueError(
                f"input length {tokens.shape[-1]} exceeds model seq_length "
                f"{self.config.seq_length}")
        x = self.embed(tokens)
        for block in self.blocks:
            x = block(x)
        logits = self.lm_head(self.final_norm(x))
        if labels is None:
            return logits
        return self.loss(logits, labels, loss_mask)

    def loss(
        self, logits: torch.Tensor, labels: torch.Tensor, loss_mask: Optional[torch.Tensor] = None
    ) -> LMOutput:
        """Mean cross-entropy plus ``z_loss_coef * mean(logsumexp(logits)^2)``, in float32."""
        logits = logits.float()
        log_z = torch.logsumexp(logits, dim=-1)
        ce = log_z - logits.gather(-1, labels.unsqueeze(-1)).squeeze(-1)
        z = self.config.z_loss_coef * log_z.square()
        if loss_mask is None:
            ce_mean, z_mean = ce.mean(), z.mean()
        else:
            weights = loss_mask.float()
            total = weights.sum().clamp_min(1.0)
            ce_mean, z_mean = (ce * weights).sum() / total, (z * weights).sum() / total
        return LMOutput(ce_mean + z_mean, ce_mean.detach(), z_mean.detach())


def count_parameters(model: nn.Module, exclude_embeddings: bool = False) -> int:
    """Number of parameters; ``exclude_embeddings`` drops the input embedding and the
    output head (the papers' model sizes, e.g. "150M", count the rest). Works on the meta
    device and under DeepSpeed ZeRO-3 (full sizes of partitioned parameters)."""
    skipped = set()
    if exclude_embeddings:
        for name in ("embed", "lm_head"):
            module = getattr(model, name, None)
            if module is not None:
                skipped.update(id(param) for param in module.parameters())
    return sum(getattr(param, "ds_numel", param.numel())  # ZeRO-3 partitions report 0
               for param in model.parameters() if id(param) not in skipped)
