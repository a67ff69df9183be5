"""Many recordings at once (`batch_size` > 1): the windows decoded together come from different
files, and one 30-s window may hold the speech of several short files (packing).

A background thread reads ahead (decoding, resampling, voice activity detection, features), a
bounded number of files at a time, while the model works on the files read before. Each file is
cut into speech chunks as in batched mode (`batched.speech_chunks`). Then:

- A file whose speech is one chunk of at most `PACK_SECONDS` is a *piece*: pieces of the same
  language are glued into one window, `GAP` seconds of silence apart, and decoded as one audio.
  Each segment goes back to the file whose span holds it, with its times moved to that file's
  clock (`pieces`). Where that cannot be guaranteed, the pieces are packed once more, then
  decoded each alone: a segment that straddles two files, a window that stopped before its last
  piece, a piece that got no text or whose own text is too repetitive, or a window whose
  log-probability called for temperature fallback or that looked silent (so that each file
  keeps its own no-speech check and fallback).
- Every other chunk (longer files; pieces decoded alone) runs its own seek loop, as in batched
  mode, with windows of any file in the same decoding batch.

Files are packed only when the language is known before decoding (given, or the model is
English-only): a language detected on each file's own audio costs that file an encoder pass of
its own, which decoding then reuses instead of packing. The windows of one decoding batch share
a language and the initial prompt; the previous window's text is not a prompt, as in batched
mode. A file's transcript is handed over as soon as its last chunk is done. A file without
speech (no chunk) gets no language detected; nor does one whose windows all prove silent
(`is_silent`, with the speech the detector heard in each): its language is None.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from whisper_cli.audio.vad import SpeechDetector, detect_speech
from whisper_cli.constants import FRAMES_PER_SECOND, HOP_LENGTH, N_FRAMES, SAMPLE_RATE
from whisper_cli.options import DecodingOptions, TranscribeOptions, verify
from whisper_cli.results import Segment, Transcript, TranscriptionInfo, compression_ratio
from whisper_cli.whisper.batched import (
    LEFT_UNSAID,
    chunk_done,
    chunk_window_decoded,
    speech_chunks,
)
from whisper_cli.whisper.decoding import DecodingResult, DecodingTask
from whisper_cli.whisper.decoding import detect_language as detect_language_features
from whisper_cli.whisper.features import LogMelFrames, pad_or_trim
from whisper_cli.whisper.languages import language_code
from whisper_cli.whisper.pieces import assign_to_pieces, clamped, moved
from whisper_cli.whisper.read_ahead import ReadAhead
from whisper_cli.whisper.timing import PendingSegment
from whisper_cli.whisper.window import (
    WhisperParts,
    Window,
    WindowEncoder,
    at_temperature,
    collect,
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
    from whisper_cli.protocol import AudioInput

PACK_SECONDS = 28.0  # the most speech (and gaps) one packed window holds
GAP = 3.0  # seconds of silence between two files in a packed window (less: more segments over two)
READ_AHEAD = 8  # files read and waiting for the model, at most (beyond the batch in work)
READ_AHEAD_SECONDS = 3600.0  # and audio waiting, at most (its features: 115 MB an hour)
PACKINGS = 2  # windows a piece may be packed into before it is decoded alone
# eager and packing: the most an input already come but still being read holds up a round
READ_WAIT = 0.5  # seconds

Found = tuple[PendingSegment, DecodingResult]


@dataclass(frozen=True)
class FileDone:
    """One input's outcome: its transcript, or why it failed (and decoding warnings)."""

    key: Any
    transcript: Transcript | None = None
    error: Exception | None = None
    warnings: tuple[str, ...] = ()


@dataclass
class _File:
    """A recording read and waiting for, or in, decoding."""

    key: Any
    mel: LogMelFrames
    duration: float  # seconds
    chunks: list[tuple[int, int]]  # mel frame ranges of its speech
    samples: np.ndarray | None  # kept only for a file that may be packed
    warnings: tuple[str, ...]
    detector: SpeechDetector | None = None  # what voice activity detection heard in it
    encode: WindowEncoder | None = None
    language: str | None = None
    probability: float | None = None
    open_units: int = 0
    packings: int = 0  # packed windows it has been in
    found: dict[int, list[Found]] = field(default_factory=dict)  # by chunk, as each is done
    segments: list[Segment] = field(default_factory=list)  # of the chunks done in order
    handed: int = 0  # chunks whose segments are in `segments`
    failed: bool = False


