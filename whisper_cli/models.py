"""Finding and loading Whisper checkpoints.

A model is named by a short name (`base`, `turbo`, …), a Hugging Face repo id (`owner/name`),
a local folder in Hugging Face layout, or an openai-whisper `.pt` file. Hub models come from the
local Hugging Face cache first and are downloaded only when missing (never with
`HF_HUB_OFFLINE=1` or `offline=True`). Loading executes no code from the checkpoint:
safetensors, or `torch.load(weights_only=True)` for `.pt`; the configuration is bounds-checked
before any tensor is allocated, and every key and shape is checked against the model.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from whisper_cli.errors import ModelError

if TYPE_CHECKING:
    import numpy as np
    import torch

    from whisper_cli.model import ModelDimensions, Whisper
    from whisper_cli.options import TranscribeOptions
    from whisper_cli.results import Segment, Transcript
    from whisper_cli.speech2text import Speech2TextModel
    from whisper_cli.tokenizer import Tokenizer
    from whisper_cli.transcribe import AudioInput, TranscriptionInfo

# short name → Hugging Face repo
MODELS = {
    "tiny.en": "openai/whisper-tiny.en",
    "tiny": "openai/whisper-tiny",
    "base.en": "openai/whisper-base.en",
    "base": "openai/whisper-base",
    "small.en": "openai/whisper-small.en",
    "small": "openai/whisper-small",
    "medium.en": "openai/whisper-medium.en",
    "medium": "openai/whisper-medium",
    "large-v1": "openai/whisper-large",
    "large-v2": "openai/whisper-large-v2",
    "large-v3": "openai/whisper-large-v3",
    "large-v3-turbo": "openai/whisper-large-v3-turbo",
    "turbo": "openai/whisper-large-v3-turbo",
    "distil-small.en": "distil-whisper/distil-small.en",
    "distil-medium.en": "distil-whisper/distil-medium.en",
    "distil-large-v2": "distil-whisper/distil-large-v2",
    "distil-large-v3": "distil-whisper/distil-large-v3",
    "distil-large-v3.5": "distil-whisper/distil-large-v3.5",
}

# the files the loader reads; nothing else is downloaded
HUB_FILES = (
    "config.json",
    "generation_config.json",
    "preprocessor_config.json",
    "tokenizer.json",
    "model.safetensors",
    "model.safetensors.index.json",
    "model-*.safetensors",
    "pytorch_model.bin",  # Speech2Text checkpoints; fetched only when there is no safetensors
    "vocab.json",  # Speech2Text vocabularies
    "tokenizer_config.json",  # how Speech2Text pieces join into text (case, clean-up)
)

# for a `.pt` without a tokenizer.json beside it: the repo whose vocabulary it shares
_TOKENIZER_REPOS = {
    51864: "openai/whisper-tiny.en",  # English-only vocabulary
    51865: "openai/whisper-tiny",  # multilingual, 99 languages
    51866: "openai/whisper-large-v3",  # multilingual, 100 languages
}

SPEECH2TEXT_TYPES = ("speech_to_text", "speech-encoder-decoder")  # see speech2text.py

COMPUTE_TYPES = ("auto", "float32", "float16", "bfloat16", "int8")


@dataclass(frozen=True)
class Checkpoint:
    """Where a model's files are: a folder in Hugging Face layout, or an openai `.pt`."""

    name: str  # what the user asked for
    path: Path  # folder, or .pt file
    repo_id: str | None = None  # the Hub repo it came from, if any

    @property
    def is_openai_pt(self) -> bool:
        return self.path.is_file()


def is_hub_cached(name: str, revision: str | None = None, cache_dir: str | None = None) -> bool:
    """Whether a short name or repo id is complete in the local Hub cache (no network)."""
    try:
        return _cached_snapshot(MODELS.get(name, name), revision, cache_dir) is not None
    except (OSError, ValueError):
        return False


