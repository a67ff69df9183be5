"""Long-form transcription: the reference's sequential seek loop over 30-second windows.

Each window is decoded (with temperature fallback), cut into segments at its timestamp tokens,
and `seek` moves to the last complete timestamp, so speech cut off at a window's end is decoded
again at the start of the next. The text so far is the prompt of the next window.

Where this differs from openai-whisper, on purpose:
- when every temperature fails, the result with the best mean log-probability among those that
  passed the compression check is kept (faster-whisper's rule), not the last one; the prompt is
  still reset, since a window that needed sampling above 0.5 is not a trustworthy prompt;
- segments left without text (the reference keeps them, emptied) are not returned;
- a window in which voice activity detection (Silero VAD) hears under 0.25 s of speech is
  skipped as silent (`skip_silent_windows`), where the reference can invent text ("you" on
  digital silence, "Music" over an orchestra); windows with speech decode exactly as before;
- segment and word times are clamped to the audio's duration;
- with word timestamps, a segment is cut where its words are `split_on_pauses` (0.5 s) apart,
  so that no segment or subtitle spans a silence between two utterances;
- each window's audio is encoded once, not once per fallback attempt;
- with `language_detection_windows` > 1, the language is the most probable over the first
  windows that hold speech, not the first window alone.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np
import torch

from whisper_cli.constants import (
    FRAMES_PER_SECOND,
    HOP_LENGTH,
    N_FRAMES,
    N_SAMPLES,
    SAMPLE_RATE,
)
from whisper_cli.decoding import DecodingResult, DecodingTask
from whisper_cli.decoding import detect_language as detect_language_features
from whisper_cli.features import LogMelFrames, pad_or_trim
from whisper_cli.memory import release_freed_memory
from whisper_cli.options import DecodingOptions, TranscribeOptions, verify
from whisper_cli.results import Segment, Transcript, Word
from whisper_cli.timing import (
    PendingSegment,
    add_word_timestamps,
    is_anomaly,
    split_at_pauses,
)
from whisper_cli.tokenizer import Tokenizer, language_code
from whisper_cli.vad import SpeechDetector

if TYPE_CHECKING:
    from whisper_cli.models import WhisperModel

Progress = Callable[[float, float], None]  # (seconds done, seconds in all)


@dataclass(frozen=True)
class TranscriptionInfo:
    language: str
    language_probability: float | None
    duration: float  # seconds


AudioInput = str | os.PathLike[str] | bytes | np.ndarray | torch.Tensor | Iterable[np.ndarray]


def log_mel_frames(
    model: WhisperModel, audio: AudioInput, detector: SpeechDetector | None = None
) -> LogMelFrames:
    """The padded log-mel spectrogram of a path, encoded bytes, 16 kHz mono samples, or an
    iterable of sample blocks (such as `audio.iter_audio`), computed as the audio streams in;
    `detector`, if given, listens to the same blocks."""
    n_mels = model.model.dims.n_mels
    if isinstance(audio, str | bytes | os.PathLike):
        from whisper_cli.audio import iter_audio

        with iter_audio(audio) as stream:
            return log_mel_frames(model, stream, detector)
    if isinstance(audio, np.ndarray | torch.Tensor):
        samples = np.asarray(audio, dtype=np.float32).reshape(-1)
        audio = (samples[i : i + N_SAMPLES] for i in range(0, len(samples), N_SAMPLES))
    if detector is not None:
        audio = detector.observe(audio)
    return LogMelFrames.from_blocks(audio, n_mels)


def _window_features(model: WhisperModel, mel: torch.Tensor) -> torch.Tensor:
    """The encoder output of one padded 30-s mel window (n_mels, 3000) → (1, S, C)."""
    mel = pad_or_trim(mel, N_FRAMES).to(model.device, model.model.dtype)
    release_freed_memory()  # what the last window's decoding freed
    with torch.inference_mode():
        return model.model.encoder(mel[None])


class WindowEncoder:
    """Encoder outputs of a recording's windows, the last one kept: language detection
    encodes the first window, and decoding then starts from that very window."""

    def __init__(self, model: WhisperModel, mel: LogMelFrames):
        self.model = model
        self.mel = mel
        self._last: tuple[tuple[int, int], torch.Tensor] | None = None

    def __call__(self, seek: int, n_frames: int) -> torch.Tensor:
        """(1, S, C) for mel frames [seek, seek + n_frames), padded to 30 s."""
        features = self.held(seek, n_frames)
        if features is None:
            features = _window_features(self.model, self.mel.window(seek, n_frames))
            self._last = (seek, n_frames), features
        return features

    def held(self, seek: int, n_frames: int) -> torch.Tensor | None:
        """The encoder output of that window if it is the one kept, else None."""
        if self._last is None or self._last[0] != (seek, n_frames):
            return None
        return self._last[1]


def _choose_language(
    encode: WindowEncoder,
    options: TranscribeOptions,
    detector: SpeechDetector | None,
    first_window: tuple[int, int] = (0, N_FRAMES),
) -> tuple[str, float | None]:
    """The language given, or detected: from the first window as the reference does (the
    first 30 s; in batched mode, the first chunk's window: `first_window`, its first mel frame
    and length), or (`language_detection_windows` > 1) by summed probabilities over the first
    windows that hold speech, so that a recording opening with music or silence is not
    misjudged."""
    model = encode.model
    requested = options.decoding.language
    if requested is not None:
        return language_code(requested), None
    if not model.tokenizer.multilingual:
        return "en", None

    def probabilities(features: torch.Tensor) -> dict[str, float]:
        return detect_language_features(model.model, model.tokenizer, features)[1][0]

    totals: dict[str, float] = {}
    windows = 0
    if options.language_detection_windows > 1:
        for seek in range(0, encode.mel.content_frames, N_FRAMES):
            if detector is not None and not detector.has_speech(seek, N_FRAMES):
                continue
            features = encode(seek, N_FRAMES)
            threshold = options.no_speech_threshold or 1.0
            if detector is None and _no_speech_probability(model, features) > threshold:
                continue
            for code, p in probabilities(features).items():
                totals[code] = totals.get(code, 0.0) + p
            windows += 1
            if windows == options.language_detection_windows:
                break
    if not totals:  # the reference's way: one window, whatever it holds
        totals, windows = probabilities(encode(*first_window)), 1
    code = max(totals, key=totals.__getitem__)
    return code, totals[code] / windows


def _no_speech_probability(model: WhisperModel, features: torch.Tensor) -> float:
    """The model's belief that a window (its encoder output) holds no speech: one step."""
    tokenizer = model.tokenizer
    with torch.inference_mode():
        cache = model.model.decoder.new_cache(features, 1)
        sot = torch.tensor([[tokenizer.sot]], device=features.device)
        logits = model.model.decoder.logits(model.model.decoder(sot, cache)[:, 0])
    return float(logits.softmax(dim=-1)[0, tokenizer.no_speech])


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
    model: WhisperModel,
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