@dataclass
class _Chunk:
    """One chunk of one file, decoded by its own seek loop."""

    file: _File
    index: int  # of the file's chunks
    end: int  # mel frame
    seek: int  # mel frame
    last_speech: float = 0.0
    found: list[Found] = field(default_factory=list)


@dataclass
class _Packed:
    """Single-chunk files glued into one window: (file, start of its piece in the window in
    seconds) for each."""

    pieces: list[tuple[_File, float]]
    mel: torch.Tensor  # (n_mels, frames) of the glued audio
    size: int  # mel frames of audio in the window


_Unit = _Chunk | _Packed


def transcribe_files(
    model: WhisperParts,
    items: Iterable[tuple[Any, AudioInput]],
    options: TranscribeOptions,
    read: Callable[[AudioInput], tuple[np.ndarray, tuple[str, ...]]],
    eager: bool = False,
    pack: bool = True,
    on_segments: Callable[[Any, list[Segment]], None] | None = None,
) -> Iterator[FileDone]:
    """Transcribe `(key, audio)` items, `options.batch_size` windows a decoding batch, packing
    short files; yields each file's `FileDone` as soon as it is done (not in input order).

    `read` turns an input into 16 kHz mono samples and decoding warnings; a file it fails on
    (or any exception while that file is decoded) is a `FileDone` with the error, and the
    others go on. With `eager`, a batch that is not full is decoded whenever no read input
    waits (for items that arrive over time, as a server's requests do, and may block);
    otherwise reading goes on until a batch is full or the items end. Without `pack`, every
    file is decoded on its own, as `transcribe` in batched mode decodes it, whatever else is
    in work. `on_segments(key, segments)` is called with each file's next segments, in order,
    as soon as the chunks before them are done (the transcript's segments, as they come).
    """
    verify(options)
    engine = _Engine(model, options, pack, on_segments)

    def read_file(key: Any, audio: AudioInput) -> _File:
        file = _read(model, audio, read, engine.packs, options.chunk_length)
        file.key = key
        return file

    reader = ReadAhead(items, read_file, READ_AHEAD, READ_AHEAD_SECONDS, lambda f: f.duration)
    try:
        while True:
            # eager: what has been read (or, when packing, is being read) is taken first, so
            # that files that came together (a burst of requests) are packed together; then,
            # with nothing read waiting, what there is is decoded
            item = reader.take(block=not eager, wait_reading=READ_WAIT if engine.packs else 0.0)
            if item is None:
                if engine.busy():
                    yield from engine.round()
                    continue
                item = reader.take()
            if item is ReadAhead.END:
                break
            key, loaded = item
            if key is ReadAhead.END:  # iterating the items raised: so does this
                raise loaded
            if isinstance(loaded, Exception):
                yield FileDone(key, error=loaded)
                continue
            yield from engine.add(loaded)
            while engine.ready():  # decode while enough waits; read on otherwise
                yield from engine.round()
        while engine.busy():
            yield from engine.round()
    finally:
        reader.close()


def _read(
    model: WhisperParts,
    audio: AudioInput,
    read: Callable[[AudioInput], tuple[np.ndarray, tuple[str, ...]]],
    packs: bool,
    chunk_length: float,
) -> _File:
    samples, warnings = read(audio)
    detector = detect_speech(samples)
    mel = LogMelFrames.from_blocks([samples], model.model.dims.n_mels)
    duration = mel.content_frames / FRAMES_PER_SECOND
    chunks = speech_chunks(detector, duration, chunk_length)
    packable = packs and len(chunks) == 1 and chunks[0][1] - chunks[0][0] <= _pack_frames()
    kept = samples if packable else None
    return _File(None, mel, duration, chunks, kept, warnings, detector)