def _cached_snapshot(
    repo_id: str, revision: str | None, cache_dir: str | os.PathLike[str] | None
) -> Path | None:
    """The snapshot folder of a repo in the local Hub cache, or None: no network."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        folder = snapshot_download(
            repo_id,
            revision=revision,
            cache_dir=None if cache_dir is None else str(cache_dir),
            allow_patterns=list(HUB_FILES),
            local_files_only=True,
        )
    except LocalEntryNotFoundError:
        return None
    return Path(folder)


def resolve_model(
    name_or_path: str | os.PathLike[str],
    revision: str | None = None,
    offline: bool = False,
    cache_dir: str | os.PathLike[str] | None = None,
    download_progress: type | None = None,
) -> Checkpoint:
    """Find a model's files, downloading them from the Hub when they are not cached."""
    name = str(name_or_path)
    path = Path(name).expanduser()
    if path.exists():
        if path.is_dir() or path.suffix == ".pt":
            return Checkpoint(name, path)
        raise ModelError(f"{name}: not a model folder or an openai-whisper .pt file")
    if name in MODELS:
        repo_id = MODELS[name]
    elif _is_repo_id(name):
        repo_id = name
    elif path.suffix == ".pt" or "/" in name or os.sep in name or name.startswith((".", "~")):
        raise ModelError(f"{name}: no such model folder or file")
    else:
        known = ", ".join(MODELS)
        raise ModelError(f"unknown model {name!r}: use one of {known}, a Hub repo id or a path")
    folder = _hub_snapshot(repo_id, name, revision, offline, cache_dir, download_progress)
    return Checkpoint(name, folder, repo_id)


def _is_repo_id(name: str) -> bool:
    """'owner/name': one slash, no path-like start, no file suffix."""
    owner, _, repo = name.partition("/")
    plain = owner and repo and "/" not in repo and not name.startswith((".", "~"))
    return bool(plain) and not name.endswith(".pt")


def _hub_snapshot(
    repo_id: str,
    name: str,
    revision: str | None,
    offline: bool,
    cache_dir: str | os.PathLike[str] | None,
    download_progress: type | None,
) -> Path:
    from huggingface_hub import constants, snapshot_download

    cache_dir = str(cache_dir) if cache_dir is not None else None
    where = cache_dir or constants.HF_HUB_CACHE
    cached = _cached_snapshot(repo_id, revision, cache_dir)  # no round trip when it is here
    if cached is not None:
        return cached
    if offline or constants.HF_HUB_OFFLINE:
        raise ModelError(
            f"model {name!r} ({repo_id}) is not in the Hugging Face cache at {where} and "
            f"downloads are off (offline mode); run `whisper-cli models download {name}` "
            "on a machine with network access, or pass a local folder with --model"
        )
    try:
        return Path(
            snapshot_download(
                repo_id,
                revision=revision,
                cache_dir=cache_dir,
                allow_patterns=_download_patterns(repo_id, revision),
                tqdm_class=download_progress,
            )
        )
    except Exception as error:  # the hub raises many kinds; all mean "could not download"
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelError(
            f"could not download model {name!r} ({repo_id}) from the Hugging Face Hub: {reason}"
        ) from error


def _download_patterns(repo_id: str, revision: str | None) -> list[str]:
    """HUB_FILES, less `pytorch_model.bin` when the repo has safetensors (most have both)."""
    from huggingface_hub import list_repo_files

    try:
        files = list_repo_files(repo_id, revision=revision)
    except Exception:  # noqa: BLE001 (the download that follows reports the real problem)
        return list(HUB_FILES)
    if any(f.endswith(".safetensors") for f in files):
        return [p for p in HUB_FILES if p != "pytorch_model.bin"]
    return list(HUB_FILES)


# ---------------------------------------------------------------------------------------------
# configuration


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ModelError(f"{path}: not valid JSON ({error.msg} at line {error.lineno})") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ModelError(f"{path}: cannot be read ({error})") from None
    if not isinstance(data, dict):
        raise ModelError(f"{path}: expected a JSON object")
    return data


def _bounded_int(config: dict[str, Any], key: str, low: int, high: int, source: Path) -> int:
    value = config.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ModelError(f"{source}: {key} must be an integer, not {value!r}")
    if not low <= value <= high:
        raise ModelError(f"{source}: {key} = {value} is out of range [{low}, {high}]")
    return value


def dims_from_config(config: dict[str, Any], source: Path) -> ModelDimensions:
    """ModelDimensions from a Hugging Face `config.json`, every value checked first."""
    from whisper_cli.model import ModelDimensions

    if config.get("model_type", "whisper") != "whisper":
        raise ModelError(f"{source}: model_type {config.get('model_type')!r} is not whisper")
    get = _bounded_int
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
    if dims.n_vocab < 51864:
        raise ModelError(f"{source}: vocab_size {dims.n_vocab} is too small for Whisper")


# ---------------------------------------------------------------------------------------------
# weights


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


