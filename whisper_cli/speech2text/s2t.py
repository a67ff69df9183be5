"""The Speech2Text network (fairseq S2T, `model_type: speech_to_text` on the Hub).

A stack of strided 1-D convolutions with gated linear units shortens the normalised fbank
frames (`features.py`) about fourfold; a pre-norm Transformer encoder and decoder follow, with
fixed sinusoidal positions, embeddings scaled by sqrt(d_model) and, usually, an output
projection tied to the token embedding.

Attribute names are those of transformers' `Speech2TextForConditionalGeneration` without the
leading `model.`, so `convert_state` only strips that prefix and drops the position tables.
Those tables are not weights: positions are computed in forward for exactly the rows a call
needs, so a model built on the meta device is complete once `load_state_dict(assign=True)`
has run: no buffer to initialise afterwards, and no limit on input or output length.

Positions follow fairseq and transformers: position p (from 0) uses sinusoid row
p + pad_token_id + 1; a padding token gets a zero vector and is not counted, so with the
cache (one token a step, as transformers' generate runs) a generated <pad> only zeroes its
own position. Shapes in comments use B = batch, F = fbank frames, S = encoder positions,
T = tokens, C = d_model, H = heads, D = C // H.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from whisper_cli.errors import ModelError
from whisper_cli.nn.layers import Conv1d, Embedding, LayerNorm, Linear, skinny_matmul
from whisper_cli.speech2text.layers import Attention, sinusoids

# transformers' names for the activations it has, restricted to the ones implemented here
ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "relu": F.relu,
    "gelu": F.gelu,
    "gelu_new": partial(F.gelu, approximate="tanh"),
    "gelu_pytorch_tanh": partial(F.gelu, approximate="tanh"),
    "silu": F.silu,
    "swish": F.silu,
    "tanh": torch.tanh,
}


# One decoder layer's cache: self-attention keys and values (B, H, T, D), then the
# cross-attention keys and values (B, H, S, D).
LayerCache = tuple[Tensor, ...]


@dataclass(frozen=True)
class Speech2TextConfig:
    """What the network needs from a checkpoint's config.json (transformers' names)."""

    vocab_size: int
    d_model: int
    encoder_layers: int
    encoder_attention_heads: int
    encoder_ffn_dim: int
    decoder_layers: int
    decoder_attention_heads: int
    decoder_ffn_dim: int
    activation_function: str
    scale_embedding: bool
    conv_kernel_sizes: tuple[int, ...]  # one per convolution layer
    conv_channels: int  # the convolutions' width before the gate halves it
    input_feat_per_channel: int  # fbank bins per frame
    input_channels: int
    max_source_positions: int  # what the model was trained for; not enforced here
    max_target_positions: int
    pad_token_id: int
    eos_token_id: int
    decoder_start_token_id: int
    tie_word_embeddings: bool

    @property
    def num_conv_layers(self) -> int:
        return len(self.conv_kernel_sizes)

    @property
    def num_mel_bins(self) -> int:
        return self.input_feat_per_channel * self.input_channels

    @classmethod
    def from_json(cls, raw: dict[str, Any], source: Path) -> Speech2TextConfig:
        """The configuration in a `config.json`, every value checked before anything is built.

        Missing keys take transformers' defaults. Raises ModelError naming `source`.
        """
        model_type = raw.get("model_type", "speech_to_text")
        if model_type != "speech_to_text":
            raise ModelError(f"{source}: model_type {model_type!r} is not speech_to_text")

        def integer(key: str, default: int, low: int, high: int, nullable: bool = False) -> int:
            value = raw.get(key, default)
            if value is None and nullable:  # some configs write null for "the default"
                value = default
            if isinstance(value, bool) or not isinstance(value, int):
                raise ModelError(f"{source}: {key} must be an integer, not {value!r}")
            if not low <= value <= high:
                raise ModelError(f"{source}: {key} = {value} is out of range [{low}, {high}]")
            return value

        def flag(key: str, default: bool) -> bool:
            value = raw.get(key, default)
            if not isinstance(value, bool):
                raise ModelError(f"{source}: {key} must be true or false, not {value!r}")
            return value

        vocab_size = integer("vocab_size", 10_000, 4, 1_000_000)
        # fewer than 4 channels leave no frequencies for the sinusoids (a division by zero)
        d_model = integer("d_model", 256, 4, 16_384)
        heads = {}
        for side in ("encoder", "decoder"):
            key = f"{side}_attention_heads"
            heads[side] = integer(key, 4, 1, 1024)
            if d_model % heads[side]:
                raise ModelError(f"{source}: d_model = {d_model} is not divisible by {key}")
        activation = raw.get("activation_function", "relu")
        if activation not in ACTIVATIONS:
            known = ", ".join(ACTIVATIONS)
            raise ModelError(
                f"{source}: activation_function = {activation!r} is not supported ({known})"
            )
        num_conv_layers = integer("num_conv_layers", 2, 1, 8)
        kernels = raw.get("conv_kernel_sizes", [5, 5])
        if not isinstance(kernels, list) or len(kernels) != num_conv_layers:
            raise ModelError(
                f"{source}: conv_kernel_sizes = {kernels!r} must list {num_conv_layers} sizes"
                " (num_conv_layers)"
            )
        for kernel in kernels:
            if isinstance(kernel, bool) or not isinstance(kernel, int) or not 1 <= kernel <= 64:
                raise ModelError(
                    f"{source}: conv_kernel_sizes = {kernels!r} is out of range [1, 64]"
                )
        conv_channels = integer("conv_channels", 1024, 2, 65_536)
        if num_conv_layers > 1 and conv_channels % 2:
            raise ModelError(
                f"{source}: conv_channels = {conv_channels} must be even (the gate halves it)"
            )
        pad = integer("pad_token_id", 1, 0, vocab_size - 1)
        eos = integer("eos_token_id", 2, 0, vocab_size - 1, nullable=True)
        return cls(
            vocab_size=vocab_size,
            d_model=d_model,
            encoder_layers=integer("encoder_layers", 12, 1, 128),
            encoder_attention_heads=heads["encoder"],
            encoder_ffn_dim=integer("encoder_ffn_dim", 2048, 1, 131_072),
            decoder_layers=integer("decoder_layers", 6, 1, 128),
            decoder_attention_heads=heads["decoder"],
            decoder_ffn_dim=integer("decoder_ffn_dim", 2048, 1, 131_072),
            activation_function=activation,
            scale_embedding=flag("scale_embedding", True),
            conv_kernel_sizes=tuple(kernels),
            conv_channels=conv_channels,
            input_feat_per_channel=integer("input_feat_per_channel", 80, 1, 1024),
            # the fbank features have one channel; no Speech2Text checkpoint uses more
            input_channels=integer("input_channels", 1, 1, 1),
            max_source_positions=integer("max_source_positions", 6000, 1, 1 << 20),
            max_target_positions=integer("max_target_positions", 1024, 1, 1 << 20),
            pad_token_id=pad,
            eos_token_id=eos,
            decoder_start_token_id=integer(
                "decoder_start_token_id", eos, 0, vocab_size - 1, nullable=True
            ),
            tie_word_embeddings=flag("tie_word_embeddings", True),
        )


class EncoderLayer(nn.Module):
    def __init__(self, config: Speech2TextConfig):
        super().__init__()
        c = config.d_model
        self.self_attn = Attention(c, config.encoder_attention_heads)
        self.self_attn_layer_norm = LayerNorm(c)
        self.fc1 = Linear(c, config.encoder_ffn_dim)
        self.fc2 = Linear(config.encoder_ffn_dim, c)
        self.activation = ACTIVATIONS[config.activation_function]
        self.final_layer_norm = LayerNorm(c)

    def forward(self, x: Tensor) -> Tensor:
        """x (B, S, C) → (B, S, C); pre-norm residual blocks."""
        h = self.self_attn_layer_norm(x)
        x = x + self.self_attn(h, *self.self_attn.keys_values(h))
        return x + self.fc2(self.activation(self.fc1(self.final_layer_norm(x))))


class DecoderLayer(nn.Module):
    def __init__(self, config: Speech2TextConfig):
        super().__init__()
        c, n_head = config.d_model, config.decoder_attention_heads
        self.self_attn = Attention(c, n_head)
        self.self_attn_layer_norm = LayerNorm(c)
        self.encoder_attn = Attention(c, n_head)
        self.encoder_attn_layer_norm = LayerNorm(c)
        self.fc1 = Linear(c, config.decoder_ffn_dim)
        self.fc2 = Linear(config.decoder_ffn_dim, c)
        self.activation = ACTIVATIONS[config.activation_function]
        self.final_layer_norm = LayerNorm(c)

    def forward(
        self, x: Tensor, cache: LayerCache, mask: Tensor | None
    ) -> tuple[Tensor, LayerCache]:
        """New tokens x (B, T, C) after the cached ones → (B, T, C) and the extended cache.

        `cache` holds the earlier tokens' self-attention keys/values (B, H, T_past, D), empty
        on the first call, and the cross-attention keys/values of the encoder output.
        """
        past_key, past_value, cross_key, cross_value = cache
        h = self.self_attn_layer_norm(x)
        key, value = self.self_attn.keys_values(h)
        key = torch.cat([past_key, key], dim=2)  # (B, H, T_past + T, D)
        value = torch.cat([past_value, value], dim=2)
        x = x + self.self_attn(h, key, value, mask)
        x = x + self.encoder_attn(self.encoder_attn_layer_norm(x), cross_key, cross_value)
        x = x + self.fc2(self.activation(self.fc1(self.final_layer_norm(x))))
        return x, (key, value, cross_key, cross_value)


class Conv1dSubsampler(nn.Module):
    """Stride-2 convolutions, each followed by a gated linear unit that halves the channels:
    (B, F, n_mels) → (B, S, C) with S = F halved (rounding up) once per layer."""

    def __init__(self, config: Speech2TextConfig):
        super().__init__()
        n = config.num_conv_layers
        widths_in = [config.num_mel_bins] + [config.conv_channels // 2] * (n - 1)
        widths_out = [config.conv_channels] * (n - 1) + [2 * config.d_model]
        self.conv_layers = nn.ModuleList(
            Conv1d(w_in, w_out, kernel_size=k, stride=2, padding=k // 2)
            for w_in, w_out, k in zip(widths_in, widths_out, config.conv_kernel_sizes, strict=True)
        )

    def forward(self, features: Tensor) -> Tensor:
        x = features.transpose(1, 2)  # (B, n_mels, F)
        for conv in self.conv_layers:
            x = F.glu(conv(x), dim=1)
        return x.transpose(1, 2)  # (B, S, C)


class Encoder(nn.Module):
    def __init__(self, config: Speech2TextConfig):
        super().__init__()
        self.config = config
        self.conv = Conv1dSubsampler(config)
        self.layers = nn.ModuleList(EncoderLayer(config) for _ in range(config.encoder_layers))
        self.layer_norm = LayerNorm(config.d_model)

    def forward(self, features: Tensor) -> Tensor:
        x = self.conv(features)  # (B, S, C)
        if self.config.scale_embedding:
            x = x * math.sqrt(self.config.d_model)
        first = self.config.pad_token_id + 1  # fairseq numbers positions after the pad id
        positions = torch.arange(first, first + x.shape[1], device=x.device)
        x = x + sinusoids(positions, self.config.d_model).to(x.dtype)
        for layer in self.layers:
            x = layer(x)
        return self.layer_norm(x)


class Decoder(nn.Module):
    def __init__(self, config: Speech2TextConfig):
        super().__init__()
        self.config = config
        self.embed_tokens = Embedding(config.vocab_size, config.d_model)
        self.layers = nn.ModuleList(DecoderLayer(config) for _ in range(config.decoder_layers))
        self.layer_norm = LayerNorm(config.d_model)

    def embed(self, tokens: Tensor, past: int) -> Tensor:
        """Token plus position embeddings of new tokens (B, T) → (B, T, C).

        As in transformers, the new tokens are numbered on from the `past` cached ones, a
        padding token is skipped in that count and gets no position vector.
        """
        x = self.embed_tokens(tokens)
        if self.config.scale_embedding:
            x = x * math.sqrt(self.config.d_model)
        real = tokens != self.config.pad_token_id
        positions = (real.cumsum(dim=1) + past) * real + self.config.pad_token_id
        table = sinusoids(positions, self.config.d_model) * real[..., None]
        return x + table.to(x.dtype)


class Speech2Text(nn.Module):
    def __init__(self, config: Speech2TextConfig):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        # an untied output projection; tied checkpoints reuse decoder.embed_tokens
        self.lm_head = (
            None
            if config.tie_word_embeddings
            else Linear(config.d_model, config.vocab_size, bias=False)
        )

    @property
    def device(self) -> torch.device:
        return self.decoder.embed_tokens.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.decoder.embed_tokens.weight.dtype

    def encode(self, features: Tensor) -> Tensor:
        """features (batch, frames, n_mels) normalised fbank -> (batch, source_len, d_model)"""
        return self.encoder(features.to(device=self.device, dtype=self.dtype))

    def decode(
        self, tokens: Tensor, encoder_out: Tensor, cache: list[LayerCache] | None
    ) -> tuple[Tensor, list[LayerCache]]:
        """Run the decoder on the tokens after the cached ones.

        tokens (B, T_new); encoder_out (B, S, C), read only when `cache` is None, to compute
        every layer's cross-attention keys and values once. The cache is a list with one tuple
        per decoder layer: (self-attention keys, values, cross-attention keys, values), each
        (B, H, length, D), so beams are reordered with `t.index_select(0, rows)` on every
        tensor. The new tokens' positions continue from the cache length.

        → logits (B, T_new, vocab) in float32, and the cache extended by the new tokens.
        """
        if cache is None:
            cache = []
            for layer in self.decoder.layers:
                cross_key, cross_value = layer.encoder_attn.keys_values(encoder_out.to(self.dtype))
                empty = cross_key.new_zeros(*cross_key.shape[:2], 0, cross_key.shape[3])
                cache.append((empty, empty, cross_key, cross_value))
        past, new = cache[0][0].shape[2], tokens.shape[1]
        x = self.decoder.embed(tokens, past)
        mask = None  # a single new token may see every earlier one
        if new > 1:  # new token i sees the cached tokens and new tokens up to i
            mask = torch.ones(new, past + new, dtype=torch.bool, device=x.device).tril(past)
        new_cache = []
        for layer, layer_cache in zip(self.decoder.layers, cache, strict=True):
            x, layer_cache = layer(x, layer_cache, mask)
            new_cache.append(layer_cache)
        hidden = self.decoder.layer_norm(x)  # (B, T_new, C)
        if self.lm_head is not None:
            return self.lm_head(hidden).float(), new_cache
        weight = self.decoder.embed_tokens.weight.to(hidden.dtype)
        return skinny_matmul(hidden, weight).float(), new_cache


# tensors of a transformers checkpoint that are recomputed here rather than loaded
_POSITION_TABLES = ("encoder.embed_positions.weights", "decoder.embed_positions.weights")


def convert_state(state: dict[str, Tensor], config: Speech2TextConfig) -> dict[str, Tensor]:
    """transformers' tensor names (Speech2TextForConditionalGeneration, or Speech2TextModel
    without the `model.` prefix) → this module's.

    The sinusoidal position tables are dropped: they are computed, not learnt. A tied
    `lm_head.weight` is dropped when it equals the token embedding; if it differs, it is
    kept, so that the caller's strict key check reports it instead of silently choosing one.
    Every other unknown key is kept for the same reason.
    """
    out: dict[str, Tensor] = {}
    for key, tensor in state.items():
        name = key.removeprefix("model.")
        if name in _POSITION_TABLES:
            continue
        out[name] = tensor
    embedding = out.get("decoder.embed_tokens.weight")
    head = out.get("lm_head.weight")
    if (
        config.tie_word_embeddings
        and head is not None
        and embedding is not None
        and head.shape == embedding.shape
        and torch.equal(head, embedding)
    ):
        del out["lm_head.weight"]
    return out
