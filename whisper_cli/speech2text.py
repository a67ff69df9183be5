"""Speech2Text and Speech2Text2 checkpoints behind the same face as a Whisper model.

`facebook/s2t-*` (model_type `speech_to_text`: log-mel filterbank in, sentencepiece text out)
and `facebook/s2t-wav2vec2-*` (`speech-encoder-decoder`: a wav2vec 2.0 encoder on the raw
waveform, a Transformer decoder with `@@ ` BPE pieces) are utterance models: no timestamps, no
language detection, no prompt. To transcribe a long recording, it is cut into pieces of at most
`MAX_PIECE` seconds at pauses (Silero VAD's speech regions, joined while they fit; or, with the
voice activity detector off, fixed windows cut at the quietest 100 ms near their end), and each
piece becomes one segment with its start and end time, so every writer works unchanged.

The whole recording is decoded into memory first (4 bytes a sample: 230 MB an hour), since
the pieces are only known once the detector has heard all of it. `--batch-size` does not apply.

The architectures are in `s2t_model` and `s2t2_model`; generation in `seq2seq`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from whisper_cli.constants import SAMPLE_RATE
from whisper_cli.errors import ModelError, OptionsError
from whisper_cli.options import TranscribeOptions, clips_requested, verify
from whisper_cli.results import Segment, Transcript

if TYPE_CHECKING:
    from whisper_cli.transcribe import AudioInput, TranscriptionInfo

MAX_PIECE = 20.0  # seconds: these models were trained on utterances, not 30-s windows
MIN_PIECE = 0.1  # seconds: shorter pieces hold no word
QUIET_SEARCH = 5.0  # seconds before a fixed window's end searched for its quietest point
DEFAULT_MAX_LENGTH = 200  # transformers' default for these checkpoints

Progress = Callable[[float, float], None]


# ---------------------------------------------------------------------------------------------
# vocabulary


# transformers' `clean_up_tokenization_spaces`: spaces the word pieces leave before punctuation
_CLEAN_UP = ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"))
_CLEAN_UP += ((" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"))


@dataclass(frozen=True)
class Vocabulary:
    """Token ids ↔ pieces, from the checkpoint's `vocab.json`, and how pieces join into text
    (as the checkpoint's transformers tokenizer decodes with `skip_special_tokens=True`).

    Speech2Text pieces are sentencepiece's: `▁` starts a word. Speech2Text2 pieces are BPE
    units: a piece ending in `@@` continues into the next one.
    """

    pieces: tuple[str, ...]  # by id
    special: frozenset[int]  # <s>, <pad>, </s>, <unk>, <lang:xx>: never shown
    joiner: str  # "▁" (sentencepiece) or "@@" (BPE)
    clean_up_spaces: bool = True  # tokenizer_config.json's clean_up_tokenization_spaces
    upper_case: bool = False  # tokenizer_config.json's do_upper_case (Speech2Text)

    @classmethod
    def from_folder(cls, folder: Path, joiner: str) -> Vocabulary:
        from whisper_cli.models import _read_json

        path = folder / "vocab.json"
        if not path.is_file():
            raise ModelError(f"{folder}: no vocab.json beside the weights")
        raw = _read_json(path)
        if not raw or not all(isinstance(i, int) and 0 <= i < 10_000_000 for i in raw.values()):
            raise ModelError(f"{path}: expected an object of piece → non-negative id")
        pieces = [""] * (max(raw.values()) + 1)
        for piece, index in raw.items():
            pieces[index] = piece
        special = frozenset(
            i for i, p in enumerate(pieces) if p.startswith("<") and p.endswith(">") and len(p) > 2
        )
        config_path = folder / "tokenizer_config.json"
        config = _read_json(config_path) if config_path.is_file() else {}
        return cls(
            tuple(pieces),
            special,
            joiner,
            bool(config.get("clean_up_tokenization_spaces", True)),
            bool(config.get("do_upper_case", False)),
        )

    @property
    def languages(self) -> dict[str, int]:
        """Target-language tokens (`<lang:de>` → {"de": id}) of multilingual checkpoints."""
        return {
            p[len("<lang:") : -1]: i for i, p in enumerate(self.pieces) if p.startswith("<lang:")
        }

    def decode(self, tokens: Iterable[int]) -> str:
        pieces = [self.pieces[t] for t in tokens if t not in self.special and t < len(self.pieces)]
        if self.joiner == "@@":
            text = " ".join(pieces).replace("@@ ", "")
        else:
            text = "".join(pieces).replace("▁", " ").strip(" ")
            text = text.upper() if self.upper_case else text
        if self.clean_up_spaces:
            for before, after in _CLEAN_UP:
                text = text.replace(before, after)
        return text


# ---------------------------------------------------------------------------------------------
# the model


@dataclass(frozen=True)
class Generation:
    """How a checkpoint generates text: from its config.json and generation_config.json."""

    decoder_start: int
    eos: int
    max_length: int
    forced_language: str | None  # the target language generation forces by default, if any


class Speech2TextModel:
    """A loaded Speech2Text or Speech2Text2 model: what `load_model` returns for them."""

    can_detect_language = False
    is_multilingual = False  # in Whisper's sense: it cannot detect or choose a spoken language

    def __init__(
        self,
        model: torch.nn.Module,
        vocabulary: Vocabulary,
        generation: Generation,
        features: Callable[[np.ndarray], torch.Tensor],
        name: str,
        compute_type: str,
    ):
        self.model = model
        self.vocabulary = vocabulary
        self.generation = generation
        self.features = features  # 16 kHz samples → the encoder's input, (1, …)
        self.name = name
        self.compute_type = compute_type

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def can_translate(self) -> bool:
        """The checkpoint does what it was trained for (transcribe, or translate into a fixed
        or chosen language) whichever command runs it; there is no wrong task to warn about."""
        return True

    def transcribe(
        self,
        audio: str | os.PathLike[str] | np.ndarray,
        progress: Progress | None = None,
        **options: Any,
    ) -> Transcript:
        """Transcribe a file or 16 kHz mono samples; options are TranscribeOptions fields
        (of which these models use language, beam_size, length_penalty and
        skip_silent_windows)."""
        info, segments = self.transcribe_stream(
            audio, TranscribeOptions.from_kwargs(**options), progress
        )
        return self.collect(info, segments)

    def detect_language(self, audio: AudioInput) -> dict[str, float]:
        raise ModelError(f"model {self.name!r} cannot detect languages (it is not a Whisper model)")

    def transcribe_stream(
        self,
        audio: AudioInput,
        options: TranscribeOptions = TranscribeOptions(),  # noqa: B008 (frozen, so safe to share)
        progress: Progress | None = None,
    ) -> tuple[TranscriptionInfo, Iterator[Segment]]:
        """Start transcribing: the target language and duration now, the segments as decoded."""
        from whisper_cli.transcribe import TranscriptionInfo

        self._verify(options)
        start = self._start_tokens(options.decoding.language)
        samples = _samples(audio)
        duration = len(samples) / SAMPLE_RATE
        language = self._output_language(options.decoding.language)
        info = TranscriptionInfo(language, None, duration)
        pieces = split_pieces(samples, options.skip_silent_windows)
        return info, self._decode_pieces(samples, pieces, start, options, progress)

    def collect(self, info: TranscriptionInfo, segments: Iterable[Segment]) -> Transcript:
        """The Transcript of a stream's segments (consuming them)."""
        segments = tuple(segments)
        return Transcript(
            text="".join(s.text for s in segments),
            language=info.language,
            duration=info.duration,
            segments=segments,
            model=self.name,
        )

    # internals

    def _verify(self, options: TranscribeOptions) -> None:
        verify(options)
        unsupported = [
            (options.word_timestamps, "word timestamps"),
            (options.initial_prompt is not None, "an initial prompt"),
            (clips_requested(options), "clip timestamps"),
            (options.decoding.prompt is not None or options.decoding.prefix is not None, "prompts"),
        ]
        for asked, what in unsupported:
            if asked:
                raise OptionsError(f"model {self.name!r} (Speech2Text family) has no {what}")

    def _output_language(self, language: str | None) -> str | None:
        if self.vocabulary.languages:
            return language or self.generation.forced_language
        return language

    def _start_tokens(self, language: str | None) -> list[int]:
        """The decoder start token, then the target-language token for multilingual models."""
        languages = self.vocabulary.languages
        if not languages:
            return [self.generation.decoder_start]
        target = language or self.generation.forced_language
        if target is None or target not in languages:
            choices = ", ".join(sorted(languages))
            told = f"{target!r} is not one of them" if target else "choose one with --language"
            raise OptionsError(
                f"model {self.name!r} translates into {choices}: {told} (the output language)"
            )
        return [self.generation.decoder_start, languages[target]]

    def _decode_pieces(
        self,
        samples: np.ndarray,
        pieces: Sequence[tuple[int, int]],
        start: list[int],
        options: TranscribeOptions,
        progress: Progress | None,
    ) -> Iterator[Segment]:
        from whisper_cli.decoding import compression_ratio
        from whisper_cli.seq2seq import beam_search, greedy

        duration = len(samples) / SAMPLE_RATE
        beam_size = options.decoding.beam_size
        length_penalty = options.decoding.length_penalty
        next_id = 0
        for first, last in pieces:
            features = self.features(samples[first:last]).to(self.device, self.dtype)
            with torch.inference_mode():
                encoder_out = self.model.encode(features)
            generation = self.generation
            if beam_size is None or beam_size == 1:
                result = greedy(
                    self.model, encoder_out, start, generation.eos, generation.max_length
                )
            else:
                result = beam_search(
                    self.model,
                    encoder_out,
                    start,
                    generation.eos,
                    generation.max_length,
                    beam_size,
                    1.0 if length_penalty is None else length_penalty,
                )
            text = self.vocabulary.decode(result.tokens)
            if progress is not None:
                progress(last / SAMPLE_RATE, duration)
            if not text:
                continue
            yield Segment(
                id=next_id,
                seek=first * 100 // SAMPLE_RATE,  # in 10-ms frames, as Whisper's
                start=round(first / SAMPLE_RATE, 3),
                end=round(last / SAMPLE_RATE, 3),
                text=" " + text,
                tokens=result.tokens,
                temperature=0.0,
                avg_logprob=result.avg_logprob,
                compression_ratio=compression_ratio(text),
                no_speech_prob=0.0,
            )
            next_id += 1


# ---------------------------------------------------------------------------------------------
# long input


def _samples(audio: AudioInput) -> np.ndarray:
    """The whole recording as 16 kHz mono float32 (these models read each piece whole)."""
    from whisper_cli.audio import load_audio

    if isinstance(audio, str | bytes | os.PathLike):
        return load_audio(audio)
    if isinstance(audio, np.ndarray | torch.Tensor):
        return np.asarray(audio, dtype=np.float32).reshape(-1)
    blocks = [np.asarray(block, dtype=np.float32).reshape(-1) for block in audio]
    return np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.float32)


