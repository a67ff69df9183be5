"""`load_model`: find a checkpoint (`hub`), choose the device and compute type, and load it as
the family it belongs to, Whisper or Speech2Text: the one place the two paths fork.

Loading executes no code from the checkpoint: safetensors, or `torch.load(weights_only=True)`
for `.pt` and `pytorch_model.bin`; the configuration is bounds-checked before any tensor is
allocated, and every key and shape is checked against the network (`checkpoint`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from whisper_cli.checkpoint import read_json
from whisper_cli.errors import ModelError
from whisper_cli.hub import resolve_model
from whisper_cli.memory import release_freed_memory

if TYPE_CHECKING:
    import torch

    from whisper_cli.protocol import SpeechModel

# config.json model types loaded by speech2text/; every other checkpoint is Whisper's
SPEECH2TEXT_TYPES = ("speech_to_text", "speech-encoder-decoder")

COMPUTE_TYPES = ("auto", "float32", "float16", "bfloat16", "int8")


def compute_dtype(compute_type: str, device: torch.device) -> torch.dtype:
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


def native_bfloat16() -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (AVX512-BF16 or AMX) and oneDNN may use
    it; elsewhere bfloat16 products are emulated, several times slower than float32's."""
    import torch

    try:
        hardware = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
        return bool(hardware and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a PyTorch without these probes or without oneDNN
        return False


def slow_compute_type(compute_type: str, device: torch.device) -> str | None:
    """Why `compute_type` would run slowly on `device`, as a line to show, or None."""
    if compute_type == "bfloat16" and device.type == "cpu" and not native_bfloat16():
        return (
            "bfloat16 is emulated on this CPU (no AVX512-BF16 or AMX): expect it several times "
            "slower than float32"
        )
    return None


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


def load_model(
    name_or_path: str | os.PathLike[str] = "turbo",
    device: str = "auto",
    compute_type: str = "auto",
    revision: str | None = None,
    offline: bool = False,
    cache_dir: str | os.PathLike[str] | None = None,
    download_progress: type | None = None,
) -> SpeechModel:
    """Find, download if needed, and load a model ready to transcribe: Whisper, or a
    Speech2Text / Speech2Text2 checkpoint (told apart by its config.json's model_type)."""
    torch_device = resolve_device(device)
    dtype = compute_dtype(compute_type, torch_device)
    if compute_type == "int8" and torch_device.type != "cpu":
        raise ModelError("--compute-type int8 runs on the CPU only; use float16 on CUDA")
    checkpoint = resolve_model(name_or_path, revision, offline, cache_dir, download_progress)
    config = None
    if not checkpoint.is_openai_pt:
        if not (checkpoint.path / "config.json").is_file():
            raise ModelError(f"{checkpoint.path}: no config.json, so not a Whisper model folder")
        config = read_json(checkpoint.path / "config.json")
    loaded: SpeechModel
    if config is not None and config.get("model_type") in SPEECH2TEXT_TYPES:
        from whisper_cli.speech2text.loading import load

        loaded = load(checkpoint.path, config, checkpoint.name, torch_device, dtype, compute_type)
    else:
        from whisper_cli.whisper.loading import load_whisper

        loaded = load_whisper(checkpoint, config, torch_device, dtype, compute_type)
    release_freed_memory()  # what converting, laying out and parsing freed
    return loaded


@dataclass(frozen=True)
class ModelSpec:
    """Which model to load, and how: what the command line says, as one value that pickles
    (a cluster's workers load the same)."""

    name: str
    revision: str | None = None
    offline: bool = False
    cache_dir: str | None = None
    device: str = "auto"
    compute_type: str = "auto"
    threads: int = 0  # PyTorch's CPU threads; 0 keeps PyTorch's default

    def load(self, download_progress: type | None = None) -> SpeechModel:
        """Load the model (raises ModelError); sets PyTorch's thread count first."""
        if self.threads > 0:
            import torch

            torch.set_num_threads(self.threads)
        return load_model(
            self.name,
            device=self.device,
            compute_type=self.compute_type,
            revision=self.revision,
            offline=self.offline,
            cache_dir=self.cache_dir,
            download_progress=download_progress,
        )
