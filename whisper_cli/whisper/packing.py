"""Whisper's weights laid out for the CPU: fast where decoding streams them every step, small
where it does not.

Decoding one token reads the vocabulary projection (the token embedding matrix: 106 MB in
float32 for the multilingual vocabulary) and the decoder's linear layers (88 MB for base) once
per step, with a handful of input rows (one per beam): memory traffic sets the speed. BLAS's
general matrix product handles such products poorly (5.4 ms a step for the projection with 5
beams). Two kernels do better:

- FBGEMM's float16-weight linear (`HalfWeightLinear`) keeps the weight in float16 and widens
  each value to float32 as it reads it, so it streams half the bytes. For a weight float16
  holds exactly (OpenAI's checkpoints are float16) its products are float32's: the same
  products of the same float32 values, summed in the kernel's own order as every kernel does.
  For 5 beams: the projection 3.9 against 8.2 ms, a 512x512 layer 93 against 145 us on a busy
  2-core host; a decoding step of base 20-26 against 25-36 ms. At 30 or more rows (batched
  decoding) both kernels take about the same time.
- oneDNN's linear with the float32 weight packed once into its blocked layout
  (`PackedLinear`), for weights float16 would round (float32 checkpoints): 4.1 against 5.4 ms
  for the projection on a quiet host, and faster at every row count measured, from 1 to 224.

So the projection becomes one of these and the embedding itself serves only to look tokens up
(a few rows a step: the loader then reads it from a mapping of the checkpoint, so only the
pages of the tokens seen are in memory; `models._map_lookup_table`).

The encoder's matrix products read each weight a few times per window, so those weights may
stay at the checkpoint's own precision too: a float16 weight converted to float32 at the moment
of use gives exactly the products of one converted at load. That halves them in memory (40 MB
for base's encoder) for a conversion of ~5 ms per 30-s window. A weight is kept in float16
only when that holds its values exactly, so a float32 checkpoint loses nothing.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from functools import lru_cache, partial

import torch
from torch import Tensor, nn

from whisper_cli.nn.layers import Conv1d, Linear
from whisper_cli.nn.quantize import Int8Linear, quantize_linear_layers, quantize_rows
from whisper_cli.whisper.model import Whisper

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


def _computes_a_plain_product(make: Callable[[Tensor, Tensor], nn.Module]) -> bool:
    """Whether the layer `make(weight, bias)` builds computes x @ weight.T + bias, tried on a
    small case: False when its kernel is missing from this PyTorch or fails."""
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(40, 24, generator=generator).half().float()  # exact in float16 too
    bias = torch.randn(40, generator=generator)
    x = torch.randn(3, 2, 24, generator=generator)
    try:
        with torch.inference_mode():
            out = make(weight, bias)(x)
    except (AttributeError, RuntimeError, TypeError):
        return False
    expected = x @ weight.T + bias
    return out.shape == expected.shape and torch.allclose(out, expected, atol=1e-4)


@lru_cache(maxsize=1)
def packing_works() -> bool:
    """Whether this PyTorch has oneDNN's packed linear, and it computes what a plain product
    does: the operators are internal ones (those `torch.compile` uses on the CPU), so a build
    without them, or a release that changes them, falls back to the plain product."""
    return torch.backends.mkldnn.is_available() and _computes_a_plain_product(PackedLinear)


def _pack_half(weight: Tensor, bias: Tensor | None) -> torch.ScriptObject:
    return torch.ops.quantized.linear_prepack_fp16(
        weight.float(), None if bias is None else bias.float()
    )


class HalfWeightLinear(nn.Module):
    """y = x @ weight.T + bias in float32, the weight held in float16: FBGEMM's kernel widens
    each weight to float32 as it reads it, so for a weight float16 holds exactly these are
    float32's products, for half the memory traffic."""

    # FBGEMM packs a weight reading it column by column, which keeps to the caches only for a
    # few thousand rows: the 52k-row projection packs in 0.5-1.1 s at once, 0.27 s in 4 blocks
    # (and the 4 products take the time of one)
    BLOCK_ROWS = 16384

    def __init__(self, weight: Tensor, bias: Tensor | None = None, map_blocks: Callable = map):
        """`map_blocks` packs the blocks: a thread pool's `map` packs them side by side
        (packing lets go of the GIL)."""
        super().__init__()
        self.out_features = weight.shape[0]
        weights = weight.detach().split(self.BLOCK_ROWS)
        biases = [None] * len(weights) if bias is None else bias.detach().split(self.BLOCK_ROWS)
        self._blocks = list(map_blocks(_pack_half, weights, biases))

    def forward(self, x: Tensor) -> Tensor:
        linear = torch.ops.quantized.linear_dynamic_fp16
        rows = x.reshape(-1, x.shape[-1]).float()  # the kernel takes 2-D inputs and up
        outputs = [linear(rows, block) for block in self._blocks]
        out = outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=-1)
        return out.reshape(*x.shape[:-1], self.out_features).to(x.dtype)


