"""Loading a Speech2Text or Speech2Text2 checkpoint from a folder in Hugging Face layout:
the network (`s2t` or `s2t2`), its vocabulary, how it generates, and its feature function."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from whisper_cli.checkpoint import assign_checked, read_json, read_weights
from whisper_cli.errors import ModelError
from whisper_cli.speech2text.transcribe import Generation, Speech2TextModel
from whisper_cli.speech2text.vocabulary import Vocabulary

DEFAULT_MAX_LENGTH = 200  # transformers' default for these checkpoints


def load(
    folder: Path,
    config: dict[str, Any],
    name: str,
    device: torch.device,
    dtype: torch.dtype,
    compute_type: str,
) -> Speech2TextModel:
    """Build a Speech2Text-family model from a folder in Hugging Face layout."""
    source = folder / "config.json"
    model_type = config.get("model_type")
    if model_type == "speech_to_text":
        import whisper_cli.speech2text.s2t as family

        family_config = family.Speech2TextConfig.from_json(config, source)
        module_class, joiner = family.Speech2Text, "▁"
    else:
        encoder = (config.get("encoder") or {}).get("model_type")
        decoder = (config.get("decoder") or {}).get("model_type")
        if (encoder, decoder) != ("wav2vec2", "speech_to_text_2"):
            raise ModelError(
                f"{source}: a speech-encoder-decoder of {encoder} and {decoder} is not supported "
                "(only wav2vec2 with speech_to_text_2)"
            )
        import whisper_cli.speech2text.s2t2 as family
        from whisper_cli.speech2text.s2t2_config import Speech2Text2Config

        family_config = Speech2Text2Config.from_json(config, source)
        module_class, joiner = family.Speech2Text2, "@@"
    vocabulary = Vocabulary.from_folder(folder, joiner)
    generation = _generation(folder, config, vocabulary, source)

    with torch.device("meta"):
        module = module_class(family_config)
    state = family.convert_state(read_weights(folder), family_config)
    assign_checked(module, state, dtype, folder)
    module = module.to(device).eval().requires_grad_(False)
    if model_type == "speech_to_text":
        features = _fbank_function(folder)
    else:
        features = _waveform_function(folder, family_config.min_samples)
    if compute_type == "int8":
        from whisper_cli.nn.quantize import quantize_linear_layers

        quantize_linear_layers(module)
    return Speech2TextModel(module, vocabulary, generation, features, name, compute_type)


def _generation(
    folder: Path, config: dict[str, Any], vocabulary: Vocabulary, source: Path
) -> Generation:
    # a speech-encoder-decoder keeps the generation ids on top, the decoder's own ids below
    settings = {**config.get("decoder", {}), **{k: v for k, v in config.items() if v is not None}}
    path = folder / "generation_config.json"
    if path.is_file():
        settings.update({k: v for k, v in read_json(path).items() if v is not None})
    size = len(vocabulary.pieces)

    def token(key: str, default: int | None = None) -> int:
        value = settings.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < size:
            raise ModelError(f"{source}: {key} = {value!r} is not a token of the vocabulary")
        return value

    eos = token("eos_token_id")
    decoder_start = token("decoder_start_token_id", eos)
    max_length = settings.get("max_length", DEFAULT_MAX_LENGTH)
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 2:
        raise ModelError(f"{source}: max_length = {max_length!r} is out of range")
    forced = settings.get("forced_bos_token_id")
    forced_language = None
    if forced is not None:
        forced_language = next(
            (code for code, i in vocabulary.languages.items() if i == forced), None
        )
    return Generation(decoder_start, eos, max_length, forced_language)


def _preprocessor_settings(folder: Path) -> tuple[Path, dict[str, Any]]:
    path = folder / "preprocessor_config.json"
    return path, read_json(path) if path.is_file() else {}


def _fbank_function(folder: Path) -> Callable[[np.ndarray], torch.Tensor]:
    """Speech2Text's input: normalised Kaldi fbank frames, (1, frames, n_mels)."""
    from whisper_cli.speech2text.features import MAX_MEL_BINS, speech2text_features

    path, settings = _preprocessor_settings(folder)
    n_mels = settings.get("num_mel_bins", settings.get("feature_size", 80))
    if isinstance(n_mels, bool) or not isinstance(n_mels, int) or not 1 <= n_mels <= MAX_MEL_BINS:
        raise ModelError(f"{path}: num_mel_bins = {n_mels!r} is out of range [1, {MAX_MEL_BINS}]")
    normalize = bool(settings.get("do_ceptral_normalize", True))  # sic: transformers' key
    means = normalize and bool(settings.get("normalize_means", True))
    variances = normalize and bool(settings.get("normalize_vars", True))

    def fbank(samples: np.ndarray) -> torch.Tensor:
        return speech2text_features(samples, n_mels, means, variances)[None]

    return fbank


def _waveform_function(folder: Path, min_samples: int) -> Callable[[np.ndarray], torch.Tensor]:
    """Speech2Text2's input: the waveform, normalised unless the checkpoint says not, (1, n).

    Audio shorter than `min_samples` (what the encoder's convolutions need for one frame) is
    an AudioError, as it is for Speech2Text's fbank."""
    from whisper_cli.speech2text.features import require_samples
    from whisper_cli.speech2text.s2t2 import normalize_waveform

    _, settings = _preprocessor_settings(folder)
    normalize = bool(settings.get("do_normalize", True))

    def waveform(samples: np.ndarray) -> torch.Tensor:
        require_samples(len(samples), min_samples)
        return torch.from_numpy(normalize_waveform(samples) if normalize else samples)[None]

    return waveform
