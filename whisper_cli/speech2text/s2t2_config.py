"""The Speech2Text2 configuration: what the network (`s2t2.py`) needs from a checkpoint's
config.json, every value checked before anything is built."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import torch.nn.functional as F
from torch import Tensor

from whisper_cli.constants import SAMPLE_RATE
from whisper_cli.errors import ModelError

# the activations a configuration may name (transformers' names)
ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {"gelu": F.gelu, "relu": F.relu}


@dataclass(frozen=True)
class Speech2Text2Config:
    # encoder: convolutional feature encoder
    conv_dim: tuple[int, ...]
    conv_kernel: tuple[int, ...]
    conv_stride: tuple[int, ...]
    conv_bias: bool
    feat_extract_norm: str  # "group": first layer only; "layer": every layer
    feat_extract_activation: str
    # encoder: Transformer
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    hidden_act: str
    layer_norm_eps: float
    num_conv_pos_embeddings: int
    num_conv_pos_embedding_groups: int
    do_stable_layer_norm: bool  # pre-norm layers and a final norm (large-lv60 layout)
    # decoder
    vocab_size: int
    d_model: int
    decoder_layers: int
    decoder_attention_heads: int
    decoder_ffn_dim: int
    activation_function: str
    scale_embedding: bool
    max_target_positions: int  # a length hint only: positions are computed, never looked up
    pad_token_id: int  # positions skip it and give it a zero position vector
    tie_word_embeddings: bool
    # generation ids, as transformers resolves them: the top level, else the decoder's
    decoder_start_token_id: int
    bos_token_id: int
    eos_token_id: int

    @property
    def has_projection(self) -> bool:
        """Whether the checkpoint has `enc_to_dec_proj` (encoder and decoder widths differ)."""
        return self.hidden_size != self.d_model

    @property
    def min_samples(self) -> int:
        """The shortest waveform that gives one encoder frame (400 for the real checkpoints)."""
        length = 1
        for kernel, stride in reversed(list(zip(self.conv_kernel, self.conv_stride, strict=True))):
            length = (length - 1) * stride + kernel
        return length

    @classmethod
    def from_json(cls, raw: dict, source: Path) -> Speech2Text2Config:
        """The configuration from a `config.json` of model_type "speech-encoder-decoder".

        Every value is checked here, before anything is allocated, so a damaged or hostile file
        stops with one line naming the file and the field, not with a huge allocation or a
        shape error deep in the model. Missing fields take transformers' defaults.
        """
        top = _Reader(raw, "", source)
        if raw.get("model_type") != "speech-encoder-decoder":
            top.fail("model_type", "is not 'speech-encoder-decoder'")
        enc = _Reader(top.section("encoder", "wav2vec2"), "encoder.", source)
        dec = _Reader(top.section("decoder", "speech_to_text_2"), "decoder.", source)

        conv_dim = enc.ints("conv_dim", (512,) * 7, 1, 8192)
        conv_kernel = enc.ints("conv_kernel", (10, 3, 3, 3, 3, 2, 2), 1, 4096)
        conv_stride = enc.ints("conv_stride", (5, 2, 2, 2, 2, 2, 2), 1, 4096)
        n_conv = len(conv_dim)
        if len(conv_kernel) != n_conv or len(conv_stride) != n_conv:
            enc.fail("conv_kernel", f"and conv_stride must have {n_conv} values, as conv_dim")
        if enc.raw.get("num_feat_extract_layers", n_conv) != n_conv:
            value = enc.raw["num_feat_extract_layers"]
            enc.fail("num_feat_extract_layers", f"= {value!r} does not match conv_dim's {n_conv}")
        if enc.raw.get("add_adapter", False) is not False:
            enc.fail("add_adapter", "is set: adapter layers are not supported")
        if enc.raw.get("adapter_attn_dim") is not None:
            enc.fail("adapter_attn_dim", "is set: attention adapters are not supported")
        hidden = enc.int("hidden_size", 768, 1, 16384)
        if enc.raw.get("output_hidden_size") not in (None, hidden):
            enc.fail("output_hidden_size", f"must equal hidden_size ({hidden})")
        d_model = dec.int("d_model", 256, 4, 16384)
        cross = dec.raw.get("cross_attention_hidden_size")
        if cross is not None and not cross == d_model == hidden:  # transformers' own rule
            dec.fail(
                "cross_attention_hidden_size", "must be null, or both encoder and decoder width"
            )
        vocab = dec.int("vocab_size", 10000, 1, 1_000_000)

        def token(key: str, default: int) -> int:
            # transformers' generate() takes the top-level id, else the decoder's
            reader = top if raw.get(key) is not None else dec
            return reader.int(key, default, 0, vocab - 1)

        config = cls(
            conv_dim=conv_dim,
            conv_kernel=conv_kernel,
            conv_stride=conv_stride,
            conv_bias=enc.bool("conv_bias", False),
            feat_extract_norm=enc.choice("feat_extract_norm", "group", ("group", "layer")),
            feat_extract_activation=enc.choice("feat_extract_activation", "gelu", ACTIVATIONS),
            hidden_size=hidden,
            num_hidden_layers=enc.int("num_hidden_layers", 12, 1, 256),
            num_attention_heads=enc.divisor("num_attention_heads", 12, hidden),
            intermediate_size=enc.int("intermediate_size", 3072, 1, 65536),
            hidden_act=enc.choice("hidden_act", "gelu", ACTIVATIONS),
            layer_norm_eps=enc.float("layer_norm_eps", 1e-5, 0.0, 1.0),
            num_conv_pos_embeddings=enc.int("num_conv_pos_embeddings", 128, 1, 4096),
            num_conv_pos_embedding_groups=enc.divisor("num_conv_pos_embedding_groups", 16, hidden),
            do_stable_layer_norm=enc.bool("do_stable_layer_norm", False),
            vocab_size=vocab,
            d_model=d_model,
            decoder_layers=dec.int("decoder_layers", 6, 1, 256),
            decoder_attention_heads=dec.divisor("decoder_attention_heads", 4, d_model),
            decoder_ffn_dim=dec.int("decoder_ffn_dim", 2048, 1, 65536),
            activation_function=dec.choice("activation_function", "relu", ACTIVATIONS),
            scale_embedding=dec.bool("scale_embedding", True),
            max_target_positions=dec.int("max_target_positions", 1024, 1, 1_000_000),
            pad_token_id=dec.int("pad_token_id", 1, 0, vocab - 1),
            tie_word_embeddings=dec.bool("tie_word_embeddings", True),
            decoder_start_token_id=token("decoder_start_token_id", 2),
            bos_token_id=token("bos_token_id", 0),
            eos_token_id=token("eos_token_id", 2),
        )
        if config.min_samples > SAMPLE_RATE * 60:
            enc.fail("conv_kernel", "and conv_stride need more than a minute of audio per frame")
        return config


class _Reader:
    """Typed, bounded reads from one level of the raw JSON; each failure is one line that
    names the file and the field."""

    def __init__(self, raw: Any, prefix: str, source: Path):
        self.raw, self.prefix, self.source = raw, prefix, source
        if not isinstance(raw, dict):
            self.fail("", "must be a JSON object")

    def fail(self, key: str, problem: str) -> NoReturn:
        name = (self.prefix + key).rstrip(".") or "config"
        raise ModelError(f"{self.source}: {name} {problem}")

    def section(self, key: str, model_type: str) -> dict:
        value = self.raw.get(key)
        if not isinstance(value, dict):
            self.fail(key, "must be a JSON object")
        if value.get("model_type") != model_type:
            self.fail(f"{key}.model_type", f"is {value.get('model_type')!r}, not {model_type!r}")
        return value

    def int(self, key: str, default: int, low: int, high: int) -> int:
        value = self.raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            self.fail(key, f"= {value!r} is not a whole number from {low} to {high}")
        return value

    def divisor(self, key: str, default: int, width: int) -> int:
        value = self.int(key, default, 1, width)
        if width % value:
            self.fail(key, f"= {value} does not divide the width {width}")
        return value

    def float(self, key: str, default: float, low: float, high: float) -> float:
        value = self.raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low < value < high:
            self.fail(key, f"= {value!r} is not a number between {low} and {high}")
        return float(value)

    def bool(self, key: str, default: bool) -> bool:
        value = self.raw.get(key, default)
        if not isinstance(value, bool):
            self.fail(key, f"= {value!r} is not true or false")
        return value

    def choice(self, key: str, default: str, choices: Any) -> str:
        value = self.raw.get(key, default)
        if value not in choices:
            self.fail(key, f"= {value!r} is not one of {', '.join(choices)}")
        return value

    def ints(self, key: str, default: tuple[int, ...], low: int, high: int) -> tuple[int, ...]:
        value = self.raw.get(key, list(default))
        if not isinstance(value, list) or not 1 <= len(value) <= 32:
            self.fail(key, f"= {value!r} is not a list of 1 to 32 whole numbers")
        for item in value:
            if isinstance(item, bool) or not isinstance(item, int) or not low <= item <= high:
                self.fail(key, f"holds {item!r}, not a whole number from {low} to {high}")
        return tuple(value)
