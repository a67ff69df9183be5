"""The Speech2Text2 network: a wav2vec 2.0 encoder on the raw waveform and a small text decoder.

Hugging Face stores these checkpoints (`facebook/s2t-wav2vec2-large-en-de` and siblings) as a
`SpeechEncoderDecoderModel`: `encoder` is a `Wav2Vec2Model`, `decoder` a
`Speech2Text2ForCausalLM`, and `enc_to_dec_proj` a linear map between them when their widths
differ. The encoder is a stack of strided 1-D convolutions (320 samples per frame at 16 kHz), a
projection to the model width, a grouped convolution as relative position embedding, and a
Transformer whose layers are pre-norm (`do_stable_layer_norm`, the large "lv60" checkpoints) or
post-norm (the base ones). The decoder is a post-norm Transformer with fixed sinusoidal
positions and no final layer norm.

Attribute names are the checkpoint's without the wrapper modules (`encoder.encoder.`,
`encoder.feature_extractor.`, `decoder.model.decoder.`); `convert_state` maps the names and folds
the weight norm of the position convolution into a plain weight.

Loading: build `Speech2Text2(config)` on the meta device, `convert_state`, check keys and
shapes against `state_dict()`, then `load_state_dict(..., assign=True)`. Nothing else is
needed afterwards: the model has no buffers (the decoder computes the sinusoids of the
positions it needs at each step).

Shapes in comments: B = batch, N = samples, T = frames or tokens, S = encoder frames,
C = channels, H = heads, D = C // H.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from whisper_cli.nn.layers import Conv1d, Embedding, LayerNorm, Linear
from whisper_cli.speech2text.layers import Attention, sinusoids
from whisper_cli.speech2text.s2t2_config import ACTIVATIONS, Speech2Text2Config

NORM_EPS = 1e-5  # the conv layers' and the decoder's layer norms: fixed, not configurable
WAVEFORM_EPS = 1e-7  # Wav2Vec2FeatureExtractor: added to the variance before the square root

Cache = list[tuple[Tensor, ...]]


# ---------------------------------------------------------------------------------------------
# input


def normalize_waveform(samples: np.ndarray) -> np.ndarray:
    """Zero mean and unit variance over the whole utterance, as the checkpoints were trained.

    The same float32 operations as transformers' `Wav2Vec2FeatureExtractor(do_normalize=True)`
    on one unpadded utterance, so the result is the same to the bit: (x - mean) /
    sqrt(var + 1e-7). `samples` is one 1-D waveform; the result is float32.
    """
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"expected one 1-D waveform, got shape {x.shape}")
    if x.size == 0:
        return x.copy()
    return (x - x.mean()) / np.sqrt(x.var() + WAVEFORM_EPS)


# ---------------------------------------------------------------------------------------------
# layers


# The norms compute in float32 whatever the compute type: half-precision statistics drift, and
# the CPU kernels refuse float32 input with half-precision parameters, so those are cast too.


class GroupNorm(nn.GroupNorm):
    def forward(self, x: Tensor) -> Tensor:
        weight, bias = self.weight.float(), self.bias.float()
        return F.group_norm(x.float(), self.num_groups, weight, bias, self.eps).type(x.dtype)


class FeatureConv(nn.Module):
    """One layer of the convolutional feature encoder: conv, optional norm, activation."""

    def __init__(self, config: Speech2Text2Config, i: int):
        super().__init__()
        c_in = config.conv_dim[i - 1] if i > 0 else 1
        c_out = config.conv_dim[i]
        kernel, stride = config.conv_kernel[i], config.conv_stride[i]
        self.conv = Conv1d(c_in, c_out, kernel, stride=stride, bias=config.conv_bias)
        self.norm = (
            config.feat_extract_norm if config.feat_extract_norm == "layer" or i == 0 else None
        )
        if self.norm == "layer":  # over the channels of each frame
            self.layer_norm: nn.Module | None = LayerNorm(c_out, eps=NORM_EPS)
        elif self.norm == "group":  # one group per channel: each channel over time
            self.layer_norm = GroupNorm(c_out, c_out, eps=NORM_EPS)
        else:
            self.layer_norm = None
        self.activation = ACTIVATIONS[config.feat_extract_activation]

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, C_in, T_in) → (B, C_out, T_out)."""
        x = self.conv(x)
        if self.norm == "layer":
            x = self.layer_norm(x.transpose(1, 2)).transpose(1, 2)
        elif self.norm == "group":
            x = self.layer_norm(x)
        return self.activation(x)