@dataclass
class _State:
    """What the seek loop carries from one window to the next."""

    all_tokens: list[int] = field(default_factory=list)
    prompt_reset_since: int = 0
    last_speech_timestamp: float = 0.0
    next_id: int = 0


def transcribe_stream(
    model: WhisperModel,
    audio: AudioInput,
    options: TranscribeOptions = TranscribeOptions(),  # noqa: B008 (frozen, so safe to share)
    progress: Progress | None = None,
) -> tuple[TranscriptionInfo, Iterator[Segment]]:
    """Start transcribing: the language and duration now, the segments as they are decoded."""
    verify(options)
    batched = options.batch_size > 1  # chunks come from voice activity detection
    detector = SpeechDetector() if options.skip_silent_windows or batched else None
    mel = log_mel_frames(model, audio, detector)
    content_frames = mel.content_frames
    duration = mel.n_samples / SAMPLE_RATE

    encode = WindowEncoder(model, mel)
    chunks: list[tuple[int, int]] = []
    first_window = (0, N_FRAMES)
    if batched:
        from whisper_cli.batched import speech_chunks

        assert detector is not None
        chunks = speech_chunks(detector, content_frames / FRAMES_PER_SECOND)
        if chunks:  # the first chunk's window: the first to be decoded
            first_window = (chunks[0][0], chunks[0][1] - chunks[0][0])
    language, probability = _choose_language(encode, options, detector, first_window)
    task = options.decoding.task
    if task == "translate" and not model.tokenizer.multilingual:
        task = "transcribe"  # an English-only model can only transcribe
    decoding = replace(options.decoding, language=language, task=task)
    info = TranscriptionInfo(language, probability, duration)
    if batched:
        from whisper_cli.batched import batched_segments

        return info, batched_segments(encode, chunks, decoding, options, detector, progress)
    return info, _seek_loop(encode, content_frames, decoding, options, progress, detector)


