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


def quantize_rows(weight: Tensor, block_rows: int = 1024) -> torch.ScriptObject:
    """Rows of a weight (out, in), quantised per row and packed for the int8 kernel.

    Each row takes its own scale, so rows quantised apart are quantised as they would be
    together; `block_rows` at a time, so that no float32 copy of a large weight (and of its
    absolute values) is made at once."""
    out_features = weight.shape[0]
    values = torch.empty(weight.shape, dtype=torch.int8)
    scales = []
    with warnings.catch_warnings():  # quantised tensors are announced as deprecated
        warnings.simplefilter("ignore", UserWarning)
        for start in range(0, out_features, block_rows):
            rows = weight[start : start + block_rows].float()
            # the largest magnitude of each row, as `rows.abs().amax(dim=1)` without its copy
            largest = torch.maximum(rows.amax(dim=1), rows.amin(dim=1).neg_())
            scale = (largest / WEIGHT_LEVELS).clamp(min=1e-8).double()
            # torch.quantize_per_channel's arithmetic (fbgemm's): each value times the float32
            # reciprocal of its row's scale, rounded half to even, clamped; vectorised, where
            # that function converts value by value (twice the time of the rest of loading)
            scaled = rows * (1.0 / scale.float())[:, None]
            quantised = scaled.round_().clamp_(-128, 127)
            values[start : start + len(rows)] = quantised
            scales.append(scale)
        scale = torch.cat(scales) if scales else torch.ones(0, dtype=torch.double)
        zero = torch.zeros(out_features, dtype=torch.long)
        quantised = torch._make_per_channel_quantized_tensor(values, scale, zero, 0)
    return torch.ops.quantized.linear_prepack(quantised, None)


class Int8Linear(nn.Module):
    """y = x @ weight.T + bias with int8 weights and activations, each row of the input
    quantised with its own range."""

    # weight rows quantised at a time: a float32 copy of the whole 52k-row vocabulary projection
    # would be the peak of loading in int8 (and each thread quantising holds one block)
    BLOCK_ROWS = 1024
    # weight rows packed apart: packing reads a weight column by column, which keeps to the
    # caches only for a few thousand rows (the 52k-row projection packs in 0.37 s at once,
    # 0.16 s in 4 blocks). Each block's products are those of the whole weight's rows: the
    # kernel quantises the input the same way each time, and sums integers
    PACK_ROWS = 16384
    # inputs up to this many values take their rows' magnitudes in one copy (see `forward`)
    FEW_VALUES = 1 << 16

    def __init__(self, weight: Tensor, bias: Tensor | None = None, map_blocks: Callable = map):
        """`map_blocks` packs the blocks: a thread pool's `map` packs them side by side (the
        kernels let go of the GIL)."""
        super().__init__()
        weight = weight.detach()
        pieces = weight.split(self.PACK_ROWS) if len(weight) else [weight]
        blocks = list(map_blocks(lambda rows: quantize_rows(rows, self.BLOCK_ROWS), pieces))
        self._init(blocks, weight.shape[0], weight.shape[1], bias)

    @classmethod
    def from_blocks(
        cls, blocks: list[torch.ScriptObject], shape: tuple[int, int], bias: Tensor | None = None
    ) -> Int8Linear:
        """The layer of a weight of `shape` whose `PACK_ROWS`-row blocks were packed by
        `quantize_rows` elsewhere (on other threads), in order."""
        layer = cls.__new__(cls)
        nn.Module.__init__(layer)
        layer._init(blocks, shape[0], shape[1], bias)
        return layer

    def _init(
        self, blocks: list[torch.ScriptObject], out: int, in_: int, bias: Tensor | None
    ) -> None:
        self.out_features, self.in_features = out, in_
        # the bias is added after scaling the rows back, not by the kernel
        self._bias = None if bias is None else bias.detach().float()
        self._packed = blocks

    def forward(self, x: Tensor) -> Tensor:
        rows = x.reshape(-1, x.shape[-1]).float()
        # the largest magnitude of each row, (rows, 1); few operations, since at a decoding
        # step's handful of rows each costs more than the arithmetic it does; for many rows
        # (an encoder window), the larger of the largest value and minus the smallest: the
        # same values without a copy of the input's magnitudes, whose fresh pages cost 6x the
        # reductions (12 MB for an MLP layer of base's encoder)
        if rows.numel() <= self.FEW_VALUES:
            size = rows.abs().amax(dim=1, keepdim=True)
        else:
            high, low = rows.amax(dim=1, keepdim=True), rows.amin(dim=1, keepdim=True)
            size = torch.maximum(high, low.neg_())
        size.clamp_(min=1e-12)
        scaled = rows / size
        linear = torch.ops.quantized.linear_dynamic
        if len(self._packed) == 1:
            out = linear(scaled, self._packed[0], False)
        else:
            out = torch.cat([linear(scaled, block, False) for block in self._packed], dim=-1)
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
