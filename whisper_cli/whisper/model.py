"""The Whisper network: an audio encoder and a text decoder with a key/value cache.

Attribute names follow openai-whisper's checkpoints, so an openai `.pt` state dict loads as it
is; `whisper/loading.py` maps Hugging Face names onto these. Shapes in comments use
B = batch, T = tokens, S = audio positions (1500), C = channels, H = heads, D = C // H.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from whisper_cli.constants import HOP_LENGTH, N_FRAMES, SAMPLE_RATE, exact_div
from whisper_cli.nn.layers import Conv1d, Embedding, LayerNorm, Linear, skinny_matmul

# vocabulary sizes: the English-only one; the smallest multilingual one (99 languages, one
# token each), whose every further token is one more language
ENGLISH_VOCAB = 51864
MULTILINGUAL_VOCAB = 51865
_FIRST_LANGUAGES = 99


@dataclass(frozen=True)
class ModelDimensions:
    n_mels: int
    n_audio_ctx: int
    n_audio_state: int
    n_audio_head: int
    n_audio_layer: int
    n_vocab: int
    n_text_ctx: int
    n_text_state: int
    n_text_head: int
    n_text_layer: int

    @property
    def input_stride(self) -> int:
        """Mel frames per audio position: 2, the encoder's second convolution's stride."""
        return exact_div(N_FRAMES, self.n_audio_ctx)

    @property
    def is_multilingual(self) -> bool:
        return self.n_vocab >= MULTILINGUAL_VOCAB

    @property
    def num_languages(self) -> int:
        """Language tokens in the vocabulary: 99, or 100 for large-v3."""
        text_and_tasks = MULTILINGUAL_VOCAB - _FIRST_LANGUAGES - 1  # all tokens but <|en|>…
        return self.n_vocab - text_and_tasks - int(self.is_multilingual)

    @property
    def time_precision(self) -> float:
        """Seconds per timestamp token, one audio position: 0.02."""
        return self.input_stride * HOP_LENGTH / SAMPLE_RATE


def sinusoids(length: int, channels: int, max_timescale: float = 10_000) -> Tensor:
    """The encoder's fixed positional embedding: shape = (length, channels).

    Computed on the CPU even while a model is built on the meta device (checkpoints carry
    the table, which replaces it): arithmetic on meta tensors runs through PyTorch's Python
    decompositions, whose first use imports torch._dynamo, a second or more of start-up.
    """
    assert channels % 2 == 0
    log_increment = np.log(max_timescale) / (channels // 2 - 1)
    inv_timescales = torch.exp(-log_increment * torch.arange(channels // 2, device="cpu"))
    scaled_time = torch.arange(length, device="cpu")[:, None] * inv_timescales[None, :]
    return torch.cat([torch.sin(scaled_time), torch.cos(scaled_time)], dim=1)


def rows_of(audios: list[int], group: int) -> list[int]:
    """The batch rows of `audios` (positions), each audio `group` consecutive rows."""
    return [audio * group + member for audio in audios for member in range(group)]


class KVCache:
    """Keys and values of every decoder layer for one batch of token sequences.

    Self-attention keys/values are written into buffers allocated once for the whole text
    context, split into heads, so each decoding step appends in place and attends without
    a copy. The rows of one audio (beams, samples) start from the same prompt: after
    `share_prompt`, its keys/values are held once per audio and the rows' own buffers hold
    only the tokens after it, so a step reads the prompt once per audio, not once per row,
    and beam reordering moves only the rows' own tokens. Cross-attention keys/values depend
    only on the audio and are computed once per window.
    """

    ROOM = 32  # positions the rows' own buffers start with; doubled whenever full

    def __init__(
        self, n_layer: int, batch: int, n_ctx: int, n_state: int, n_head: int, like: Tensor
    ):
        # (L, B, H, room, D): room for `ROOM` tokens, grown as tokens come up to `limit` (the
        # text context, or what is left of it after the shared prompt); a position is read
        # only once written, so the buffers need no zeroing
        self.limit = n_ctx
        shape = (n_layer, batch, n_head, min(n_ctx, self.ROOM), n_state // n_head)
        self.key = like.new_empty(shape)
        self.value = like.new_empty(shape)
        self.length = 0  # tokens written so far, the shared ones included
        self.group = 1  # rows per audio
        # the prompt's keys/values, once per group of rows: (L, B / group, H, shared, D)
        self.shared = 0
        self.shared_key: Tensor | None = None
        self.shared_value: Tensor | None = None
        # per layer: keys (B_audio, H, D, S), scaled by D ** -0.5, and values (B_audio, H, S, D)
        self.cross: list[tuple[Tensor, Tensor]] = []

    @property
    def own(self) -> int:
        """How many tokens each row holds in its own buffers."""
        return self.length - self.shared

    def make_room(self, own: int) -> None:
        """Room in the rows' own buffers for `own` tokens: a decoding step grows them by one,
        and most windows end far short of the text context, so they double when full."""
        capacity = self.key.shape[3]
        if own <= capacity:
            return
        if own > self.limit:
            raise ValueError(f"{own} tokens exceed the text context's {self.limit}")
        size = min(self.limit, max(own, 2 * capacity))
        for name in ("key", "value"):
            old = getattr(self, name)
            new = old.new_empty(*old.shape[:3], size, old.shape[4])
            new[:, :, :, : self.own] = old[:, :, :, : self.own]
            setattr(self, name, new)

    def share_prompt(self, group: int, room: int | None = None) -> None:
        """Give every row `group` rows that share its tokens so far (the prompt): the beams or
        samples of one audio, which will each add at most `room` tokens of their own (the
        rest of the text context when None)."""
        if group == 1:
            return
        assert self.shared == 0, "the prompt is shared once"
        self.shared, self.group = self.length, group
        # copies, not views: a view would keep the whole text-context buffer alive
        self.shared_key = self.key[:, :, :, : self.length].clone()
        self.shared_value = self.value[:, :, :, : self.length].clone()
        layers, batch, heads, _, d = self.key.shape
        left = self.limit - self.length
        self.limit = left if room is None else min(room, left)
        shape = (layers, batch * group, heads, min(self.limit, self.ROOM), d)
        self.key, self.value = self.key.new_empty(shape), self.value.new_empty(shape)

    def keep_audio(self, audios: list[int]) -> None:
        """Keep only the rows of `audios` (positions in the batch, each `self.group` rows) and
        their cross-attention keys/values: the audios still decoding, once others have ended."""
        rows = torch.tensor(rows_of(audios, self.group), device=self.key.device)
        own = slice(0, self.own)
        for name in ("key", "value"):
            old = getattr(self, name)
            new = old.new_empty(old.shape[0], len(rows), *old.shape[2:])
            new[:, :, :, own] = old[:, :, :, own].index_select(1, rows)
            setattr(self, name, new)
        picked = torch.tensor(audios, device=self.key.device)
        if self.shared_key is not None and self.shared_value is not None:
            self.shared_key = self.shared_key.index_select(1, picked)
            self.shared_value = self.shared_value.index_select(1, picked)
        for layer, (k, v) in enumerate(self.cross):  # a layer at a time: one spare copy at most
            self.cross[layer] = (k.index_select(0, picked), v.index_select(0, picked))

    def reorder(self, source: Tensor) -> None:
        """Keep, for each row of the batch, the cache of row `source[row]` (beam search; rows
        of the same audio). Only the filled positions of the rows that change move (beams
        often keep theirs), and not the shared prompt."""
        moves = [(row, src) for row, src in enumerate(source.tolist()) if src != row]
        if not moves:
            return
        own = slice(0, self.own)
        overwritten = {row for row, _ in moves}
        for cache in (self.key, self.value):
            # row by row: 3x faster than one indexed assignment on CPU; a source row that
            # is itself overwritten is saved first
            saved = {src: cache[:, src, :, own].clone() for _, src in moves if src in overwritten}
            for row, src in moves:
                cache[:, row, :, own] = saved[src] if src in saved else cache[:, src, :, own]


class MultiHeadAttention(nn.Module):
    def __init__(self, n_state: int, n_head: int):
        super().__init__()
        self.n_head = n_head
        self.query = Linear(n_state, n_state)
        self.key = Linear(n_state, n_state, bias=False)
        self.value = Linear(n_state, n_state)
        self.out = Linear(n_state, n_state)
        # the three above as one product, for decoding (see `fuse_query_key_value`)
        self.query_key_value: nn.Module | None = None

    def fuse_query_key_value(self) -> None:
        """Replace the query, key and value layers by one product, `query_key_value`, for
        `cached_self_attention`: a decoding step then reads x once and calls one kernel
        instead of three (1 ms a step of 12 for base with 5 beams on a CPU). The key layer has
        no bias; zeros take its place, which leaves the products as they were."""
        weight = torch.cat([self.query.weight, self.key.weight, self.value.weight])
        bias = torch.cat([self.query.bias, torch.zeros_like(self.value.bias), self.value.bias])
        fused = Linear(weight.shape[1], weight.shape[0], device="meta")
        fused.weight, fused.bias = nn.Parameter(weight, False), nn.Parameter(bias, False)
        del self.query, self.key, self.value
        self.query_key_value = fused

    def _heads(self, x: Tensor) -> Tensor:
        b, t, c = x.shape
        return x.view(b, t, self.n_head, c // self.n_head).transpose(1, 2)  # (B, H, T, D)

    def _grouped_heads(self, x: Tensor, b_audio: int) -> Tensor:
        """x: (B, T, C), B = B_audio * group rows of one audio each → (B_a, H, group * T, D):
        the rows of one audio folded into the query length, to share its keys/values."""
        return self._heads(x.reshape(b_audio, -1, x.shape[-1]))

    def _ungrouped(self, scores: Tensor, b: int) -> Tensor:
        """Scores of grouped queries (B_a, H, group * T, K) → per row (B, H, T, K)."""
        b_audio, h, gt, k = scores.shape
        t = gt * b_audio // b
        return scores.view(b_audio, h, b // b_audio, t, k).transpose(1, 2).reshape(b, h, t, k)

    def _merge(self, x: Tensor) -> Tensor:
        b, h, t, d = x.shape
        return x.transpose(1, 2).reshape(b, t, h * d)  # (B, T, C)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """Full self-attention over x: (B, T, C); `mask` is added to the scores."""
        q, k, v = self._heads(self.query(x)), self._heads(self.key(x)), self._heads(self.value(x))
        return self.out(self._merge(F.scaled_dot_product_attention(q, k, v, attn_mask=mask)))

    def cached_self_attention(self, x: Tensor, cache: KVCache, layer: int) -> Tensor:
        """Causal self-attention of new tokens x: (B, T, C) after the cache's tokens.

        Written out rather than through `scaled_dot_product_attention`, whose CPU kernels copy
        and scale the cached keys on every call: a decoding step has one query per row.
        """
        n_new, shared = x.shape[1], cache.shared
        start, end = cache.own, cache.own + n_new  # in the rows' own buffers
        if self.query_key_value is not None:
            q, k, v = self.query_key_value(x).split(x.shape[-1], dim=-1)
        else:
            q, k, v = self.query(x), self.key(x), self.value(x)
        cache.key[layer, :, :, start:end] = self._heads(k)
        cache.value[layer, :, :, start:end] = self._heads(v)
        q = q * (x.shape[-1] // self.n_head) ** -0.5
        heads = self._heads(q)  # (B, H, T, D)
        qk = heads @ cache.key[layer, :, :, :end].transpose(-1, -2)  # (B, H, T, end)
        if shared:  # scores against the prompt, the group's queries together
            b, h, t, _ = heads.shape
            b_audio, group = b // cache.group, cache.group
            assert cache.shared_key is not None and cache.shared_value is not None
            grouped = self._grouped_heads(q, b_audio)  # (B_a, H, gT, D)
            prompt_qk = grouped @ cache.shared_key[layer].transpose(-1, -2)  # (B_a, H, gT, P)
            qk = torch.cat([self._ungrouped(prompt_qk, b), qk], dim=-1)
        if n_new > 1:  # token i of the new ones sees the earlier tokens and new tokens up to i
            visible = torch.ones(n_new, qk.shape[-1], dtype=torch.bool, device=x.device)
            qk = qk.masked_fill(~visible.tril(shared + start), -torch.inf)
        weights = qk.float().softmax(dim=-1).to(q.dtype)
        if not shared:
            return self.out(self._merge(weights @ cache.value[layer, :, :, :end]))
        own = self._merge(weights[..., shared:] @ cache.value[layer, :, :, :end])  # (B, T, C)
        prompt_weights = weights[..., :shared].view(b_audio, group, h, t, shared).transpose(1, 2)
        prompt_weights = prompt_weights.reshape(b_audio, h, group * t, shared)
        prompt = self._merge(prompt_weights @ cache.shared_value[layer])  # (B_a, gT, C)
        return self.out(own + prompt.reshape(own.shape))

    def cross_keys_values(self, audio_features: Tensor) -> tuple[Tensor, Tensor]:
        """Audio features (B_audio, S, C) → the keys (B_audio, H, D, S), already scaled by
        D ** -0.5 and laid out for `q @ k`, and the values (B_audio, H, S, D).

        Done once per window, this spares every decoding step a pass over the keys: a
        transposed, scaled copy of them is what attention would otherwise make each call.
        """
        key = self._heads(self.key(audio_features))
        scale = key.shape[-1] ** -0.5  # 1/8 for Whisper's 64 channels per head: exact
        return (key * scale).transpose(-1, -2).contiguous(), self._heads(
            self.value(audio_features)
        ).contiguous()

    def cross_attention(
        self, x: Tensor, key: Tensor, value: Tensor, scores: list[Tensor] | None = None
    ) -> Tensor:
        """Attention of x: (B, T, C) to `cross_keys_values` of the audio, B = B_audio * group.

        The rows of one audio (beams or sampled candidates) share its keys and values, so they
        are folded into the query length instead of copying the keys once per row. When
        `scores` is a list, the scores before softmax, (B, H, T, S), are appended to it.
        """
        b, t, c = x.shape
        b_audio = key.shape[0]
        q = self._grouped_heads(self.query(x), b_audio)  # (B_a, H, gT, D)
        qk = q @ key  # (B_audio, H, gT, S)
        if scores is not None:
            scores.append(self._ungrouped(qk.float(), b))
        out = qk.float().softmax(dim=-1).to(q.dtype) @ value
        return self.out(self._merge(out).reshape(b, t, c))


class ResidualAttentionBlock(nn.Module):
    def __init__(self, n_state: int, n_head: int, cross_attention: bool = False):
        super().__init__()
        self.attn = MultiHeadAttention(n_state, n_head)
        self.attn_ln = LayerNorm(n_state)
        self.cross_attn = MultiHeadAttention(n_state, n_head) if cross_attention else None
        self.cross_attn_ln = LayerNorm(n_state) if cross_attention else None
        self.mlp = nn.Sequential(
            Linear(n_state, 4 * n_state), nn.GELU(), Linear(4 * n_state, n_state)
        )
        self.mlp_ln = LayerNorm(n_state)

    def forward(self, x: Tensor) -> Tensor:
        """An encoder block: x: (B, S, C)."""
        x = x + self.attn(self.attn_ln(x))
        return x + self.mlp(self.mlp_ln(x))

    def decode(
        self, x: Tensor, cache: KVCache, layer: int, scores: list[Tensor] | None = None
    ) -> Tensor:
        """A decoder block on new tokens x: (B, T, C), reading and extending `cache`."""
        assert self.cross_attn is not None and self.cross_attn_ln is not None
        x = x + self.attn.cached_self_attention(self.attn_ln(x), cache, layer)
        key, value = cache.cross[layer]
        x = x + self.cross_attn.cross_attention(self.cross_attn_ln(x), key, value, scores)
        return x + self.mlp(self.mlp_ln(x))


class AudioEncoder(nn.Module):
    def __init__(self, n_mels: int, n_ctx: int, n_state: int, n_head: int, n_layer: int):
        super().__init__()
        self.conv1 = Conv1d(n_mels, n_state, kernel_size=3, padding=1)
        self.conv2 = Conv1d(n_state, n_state, kernel_size=3, stride=2, padding=1)
        self.register_buffer("positional_embedding", sinusoids(n_ctx, n_state))
        self.blocks = nn.ModuleList(ResidualAttentionBlock(n_state, n_head) for _ in range(n_layer))
        self.ln_post = LayerNorm(n_state)

    def forward(self, mel: Tensor) -> Tensor:
        """mel: (B, n_mels, 2 * S) → audio features (B, S, C)."""
        x = F.gelu(self.conv1(mel))
        x = F.gelu(self.conv2(x)).permute(0, 2, 1)  # (B, S, C)
        assert x.shape[1:] == self.positional_embedding.shape, "the mel input has the wrong size"
        x = x + self.positional_embedding.to(x.dtype)
        for block in self.blocks:
            x = block(x)
        return self.ln_post(x)


class TextDecoder(nn.Module):
    def __init__(self, n_vocab: int, n_ctx: int, n_state: int, n_head: int, n_layer: int):
        super().__init__()
        self.n_ctx = n_ctx
        self.token_embedding = Embedding(n_vocab, n_state)
        self.positional_embedding = nn.Parameter(torch.empty(n_ctx, n_state))
        self.blocks = nn.ModuleList(
            ResidualAttentionBlock(n_state, n_head, cross_attention=True) for _ in range(n_layer)
        )
        self.ln = LayerNorm(n_state)
        # the vocabulary projection, when it is not the token embedding itself (on the CPU:
        # float16 weights, packed float32 or int8; see packing.py)
        self.output: nn.Module | None = None

    def fuse_self_attention(self) -> None:
        """Done once the weights are in: each layer's self-attention projections as one."""
        for block in self.blocks:
            block.attn.fuse_query_key_value()

    def new_cache(self, audio_features: Tensor, batch: int) -> KVCache:
        """A cache for `batch` token rows reading `audio_features` (B_audio, S, C)."""
        n_state = self.positional_embedding.shape[1]
        n_head = self.blocks[0].attn.n_head
        cache = KVCache(len(self.blocks), batch, self.n_ctx, n_state, n_head, audio_features)
        for block in self.blocks:
            assert block.cross_attn is not None
            cache.cross.append(block.cross_attn.cross_keys_values(audio_features))
        return cache

    def forward(self, tokens: Tensor, cache: KVCache, scores: list[Tensor] | None = None) -> Tensor:
        """tokens: (B, T), the ones after `cache.length` → hidden states (B, T, C).

        When `scores` is a list, each layer's cross-attention scores before softmax,
        (B, H, T, S), are appended to it: the raw material of word timing.
        """
        start = cache.length
        cache.make_room(cache.own + tokens.shape[1])
        positions = self.positional_embedding[start : start + tokens.shape[1]]
        x = (self.token_embedding(tokens) + positions).to(cache.key.dtype)
        for layer, block in enumerate(self.blocks):
            x = block.decode(x, cache, layer, scores)
        cache.length += tokens.shape[1]
        return self.ln(x)

    def logits(self, hidden: Tensor) -> Tensor:
        """Hidden states (..., C) → logits over the vocabulary (..., n_vocab), in float32."""
        if self.output is not None:
            return self.output(hidden).float()
        return skinny_matmul(hidden, self.token_embedding.weight.to(hidden.dtype)).float()


class Whisper(nn.Module):
    def __init__(self, dims: ModelDimensions):
        super().__init__()
        self.dims = dims
        self.encoder = AudioEncoder(
            dims.n_mels, dims.n_audio_ctx, dims.n_audio_state, dims.n_audio_head, dims.n_audio_layer
        )
        self.decoder = TextDecoder(
            dims.n_vocab, dims.n_text_ctx, dims.n_text_state, dims.n_text_head, dims.n_text_layer
        )
        # (layer, head) pairs of the cross-attention heads that follow the speech, for word
        # timing; checkpoints name them, and the upper half of the decoder is the fallback
        self.alignment_heads: tuple[tuple[int, int], ...] = tuple(
            (layer, head)
            for layer in range(dims.n_text_layer // 2, dims.n_text_layer)
            for head in range(dims.n_text_head)
        )

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """The compute type (weights read only now and then may be stored at less)."""
        return self.decoder.positional_embedding.dtype

    @property
    def is_multilingual(self) -> bool:
        return self.dims.is_multilingual

    @property
    def num_languages(self) -> int:
        return self.dims.num_languages