@lru_cache(maxsize=1)
def half_weights_work() -> bool:
    """Whether this PyTorch has FBGEMM's float16-weight linear (x86 builds do), and it
    computes what a plain product does with the same weight."""
    engines = torch.backends.quantized.supported_engines
    return "fbgemm" in engines and _computes_a_plain_product(HalfWeightLinear)


def holds_in_half(weight: Tensor) -> bool:
    """Whether float16 holds every value of `weight` exactly."""
    if weight.dtype == torch.float16:
        return True
    # compared a block at a time: a copy of the whole would be a transient the size of it
    return weight.dtype == torch.float32 and all(
        torch.equal(block.half().float(), block) for block in weight.detach().split(4096)
    )


def streamed_linear(
    weight: Tensor, bias: Tensor | None = None, map_blocks: Callable = map
) -> nn.Module | None:
    """The layout for a weight that every decoding step reads once, with a handful of input
    rows (one per beam), where its memory traffic sets the speed: float16 for FBGEMM where that
    is exact (OpenAI's checkpoints), else float32 packed for oneDNN; None when this PyTorch
    has neither kernel for it."""
    if half_weights_work() and holds_in_half(weight):
        return HalfWeightLinear(weight, bias, map_blocks)
    if packing_works():
        return PackedLinear(weight, bias)
    return None


def halve_if_exact(parameter: nn.Parameter) -> nn.Parameter:
    """The parameter in float16 when float16 holds every value of it exactly, else itself."""
    if parameter.dtype != torch.float32 or not holds_in_half(parameter):
        return parameter
    return nn.Parameter(parameter.detach().half(), requires_grad=False)


def keep_exact_half(module: nn.Module, kinds: tuple[type[nn.Module], ...]) -> None:
    """Store the weights of every `kinds` module inside `module` in float16 where exact;
    those modules convert their weight to the input's type when they run."""
    for child in module.modules():
        if isinstance(child, kinds):
            child.weight = halve_if_exact(child.weight)


def kept_at_half(model: Whisper, compute_type: str) -> set[str]:
    """The state-dict keys of the weights that may stay float16 from a float16 checkpoint
    when `model` computes in float32 on the CPU: those `prepare_for_cpu` would otherwise halve
    again or read through a float16 layout. The encoder's layers and the lookup table convert
    their weights as they use them; the decoder's layers and the projection go to
    `streamed_linear` (FBGEMM reads float16 as it is; oneDNN's packing makes its own float32
    copy) or, for int8, are quantised. Loading them as they are spares converting them all to
    float32 and back."""
    encoder_layers = {
        f"{name}.weight"
        for name, module in model.encoder.named_modules(prefix="encoder")
        if isinstance(module, (Linear, Conv1d))
    }
    decoder_layers = {
        f"{name}.weight"
        for name, module in model.decoder.blocks.named_modules(prefix="decoder.blocks")
        if isinstance(module, Linear)
    }
    embedding = {"decoder.token_embedding.weight"}
    if compute_type == "int8" or half_weights_work():
        return encoder_layers | embedding | decoder_layers
    if packing_works():
        return encoder_layers | embedding
    return encoder_layers  # no projection layer: the embedding is read every step


# (put the layer in place, the layer's blocks or the layer (None: keep the one there), shape,
# bias)
_Job = tuple[Callable[[nn.Module], None], list[Future], tuple[int, int], Tensor | None]


def streams_float32(dtype: torch.dtype) -> bool:
    """Whether a model computing in `dtype` on the CPU gets `streamed_linear`'s layout."""
    return dtype == torch.float32 and (half_weights_work() or packing_works())


