"""One window of the seek loops (sequential and batched): encode it, decode it at rising
temperatures until the text is acceptable, judge it silent or not, and cut its tokens into
segments with their word timings.

The loops differ in where the next window starts and what prompts it; what they do with one
window is here, behind `decode_with_fallback` and `read_window`.
`collect` makes the Transcript of the segments a recording's windows gave, for the loops and
for the many-files engine alike.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Protocol

import torch

from whisper_cli.constants import FRAMES_PER_SECOND, N_FRAMES
from whisper_cli.memory import release_freed_memory
from whisper_cli.options import DecodingOptions, TranscribeOptions
from whisper_cli.results import Segment, Transcript, TranscriptionInfo, Word
from whisper_cli.whisper.decoding import DecodingResult, DecodingTask
from whisper_cli.whisper.features import LogMelFrames, pad_or_trim
from whisper_cli.whisper.model import Whisper
from whisper_cli.whisper.timing import PendingSegment, add_word_timestamps, split_at_pauses
from whisper_cli.whisper.tokenizer import Tokenizer


class WhisperParts(Protocol):
    """What the loops use of a loaded model (a `WhisperModel`): the network and its tokenizer."""

    model: Whisper
    tokenizer: Tokenizer
    name: str

    @property
    def device(self) -> torch.device: ...


@dataclass(frozen=True)
class Window:
    """The mel frames [seek, seek + size) being decoded, padded to 30 s for the encoder."""

    seek: int  # first mel frame
    size: int  # mel frames of audio (at most N_FRAMES)

    @property
    def offset(self) -> float:
        """Seconds from the start of the recording to the window's start."""
        return self.seek / FRAMES_PER_SECOND

    @property
    def duration(self) -> float:
        """Seconds of audio in the window."""
        return self.size / FRAMES_PER_SECOND


@dataclass(frozen=True)
class WindowText:
    """A window's decoded tokens cut into segments (timed word by word when asked)."""

    segments: list[PendingSegment]
    single_timestamp_ending: bool  # nothing after the last timestamp was cut off
    advance: int  # mel frames the seek moves on by, as the timestamps say


def read_window(
    model: WhisperParts,
    window: Window,
    result: DecodingResult,
    features: torch.Tensor,
    decoding: DecodingOptions,
    options: TranscribeOptions,
    last_speech: float,
) -> WindowText:
    """Cut a decoded window into segments at its timestamp tokens and, with
    `options.word_timestamps`, time its words (`last_speech`: where the last word before this
    window ended, in seconds; `features`: the window's encoder output, (1, S, C))."""
    tokenizer = model.tokenizer
    dims = model.model.dims
    segments, single_timestamp_ending, advance = split_window(
        result.tokens,
        tokenizer.timestamp_begin,
        window.seek,
        window.offset,
        window.duration,
        window.size,
        dims.time_precision,
        dims.input_stride,
    )
    if options.word_timestamps:
        add_word_timestamps(
            segments,
            model.model,
            tokenizer,
            tokenizer.sot_sequence(decoding.language, decoding.task),
            features,
            window.size,
            window.offset,
            last_speech,
            options.prepend_punctuations,
            options.append_punctuations,
            decoding.language,
        )
    return WindowText(segments, single_timestamp_ending, advance)


def split_on_pauses(
    segments: list[PendingSegment], options: TranscribeOptions, eot: int
) -> list[PendingSegment]:
    """With word timestamps and `options.split_on_pauses`, each segment cut where its words
    are that far apart; otherwise the segments as they are."""
    if not options.word_timestamps or options.split_on_pauses is None:
        return segments
    return [
        piece
        for segment in segments
        for piece in split_at_pauses(segment, options.split_on_pauses, eot)
    ]


def window_features(model: WhisperParts, mel: torch.Tensor) -> torch.Tensor:
    """The encoder output of one padded 30-s mel window (n_mels, 3000) → (1, S, C)."""
    mel = pad_or_trim(mel, N_FRAMES).to(model.device, model.model.dtype)
    release_freed_memory()  # what the last window's decoding freed
    with torch.inference_mode():
        return model.model.encoder(mel[None])


