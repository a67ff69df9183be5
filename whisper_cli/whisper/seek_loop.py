"""Long-form transcription: the reference's sequential seek loop over 30-second windows.

Each window is decoded (with temperature fallback), cut into segments at its timestamp tokens,
and `seek` moves to the last complete timestamp, so speech cut off at a window's end is decoded
again at the start of the next. The text so far is the prompt of the next window.

Where this differs from openai-whisper, on purpose:
- when every temperature fails, the result with the best mean log-probability among those that
  passed the compression check is kept (faster-whisper's rule), not the last one; the prompt is
  still reset, since a window that needed sampling above 0.5 is not a trustworthy prompt;
- segments with no word in them are not returned: those left without text (the reference
  keeps them, emptied) and those of punctuation or symbols only ("." over music);
- a window in which voice activity detection (Silero VAD) hears under 0.25 s of speech is
  skipped as silent (`skip_silent_windows`), where the reference can invent text ("you" on
  digital silence, "Music" over an orchestra); windows with speech decode exactly as before;
- with that detector, a window is also silent when the model leans to silence (its no-speech
  probability above the threshold) and its text is more than the speech heard could carry
  (`is_silent`), a phrase made up over a grunt or a cough;
- segment and word times are clamped to the audio's duration;
- with word timestamps, a segment is cut where its words are `split_on_pauses` (0.5 s) apart,
  so that no segment or subtitle spans a silence between two utterances;
- each window's audio is encoded once, not once per fallback attempt.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from whisper_cli.constants import FRAMES_PER_SECOND, N_FRAMES
from whisper_cli.options import DecodingOptions, TranscribeOptions
from whisper_cli.results import Segment
from whisper_cli.whisper.timing import PendingSegment, is_anomaly
from whisper_cli.whisper.window import (
    Window,
    WindowEncoder,
    decode_with_fallback,
    initial_prompt_tokens,
    is_silent,
    read_window,
    shown_text,
    split_on_pauses,
    text_tokens,
    to_segment,
)

if TYPE_CHECKING:
    from whisper_cli.audio.vad import SpeechDetector
    from whisper_cli.protocol import Progress


@dataclass
class _State:
    """What the seek loop carries from one window to the next."""

    all_tokens: list[int] = field(default_factory=list)
    prompt_reset_since: int = 0
    last_speech_timestamp: float = 0.0
    next_id: int = 0


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


def seek_loop(
    encode: WindowEncoder,
    content_frames: int,
    decoding: DecodingOptions,
    options: TranscribeOptions,
    progress: Progress | None,
    detector: SpeechDetector | None = None,
) -> Iterator[Segment]:
    """The segments of mel frames [0, content_frames) (or of the clips asked for), in order:
    each 30-s window from `seek` decoded with the text before it as its prompt, `seek` moved
    on to its last complete timestamp."""
    model = encode.model
    tokenizer = model.tokenizer
    dims = model.model.dims
    content_duration = content_frames / FRAMES_PER_SECOND

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

        segment_size = min(N_FRAMES, content_frames - seek, clip_end - seek)
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

        heard = None if detector is None else detector.speech_seconds(seek, segment_size)
        if is_silent(result, options, heard, text_tokens(result, tokenizer)):
            seek += segment_size
            _report(progress, seek, content_frames)
            continue

        window = Window(seek, segment_size)
        text = read_window(
            model, window, result, features, decoding, options, state.last_speech_timestamp
        )
        segments = text.segments
        seek += text.advance

        if options.word_timestamps:
            if not text.single_timestamp_ending:
                last_word_end = _last_word_end(segments)
                if last_word_end is not None and last_word_end > window.offset:
                    seek = round(last_word_end * FRAMES_PER_SECOND)
            threshold = options.hallucination_silence_threshold
            if threshold is not None:
                jump = _skip_hallucinations(
                    segments,
                    threshold,
                    text.single_timestamp_ending,
                    window,
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

        segments = split_on_pauses(segments, options, tokenizer.eot)
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


def _report(progress: Progress | None, seek: int, content_frames: int) -> None:
    if progress is not None:
        done = min(seek, content_frames) / FRAMES_PER_SECOND
        progress(done, content_frames / FRAMES_PER_SECOND)


def _last_word_end(segments: list[PendingSegment]) -> float | None:
    ends = [w.end for s in segments for w in s.words]
    return ends[-1] if ends else None


def _skip_hallucinations(
    segments: list[PendingSegment],
    threshold: float,
    single_timestamp_ending: bool,
    window: Window,
    content_frames: int,
    content_duration: float,
    last_speech_timestamp: float,
) -> tuple[int, bool] | None:
    """The reference's hallucination_silence_threshold rules for one window.

    Returns None to keep the seek as it is, or (new seek, whether to drop the whole window
    and decode again from there); may also drop trailing segments in place.
    """
    time_offset, previous_seek, segment_size = window.offset, window.seek, window.size
    window_end_time = (window.seek + N_FRAMES) / FRAMES_PER_SECOND
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
