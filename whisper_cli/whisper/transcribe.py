"""Transcribing a recording with a Whisper model: `WhisperModel`, what `load_model` returns for
Whisper checkpoints, and the steps before the windows are decoded: the audio streamed into
log-mel features, the language given or detected, then the windows handed to the sequential
seek loop (`seek_loop`) or, with `batch_size` > 1, to the batched loop (`batched`).

The language is detected on the first 30 s as the reference does when they hold speech (voice
activity detection, Silero VAD, says so), else on the 30 s from where speech starts, where the
reference would judge silence or music; with `language_detection_windows` > 1, as the most
probable over the first windows that hold speech. When no speech is heard anywhere, no language
is: the language is None.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from whisper_cli.audio.vad import SpeechDetector
from whisper_cli.constants import FRAMES_PER_SECOND, N_FRAMES, N_SAMPLES, SAMPLE_RATE
from whisper_cli.options import TranscribeOptions, verify
from whisper_cli.results import Segment, Transcript, TranscriptionInfo
from whisper_cli.whisper import batched
from whisper_cli.whisper.decoding import detect_language as detect_language_features
from whisper_cli.whisper.engine import transcribe_files
from whisper_cli.whisper.features import LogMelFrames
from whisper_cli.whisper.languages import language_code
from whisper_cli.whisper.model import Whisper
from whisper_cli.whisper.seek_loop import seek_loop
from whisper_cli.whisper.tokenizer import Tokenizer
from whisper_cli.whisper.window import WindowEncoder, collect, window_features

if TYPE_CHECKING:
    from whisper_cli.protocol import AudioInput, Progress


def log_mel_frames(
    model: WhisperModel, audio: AudioInput, detector: SpeechDetector | None = None
) -> LogMelFrames:
    """The padded log-mel spectrogram of a path, encoded bytes, 16 kHz mono samples, or an
    iterable of sample blocks (such as `audio.iter_audio`), computed as the audio streams in;
    `detector`, if given, listens to the same blocks."""
    n_mels = model.model.dims.n_mels
    if isinstance(audio, str | bytes | os.PathLike):
        from whisper_cli.audio import iter_audio  # soundfile, PyAV: only for encoded audio

        with iter_audio(audio) as stream:
            return log_mel_frames(model, stream, detector)
    if isinstance(audio, np.ndarray | torch.Tensor):
        samples = np.asarray(audio, dtype=np.float32).reshape(-1)
        audio = (samples[i : i + N_SAMPLES] for i in range(0, len(samples), N_SAMPLES))
    if detector is not None:
        audio = detector.observe(audio)
    return LogMelFrames.from_blocks(audio, n_mels)


def speech_window(detector: SpeechDetector) -> tuple[int, int] | None:
    """The 30-s window to detect the language on (its first mel frame and length): the first
    30 s when they hold speech, as the reference's, else the 30 s from where speech starts, so
    that an opening of silence or music is not what is judged; None when voice activity
    detection hears no speech anywhere."""
    if detector.has_speech(0, N_FRAMES):
        return (0, N_FRAMES)
    start = detector.first_speech(N_FRAMES)
    return None if start is None else (start, N_FRAMES)


def _choose_language(
    encode: WindowEncoder,
    options: TranscribeOptions,
    detector: SpeechDetector | None,
    window: tuple[int, int] | None = (0, N_FRAMES),
) -> tuple[str | None, float | None]:
    """The language given, or detected: on one window that holds speech, `window` (its first
    mel frame and length: the first 30 s, as the reference's, when they hold speech; else the
    30 s from where speech starts; in batched mode, the first chunk's window), or
    (`language_detection_windows` > 1) by summed probabilities over the first windows that hold
    speech. With no `window` (no speech heard anywhere), None and no probability when windows
    without speech are skipped (nothing will be decoded, so no language is heard), else the
    reference's first 30 s."""
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
    if not totals:
        if window is None:
            if options.skip_silent_windows or options.batch_size > 1:
                return None, None
            window = (0, N_FRAMES)  # every window will be decoded: the reference's way
        totals, windows = probabilities(encode(*window)), 1
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


def transcribe_stream(
    model: WhisperModel,
    audio: AudioInput,
    options: TranscribeOptions = TranscribeOptions(),  # noqa: B008 (frozen, so safe to share)
    progress: Progress | None = None,
) -> tuple[TranscriptionInfo, Iterator[Segment]]:
    """Start transcribing: the language and duration now, the segments as they are decoded."""
    verify(options)
    in_chunks = options.batch_size > 1  # chunks come from voice activity detection
    # voice activity detection: to skip windows without speech, to find the chunks, and to
    # detect the language where speech is
    detect = options.decoding.language is None and model.tokenizer.multilingual
    detector = SpeechDetector() if options.skip_silent_windows or in_chunks or detect else None
    mel = log_mel_frames(model, audio, detector)
    content_frames = mel.content_frames
    duration = mel.n_samples / SAMPLE_RATE

    encode = WindowEncoder(model, mel)
    chunks: list[tuple[int, int]] = []
    window: tuple[int, int] | None = (0, N_FRAMES)
    if in_chunks:
        assert detector is not None
        seconds = content_frames / FRAMES_PER_SECOND
        chunks = batched.speech_chunks(detector, seconds, options.chunk_length)
        # the first chunk's window: speech, and the first to be decoded
        window = (chunks[0][0], chunks[0][1] - chunks[0][0]) if chunks else None
    elif detector is not None:
        window = speech_window(detector)
    language, probability = _choose_language(encode, options, detector, window)
    task = options.decoding.task
    if task == "translate" and not model.tokenizer.multilingual:
        task = "transcribe"  # an English-only model can only transcribe
    decoding = replace(options.decoding, language=language, task=task)
    info = TranscriptionInfo(language, probability, duration)
    if in_chunks:
        return info, batched.batched_segments(encode, chunks, decoding, options, detector, progress)
    skipper = detector if options.skip_silent_windows else None
    return info, seek_loop(encode, content_frames, decoding, options, progress, skipper)


def transcribe(
    model: WhisperModel,
    audio: AudioInput,
    options: TranscribeOptions = TranscribeOptions(),  # noqa: B008 (frozen, so safe to share)
    progress: Progress | None = None,
) -> Transcript:
    """Transcribe (or translate) a whole recording."""
    info, stream = transcribe_stream(model, audio, options, progress)
    return collect(model, info, stream)


def detect_language(model: WhisperModel, audio: AudioInput) -> dict[str, float]:
    """Every language's probability, most likely first, over the first 30 s when they hold
    speech (as the reference), else over the 30 s from where speech starts; empty when voice
    activity detection hears no speech at all."""
    if not model.tokenizer.multilingual:
        return {"en": 1.0}
    detector = SpeechDetector()
    mel = log_mel_frames(model, audio, detector)
    window = speech_window(detector)
    if window is None:
        return {}
    features = window_features(model, mel.window(*window))
    _, (probs,) = detect_language_features(model.model, model.tokenizer, features)
    return probs


class WhisperModel:
    """A loaded Whisper model with its tokenizer: what `load_model` returns."""

    family = "whisper"

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
        progress: Progress | None = None,
        **options: Any,
    ) -> Transcript:
        """Transcribe a file or 16 kHz mono samples; options are TranscribeOptions fields."""
        return transcribe(self, audio, TranscribeOptions.from_kwargs(**options), progress)

    @property
    def can_detect_language(self) -> bool:
        return self.is_multilingual

    def detect_language(self, audio: str | os.PathLike[str] | np.ndarray) -> dict[str, float]:
        """Probabilities of every language, most likely first, over the first 30 s that hold
        speech; empty when no speech is heard."""
        return detect_language(self, audio)

    def transcribe_stream(
        self,
        audio: AudioInput,
        options: TranscribeOptions | None = None,
        progress: Progress | None = None,
    ) -> tuple[TranscriptionInfo, Iterator[Segment]]:
        """Start transcribing: the language and duration now, the segments as they are decoded."""
        return transcribe_stream(self, audio, options or TranscribeOptions(), progress)

    def collect(self, info: TranscriptionInfo, segments: Iterable[Segment]) -> Transcript:
        """The Transcript of a stream's segments (consuming them)."""
        return collect(self, info, segments)

    def transcribe_many(
        self, inputs: Iterable[AudioInput], **options: Any
    ) -> Iterator[tuple[AudioInput, Transcript | Exception]]:
        """Transcribe many files or sample arrays; yields `(input, Transcript)` for each, or
        `(input, exception)` for one that failed, as each is done. With `batch_size` > 1 the
        windows of a decoding batch come from several inputs and short ones share windows
        (`engine`), and each is yielded as soon as it is done; with 1 (the default), one
        input after another, each exactly as `transcribe` does it."""
        parsed = TranscribeOptions.from_kwargs(**options)
        if parsed.batch_size == 1:
            for audio in inputs:
                try:
                    yield audio, transcribe(self, audio, parsed)
                except Exception as error:  # that input's failure; the others go on
                    yield audio, error
            return
        in_work: dict[int, AudioInput] = {}  # by number: an input need not be hashable

        def numbered() -> Iterator[tuple[int, AudioInput]]:
            for number, audio in enumerate(inputs):
                in_work[number] = audio
                yield number, audio

        for done in transcribe_files(self, numbered(), parsed, read_samples):
            outcome = done.transcript if done.error is None else done.error
            assert outcome is not None
            yield in_work.pop(done.key), outcome


def read_samples(audio: AudioInput) -> tuple[np.ndarray, tuple[str, ...]]:
    """A path, encoded bytes, samples or sample blocks as 16 kHz mono float32 samples, with the
    decoder's warnings."""
    if isinstance(audio, str | bytes | os.PathLike):
        from whisper_cli.audio import decode_audio  # soundfile, PyAV: only for encoded audio

        decoded = decode_audio(audio)
        return decoded.samples, decoded.warnings
    if isinstance(audio, np.ndarray | torch.Tensor):
        return np.asarray(audio, dtype=np.float32).reshape(-1), ()
    blocks = [np.asarray(block, dtype=np.float32).reshape(-1) for block in audio]
    return (np.concatenate(blocks) if blocks else np.zeros(0, np.float32)), ()