class WindowEncoder:
    """Encoder outputs of a recording's windows, the last one kept: language detection
    encodes the first window, and decoding then starts from that very window."""

    def __init__(self, model: WhisperParts, mel: LogMelFrames):
        self.model = model
        self.mel = mel
        self._last: tuple[tuple[int, int], torch.Tensor] | None = None

    def __call__(self, seek: int, n_frames: int) -> torch.Tensor:
        """(1, S, C) for mel frames [seek, seek + n_frames), padded to 30 s."""
        features = self.held(seek, n_frames)
        if features is None:
            features = window_features(self.model, self.mel.window(seek, n_frames))
            self._last = (seek, n_frames), features
        return features

    def held(self, seek: int, n_frames: int) -> torch.Tensor | None:
        """The encoder output of that window if it is the one kept, else None."""
        if self._last is None or self._last[0] != (seek, n_frames):
            return None
        return self._last[1]


@dataclass
class _Attempt:
    result: DecodingResult
    needs_fallback: bool
    reason: str


def judge(result: DecodingResult, options: TranscribeOptions) -> _Attempt:
    """Whether a window's decoding should be retried hotter, and why."""
    if (
        options.compression_ratio_threshold is not None
        and result.compression_ratio > options.compression_ratio_threshold
    ):
        reason = "too repetitive"
    elif options.logprob_threshold is not None and result.avg_logprob < options.logprob_threshold:
        reason = "low log-probability"
    else:
        return _Attempt(result, False, "")
    if (
        options.no_speech_threshold is not None
        and result.no_speech_prob > options.no_speech_threshold
        and options.logprob_threshold is not None
        and result.avg_logprob < options.logprob_threshold
    ):
        return _Attempt(result, False, "silence")  # skipped by the seek loop instead
    return _Attempt(result, True, reason)


def at_temperature(decoding: DecodingOptions, temperature: float) -> DecodingOptions:
    """The options of one attempt: beam search at 0, sampling best_of candidates above."""
    if temperature > 0:
        return replace(decoding, temperature=temperature, beam_size=None, patience=None)
    return replace(decoding, temperature=temperature, best_of=None)


def decode_with_fallback(
    model: WhisperParts,
    features: torch.Tensor,
    decoding: DecodingOptions,
    options: TranscribeOptions,
    reach: float | None = None,
    first: DecodingResult | None = None,
) -> tuple[DecodingResult, bool]:
    """Decode one window at rising temperatures until the result is acceptable (`reach`: as
    `DecodingTask.run`'s, for this window; `first`: the first temperature's result, when it
    is already decoded).

    Returns the result and whether sampling went above 0.5 (the prompt is then dropped).
    """
    attempts: list[_Attempt] = []
    for index, temperature in enumerate(options.temperatures):
        if index == 0 and first is not None:
            result = first
        else:
            task = DecodingTask(model.model, model.tokenizer, at_temperature(decoding, temperature))
            result = task.run(features, None if reach is None else [reach])[0]
        attempt = judge(result, options)
        attempts.append(attempt)
        if not attempt.needs_fallback:
            return attempt.result, temperature > 0.5
    # every temperature failed: the most confident result that is not a loop
    threshold = options.compression_ratio_threshold
    passing = [
        a.result for a in attempts if threshold is None or a.result.compression_ratio <= threshold
    ]
    pool = passing or [a.result for a in attempts]
    best = max(pool, key=lambda r: r.avg_logprob)
    return best, options.temperatures[-1] > 0.5


def initial_prompt_tokens(model: WhisperParts, options: TranscribeOptions) -> list[int]:
    if options.initial_prompt is None:
        return []
    return model.tokenizer.encode(" " + options.initial_prompt.strip())


# The most text tokens a second of speech can carry: about twice the fastest of the test
# recordings' windows (6.6 a second, Japanese; English 3.5 to 5).
MAX_TOKENS_PER_SECOND = 12.0


def text_tokens(result: DecodingResult, tokenizer: Tokenizer) -> int:
    """How many of a result's tokens are text (not timestamps or other special tokens)."""
    return sum(t < tokenizer.eot for t in result.tokens)