def _pack_frames() -> int:
    return round(PACK_SECONDS * FRAMES_PER_SECOND)


class _Engine:
    """The units (chunks, packed windows) waiting to be decoded, and the files in work."""

    def __init__(
        self,
        model: WhisperParts,
        options: TranscribeOptions,
        pack: bool = True,
        on_segments: Callable[[Any, list[Segment]], None] | None = None,
    ):
        self.model = model
        self.options = options
        self.on_segments = on_segments
        tokenizer = model.tokenizer
        requested = options.decoding.language
        self.language = None if requested is None else language_code(requested)
        if self.language is None and not tokenizer.multilingual:
            self.language = "en"
        task = options.decoding.task
        if task == "translate" and not tokenizer.multilingual:
            task = "transcribe"  # an English-only model can only transcribe
        prompt = tuple(initial_prompt_tokens(model, options)) or None
        self.decoding = replace(options.decoding, task=task, prompt=prompt)
        self.packs = pack and self.language is not None
        self.waiting: deque[_Unit] = deque()
        self.to_pack: list[_File] = []

    # -- intake

    def add(self, file: _File) -> Iterator[FileDone]:
        """Take a file read ahead: detect its language if needed, and queue its chunks."""
        try:
            file.encode = WindowEncoder(self.model, file.mel)
            if self.language is not None:
                file.language = self.language
            elif file.chunks:  # on the first chunk's window: the first to be decoded
                first = (file.chunks[0][0], file.chunks[0][1] - file.chunks[0][0])
                _, (probabilities,) = detect_language_features(
                    self.model.model, self.model.tokenizer, file.encode(*first)
                )
                file.language = next(iter(probabilities))  # the most likely comes first
                file.probability = probabilities[file.language]
        except Exception as error:
            yield FileDone(file.key, error=error, warnings=file.warnings)
            return
        if not file.chunks:
            yield self._finish(file)
        elif file.samples is not None:
            self._to_pack(file)
        else:
            for index, (start, end) in enumerate(file.chunks):
                self._queue_chunk(file, index, start, end)

    def _to_pack(self, file: _File) -> None:
        file.open_units += 1  # a window to come
        self.to_pack.append(file)
        if self._packed_seconds(self.to_pack) > PACK_SECONDS:
            self._pack(self.to_pack[:-1])
            self.to_pack = self.to_pack[-1:]

    def _queue_chunk(
        self, file: _File, index: int, start: int, end: int, counted: bool = False
    ) -> None:
        file.open_units += 0 if counted else 1
        self.waiting.append(_Chunk(file, index, end, start))

    @staticmethod
    def _packed_seconds(files: list[_File]) -> float:
        pieces = sum((f.chunks[0][1] - f.chunks[0][0]) / FRAMES_PER_SECOND for f in files)
        return pieces + GAP * (len(files) - 1)

    def _pack(self, files: list[_File]) -> None:
        """Queue `files` (single-chunk files waiting to be packed, each counted as an open
        unit) as one window, or alone."""
        if len(files) == 1:
            start, end = files[0].chunks[0]
            files[0].samples = None
            self._queue_chunk(files[0], 0, start, end, counted=True)
            return
        gap = np.zeros(round(GAP * SAMPLE_RATE), dtype=np.float32)
        parts, pieces, at = [], [], 0.0
        for file in files:
            start, end = file.chunks[0]
            assert file.samples is not None
            parts += [file.samples[start * HOP_LENGTH : end * HOP_LENGTH], gap]
            pieces.append((file, at))
            at += (end - start) / FRAMES_PER_SECOND + GAP
            file.packings += 1
        glued = np.concatenate(parts[:-1])
        mel = LogMelFrames.from_blocks([glued], self.model.model.dims.n_mels)
        size = min(N_FRAMES, mel.content_frames)
        self.waiting.append(_Packed(pieces, mel.window(0, size), size))

    # -- decoding

    def ready(self) -> bool:
        """Whether a full batch waits (so reading more can wait)."""
        return len(self.waiting) >= self.options.batch_size

    def busy(self) -> bool:
        if self.to_pack:
            self._pack(self.to_pack)
            self.to_pack = []
        return bool(self.waiting)

    def round(self) -> Iterator[FileDone]:
        """Decode one batch: up to `batch_size` waiting units of the first one's language."""
        self.waiting = deque(u for u in self.waiting if not any(f.failed for f in _files(u)))
        if not self.waiting:
            return
        language = _language(self.waiting[0])
        batch = [unit for unit in self.waiting if _language(unit) == language]
        batch = batch[: self.options.batch_size]
        for unit in batch:
            self.waiting.remove(unit)
        decoding = replace(self.decoding, language=language)
        try:
            outcomes = self._decode(batch, decoding)
        except Exception as error:  # a failure of these files' decoding: theirs alone
            for file in {id(f): f for unit in batch for f in _files(unit)}.values():
                file.failed = True
                yield FileDone(file.key, error=error, warnings=file.warnings)
            return
        for file in outcomes:
            if file.open_units == 0 and not file.failed:
                yield self._finish(file)

    def _decode(self, batch: list[_Unit], decoding: DecodingOptions) -> list[_File]:
        """Decode the units' current windows as one batch; the files whose units moved on."""
        sizes = [_size(unit) for unit in batch]
        features = torch.cat(
            [self._features(unit, size) for unit, size in zip(batch, sizes, strict=True)]
        )
        first = at_temperature(decoding, self.options.temperatures[0])
        reach = [max(0.0, size / FRAMES_PER_SECOND - LEFT_UNSAID) for size in sizes]
        results = DecodingTask(self.model.model, self.model.tokenizer, first).run(features, reach)
        touched: list[_File] = []
        for row, (unit, result) in enumerate(zip(batch, results, strict=True)):
            row_features = features[row : row + 1]
            if isinstance(unit, _Packed):
                self._packed_result(unit, result, row_features, decoding)
                touched += [file for file, _ in unit.pieces]
            else:
                self._chunk_result(unit, sizes[row], result, row_features, decoding, reach[row])
                touched.append(unit.file)
        return list({id(file): file for file in touched}.values())

    def _features(self, unit: _Unit, size: int) -> torch.Tensor:
        model = self.model
        if isinstance(unit, _Chunk):
            assert unit.file.encode is not None
            return unit.file.encode(unit.seek, size)
        mel = pad_or_trim(unit.mel, N_FRAMES).to(model.device, model.model.dtype)
        with torch.inference_mode():
            return model.model.encoder(mel[None])

    def _chunk_result(
        self,
        chunk: _Chunk,
        size: int,
        result: DecodingResult,
        features: torch.Tensor,
        decoding: DecodingOptions,
        reach: float,
    ) -> None:
        """A chunk's window decoded: as a chunk of batched mode, its seek moves on."""
        heard = _heard(chunk.file, chunk.seek, size)
        chunk_window_decoded(
            self.model, chunk, size, result, features, decoding, self.options, reach, heard
        )
        assert chunk.file.detector is not None
        if not chunk_done(chunk, chunk.file.detector):
            self.waiting.append(chunk)
            return
        # the model may place a timestamp in the padding after the chunk: no further
        end = min(chunk.end / FRAMES_PER_SECOND, chunk.file.duration)
        chunk.file.found[chunk.index] = [(clamped(s, end), result) for s, result in chunk.found]
        chunk.file.open_units -= 1
        self._hand_over(chunk.file)

    def _packed_result(
        self,
        packed: _Packed,
        result: DecodingResult,
        features: torch.Tensor,
        decoding: DecodingOptions,
    ) -> None:
        """A packed window decoded: its segments handed to their files; a piece whose words
        are not safely its own (or the whole window, after a fallback or silence) is queued
        to be decoded alone."""
        options = self.options
        spans = _spans(packed)
        assigned: list[list[PendingSegment] | None] = [None] * len(spans)
        heard = sum(
            _heard(f, f.chunks[0][0], f.chunks[0][1] - f.chunks[0][0]) for f, _ in packed.pieces
        )
        tokenizer = self.model.tokenizer
        silent = is_silent(result, options, heard, text_tokens(result, tokenizer))
        # repetition is judged on each file's own text (below): the files of one window may
        # well repeat each other (the same prompt read by many speakers)
        whole = replace(options, compression_ratio_threshold=None)
        if not judge(result, whole).needs_fallback and not silent:
            text = read_window(
                self.model, Window(0, packed.size), result, features, decoding, options, 0.0
            )
            segments = split_on_pauses(text.segments, options, tokenizer.eot)
            assigned = [
                None if mine is None or self._repetitive(mine) else mine
                for mine in assign_to_pieces(segments, spans)
            ]
            if not text.single_timestamp_ending:  # the window stopped short: pieces it left
                reached = text.advance / FRAMES_PER_SECOND + LEFT_UNSAID
                for index, (_, end) in enumerate(spans):
                    if end > reached:
                        assigned[index] = None
        for (file, start), mine in zip(packed.pieces, assigned, strict=True):
            file.open_units -= 1
            chunk_start, chunk_end = file.chunks[0]
            if not mine and file.packings < PACKINGS:  # once more, beside other pieces
                self._to_pack(file)
                continue
            file.samples = None
            if not mine:  # nothing it can be sure of: the piece alone, as a chunk
                self._queue_chunk(file, 0, chunk_start, chunk_end)
                continue
            shift = chunk_start / FRAMES_PER_SECOND - start
            end = min(chunk_end / FRAMES_PER_SECOND, file.duration)
            file.found[0] = [
                (clamped(moved(segment, shift, chunk_start), end), result) for segment in mine
            ]
            self._hand_over(file)

    def _repetitive(self, segments: list[PendingSegment]) -> bool:
        """Whether a piece's own text is too repetitive: as a window alone would be judged,
        it is then decoded again (alone, where it gets its own temperature fallback)."""
        threshold = self.options.compression_ratio_threshold
        if threshold is None:
            return False
        text = self.model.tokenizer.decode([t for s in segments for t in s.tokens]).strip()
        return compression_ratio(text) > threshold

    def _hand_over(self, file: _File) -> None:
        """The segments of the file's chunks that are done, up to the first that is not, in
        order (as batched mode gives them), added to its segments and to `on_segments`."""
        tokenizer = self.model.tokenizer
        new: list[Segment] = []
        for index in sorted(file.found):
            if index != file.handed:
                break
            for pending, result in file.found.pop(index):
                text = shown_text(pending, tokenizer)
                if text is None:
                    continue
                segment = to_segment(
                    pending, len(file.segments), text, result, file.duration,
                    self.options.word_timestamps,
                )  # fmt: skip
                file.segments.append(segment)
                new.append(segment)
            file.handed += 1
        if new and self.on_segments is not None:
            self.on_segments(file.key, new)

    def _finish(self, file: _File) -> FileDone:
        info = TranscriptionInfo(file.language, file.probability, file.mel.n_samples / SAMPLE_RATE)
        transcript = collect(self.model, info, file.segments)
        return FileDone(file.key, transcript=transcript, warnings=file.warnings)


def _heard(file: _File, start: int, n_frames: int) -> float:
    """Seconds of speech voice activity detection heard in mel frames [start, start + n_frames)
    of a file."""
    assert file.detector is not None
    return file.detector.speech_seconds(start, n_frames)


def _language(unit: _Unit) -> str | None:
    return unit.file.language if isinstance(unit, _Chunk) else unit.pieces[0][0].language


def _files(unit: _Unit) -> list[_File]:
    return [unit.file] if isinstance(unit, _Chunk) else [file for file, _ in unit.pieces]


def _size(unit: _Unit) -> int:
    return min(N_FRAMES, unit.end - unit.seek) if isinstance(unit, _Chunk) else unit.size


def _spans(packed: _Packed) -> list[tuple[float, float]]:
    """Each piece's place in the packed window, in seconds."""
    return [
        (start, start + (file.chunks[0][1] - file.chunks[0][0]) / FRAMES_PER_SECOND)
        for file, start in packed.pieces
    ]