def transcribe(
    model: WhisperModel,
    audio: AudioInput,
    options: TranscribeOptions = TranscribeOptions(),  # noqa: B008 (frozen, so safe to share)
    progress: Progress | None = None,
) -> Transcript:
    """Transcribe (or translate) a whole recording."""
    info, stream = transcribe_stream(model, audio, options, progress)
    return collect(model, info, stream)


def collect(
    model: WhisperModel, info: TranscriptionInfo, segments: Iterable[Segment]
) -> Transcript:
    """The Transcript of a stream's segments (consuming them)."""
    segments = tuple(segments)
    return Transcript(
        text=model.tokenizer.decode([t for s in segments for t in s.tokens]),
        language=info.language,
        duration=info.duration,
        segments=segments,
        model=model.name,
        language_probability=info.language_probability,
    )


def detect_language(model: WhisperModel, audio: AudioInput) -> dict[str, float]:
    """Every language's probability over the first 30 s, most likely first."""
    features = _window_features(model, log_mel_frames(model, audio).window(0, N_FRAMES))
    _, (probs,) = detect_language_features(model.model, model.tokenizer, features)
    return probs


def initial_prompt_tokens(model: WhisperModel, options: TranscribeOptions) -> list[int]:
    if options.initial_prompt is None:
        return []
    return model.tokenizer.encode(" " + options.initial_prompt.strip())


def _clips(options: TranscribeOptions, content_frames: int) -> list[tuple[int, int]]:
    points = [round(t * FRAMES_PER_SECOND) for t in options.clip_timestamps]
    if not points:
        points = [0]
    if len(points) % 2:
        points.append(content_frames)
    return [
        (min(s, content_frames), min(e, content_frames))
        for s, e in zip(points[::2], points[1::2], strict=True)
    ]


def _seek_loop(
    encode: WindowEncoder,
    content_frames: int,
    decoding: DecodingOptions,
    options: TranscribeOptions,
    progress: Progress | None,
    detector: SpeechDetector | None = None,
) -> Iterator[Segment]:
    model = encode.model
    tokenizer = model.tokenizer
    dims = model.model.dims
    input_stride, time_precision = dims.input_stride, dims.time_precision
    content_duration = content_frames * HOP_LENGTH / SAMPLE_RATE
    sot_sequence = tokenizer.sot_sequence(decoding.language, decoding.task)

    initial_prompt = initial_prompt_tokens(model, options)
    state = _State(all_tokens=list(initial_prompt))
    max_prompt = dims.n_text_ctx // 2 - 1 - len(initial_prompt)

    clips = _clips(options, content_frames)
    clip_index = 0
    seek = clips[0][0]
    while clip_index < len(clips):
        clip_start, clip_end = clips[clip_index]
        seek = max(seek, clip_start)
        if seek >= clip_end:
            clip_index += 1
            if clip_index < len(clips):
                seek = clips[clip_index][0]
            continue

        time_offset = seek * HOP_LENGTH / SAMPLE_RATE
        window_end_time = (seek + N_FRAMES) * HOP_LENGTH / SAMPLE_RATE
        segment_size = min(N_FRAMES, content_frames - seek, clip_end - seek)
        segment_duration = segment_size * HOP_LENGTH / SAMPLE_RATE
        if detector is not None and not detector.has_speech(seek, segment_size):
            seek += segment_size  # no voice in the window: as silent as the model can tell
            _report(progress, seek, content_frames)
            continue
        features = encode(seek, segment_size)

        if options.carry_initial_prompt:
            since = max(len(initial_prompt), state.prompt_reset_since)
            prompt = initial_prompt + state.all_tokens[since:][-max_prompt:]
        else:
            prompt = state.all_tokens[state.prompt_reset_since :]
        result, sampled_hot = decode_with_fallback(
            model, features, replace(decoding, prompt=tuple(prompt)), options
        )

        if is_silent(result, options):
            seek += segment_size
            _report(progress, seek, content_frames)
            continue

        previous_seek = seek
        segments, single_timestamp_ending, advance = split_window(
            result.tokens,
            tokenizer.timestamp_begin,
            seek,
            time_offset,
            segment_duration,
            segment_size,
            time_precision,
            input_stride,
        )
        seek += advance

        if options.word_timestamps:
            add_word_timestamps(
                segments,
                model.model,
                tokenizer,
                sot_sequence,
                features,
                segment_size,
                time_offset,
                state.last_speech_timestamp,
                options.prepend_punctuations,
                options.append_punctuations,
                decoding.language,
            )
            if not single_timestamp_ending:
                last_word_end = _last_word_end(segments)
                if last_word_end is not None and last_word_end > time_offset:
                    seek = round(last_word_end * FRAMES_PER_SECOND)
            threshold = options.hallucination_silence_threshold
            if threshold is not None:
                jump = _skip_hallucinations(
                    segments,
                    threshold,
                    single_timestamp_ending,
                    time_offset,
                    window_end_time,
                    segment_size,
                    previous_seek,
                    content_frames,
                    content_duration,
                    state.last_speech_timestamp,
                )
                if jump is not None:
                    seek, restart = jump
                    if restart:
                        _report(progress, seek, content_frames)
                        continue
            last_word_end = _last_word_end(segments)
            if last_word_end is not None:
                state.last_speech_timestamp = last_word_end

        if options.word_timestamps and options.split_on_pauses is not None:
            segments = [
                piece
                for segment in segments
                for piece in split_at_pauses(segment, options.split_on_pauses, tokenizer.eot)
            ]
        for pending in segments:
            text = shown_text(pending, tokenizer)
            if text is None:
                continue
            state.all_tokens.extend(pending.tokens)
            yield to_segment(
                pending, state.next_id, text, result, content_duration, options.word_timestamps
            )
            state.next_id += 1
        if not options.condition_on_previous_text or sampled_hot:
            state.prompt_reset_since = len(state.all_tokens)
        _report(progress, min(seek, content_frames), content_frames)


