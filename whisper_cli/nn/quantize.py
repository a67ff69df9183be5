"""Dynamic int8 linear layers for the CPU (`--compute-type int8`).

Weights are quantised once, per output channel; activations are quantised per call. The
matrix products run in PyTorch's fbgemm/oneDNN int8 kernels, the CPU path that
faster-whisper's CTranslate2 int8 also relies on for its speed.

Two choices keep the rounding error below CTranslate2's rather than several times above it:

- Weights take 7 bits (-63..63) and activations the full 8 (0..255). On AVX2 without VNNI the
  kernel adds pairs of 8-bit products in 16 bits, which overflows when both sides use 8 bits;
  PyTorch's usual answer is 7-bit activations (`reduce_range`). Taking the bit from the weights
  instead is as safe (2 x 255 x 63 < 2**15) and more accurate, since each weight row has its
  own scale while an input's values share one.
- The kernel gives a whole input one range, so quiet rows lose precision next to loud ones
  (an encoder's 1500 frames span orders of magnitude). Each row is scaled to the same range
  first and scaled back after, as CTranslate2 quantises each row: a few element-wise passes, a
  small part of a decoding step. Over the short recordings of `bench/int8_drift.py`, int8
  changes fewest of float32's words with a range per row in every layer (rather than only in
  some; a layer-by-layer measure of the next-token distribution first pointed at the MLPs'
  second layers and the vocabulary projection).

Against float32, the encoder output's error and the next-token distributions' divergence stay
well below those of PyTorch's usual dynamic int8 (8-bit weights, one 7-bit range per input);
figures in bench/README.md.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
from torch import Tensor, nn

WEIGHT_LEVELS = 63  # 7-bit weights, see above


class Int8Linear(nn.Module):
    """y = x @ weight.T + bias with int8 weights and activations, each row of the input
    quantised with its own range."""

    # weight rows quantised at a time: a float32 copy of the whole 52k-row vocabulary projection
    # (and its absolute values) would be the peak of loading in int8
    BLOCK_ROWS = 4096

    def __init__(self, weight: Tensor, bias: Tensor | None = None):
        super().__init__()
        weight = weight.detach()
        self.out_features, self.in_features = weight.shape
        values = torch.empty(weight.shape, dtype=torch.int8)
        scales = []
        with warnings.catch_warnings():  # quantised tensors are announced as deprecated
            warnings.simplefilter("ignore", UserWarning)
            for start in range(0, self.out_features, self.BLOCK_ROWS):
                rows = weight[start : start + self.BLOCK_ROWS].float()
                scale = (rows.abs().amax(dim=1) / WEIGHT_LEVELS).clamp(min=1e-8).double()
                zero = torch.zeros(len(rows), dtype=torch.long)
                block = torch.quantize_per_channel(rows, scale, zero, 0, torch.qint8)
                values[start : start + len(rows)] = block.int_repr()
                scales.append(scale)
            scale = torch.cat(scales)
            zero = torch.zeros(self.out_features, dtype=torch.long)
            quantised = torch._make_per_channel_quantized_tensor(values, scale, zero, 0)
        # the bias is added after scaling the rows back, not by the kernel
        self._bias = None if bias is None else bias.detach().float()
        self._packed = torch.ops.quantized.linear_prepack(quantised, None)

    def forward(self, x: Tensor) -> Tensor:
        rows = x.reshape(-1, x.shape[-1]).float()
        # the largest magnitude of each row, (rows, 1); few operations, since at a decoding
        # step's handful of rows each costs more than the arithmetic it does
        size = rows.abs().amax(dim=1, keepdim=True).clamp_(min=1e-12)
        out = torch.ops.quantized.linear_dynamic(rows / size, self._packed, False)
        if self._bias is None:
            out.mul_(size)
        else:
            torch.addcmul(self._bias, out, size, out=out)
        return out.view(*x.shape[:-1], self.out_features).to(x.dtype)


def replace_linear_layers(
    module: nn.Module, make: Callable[[Tensor, Tensor | None], nn.Module]
) -> nn.Module:
    """Replace every `nn.Linear` inside `module` by `make(weight, bias)`, in place."""
    for name, child in module.named_children():
        if isinstance(child, nn.Linear):
            setattr(module, name, make(child.weight, child.bias))
        else:
            replace_linear_layers(child, make)
    return module


def quantize_linear_layers(module: nn.Module) -> nn.Module:
    """Replace every `nn.Linear` inside `module` by an `Int8Linear`, in place."""
    return replace_linear_layers(module, Int8Linear)