def read_weights(folder: Path) -> dict[str, torch.Tensor]:
    """A folder's tensors: its safetensors, else (older checkpoints) its `pytorch_model.bin`,
    which is read with `weights_only=True`, so it cannot run code."""
    bin_file = folder / "pytorch_model.bin"
    has_safetensors = (folder / "model.safetensors").is_file() or (
        folder / "model.safetensors.index.json"
    ).is_file()
    if has_safetensors or not bin_file.is_file():
        return _read_safetensors(folder)
    import pickle

    import torch

    try:
        state = torch.load(bin_file, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, OSError, EOFError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelError(f"{bin_file}: cannot read the weights ({first})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{bin_file}: not a state dict of tensors")
    return state


def _safetensors_files(folder: Path) -> list[Path]:
    """A folder's safetensors files: the one, or the shards its index names; [] for none."""
    index = folder / "model.safetensors.index.json"
    if (folder / "model.safetensors").is_file():
        return [folder / "model.safetensors"]
    if index.is_file():
        return sorted({folder / f for f in _read_json(index).get("weight_map", {}).values()})
    return []


def _read_safetensors(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    files = _safetensors_files(folder)
    if not files:
        raise ModelError(f"{folder}: no model.safetensors (is this a Whisper model folder?)")
    state: dict[str, torch.Tensor] = {}
    for file in files:
        try:
            state.update(load_file(file))
        except (SafetensorError, OSError) as error:
            raise ModelError(f"{file}: cannot read the weights ({error})") from None
    return state


_SAFETENSORS_FLOATS = {"F16": "float16", "BF16": "bfloat16", "F32": "float32"}


def mapped_tensor(folder: Path, key: str) -> torch.Tensor | None:
    """Tensor `key` (this package's name) of a folder's safetensors as a view of its file mapped
    into memory, copy-on-write: a page is read in when first touched, and only the pages
    touched count in the process's memory. None where no safetensors file holds it as a
    floating-point tensor that can be viewed in place."""
    import struct

    import torch

    for file in _safetensors_files(folder):
        try:  # the format: the header's length (8 bytes), the header (JSON), the data
            with file.open("rb") as stream:
                (header_size,) = struct.unpack("<Q", stream.read(8))
                header = json.loads(stream.read(header_size)) if header_size < 1 << 27 else {}
        except (OSError, struct.error, ValueError):
            return None
        names = [name for name in header if hf_to_openai_key(name) == key]
        if not names:
            continue
        entry = header[names[0]]
        dtype = getattr(torch, _SAFETENSORS_FLOATS.get(entry.get("dtype"), ""), None)
        try:
            begin, end = (8 + header_size + int(offset) for offset in entry["data_offsets"])
            shape = [int(n) for n in entry["shape"]]
        except (KeyError, TypeError, ValueError):
            return None
        size = file.stat().st_size
        if (
            dtype is None
            or begin % dtype.itemsize
            or end - begin != dtype.itemsize * math.prod(shape)
            or end > size
        ):
            return None
        mapped = torch.from_file(str(file), shared=False, size=size, dtype=torch.uint8)
        return mapped[begin:end].view(dtype).view(shape)
    return None


def assign_checked(
    model: torch.nn.Module,
    state: dict[str, torch.Tensor],
    dtype: torch.dtype,
    source: Path,
    keep_half: Collection[str] = (),
) -> None:
    """Copy `state` into `model` (built on the meta device), insisting that keys and shapes
    match exactly; floating-point tensors are converted to `dtype`, except the float16 ones
    named in `keep_half`, which stay as they are.

    `state` is emptied as it is converted, so that a float16 checkpoint computed in float32
    never holds both copies of every weight at once.
    """
    import torch

    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:3])}" + (" …" if len(missing) > 3 else ""))
        if unexpected:
            more = " …" if len(unexpected) > 3 else ""
            parts.append(f"unexpected {', '.join(unexpected[:3])}{more}")
        raise ModelError(
            f"{source}: the weights do not match the configuration ({'; '.join(parts)})"
        )
    for key, tensor in state.items():
        if tuple(tensor.shape) != tuple(expected[key].shape):
            raise ModelError(
                f"{source}: tensor {key} has shape {tuple(tensor.shape)}, "
                f"the configuration implies {tuple(expected[key].shape)}"
            )
    converted = {}
    for key in list(state):
        tensor = state.pop(key)
        half = key in keep_half and tensor.dtype == torch.float16
        kept = half or not tensor.is_floating_point()
        # copied, even where the type stays, rather than kept as a view of the mapped file: one
        # view keeps the whole mapping, and in the process's memory every page the loader read
        # (weights since repacked too) for as long as the model lives
        converted[key] = tensor.to(tensor.dtype if kept else dtype, copy=True)
    model.load_state_dict(converted, assign=True)


