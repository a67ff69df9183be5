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

The architectures are in `s2t` and `s2t2`, generation in `generate`, the Speech2Text
fbank features in `features`, and loading in `loading`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from whisper_cli.constants import FRAMES_PER_SECOND, SAMPLE_RATE
from whisper_cli.errors import ModelError, OptionsError
from whisper_cli.options import TranscribeOptions, clips_requested, verify
from whisper_cli.results import Segment, Transcript, TranscriptionInfo, compression_ratio
from whisper_cli.speech2text.generate import beam_search, greedy

if TYPE_CHECKING:
    from whisper_cli.protocol import AudioInput, Family, Progress
    from whisper_cli.speech2text.vocabulary import Vocabulary

MAX_PIECE = 20.0  # seconds: these models were trained on utterances, not 30-s windows
MIN_PIECE = 0.1  # seconds: shorter pieces hold no word
QUIET_SEARCH = 5.0  # seconds before a fixed window's end searched for its quietest point


@dataclass(frozen=True)
class Generation:
    """How a checkpoint generates text: from its config.json and generation_config.json."""

    decoder_start: int
    eos: int
    max_length: int
    forced_language: str | None  # the target language generation forces by default, if any


class Speech2TextModel:
    """A loaded Speech2Text or Speech2Text2 model: what `load_model` returns for them."""

    family: Family = "speech2text"
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
        options: TranscribeOptions | None = None,
        progress: Progress | None = None,
    ) -> tuple[TranscriptionInfo, Iterator[Segment]]:
        """Start transcribing: the target language and duration now, the segments as decoded.

        `options` None means the defaults."""
        options = TranscribeOptions() if options is None else options
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
                seek=first * FRAMES_PER_SECOND // SAMPLE_RATE,  # in 10-ms frames, as Whisper's
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
        from whisper_cli.audio.vad import detect_speech, merge_regions

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