def is_silent(result: DecodingResult, options: TranscribeOptions) -> bool:
    """The reference's no-speech rule: the model is sure of silence and unsure of its text."""
    if options.no_speech_threshold is None or result.no_speech_prob <= options.no_speech_threshold:
        return False
    return options.logprob_threshold is None or result.avg_logprob <= options.logprob_threshold


def shown_text(pending: PendingSegment, tokenizer: Tokenizer) -> str | None:
    """A segment's text, or None for an instant or blank segment: nothing to show."""
    text = tokenizer.decode([t for t in pending.tokens if t < tokenizer.eot])
    if pending.start == pending.end or not text.strip():
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


def _report(progress: Progress | None, seek: int, content_frames: int) -> None:
    if progress is not None:
        done = min(seek, content_frames) * HOP_LENGTH / SAMPLE_RATE
        progress(done, content_frames * HOP_LENGTH / SAMPLE_RATE)


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


def _last_word_end(segments: list[PendingSegment]) -> float | None:
    ends = [w.end for s in segments for w in s.words]
    return ends[-1] if ends else None


def _skip_hallucinations(
    segments: list[PendingSegment],
    threshold: float,
    single_timestamp_ending: bool,
    time_offset: float,
    window_end_time: float,
    segment_size: int,
    previous_seek: int,
    content_frames: int,
    content_duration: float,
    last_speech_timestamp: float,
) -> tuple[int, bool] | None:
    """The reference's hallucination_silence_threshold rules for one window.

    Returns None to keep the seek as it is, or (new seek, whether to drop the whole window
    and decode again from there); may also drop trailing segments in place.
    """
    seek: int | None = None
    if not single_timestamp_ending:
        last_word_end = _last_word_end(segments)
        if last_word_end is not None and last_word_end > time_offset:
            if window_end_time - last_word_end > threshold:
                seek = round(last_word_end * FRAMES_PER_SECOND)
            else:
                seek = previous_seek + segment_size

    with_words = [s for s in segments if s.words]
    first = with_words[0] if with_words else None
    if first is not None and is_anomaly(first):
        gap = first.start - time_offset
        if gap > threshold:
            return previous_seek + round(gap * FRAMES_PER_SECOND), True

    last_end = last_speech_timestamp
    for index, segment in enumerate(segments):
        if not segment.words:
            continue
        if is_anomaly(segment):
            following = next((s for s in segments[index + 1 :] if s.words), None)
            if following is not None:
                next_start = following.words[0].start
            else:
                next_start = time_offset + segment_size / FRAMES_PER_SECOND
            silence_before = (
                segment.start - last_end > threshold
                or segment.start < threshold
                or segment.start - time_offset < 2.0
            )
            silence_after = (
                next_start - segment.end > threshold
                or is_anomaly(following)
                or window_end_time - segment.end < 2.0
            )
            if silence_before and silence_after:
                seek = round(max(time_offset + 1, segment.start) * FRAMES_PER_SECOND)
                if content_duration - segment.end < threshold:
                    seek = content_frames
                del segments[index:]
                break
        last_end = segment.end
    return None if seek is None else (seek, False)