def split_pieces(
    samples: np.ndarray, use_vad: bool = True, max_seconds: float = MAX_PIECE
) -> list[tuple[int, int]]:
    """Sample ranges [first, last) to decode one by one, in order, each ≤ max_seconds.

    With `use_vad`, the speech regions Silero VAD finds, joined while they fit; silence between
    them is not decoded. Without, the whole recording in windows of max_seconds, each cut at
    the quietest 100 ms of its last `QUIET_SEARCH` seconds so that words are rarely split.
    """
    if use_vad:
        from whisper_cli.vad import detect_speech, merge_regions

        duration = len(samples) / SAMPLE_RATE
        regions = merge_regions(detect_speech(samples).regions(duration=duration), max_seconds)
        ranges = [(round(s * SAMPLE_RATE), round(e * SAMPLE_RATE)) for s, e in regions]
    else:
        ranges = _fixed_windows(samples, round(max_seconds * SAMPLE_RATE))
    shortest = round(MIN_PIECE * SAMPLE_RATE)
    return [(first, min(last, len(samples))) for first, last in ranges if last - first >= shortest]


def _fixed_windows(samples: np.ndarray, window: int) -> list[tuple[int, int]]:
    frame = SAMPLE_RATE // 10  # 100 ms
    search = round(QUIET_SEARCH * SAMPLE_RATE)
    ranges, first = [], 0
    while len(samples) - first > window:
        region = samples[first + window - search : first + window]
        energy = (region[: len(region) // frame * frame].reshape(-1, frame) ** 2).sum(axis=1)
        cut = first + window - search + int(energy.argmin()) * frame + frame // 2
        ranges.append((first, cut))
        first = cut
    if first < len(samples):
        ranges.append((first, len(samples)))
    return ranges


# ---------------------------------------------------------------------------------------------
# loading


def load(
    folder: Path,
    config: dict[str, Any],
    name: str,
    device: torch.device,
    dtype: torch.dtype,
    compute_type: str,
) -> Speech2TextModel:
    """Build a Speech2Text-family model from a folder in Hugging Face layout."""
    from whisper_cli.models import assign_checked, read_weights

    source = folder / "config.json"
    model_type = config.get("model_type")
    if model_type == "speech_to_text":
        from whisper_cli import s2t_model as family

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
        from whisper_cli import s2t2_model as family

        family_config = family.Speech2Text2Config.from_json(config, source)
        module_class, joiner = family.Speech2Text2, "@@"
    vocabulary = Vocabulary.from_folder(folder, joiner)
    generation = _generation(folder, config, vocabulary, source)

    with torch.device("meta"):
        module = module_class(family_config)
    state = family.convert_state(read_weights(folder), family_config)
    assign_checked(module, state, dtype, folder)
    if hasattr(module, "init_buffers"):
        module.init_buffers()
    module = module.to(device).eval().requires_grad_(False)
    features = _feature_function(folder, model_type)
    if compute_type == "int8":
        from whisper_cli.quantize import quantize_linear_layers

        quantize_linear_layers(module)
    return Speech2TextModel(module, vocabulary, generation, features, name, compute_type)


def _generation(
    folder: Path, config: dict[str, Any], vocabulary: Vocabulary, source: Path
) -> Generation:
    from whisper_cli.models import _read_json

    # a speech-encoder-decoder keeps the generation ids on top, the decoder's own ids below
    settings = {**config.get("decoder", {}), **{k: v for k, v in config.items() if v is not None}}
    path = folder / "generation_config.json"
    if path.is_file():
        settings.update({k: v for k, v in _read_json(path).items() if v is not None})
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


def _feature_function(folder: Path, model_type: str) -> Callable[[np.ndarray], torch.Tensor]:
    from whisper_cli.models import _read_json

    path = folder / "preprocessor_config.json"
    settings = _read_json(path) if path.is_file() else {}
    if model_type == "speech_to_text":
        from whisper_cli.fbank import speech2text_features

        n_mels = settings.get("num_mel_bins", settings.get("feature_size", 80))
        if isinstance(n_mels, bool) or not isinstance(n_mels, int) or not 1 <= n_mels <= 128:
            raise ModelError(f"{path}: num_mel_bins = {n_mels!r} is out of range [1, 128]")
        normalize = bool(settings.get("do_ceptral_normalize", True))  # sic: transformers' key
        means = normalize and bool(settings.get("normalize_means", True))
        variances = normalize and bool(settings.get("normalize_vars", True))

        def fbank(samples: np.ndarray) -> torch.Tensor:
            return speech2text_features(samples, n_mels, means, variances)[None]

        return fbank

    from whisper_cli.s2t2_model import normalize_waveform

    normalize = bool(settings.get("do_normalize", True))

    def waveform(samples: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(normalize_waveform(samples) if normalize else samples)[None]

    return waveform