class FeatureProjection(nn.Module):
    def __init__(self, c_in: int, c_out: int, eps: float):
        super().__init__()
        self.layer_norm = LayerNorm(c_in, eps=eps)
        self.projection = Linear(c_in, c_out)

    def forward(self, x: Tensor) -> Tensor:
        return self.projection(self.layer_norm(x))


class FeedForward(nn.Module):
    def __init__(self, n_state: int, n_hidden: int, activation: str):
        super().__init__()
        self.intermediate_dense = Linear(n_state, n_hidden)
        self.output_dense = Linear(n_hidden, n_state)
        self.activation = ACTIVATIONS[activation]

    def forward(self, x: Tensor) -> Tensor:
        return self.output_dense(self.activation(self.intermediate_dense(x)))


class EncoderLayer(nn.Module):
    def __init__(self, config: Speech2Text2Config):
        super().__init__()
        n_state, eps = config.hidden_size, config.layer_norm_eps
        self.pre_norm = config.do_stable_layer_norm
        self.attention = Attention(n_state, config.num_attention_heads)
        self.layer_norm = LayerNorm(n_state, eps=eps)
        self.feed_forward = FeedForward(n_state, config.intermediate_size, config.hidden_act)
        self.final_layer_norm = LayerNorm(n_state, eps=eps)

    def _self_attention(self, x: Tensor) -> Tensor:
        return self.attention(x, *self.attention.keys_values(x))

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, S, C) → (B, S, C)."""
        if self.pre_norm:
            x = x + self._self_attention(self.layer_norm(x))
            return x + self.feed_forward(self.final_layer_norm(x))
        x = self.layer_norm(x + self._self_attention(x))
        return self.final_layer_norm(x + self.feed_forward(x))


class Wav2Vec2Encoder(nn.Module):
    def __init__(self, config: Speech2Text2Config):
        super().__init__()
        n_state, kernel = config.hidden_size, config.num_conv_pos_embeddings
        self.conv_layers = nn.ModuleList(
            FeatureConv(config, i) for i in range(len(config.conv_dim))
        )
        self.feature_projection = FeatureProjection(
            config.conv_dim[-1], n_state, config.layer_norm_eps
        )
        # relative positions: a grouped convolution over time whose output is added to the input
        self.pos_conv = Conv1d(
            n_state,
            n_state,
            kernel,
            padding=kernel // 2,
            groups=config.num_conv_pos_embedding_groups,
        )
        self.pos_conv_trim = 1 if kernel % 2 == 0 else 0  # an even kernel adds one frame
        self.pos_activation = ACTIVATIONS[config.feat_extract_activation]
        self.pre_norm = config.do_stable_layer_norm
        self.layer_norm = LayerNorm(n_state, eps=config.layer_norm_eps)
        self.layers = nn.ModuleList(EncoderLayer(config) for _ in range(config.num_hidden_layers))

    def forward(self, samples: Tensor) -> Tensor:
        """samples: (B, N) normalised waveform → (B, S, C), S = about N / 320."""
        x = samples[:, None, :]  # (B, 1, N)
        for layer in self.conv_layers:
            x = layer(x)
        x = self.feature_projection(x.transpose(1, 2))  # (B, S, C)
        positions = self.pos_conv(x.transpose(1, 2))  # (B, C, S + trim)
        positions = positions[:, :, : positions.shape[2] - self.pos_conv_trim]
        x = x + self.pos_activation(positions).transpose(1, 2)
        if not self.pre_norm:
            x = self.layer_norm(x)
        for layer in self.layers:
            x = layer(x)
        return self.layer_norm(x) if self.pre_norm else x


class DecoderLayer(nn.Module):
    """A post-norm decoder layer: each sublayer's residual sum is then normalised."""

    def __init__(self, config: Speech2Text2Config):
        super().__init__()
        n_state, n_head = config.d_model, config.decoder_attention_heads
        self.self_attn = Attention(n_state, n_head)
        self.self_attn_layer_norm = LayerNorm(n_state, eps=NORM_EPS)
        self.encoder_attn = Attention(n_state, n_head)
        self.encoder_attn_layer_norm = LayerNorm(n_state, eps=NORM_EPS)
        self.fc1 = Linear(n_state, config.decoder_ffn_dim)
        self.fc2 = Linear(config.decoder_ffn_dim, n_state)
        self.final_layer_norm = LayerNorm(n_state, eps=NORM_EPS)
        self.activation = ACTIVATIONS[config.activation_function]

    def cross_keys(self, encoder_out: Tensor) -> tuple[Tensor, Tensor]:
        return self.encoder_attn.k_proj(encoder_out), self.encoder_attn.v_proj(encoder_out)

    def forward(
        self, x: Tensor, cache: tuple[Tensor, ...] | None, cross: tuple[Tensor, Tensor]
    ) -> tuple[Tensor, tuple[Tensor, ...]]:
        """New tokens x: (B, T, C) after the cached ones → (B, T, C) and this layer's cache
        (self keys, self values: (B, past + T, C); cross keys, cross values: (B, S, C))."""
        key, value = self.self_attn.k_proj(x), self.self_attn.v_proj(x)
        if cache is not None:
            key, value = torch.cat([cache[0], key], dim=1), torch.cat([cache[1], value], dim=1)
        n_new, n_all = x.shape[1], key.shape[1]
        mask = None  # one new token sees every cached one
        if n_new > 1:  # new token i sees the cached tokens and the new ones up to i
            mask = torch.ones(n_new, n_all, dtype=torch.bool, device=x.device)
            mask = mask.tril(n_all - n_new)
        self_attn, encoder_attn = self.self_attn, self.encoder_attn
        heads = self_attn.split_heads  # the cache keeps (B, T, C); attention wants (B, H, T, D)
        x = self.self_attn_layer_norm(x + self_attn(x, heads(key), heads(value), mask))
        cross_key, cross_value = (encoder_attn.split_heads(t) for t in cross)
        x = self.encoder_attn_layer_norm(x + encoder_attn(x, cross_key, cross_value))
        x = self.final_layer_norm(x + self.fc2(self.activation(self.fc1(x))))
        return x, (key, value, *cross)


