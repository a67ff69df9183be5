"""What both Speech2Text networks share: fairseq's sinusoidal positions and the attention
layer with transformers' parameter names."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from whisper_cli.nn.layers import Linear


def sinusoids(positions: Tensor, channels: int) -> Tensor:
    """fairseq's sinusoidal embedding of integer `positions` (...,) → (..., channels) float32.

    Sines of all frequencies, then cosines (not interleaved); an odd channel count gets a
    zero last channel. The arithmetic, in float32, is transformers' table construction,
    evaluated only at the rows asked for, so rows agree to the bit; computing only the rows a
    step needs keeps the models free of buffers and of a length limit.
    """
    half = channels // 2
    step = math.log(10_000) / (half - 1)
    frequencies = torch.exp(torch.arange(half, device=positions.device).float() * -step)
    angles = positions.float()[..., None] * frequencies  # (..., half)
    table = torch.cat([angles.sin(), angles.cos()], dim=-1)
    if channels % 2:
        table = F.pad(table, (0, 1))
    return table


class Attention(nn.Module):
    """Multi-head attention with biased projections (transformers' names), shared by both
    Speech2Text families; keys and values are projected separately so a decoder can cache
    them, here already split into heads."""

    def __init__(self, d_model: int, n_head: int):
        super().__init__()
        self.n_head = n_head
        self.q_proj = Linear(d_model, d_model)
        self.k_proj = Linear(d_model, d_model)
        self.v_proj = Linear(d_model, d_model)
        self.out_proj = Linear(d_model, d_model)

    def split_heads(self, x: Tensor) -> Tensor:
        b, t, c = x.shape
        return x.view(b, t, self.n_head, c // self.n_head).transpose(1, 2)  # (B, H, T, D)

    def keys_values(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x (B, T, C) → keys and values (B, H, T, D)."""
        return self.split_heads(self.k_proj(x)), self.split_heads(self.v_proj(x))

    def forward(self, x: Tensor, key: Tensor, value: Tensor, mask: Tensor | None = None) -> Tensor:
        """Queries from x (B, T, C) attend to key/value (B, H, S, D); `mask` (T, S) is True
        where attention is allowed. → (B, T, C)"""
        q = self.split_heads(self.q_proj(x))
        out = F.scaled_dot_product_attention(q, key, value, attn_mask=mask)  # (B, H, T, D)
        b, h, t, d = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, t, h * d))