def _map_lookup_table(model: Whisper, folder: Path) -> None:
    """Once the vocabulary projection is a layer of its own (`prepare_for_cpu`), the token
    embedding only looks tokens up, a few rows a step: read from a mapping of the checkpoint,
    it holds in memory the pages of the tokens seen (a few MB) rather than a copy of the whole
    table (53 MB for base in float16). The values are those of the copy: the checkpoint's,
    widened to float32 exactly, or halved only where float16 holds them exactly."""
    import torch
    from torch import nn

    table = mapped_tensor(folder, "decoder.token_embedding.weight")
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
    heads = _read_json(path).get("alignment_heads")
    if not isinstance(heads, list):
        return None
    try:
        return [(int(layer), int(head)) for layer, head in heads]
    except (TypeError, ValueError):
        raise ModelError(f"{path}: alignment_heads must be [layer, head] pairs") from None


def _compute_dtype(compute_type: str, device: torch.device) -> torch.dtype:
    import torch

    if compute_type not in COMPUTE_TYPES:
        raise ModelError(f"unknown compute type {compute_type!r}: use one of {COMPUTE_TYPES}")
    if compute_type == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    if compute_type == "int8":
        return torch.float32  # the linear layers are quantised after loading
    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[
        compute_type
    ]


def resolve_device(device: str = "auto") -> torch.device:
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise ModelError(f"unknown device {device!r}: use auto, cpu or cuda") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ModelError("--device cuda was asked for, but PyTorch sees no CUDA device")
    return resolved


def _build(
    dims: ModelDimensions,
    state: dict[str, torch.Tensor],
    dtype,
    device,
    source: Path,
    compute_type: str,
):
    import torch

    from whisper_cli.model import Whisper

    with torch.device("meta"):
        model = Whisper(dims)
    state.pop("proj_out.weight", None)  # the output projection is the token embedding
    keep_half: set[str] = set()
    if device.type == "cpu" and dtype == torch.float32:
        from whisper_cli.packing import kept_at_half

        keep_half = kept_at_half(model, compute_type)
    assign_checked(model, state, dtype, source, keep_half)
    return model.to(device).eval().requires_grad_(False)


def _load_tokenizer(path: Path, dims: ModelDimensions) -> Tokenizer:
    from whisper_cli.tokenizer import Tokenizer

    multilingual = dims.n_vocab >= 51865
    num_languages = dims.n_vocab - 51765 - int(multilingual)
    try:
        return Tokenizer.from_file(path, multilingual, num_languages)
    except Exception as error:  # tokenizers raises its own Exception subclass
        raise ModelError(f"{path}: not a usable tokenizer.json ({error})") from None


def _pt_tokenizer_file(pt: Path, n_vocab: int, offline: bool) -> Path:
    for candidate in (pt.with_suffix(".tokenizer.json"), pt.parent / "tokenizer.json"):
        if candidate.is_file():
            return candidate
    repo = _TOKENIZER_REPOS.get(n_vocab)
    if repo is None:
        raise ModelError(f"{pt}: put the model's tokenizer.json beside it")
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(hf_hub_download(repo, "tokenizer.json", local_files_only=True))
    except LocalEntryNotFoundError:
        if offline:
            raise ModelError(
                f"{pt}: no tokenizer.json beside it and none cached from {repo}; "
                "put the model's tokenizer.json beside the .pt file"
            ) from None
    try:
        return Path(hf_hub_download(repo, "tokenizer.json"))
    except Exception as error:
        raise ModelError(f"{pt}: no tokenizer.json beside it, and {repo}'s: {error}") from None