class Speech2Text2Decoder(nn.Module):
    def __init__(self, config: Speech2Text2Config):
        super().__init__()
        self.pad = config.pad_token_id
        self.embed_scale = math.sqrt(config.d_model) if config.scale_embedding else 1.0
        self.embed_tokens = Embedding(config.vocab_size, config.d_model)
        self.layers = nn.ModuleList(DecoderLayer(config) for _ in range(config.decoder_layers))

    def positions(self, tokens: Tensor, past: int) -> Tensor:
        """Position vectors of tokens (B, T) that follow `past` cached ones → (B, T, C).

        As fairseq counts them: the first token is position pad + 1; a padding token gets the
        zero vector and is not counted among the new tokens (transformers does the same).
        """
        real = tokens != self.pad
        index = (real.cumsum(dim=1) + past) * real + self.pad  # (B, T)
        vectors = sinusoids(index, self.embed_tokens.embedding_dim)
        return vectors * real[..., None]

    def forward(
        self, tokens: Tensor, encoder_out: Tensor, cache: Cache | None
    ) -> tuple[Tensor, Cache]:
        """tokens (B, T) after the cached ones → hidden states (B, T, C) and the new cache."""
        past = 0 if cache is None else cache[0][0].shape[1]
        x = self.embed_tokens(tokens) * self.embed_scale
        x = x + self.positions(tokens, past).to(x.dtype)
        new_cache: Cache = []
        for i, layer in enumerate(self.layers):
            if cache is None:
                key, value = layer.cross_keys(encoder_out.to(x.dtype))  # (B_enc, S, C)
                if key.shape[0] != tokens.shape[0]:  # one audio shared by every row
                    key = key.expand(tokens.shape[0], -1, -1)
                    value = value.expand(tokens.shape[0], -1, -1)
                x, layer_cache = layer(x, None, (key, value))
            else:
                x, layer_cache = layer(x, cache[i], (cache[i][2], cache[i][3]))
            new_cache.append(layer_cache)
        return x, new_cache


# ---------------------------------------------------------------------------------------------
# the model


class Speech2Text2(nn.Module):
    def __init__(self, config: Speech2Text2Config):
        super().__init__()
        self.config = config
        self.encoder = Wav2Vec2Encoder(config)
        self.enc_to_dec_proj = (
            Linear(config.hidden_size, config.d_model) if config.has_projection else None
        )
        self.decoder = Speech2Text2Decoder(config)
        self.lm_head = Linear(config.d_model, config.vocab_size, bias=False)

    def encode(self, samples: Tensor) -> Tensor:
        """samples (B, N): 16 kHz waveform, already normalised → (B, S, d_model), what the
        decoder attends to (after `enc_to_dec_proj`)."""
        if samples.shape[-1] < self.config.min_samples:
            raise ValueError(
                f"{samples.shape[-1]} samples are too few: the encoder needs at least "
                f"{self.config.min_samples}"
            )
        # the embedding is never quantised (int8 replaces the linear layers, lm_head included)
        x = self.encoder(samples.to(self.decoder.embed_tokens.weight.dtype))
        return x if self.enc_to_dec_proj is None else self.enc_to_dec_proj(x)

    def decode(
        self, tokens: Tensor, encoder_out: Tensor, cache: Cache | None
    ) -> tuple[Tensor, Cache]:
        """Logits (B, T, vocab) in float32 for the new tokens (B, T) and the new cache.

        `tokens` are only those not yet in `cache`; their positions continue after the cached
        ones. The cache holds, per decoder layer, (self keys, self values, cross keys, cross
        values), each with the batch in dim 0, so beams reorder with `t.index_select(0, rows)`.
        The cross keys and values are computed once, when `cache` is None, from `encoder_out`
        (B or 1, S, d_model); a batch of 1 is shared by every row.
        """
        hidden, cache = self.decoder(tokens, encoder_out, cache)
        return self.lm_head(hidden).float(), cache


