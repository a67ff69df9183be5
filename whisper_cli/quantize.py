"""Dynamic int8 linear layers for the CPU (`--compute-type int8`).

Weights are quantised once, per output channel, to int8; activations are quantised per call.
The matrix products run in PyTorch's fbgemm/onednn int8 kernels, the CPU path that
faster-whisper's CTranslate2 int8 also relies on for its speed.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
from torch import Tensor, nn


class Int8Linear(nn.Module):
    def __init__(self, weight: Tensor, bias: Tensor | None = None):
        super().__init__()
        weight = weight.detach().float()
        self.in_features, self.out_features = weight.shape[1], weight.shape[0]
        scale = (weight.abs().amax(dim=1) / 127).clamp(min=1e-8).double()
        zero = torch.zeros(self.out_features, dtype=torch.long)
        with warnings.catch_warnings():  # quantised tensors are announced as deprecated
            warnings.simplefilter("ignore", UserWarning)
            quantised = torch.quantize_per_channel(weight, scale, zero, 0, torch.qint8)
        bias = None if bias is None else bias.detach().float()
        self._packed = torch.ops.quantized.linear_prepack(quantised, bias)

    def forward(self, x: Tensor) -> Tensor:
        shape = x.shape
        out = torch.ops.quantized.linear_dynamic(
            x.reshape(-1, shape[-1]).float(), self._packed, True
        )
        return out.reshape(*shape[:-1], self.out_features).to(x.dtype)


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