def _read_openai_pt(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    import pickle

    import torch

    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, OSError, EOFError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelError(f"{path}: not a loadable openai-whisper checkpoint ({first})") from None
    if not isinstance(checkpoint, dict) or not {"dims", "model_state_dict"} <= set(checkpoint):
        raise ModelError(f"{path}: not an openai-whisper checkpoint (no dims/model_state_dict)")
    return checkpoint["dims"], checkpoint["model_state_dict"]


def _dims_from_openai(raw: Any, source: Path) -> ModelDimensions:
    from whisper_cli.model import ModelDimensions

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


class WhisperModel:
    """A loaded Whisper model with its tokenizer: what `load_model` returns."""

    def __init__(self, model: Whisper, tokenizer: Tokenizer, name: str, compute_type: str):
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        self.compute_type = compute_type

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def is_multilingual(self) -> bool:
        return self.tokenizer.multilingual

    @property
    def can_translate(self) -> bool:
        """English-only models cannot translate, and turbo was trained without translation."""
        return self.is_multilingual and "turbo" not in self.name

    def transcribe(
        self,
        audio: str | os.PathLike[str] | np.ndarray,
        progress: Callable[[float, float], None] | None = None,
        **options: Any,
    ) -> Transcript:
        """Transcribe a file or 16 kHz mono samples; options are TranscribeOptions fields."""
        from whisper_cli.transcribe import TranscribeOptions, transcribe

        return transcribe(self, audio, TranscribeOptions.from_kwargs(**options), progress)

    @property
    def can_detect_language(self) -> bool:
        return self.is_multilingual

    def detect_language(self, audio: str | os.PathLike[str] | np.ndarray) -> dict[str, float]:
        """Probabilities of every language over the first 30 s, most likely first."""
        from whisper_cli.transcribe import detect_language

        return detect_language(self, audio)

    def transcribe_stream(
        self,
        audio: AudioInput,
        options: TranscribeOptions | None = None,
        progress: Callable[[float, float], None] | None = None,
    ) -> tuple[TranscriptionInfo, Iterator[Segment]]:
        """Start transcribing: the language and duration now, the segments as they are decoded."""
        from whisper_cli.transcribe import TranscribeOptions, transcribe_stream

        return transcribe_stream(self, audio, options or TranscribeOptions(), progress)

    def collect(self, info: TranscriptionInfo, segments: Iterable[Segment]) -> Transcript:
        """The Transcript of a stream's segments (consuming them)."""
        from whisper_cli.transcribe import collect

        return collect(self, info, segments)


def load_model(
    name_or_path: str | os.PathLike[str] = "turbo",
    device: str = "auto",
    compute_type: str = "auto",
    revision: str | None = None,
    offline: bool = False,
    cache_dir: str | os.PathLike[str] | None = None,
    download_progress: type | None = None,
) -> WhisperModel | Speech2TextModel:
    """Find, download if needed, and load a model ready to transcribe: Whisper, or a
    Speech2Text / Speech2Text2 checkpoint (told apart by its config.json's model_type)."""
    from whisper_cli.memory import release_freed_memory

    torch_device = resolve_device(device)
    dtype = _compute_dtype(compute_type, torch_device)
    checkpoint = resolve_model(name_or_path, revision, offline, cache_dir, download_progress)
    if checkpoint.is_openai_pt:
        raw_dims, state = _read_openai_pt(checkpoint.path)
        dims = _dims_from_openai(raw_dims, checkpoint.path)
        model = _build(dims, state, dtype, torch_device, checkpoint.path, compute_type)
        tokenizer_file = _pt_tokenizer_file(checkpoint.path, dims.n_vocab, offline)
        heads = _alignment_heads(checkpoint.path.parent)
    else:
        folder = checkpoint.path
        if not (folder / "config.json").is_file():
            raise ModelError(f"{folder}: no config.json, so not a Whisper model folder")
        config = _read_json(folder / "config.json")
        if config.get("model_type") in SPEECH2TEXT_TYPES:
            from whisper_cli import speech2text

            if compute_type == "int8" and torch_device.type != "cpu":
                raise ModelError("--compute-type int8 runs on the CPU only; use float16 on CUDA")
            loaded = speech2text.load(
                folder, config, checkpoint.name, torch_device, dtype, compute_type
            )
            release_freed_memory()
            return loaded
        dims = dims_from_config(config, folder / "config.json")
        if not (folder / "tokenizer.json").is_file():
            raise ModelError(f"{folder}: no tokenizer.json beside the weights")
        state = {hf_to_openai_key(k): v for k, v in read_weights(folder).items()}
        model = _build(dims, state, dtype, torch_device, folder, compute_type)
        tokenizer_file = folder / "tokenizer.json"
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
    model.decoder.fuse_self_attention()
    if torch_device.type == "cpu":
        from whisper_cli.packing import prepare_for_cpu

        prepare_for_cpu(model, compute_type)
        if model.decoder.output is not None and not checkpoint.is_openai_pt:
            _map_lookup_table(model, checkpoint.path)
    elif compute_type == "int8":
        raise ModelError("--compute-type int8 runs on the CPU only; use float16 on CUDA")
    tokenizer = _load_tokenizer(tokenizer_file, dims)
    release_freed_memory()  # what converting, laying out and parsing freed
    return WhisperModel(model, tokenizer, checkpoint.name, compute_type)
