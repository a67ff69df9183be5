"""Batched transcription (`batch_size` > 1): speech chunks decoded several at a time.

Silero VAD finds the speech regions; neighbouring regions are joined into chunks of at most
30 s (`chunk_length`: less, for shorter segments), and each chunk is transcribed by its own
copy of the reference's seek loop. The loops advance in lockstep: each round, the current
windows of up to `batch_size` chunks are encoded and decoded as one batch. A chunk covers the
audio from the start of its first region to the end of its last, pauses included, so its
timestamps need no remapping.

Unlike the batched pipelines of faster-whisper and whisperX, each chunk keeps what makes the
sequential algorithm faithful: timestamp tokens cut it into segments; a window whose text is
too repetitive or too unsure is decoded again at rising temperatures (alone, with the usual
fallback); a window the model calls silent is dropped (by the sequential loop's rules,
`is_silent`). What it gives up: the previous
window's text as a prompt (the windows of one batch share one prompt: the initial prompt)
and the hallucination-silence rules.

Whisper often stops a window at the start of a sentence that runs on past its end, leaving it
to the next window. A chunk has no next window (its end is where its speech ends, or a cut
inside a region too long for one window), so the model may not stop after opening a segment
more than `LEFT_UNSAID` before the chunk's end (`FinishTheWindow`): it transcribes that
sentence in the window it began in, with the words before it, instead of leaving the rest to
a window of its own without them, which also costs an encoder pass. Should a window still end
short of the chunk's end (the text limit, or a last segment opened within `LEFT_UNSAID` of it
that voice activity detection calls speech), the chunk's loop seeks to its last timestamp and
decodes the rest, as the sequential loop does, if voice activity detection hears enough speech
in it (`chunk_done`).

The language, when not given, is detected on the first chunk's window, the first to be decoded,
rather than on the recording's first 30 s (which may hold no speech); its encoder output then
serves that window's decoding as well.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Protocol

import torch

from whisper_cli.audio.vad import SpeechDetector, merge_regions
from whisper_cli.constants import FRAMES_PER_SECOND, N_FRAMES
from whisper_cli.memory import release_freed_memory
from whisper_cli.options import DecodingOptions, TranscribeOptions
from whisper_cli.results import Segment
from whisper_cli.whisper.decoding import DecodingResult, DecodingTask
from whisper_cli.whisper.features import pad_or_trim
from whisper_cli.whisper.timing import PendingSegment
from whisper_cli.whisper.window import (
    WhisperParts,
    Window,
    WindowEncoder,
    at_temperature,
    decode_with_fallback,
    initial_prompt_tokens,
    is_silent,
    judge,
    read_window,
    shown_text,
    split_on_pauses,
    text_tokens,
    to_segment,
)

if TYPE_CHECKING:
    from whisper_cli.protocol import Progress

# speech regions as faster-whisper's batched pipeline finds them
MIN_SILENCE = 0.16  # seconds of pause that end a region
SPEECH_PAD = 0.4  # seconds kept around each region
# the most a window may leave untranscribed at its chunk's end (`FinishTheWindow`): a little
# more than the pad after the chunk's last speech
LEFT_UNSAID = 0.5  # seconds


def speech_chunks(
    detector: SpeechDetector, duration: float, max_seconds: float = 30.0
) -> list[tuple[int, int]]:
    """Mel-frame ranges [start, end) of the chunks to decode, in order, each at most
    `max_seconds` (`chunk_length`, ≤ 30 s, one window)."""
    regions = detector.regions(duration=duration, min_silence=MIN_SILENCE, pad=SPEECH_PAD)
    chunks = merge_regions(regions, max_duration=min(max_seconds, N_FRAMES / FRAMES_PER_SECOND))
    frames = [(round(s * FRAMES_PER_SECOND), round(e * FRAMES_PER_SECOND)) for s, e in chunks]
    return [(s, min(e, s + N_FRAMES)) for s, e in frames if e > s]


@dataclass
class _Chunk:
    """One chunk's seek loop: where it is, and the segments it has found so far."""

    index: int
    end: int  # mel frame
    seek: int  # mel frame
    last_speech: float = 0.0  # seconds: the end of the last word, for word timestamps
    found: list[tuple[PendingSegment, DecodingResult]] = field(default_factory=list)


def batched_segments(
    encode: WindowEncoder,
    chunks: list[tuple[int, int]],
    decoding: DecodingOptions,
    options: TranscribeOptions,
    detector: SpeechDetector,
    progress: Progress | None = None,
) -> Iterator[Segment]:
    """The segments of the speech `chunks` (`speech_chunks`), in order, decoded
    `options.batch_size` at a time; a window `encode` holds (the first chunk's, when language
    detection encoded it) is not encoded again."""
    model, mel = encode.model, encode.mel
    tokenizer = model.tokenizer
    duration = mel.content_frames / FRAMES_PER_SECOND
    decoding = replace(decoding, prompt=tuple(initial_prompt_tokens(model, options)) or None)
    waiting = deque(_Chunk(i, end, start) for i, (start, end) in enumerate(chunks))
    active: list[_Chunk] = []
    done: dict[int, _Chunk] = {}
    next_chunk = next_id = 0
    while waiting or active:
        while len(active) < options.batch_size and waiting:
            active.append(waiting.popleft())
        _decode_round(encode, active, decoding, options, detector)
        for chunk in active:
            if chunk_done(chunk, detector):
                done[chunk.index] = chunk
        active = [chunk for chunk in active if chunk.index not in done]
        while next_chunk in done:  # chunks finish out of order; segments leave in order
            chunk = done.pop(next_chunk)
            # the model may place a timestamp in the padding after the chunk: no further
            end = min(chunk.end / FRAMES_PER_SECOND, duration)
            for pending, result in chunk.found:
                text = shown_text(pending, tokenizer)
                if text is None:
                    continue
                yield to_segment(pending, next_id, text, result, end, options.word_timestamps)
                next_id += 1
            if progress is not None:
                progress(end, duration)
            next_chunk += 1
    if progress is not None:
        progress(duration, duration)