# ---------------------------------------------------------------------------------------------
# weights

# checkpoint prefix → this module's; the first that matches applies, other keys keep their name
_PREFIXES = (
    ("encoder.feature_extractor.conv_layers.", "encoder.conv_layers."),
    ("encoder.feature_projection.", "encoder.feature_projection."),
    ("encoder.encoder.pos_conv_embed.conv.", "encoder.pos_conv."),
    ("encoder.encoder.", "encoder."),
    ("decoder.model.decoder.", "decoder."),
    ("decoder.lm_head.", "lm_head."),
)

# checkpoint tensors that inference never reads, dropped on purpose
DROPPED_KEYS = frozenset(
    {
        # SpecAugment's learned mask vector: replaces masked frames in training only
        "encoder.masked_spec_embed",
        # the sinusoid table (saved as a parameter): `sinusoids` recomputes its rows
        "decoder.model.decoder.embed_positions.weights",
    }
)

# the weight norm of the position convolution: magnitude g and direction v, in either naming
_WEIGHT_NORM = "encoder.encoder.pos_conv_embed.conv."
_WEIGHT_NORM_PARTS = {
    "weight_g": "g",
    "weight_v": "v",
    "parametrizations.weight.original0": "g",
    "parametrizations.weight.original1": "v",
}
_WEIGHT_NORM_DIM = 2  # transformers applies it over the kernel axis: one norm per tap


def fold_weight_norm(g: Tensor, v: Tensor, dim: int = _WEIGHT_NORM_DIM) -> Tensor:
    """The plain weight of a weight-normed layer: v scaled to length g along every slice of
    `dim` (torch's `weight_norm`: w = g * v / ||v||, the norm over all other axes)."""
    others = [axis for axis in range(v.ndim) if axis != dim]
    norm = torch.linalg.vector_norm(v.float(), dim=others, keepdim=True)
    return (v.float() * (g.float() / norm)).to(v.dtype)


def convert_state(state: dict[str, Tensor], config: Speech2Text2Config) -> dict[str, Tensor]:
    """A Hugging Face `SpeechEncoderDecoderModel` state dict → this model's names.

    Folds the position convolution's weight norm (`weight_g`/`weight_v` in hub checkpoints,
    `parametrizations.weight.original0/1` in ones saved by newer torch) into one weight, drops
    `DROPPED_KEYS`, and sets up `lm_head` the way transformers 4.40 loads it: with the decoder's
    `tie_word_embeddings` (the default), the output matrix and the token embedding are one
    tensor, `decoder.lm_head.weight` when the file has it, else the embedding; untied, each is
    its own. Keys it does not know keep their names, so the caller's strict check reports them.
    """
    out: dict[str, Tensor] = {}
    norm_parts: dict[str, Tensor] = {}
    for key, tensor in state.items():
        if key in DROPPED_KEYS:
            continue
        part = _WEIGHT_NORM_PARTS.get(key.removeprefix(_WEIGHT_NORM))
        if key.startswith(_WEIGHT_NORM) and part is not None:
            norm_parts[part] = tensor
            continue
        out[_rename(key)] = tensor
    if set(norm_parts) == {"g", "v"}:
        out["encoder.pos_conv.weight"] = fold_weight_norm(norm_parts["g"], norm_parts["v"])
    else:  # half a pair: keep it under its own name for the key check to report
        for part, tensor in norm_parts.items():
            out[f"{_WEIGHT_NORM}weight_{part}"] = tensor
    if config.tie_word_embeddings:
        shared = out.get("lm_head.weight", out.get("decoder.embed_tokens.weight"))
        if shared is not None:
            out["lm_head.weight"] = out["decoder.embed_tokens.weight"] = shared
    return out


def _rename(key: str) -> str:
    for old, new in _PREFIXES:
        if key.startswith(old):
            return new + key.removeprefix(old)
    return key
