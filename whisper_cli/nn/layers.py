"""Layers shared by the networks (Whisper, Speech2Text, Speech2Text2): built on the meta device
without a random initialisation, normalised in float32, and computing in the input's dtype.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class SkipInitOnMeta(nn.Module):
    """A layer built on the meta device (as loading does) skips its random initialisation:
    the checkpoint replaces it, and random fills of meta tensors run through PyTorch's Python
    decompositions, whose first use imports torch._dynamo (a second or more of start-up)."""

    weight: Tensor

    def reset_parameters(self) -> None:
        if self.weight.device.type != "meta":
            super().reset_parameters()  # type: ignore[misc]


class LayerNorm(nn.LayerNorm):
    """Normalises in float32 whatever the compute type (half-precision statistics drift);
    the parameters are cast too, as CPU kernels require of a float32 input."""

    def forward(self, x: Tensor) -> Tensor:
        weight = None if self.weight is None else self.weight.float()
        bias = None if self.bias is None else self.bias.float()
        return F.layer_norm(x.float(), self.normalized_shape, weight, bias, self.eps).to(x.dtype)


# At most this many rows of input make a "skinny" product (decoding steps: one row per beam).
SKINNY_ROWS = 16


def skinny_matmul(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """x (..., in) @ weight (out, in).T (+ bias) for inputs of few rows.

    On CPU, BLAS streams a large weight matrix faster as the left operand of (weight @ x.T).T
    than as the right one of x @ weight.T when x has a handful of rows (bench/README.md has
    the figures); the products are the same dot products.
    """
    rows = x.reshape(-1, x.shape[-1])
    if x.device.type != "cpu" or rows.shape[0] > SKINNY_ROWS:
        return F.linear(x, weight, bias)
    # rows must be contiguous, so that rows.T reaches BLAS as a transposed operand: a
    # (in, rows) matrix laid out column by column (what a transposed product is) takes a
    # 3x slower kernel
    columns = rows.contiguous().T  # (in, rows)
    if bias is None:
        out = torch.mm(weight, columns)
    else:
        out = torch.addmm(bias[:, None], weight, columns)  # (out, rows)
    return out.T.contiguous().reshape(*x.shape[:-1], weight.shape[0])


class Linear(SkipInitOnMeta, nn.Linear):
    def forward(self, x: Tensor) -> Tensor:
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return skinny_matmul(x, self.weight.to(x.dtype), bias)


class Conv1d(SkipInitOnMeta, nn.Conv1d):
    def _conv_forward(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        bias = None if bias is None else bias.to(x.dtype)
        return super()._conv_forward(x, weight.to(x.dtype), bias)


class Embedding(SkipInitOnMeta, nn.Embedding):
    pass