def _encode_windows(encode: WindowEncoder, windows: list[tuple[int, int]]) -> torch.Tensor:
    """The encoder outputs (batch, S, C) of mel windows (first frame, length), each padded to
    30 s; a window `encode` holds is taken from it."""
    model = encode.model
    features = [encode.held(*window) for window in windows]
    missing = [window for window, held in zip(windows, features, strict=True) if held is None]
    if missing:
        release_freed_memory()  # what the last round's decoding freed
        with torch.inference_mode():  # (batch, n_mels, 3000) → (batch, 1500, C)
            mels = torch.stack([pad_or_trim(encode.mel.window(*w), N_FRAMES) for w in missing])
            mels = mels.to(model.device, model.model.dtype)
            # on a CPU, one window at a time: as fast, without a batch of attention matrices
            step = 1 if model.device.type == "cpu" else len(mels)
            encoded = iter(torch.cat([model.model.encoder(m) for m in mels.split(step)]).split(1))
        features = [next(encoded) if held is None else held for held in features]
    return torch.cat(features)


def _decode_round(
    encode: WindowEncoder,
    chunks: list[_Chunk],
    decoding: DecodingOptions,
    options: TranscribeOptions,
    detector: SpeechDetector,
) -> None:
    """Decode the current window of each chunk as one batch, and move each chunk's seek on."""
    model = encode.model
    tokenizer = model.tokenizer
    sizes = [min(N_FRAMES, chunk.end - chunk.seek) for chunk in chunks]
    features = _encode_windows(encode, [(c.seek, n) for c, n in zip(chunks, sizes, strict=True)])
    first_attempt = at_temperature(decoding, options.temperatures[0])
    reach = [max(0.0, size / FRAMES_PER_SECOND - LEFT_UNSAID) for size in sizes]
    results = DecodingTask(model.model, tokenizer, first_attempt).run(features, reach)
    for row, (chunk, size, result) in enumerate(zip(chunks, sizes, results, strict=True)):
        heard = detector.speech_seconds(chunk.seek, size)
        chunk_window_decoded(
            model,
            chunk,
            size,
            result,
            features[row : row + 1],
            decoding,
            options,
            reach[row],
            heard,
        )


class SeekingChunk(Protocol):
    """A chunk's own seek loop, as far as one window of it moves it on."""

    end: int  # mel frame
    seek: int  # mel frame
    last_speech: float  # seconds: the end of the last word, for word timestamps
    found: list[tuple[PendingSegment, DecodingResult]]


def chunk_done(chunk: SeekingChunk, detector: SpeechDetector) -> bool:
    """Whether a chunk's seek loop is over: its seek at its end, or what is left of it holds
    too little speech for a window (`has_speech`). A window that closes its last segment a
    few frames short of the chunk's end would otherwise leave a sliver of padding, over which
    the model, given nothing to say, makes words up."""
    return chunk.seek >= chunk.end or not detector.has_speech(chunk.seek, chunk.end - chunk.seek)


def chunk_window_decoded(
    model: WhisperParts,
    chunk: SeekingChunk,
    size: int,
    result: DecodingResult,
    features: torch.Tensor,
    decoding: DecodingOptions,
    options: TranscribeOptions,
    reach: float,
    heard: float,
) -> None:
    """One window of a chunk decoded at the first temperature (`result`; `features`, its
    encoder output, (1, S, C)): decoded again hotter if the text fails the thresholds, then
    skipped as silent (`heard`: seconds of speech voice activity detection heard in it) or cut
    into segments, which join the chunk's; its seek moves on."""
    if judge(result, options).needs_fallback and len(options.temperatures) > 1:
        result, _ = decode_with_fallback(model, features, decoding, options, reach, first=result)
    if is_silent(result, options, heard, text_tokens(result, model.tokenizer)):
        chunk.seek += size
        return
    text = read_window(
        model, Window(chunk.seek, size), result, features, decoding, options, chunk.last_speech
    )
    chunk.seek += text.advance if text.advance > 0 else size
    if options.word_timestamps:
        chunk.last_speech = max(
            [chunk.last_speech] + [w.end for s in text.segments for w in s.words]
        )
    segments = split_on_pauses(text.segments, options, model.tokenizer.eot)
    chunk.found.extend((segment, result) for segment in segments)