class StreamedLayout:
    """Lays a Whisper model out for the CPU while its checkpoint loads, as `assign_checked`'s
    `finish` for the `units` it names, as soon as their weights are in; what `prepare_for_cpu`
    does to a whole model, and then leaves alone. In int8, each encoder and decoder block's
    linear layers are quantised; in float32, the decoder's layers a step reads are laid out by
    `streamed_linear`; in both, a decoder block's self-attention projections are fused first
    (as `fuse_self_attention` does), and the vocabulary projection is made from the token
    embedding.

    The weights are quantised or packed on `pool`'s threads (the kernels let go of the GIL)
    while the loading thread reads the next ones; the layers are put in place on the loading
    thread, in order. At most `AHEAD` units wait at the checkpoint's precision, so loading
    holds a few blocks twice, never the whole model. The arithmetic is `prepare_for_cpu`'s: each
    weight's rows are quantised on their own (int8), each layer packed from the same weight."""

    AHEAD = 3

    def __init__(
        self,
        model: Whisper,
        pool: Executor,
        compute_type: str,
        projection_done: Callable[[], None] | None = None,
    ):
        """`projection_done` is called once the projection is in place (the float16 token
        embedding it was made from may then be let go)."""
        self.model = model
        self.pool = pool
        self.int8 = compute_type == "int8"
        self.projection_done = projection_done
        self.units = []
        if self.int8:
            self.units += [f"encoder.blocks.{i}" for i in range(len(model.encoder.blocks))]
        self.units += [f"decoder.blocks.{i}" for i in range(len(model.decoder.blocks))]
        self.units.append("decoder.token_embedding")
        self._pending: deque[tuple[list[_Job], Callable[[], None] | None]] = deque()

    def __call__(self, name: str) -> None:
        decoder = self.model.decoder
        module = self.model.get_submodule(name)
        if module is decoder.token_embedding:
            install = partial(setattr, decoder, "output")
            if not self.int8:  # halved first where exact, as prepare_for_cpu does
                module.weight = halve_if_exact(module.weight)
            jobs = [self._submit(install, module.weight, None)]
            self._pending.append((jobs, self.projection_done))
        else:
            attention = getattr(module, "attn", None)
            cross = getattr(module, "cross_attn", None)
            if cross is not None and attention is not None:
                attention.fuse_query_key_value()  # a decoder block
            if self.int8:
                layers = [
                    (parent, child_name, child)
                    for parent in module.modules()
                    for child_name, child in parent.named_children()
                    if isinstance(child, nn.Linear)
                ]
            else:  # the layers a decoding step reads: not the cross-attention keys and values
                layers = [
                    (parent, child_name, getattr(parent, child_name))
                    for parent, child_name in _step_layers(module)
                ]
            jobs = [
                self._submit(partial(setattr, parent, child_name), child.weight, child.bias)
                for parent, child_name, child in layers
            ]
            self._pending.append((jobs, None))
        self._install(wait=len(self._pending) > self.AHEAD)

    def _submit(
        self, install: Callable[[nn.Module], None], weight: Tensor, bias: Tensor | None
    ) -> _Job:
        if not self.int8:
            return install, [self.pool.submit(streamed_linear, weight, bias)], (0, 0), None
        pieces = weight.detach().split(Int8Linear.PACK_ROWS)
        futures = [
            self.pool.submit(quantize_rows, piece, Int8Linear.BLOCK_ROWS) for piece in pieces
        ]
        return install, futures, (weight.shape[0], weight.shape[1]), bias

    def _install(self, wait: bool) -> None:
        """Put in place the layers of the units done, oldest first; with `wait`, wait for the
        oldest until no more than `AHEAD` are left."""
        while self._pending:
            jobs, then = self._pending[0]
            done = all(future.done() for job in jobs for future in job[1])
            if not (done or wait or len(self._pending) > self.AHEAD):
                return
            self._pending.popleft()
            for install, futures, shape, bias in jobs:
                if self.int8:
                    install(Int8Linear.from_blocks([f.result() for f in futures], shape, bias))
                elif (layer := futures[0].result()) is not None:
                    install(layer)
            if then is not None:
                then()
            wait = False

    def finish_all(self) -> None:
        """Wait for every unit, and put its layers in place."""
        while self._pending:
            self._install(wait=True)


def _step_layers(block: nn.Module) -> list[tuple[nn.Module, str]]:
    """(module, attribute) of a decoder block's layers that every decoding step reads (not the
    cross-attention keys and values: they read the audio, once a window)."""
    cross = block.cross_attn
    assert cross is not None
    return [
        (block.attn, "query_key_value"),
        (block.attn, "out"),
        (cross, "query"),
        (cross, "out"),
        (block.mlp, "0"),
        (block.mlp, "2"),
    ]


def prepare_for_cpu(model: Whisper, compute_type: str) -> None:
    """Lay a loaded model's weights out for decoding on the CPU, in place: int8 linear layers
    for `int8`; for float32, the layers every decoding step reads (the decoder's, and the
    vocabulary projection) in `streamed_linear`'s layout, and float16 storage where exact
    for the rest."""
    decoder = model.decoder
    if compute_type == "int8":
        # the projection streams the whole embedding matrix every step: in int8 a quarter of
        # the memory traffic (1.1 against 6.8 ms a step for 5 beams with base)
        if decoder.output is None:  # unless quantised as it loaded (`StreamedLayout`)
            decoder.output = Int8Linear(decoder.token_embedding.weight)
        quantize_linear_layers(model)
        # the embedding now only looks tokens up
        decoder.token_embedding.weight = halve_if_exact(decoder.token_embedding.weight)
    elif streams_float32(model.dtype) and decoder.output is None:  # unless laid out as it
        # loaded (`StreamedLayout`); the embedding halved first (where exact), so that the
        # projection is built from float16
        decoder.token_embedding.weight = halve_if_exact(decoder.token_embedding.weight)
        # (module, attribute, weight, bias) of the decoder's layers a step reads
        layers = []
        for block in decoder.blocks:
            for module, name in _step_layers(block):
                layer = getattr(module, name)
                layers.append((module, name, layer.weight, layer.bias))
        # laying out takes a while (0.5 s for base in float16), and lets go of the GIL
        with ThreadPoolExecutor(torch.get_num_threads()) as pool:
            embedding = decoder.token_embedding.weight
            decoder.output = streamed_linear(embedding, map_blocks=pool.map)
            laid_out = pool.map(lambda layer: streamed_linear(*layer[2:]), layers)
            for (module, name, _, _), layer in zip(layers, laid_out, strict=True):
                if layer is not None:
                    setattr(module, name, layer)
    if model.dtype == torch.float32:
        keep_exact_half(model.encoder, (Linear, Conv1d))
