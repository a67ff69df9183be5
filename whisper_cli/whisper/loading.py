"""Loading a Whisper checkpoint: a folder in Hugging Face layout, or an openai-whisper `.pt`.

Hugging Face tensor names are mapped onto this package's (openai-whisper's); the dimensions are
checked before the network is built on the meta device, and the tokenizer's special tokens
before the model is returned.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from whisper_cli.checkpoint import (
    assign_checked,
    bounded_int,
    mapped_tensor,
    read_json,
    read_weights,
    stored_weights,
)
from whisper_cli.errors import ModelError, first_line
from whisper_cli.hub import Checkpoint
from whisper_cli.whisper.model import ENGLISH_VOCAB, ModelDimensions, Whisper
from whisper_cli.whisper.packing import (
    StreamedLayout,
    kept_at_half,
    prepare_for_cpu,
    streams_float32,
)
from whisper_cli.whisper.tokenizer import N_TIMESTAMPS, Tokenizer, bundled_tokenizer
from whisper_cli.whisper.transcribe import WhisperModel

if TYPE_CHECKING:
    import torch


def dims_from_config(config: dict[str, Any], source: Path) -> ModelDimensions:
    """ModelDimensions from a Hugging Face `config.json`, every value checked first."""
    if config.get("model_type", "whisper") != "whisper":
        raise ModelError(f"{source}: model_type {config.get('model_type')!r} is not whisper")
    get = bounded_int
    dims = ModelDimensions(
        n_mels=get(config, "num_mel_bins", 1, 512, source),
        n_audio_ctx=get(config, "max_source_positions", 1, 4096, source),
        n_audio_state=get(config, "d_model", 1, 8192, source),
        n_audio_head=get(config, "encoder_attention_heads", 1, 256, source),
        n_audio_layer=get(config, "encoder_layers", 1, 128, source),
        n_vocab=get(config, "vocab_size", 1, 1_000_000, source),
        n_text_ctx=get(config, "max_target_positions", 1, 4096, source),
        n_text_state=get(config, "d_model", 1, 8192, source),
        n_text_head=get(config, "decoder_attention_heads", 1, 256, source),
        n_text_layer=get(config, "decoder_layers", 1, 128, source),
    )
    _check_dims(dims, source)
    return dims


def _check_dims(dims: ModelDimensions, source: Path) -> None:
    if dims.n_audio_state % dims.n_audio_head or dims.n_text_state % dims.n_text_head:
        raise ModelError(f"{source}: d_model is not divisible by the number of attention heads")
    if dims.n_vocab < ENGLISH_VOCAB:
        raise ModelError(f"{source}: vocab_size {dims.n_vocab} is too small for Whisper")


def hf_to_openai_key(key: str) -> str:
    """Map a Hugging Face Whisper tensor name onto this package's (openai-whisper's) name."""
    key = key.removeprefix("model.")
    for old, new in (
        ("encoder.embed_positions.weight", "encoder.positional_embedding"),
        ("decoder.embed_positions.weight", "decoder.positional_embedding"),
        ("decoder.embed_tokens", "decoder.token_embedding"),
        ("encoder.layer_norm.", "encoder.ln_post."),
        ("decoder.layer_norm.", "decoder.ln."),
        (".layers.", ".blocks."),
        (".self_attn_layer_norm.", ".attn_ln."),
        (".encoder_attn_layer_norm.", ".cross_attn_ln."),
        (".final_layer_norm.", ".mlp_ln."),
        (".self_attn.", ".attn."),
        (".encoder_attn.", ".cross_attn."),
        (".q_proj.", ".query."),
        (".k_proj.", ".key."),
        (".v_proj.", ".value."),
        (".out_proj.", ".out."),
        (".fc1.", ".mlp.0."),
        (".fc2.", ".mlp.2."),
    ):
        key = key.replace(old, new)
    return key


def _map_lookup_table(model: Whisper, folder: Path) -> None:
    """Once the vocabulary projection is a layer of its own (`prepare_for_cpu`), the token
    embedding only looks tokens up, a few rows a step: read from a mapping of the checkpoint,
    it holds in memory the pages of the tokens seen (a few MB) rather than a copy of the whole
    table (53 MB for base in float16). The values are those of the copy: the checkpoint's,
    widened to float32 exactly, or halved only where float16 holds them exactly."""
    import torch
    from torch import nn

    table = mapped_tensor(folder, "decoder.token_embedding.weight", hf_to_openai_key)
    copy = model.decoder.token_embedding.weight
    if table is None or table.shape != copy.shape:
        return
    ends = [0, -1]  # the same file still: a cheap look at two rows
    if torch.equal(table[ends].to(copy.dtype), copy[ends]):
        model.decoder.token_embedding.weight = nn.Parameter(table, requires_grad=False)


def _alignment_heads(folder: Path) -> list[tuple[int, int]] | None:
    path = folder / "generation_config.json"
    if not path.is_file():
        return None
    heads = read_json(path).get("alignment_heads")
    if not isinstance(heads, list):
        return None
    try:
        return [(int(layer), int(head)) for layer, head in heads]
    except (TypeError, ValueError):
        raise ModelError(f"{path}: alignment_heads must be [layer, head] pairs") from None


def _lays_out_as_it_loads(device: torch.device, dtype: torch.dtype, compute_type: str) -> bool:
    """Whether the model is laid out for the CPU block by block as it loads (`StreamedLayout`)
    rather than once loaded (`prepare_for_cpu`)."""
    return device.type == "cpu" and (compute_type == "int8" or streams_float32(dtype))


def _build(
    dims: ModelDimensions,
    state: dict[str, torch.Tensor],
    dtype: torch.dtype,
    device: torch.device,
    source: Path,
    compute_type: str,
    lookup_from: Path | None = None,
) -> Whisper:
    """The network with the checkpoint's weights, laid out for the CPU block by block as they
    load where it computes there in int8 or float32 (`StreamedLayout`); the token embedding,
    once a projection is made from it, read from a mapping of the safetensors in
    `lookup_from` (`_map_lookup_table`)."""
    import torch

    with torch.device("meta"):
        model = Whisper(dims)
    state.pop("proj_out.weight", None)  # the output projection is the token embedding
    keep_half: set[str] = set()
    if device.type == "cpu" and dtype == torch.float32:
        keep_half = kept_at_half(model, compute_type)
    if not _lays_out_as_it_loads(device, dtype, compute_type):
        assign_checked(model, state, dtype, source, keep_half)
    else:

        def projection_done() -> None:  # the float16 embedding goes at once
            if lookup_from is not None:
                _map_lookup_table(model, lookup_from)

        with ThreadPoolExecutor(torch.get_num_threads()) as pool:
            layout = StreamedLayout(model, pool, compute_type, projection_done)
            assign_checked(model, state, dtype, source, keep_half, layout.units, layout)
            layout.finish_all()
    return model.to(device).eval().requires_grad_(False)


def _pt_tokenizer(pt: Path, dims: ModelDimensions) -> Tokenizer:
    """The tokenizer of an openai-whisper `.pt`: a tokenizer.json beside it (`NAME.tokenizer.json`
    or `tokenizer.json`), else the vocabulary this package ships for its dimensions, as
    openai-whisper uses its own (no Hub needed)."""
    for candidate in (pt.with_suffix(".tokenizer.json"), pt.parent / "tokenizer.json"):
        if candidate.is_file():
            return Tokenizer.from_file(candidate, dims.is_multilingual, dims.num_languages)
    tokenizer = bundled_tokenizer(dims.is_multilingual, dims.num_languages)
    if tokenizer is None or tokenizer.timestamp_begin + N_TIMESTAMPS != dims.n_vocab:
        raise ModelError(
            f"{pt}: its vocabulary ({dims.n_vocab} tokens) is not one of openai-whisper's; "
            "put the model's tokenizer.json beside it"
        )
    return tokenizer


def _read_openai_pt(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    import pickle

    import torch

    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, OSError, EOFError) as error:
        raise ModelError(
            f"{path}: not a loadable openai-whisper checkpoint ({first_line(error)})"
        ) from None
    if not isinstance(checkpoint, dict) or not {"dims", "model_state_dict"} <= set(checkpoint):
        raise ModelError(f"{path}: not an openai-whisper checkpoint (no dims/model_state_dict)")
    return checkpoint["dims"], checkpoint["model_state_dict"]


def _dims_from_openai(raw: Any, source: Path) -> ModelDimensions:
    fields = ModelDimensions.__dataclass_fields__
    if not isinstance(raw, dict) or set(raw) != set(fields):
        raise ModelError(f"{source}: dims must have exactly {', '.join(fields)}")
    limits = {"n_mels": 512, "n_vocab": 1_000_000, "n_audio_ctx": 4096, "n_text_ctx": 4096}
    for key, value in raw.items():
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or not 1 <= value <= limits.get(key, 8192)
        ):
            raise ModelError(f"{source}: dims.{key} = {value!r} is out of range")
    dims = ModelDimensions(**raw)
    _check_dims(dims, source)
    return dims


def load_whisper(
    checkpoint: Checkpoint,
    config: dict[str, Any] | None,
    device: torch.device,
    dtype: torch.dtype,
    compute_type: str,
) -> WhisperModel:
    """A Whisper checkpoint (a folder with its `config.json` read, or an openai `.pt`) loaded
    onto `device`, laid out for its kernels, with its tokenizer checked."""
    if config is None:  # an openai-whisper .pt
        raw_dims, state = _read_openai_pt(checkpoint.path)
        dims = _dims_from_openai(raw_dims, checkpoint.path)
        model = _build(dims, state, dtype, device, checkpoint.path, compute_type)
        tokenizer = _pt_tokenizer(checkpoint.path, dims)
        heads = _alignment_heads(checkpoint.path.parent)
    else:
        folder = checkpoint.path
        dims = dims_from_config(config, folder / "config.json")
        if not (folder / "tokenizer.json").is_file():
            raise ModelError(f"{folder}: no tokenizer.json beside the weights")
        stored = stored_weights(folder)  # read tensor by tensor as they are assigned
        weights = read_weights(folder) if stored is None else stored
        state = {hf_to_openai_key(k): v for k, v in weights.items()}
        del weights
        # the tokenizer (0.1 s for its 50k merges) is read on a thread of its own meanwhile;
        # the weights' errors come first, as they did
        with ThreadPoolExecutor(1) as side:
            reading = side.submit(
                Tokenizer.from_file,
                folder / "tokenizer.json",
                dims.is_multilingual,
                dims.num_languages,
            )
            model = _build(dims, state, dtype, device, folder, compute_type, folder)
            tokenizer = reading.result()
        heads = _alignment_heads(folder)
    if heads is not None:
        bad = [
            (layer, head)
            for layer, head in heads
            if not (0 <= layer < dims.n_text_layer and 0 <= head < dims.n_text_head)
        ]
        if bad:
            raise ModelError(f"{checkpoint.path}: alignment head {bad[0]} is out of range")
        model.alignment_heads = tuple(heads)
    if model.decoder.blocks[0].attn.query_key_value is None:  # unless fused as it loaded
        model.decoder.fuse_self_attention()
    if device.type == "cpu":
        prepare_for_cpu(model, compute_type)
        mapped = _lays_out_as_it_loads(device, dtype, compute_type)  # as it loaded, if so
        if model.decoder.output is not None and config is not None and not mapped:
            _map_lookup_table(model, checkpoint.path)
    return WhisperModel(model, tokenizer, checkpoint.name, compute_type)
