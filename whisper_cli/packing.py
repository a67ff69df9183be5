"""Whisper's weights laid out for the CPU: fast where decoding streams them every step, small
where it does not.

Decoding one token reads the vocabulary projection (the token embedding matrix: 106 MB in
float32 for the multilingual vocabulary) once per step. BLAS's general matrix product handles
a product with a handful of rows (one per beam) poorly: 5.4 ms a step for 5 beams with base,
about 20 GB/s. oneDNN's linear with the weight packed once into its blocked layout takes 4.1
ms, and it is faster at every row count measured, from 1 to 224. So on the CPU the projection
becomes a `PackedLinear`, and the embedding itself serves only to look tokens up. The decoder
layers' linear layers, which every step reads too, are packed the same way (a further 0.35 s
on the 157-s long-form file with base, beam 5).

Lookups and the encoder's matrix products read each weight a few times per window, so those
weights may stay at the checkpoint's own precision: OpenAI's checkpoints are float16, and a
float16 weight converted to float32 at the moment of use gives exactly the products of one
converted at load. That halves them in memory (base: 53 MB for the lookup table, 40 MB for the
encoder) for a conversion of ~5 ms per 30-s window. A weight is kept in float16 only when that
holds its values exactly, so a float32 checkpoint loses nothing.
"""

from __future__ import annotations

from functools import lru_cache

import torch
from torch import Tensor, nn

from whisper_cli.model import Conv1d, Linear, Whisper
from whisper_cli.quantize import Int8Linear, quantize_linear_layers, replace_linear_layers

# rows of input the packed layout is tuned for: a batch of beams
PACKED_ROWS = 16


class PackedLinear(nn.Module):
    """y = x @ weight.T + bias in float32, the weight packed for oneDNN once."""

    def __init__(self, weight: Tensor, bias: Tensor | None = None):
        super().__init__()
        self.out_features = weight.shape[0]
        weight = weight.detach().float().contiguous()
        self._packed = torch.ops.mkldnn._reorder_linear_weight(weight, PACKED_ROWS)
        self._bias = None if bias is None else bias.detach().float()

    def forward(self, x: Tensor) -> Tensor:
        linear = torch.ops.mkldnn._linear_pointwise
        return linear(x.float(), self._packed, self._bias, "none", [], "").to(x.dtype)


@lru_cache(maxsize=1)
def packing_works() -> bool:
    """Whether this PyTorch has oneDNN's packed linear, and it computes what a plain product
    does: the operators are internal ones (those `torch.compile` uses on the CPU), so a build
    without them, or a release that changes them, falls back to the plain product."""
    if not torch.backends.mkldnn.is_available():
        return False
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(40, 24, generator=generator)
    bias = torch.randn(40, generator=generator)
    x = torch.randn(3, 2, 24, generator=generator)
    try:
        with torch.inference_mode():
            packed = PackedLinear(weight, bias)(x)
    except (AttributeError, RuntimeError, TypeError):
        return False
    expected = x @ weight.T + bias
    return packed.shape == expected.shape and torch.allclose(packed, expected, atol=1e-4)


def halve_if_exact(parameter: nn.Parameter) -> nn.Parameter:
    """The parameter in float16 when float16 holds every value of it exactly, else itself."""
    if parameter.dtype != torch.float32:
        return parameter
    half = parameter.detach().half()
    # compared a block at a time: a float32 copy of the whole would be a transient the size
    # of the matrix
    for original, halved in zip(parameter.detach().split(4096), half.split(4096), strict=True):
        if not torch.equal(halved.float(), original):
            return parameter
    return nn.Parameter(half, requires_grad=False)


def keep_exact_half(module: nn.Module, kinds: tuple[type[nn.Module], ...]) -> None:
    """Store the weights of every `kinds` module inside `module` in float16 where exact;
    those modules convert their weight to the input's type when they run."""
    for child in module.modules():
        if isinstance(child, kinds):
            child.weight = halve_if_exact(child.weight)


def prepare_for_cpu(model: Whisper, compute_type: str) -> None:
    """Lay a loaded model's weights out for decoding on the CPU, in place: int8 linear layers
    for `int8`; for float32, the packed vocabulary projection and float16 storage where exact."""
    decoder = model.decoder
    if compute_type == "int8":
        # the projection streams the whole embedding matrix every step: in int8 a quarter of
        # the memory traffic (1.1 against 6.8 ms a step for 5 beams with base). It and the
        # MLPs' second layers are where int8 rounding moves the result most, so their inputs
        # take a range per row (see quantize.py)
        decoder.output = Int8Linear(decoder.token_embedding.weight, row_ranges=True)
        for block in (*model.encoder.blocks, *decoder.blocks):
            second = block.mlp[2]
            assert isinstance(second, nn.Linear)
            block.mlp[2] = Int8Linear(second.weight, second.bias, row_ranges=True)
        quantize_linear_layers(model)  # the other linear layers
    elif model.dtype == torch.float32 and packing_works():
        decoder.output = PackedLinear(decoder.token_embedding.weight)
        for block in decoder.blocks:
            replace_linear_layers(block.attn, PackedLinear)
            replace_linear_layers(block.mlp, PackedLinear)
            # not the cross-attention keys and values: they read the audio, 1500 rows, once
            cross = block.cross_attn
            assert cross is not None
            cross.query = PackedLinear(cross.query.weight, cross.query.bias)
            cross.out = PackedLinear(cross.out.weight, cross.out.bias)
    if model.dtype != torch.float32:
        return
    if decoder.output is not None:  # the embedding now only looks tokens up
        decoder.token_embedding.weight = halve_if_exact(decoder.token_embedding.weight)
    keep_exact_half(model.encoder, (Linear, Conv1d))