def is_silent(
    result: DecodingResult,
    options: TranscribeOptions,
    speech_seconds: float | None = None,
    n_text_tokens: int = 0,
) -> bool:
    """Whether a window holds no speech: the reference's rule, the model sure of silence (its
    no-speech probability above `no_speech_threshold`) and unsure of its text (mean
    log-probability at or below `logprob_threshold`).

    Also, given the seconds of speech that voice activity detection hears in the window, when
    the model leans to silence as much but is sure of a text (`n_text_tokens` long) that is
    more than that speech could carry (`MAX_TOKENS_PER_SECOND`): the two judges agree that
    there is next to no voice, and the text is then a phrase the model made up over a grunt or
    a cough ("I don't know, I don't know, …"), not what little was said.
    """
    if options.no_speech_threshold is None or result.no_speech_prob <= options.no_speech_threshold:
        return False
    if options.logprob_threshold is None or result.avg_logprob <= options.logprob_threshold:
        return True
    return speech_seconds is not None and n_text_tokens > MAX_TOKENS_PER_SECOND * speech_seconds


def shown_text(pending: PendingSegment, tokenizer: Tokenizer) -> str | None:
    """A segment's text, or None for an instant segment or one with no word in it (blank, or
    punctuation and symbols only, such as "." or "♪" over music): nothing that was said."""
    text = tokenizer.decode([t for t in pending.tokens if t < tokenizer.eot])
    if pending.start == pending.end or not any(c.isalnum() for c in text):
        return None
    return text


def to_segment(
    pending: PendingSegment,
    id: int,
    text: str,
    result: DecodingResult,
    content_duration: float,
    with_words: bool,
) -> Segment:
    """The finished segment; times are clamped, since the model may place the last timestamp
    in the padding after the audio."""
    return Segment(
        id=id,
        seek=pending.seek,
        start=min(pending.start, content_duration),
        end=min(pending.end, content_duration),
        text=text,
        tokens=tuple(pending.tokens),
        temperature=result.temperature,
        avg_logprob=result.avg_logprob,
        compression_ratio=result.compression_ratio,
        no_speech_prob=result.no_speech_prob,
        words=tuple(
            Word(
                w.word, min(w.start, content_duration), min(w.end, content_duration), w.probability
            )
            for w in pending.words
        )
        if with_words
        else None,
    )


def split_window(
    tokens: tuple[int, ...],
    timestamp_begin: int,
    seek: int,
    time_offset: float,
    segment_duration: float,
    segment_size: int,
    time_precision: float,
    input_stride: int,
) -> tuple[list[PendingSegment], bool, int]:
    """Cut a window's tokens into segments at timestamp pairs.

    Returns the segments, whether the text ended on a single timestamp (so nothing after it
    was cut off), and how many mel frames `seek` advances.
    """
    is_timestamp = [t >= timestamp_begin for t in tokens]
    single_timestamp_ending = is_timestamp[-2:] == [False, True]
    # a pair <|a|><|b|> closes one segment and opens the next: cut between them
    cuts = [i + 1 for i in range(len(tokens) - 1) if is_timestamp[i] and is_timestamp[i + 1]]

    if cuts:
        if single_timestamp_ending:
            cuts.append(len(tokens))
        segments, last = [], 0
        for cut in cuts:
            piece = list(tokens[last:cut])
            start = time_offset + (piece[0] - timestamp_begin) * time_precision
            end = time_offset + (piece[-1] - timestamp_begin) * time_precision
            segments.append(PendingSegment(seek, start, end, piece))
            last = cut
        if single_timestamp_ending:
            return segments, True, segment_size
        # speech after the last complete timestamp was cut off: decode it again next window
        return segments, False, (tokens[last - 1] - timestamp_begin) * input_stride

    duration = segment_duration
    timestamps = [t for t in tokens if t >= timestamp_begin]
    if timestamps and timestamps[-1] != timestamp_begin:
        duration = (timestamps[-1] - timestamp_begin) * time_precision
    segment = PendingSegment(seek, time_offset, time_offset + duration, list(tokens))
    return [segment], single_timestamp_ending, segment_size


def collect(
    model: WhisperParts, info: TranscriptionInfo, segments: Iterable[Segment]
) -> Transcript:
    """The Transcript of a stream's segments (consuming them). A detected language (one with a
    probability) that no segment was heard in is no language: None."""
    segments = tuple(segments)
    heard = bool(segments) or info.language_probability is None  # given, or heard
    return Transcript(
        text=model.tokenizer.decode([t for s in segments for t in s.tokens]),
        language=info.language if heard else None,
        duration=info.duration,
        segments=segments,
        model=model.name,
        language_probability=info.language_probability if heard else None,
    )
