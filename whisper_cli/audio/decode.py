"""Decode audio files into float32 mono samples at 16 kHz, without needing a system ffmpeg.

Three decoders are tried in turn: soundfile, PyAV, then the `ffmpeg` command (`decoders` has
the details); soxr resamples what soundfile and PyAV decode.

Bad input raises `AudioError` with one line that names the input and the cause: a missing
file, a directory, an unreadable or empty file, data that no decoder recognises, a file with
no audio samples, or NaN/infinite samples.

A file that breaks partway (a truncated FLAC: "flac decoder lost sync") is decoded up to the
break: if some audio decodes, it is returned with a line in `DecodedAudio.warnings` (or
`AudioStream.warnings`) saying where it stopped; if none does, `AudioError` is raised. The
library never prints; the caller decides what to do with warnings.

The source is a path, `"-"` for standard input (read fully into memory first, because
soundfile cannot decode from a pipe), or the bytes of a file. Pass `Path("-")` to read a file
that is really called "-". Other non-regular files, such as `<(curl …)` pipes, are also read
into memory first.
"""

from __future__ import annotations

import io
import os
import stat
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from types import TracebackType

import numpy as np
import soxr

from whisper_cli.audio.decoders import DecoderName, _Decoder, _Input, _open
from whisper_cli.constants import SAMPLE_RATE
from whisper_cli.errors import AudioError, os_reason

AudioSource = str | os.PathLike | bytes

STDIN_NAME = "<stdin>"
BYTES_NAME = "<bytes>"
RESAMPLE_QUALITY = "HQ"  # soxr's high quality: about -150 dB of aliasing, and fast


@dataclass(frozen=True, eq=False)
class DecodedAudio:
    """A whole decoded input: mono float32 samples and what is known about the source."""

    samples: np.ndarray  # shape = (n_samples,), float32, mono
    sample_rate: int  # Hz, of `samples`

    # the source
    source_sample_rate: int | None  # Hz; None when the ffmpeg command decoded it
    channels: int | None  # before downmixing; None when the ffmpeg command decoded it
    decoder: DecoderName  # which of the three decoded it

    # problems that did not stop decoding, one line each (a truncated file, say)
    warnings: tuple[str, ...] = ()

    @property
    def duration(self) -> float:
        """Length of `samples` in seconds."""
        return len(self.samples) / self.sample_rate


def load_audio(source: AudioSource, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Decode `source` (a path, "-" for stdin, or bytes) to float32 mono at `sample_rate`.

    Returns an array of shape (n_samples,). Raises `AudioError` for input that cannot be
    decoded; see `decode_audio` for the warnings this drops.
    """
    return decode_audio(source, sample_rate).samples


def decode_audio(source: AudioSource, sample_rate: int = SAMPLE_RATE) -> DecodedAudio:
    """Decode the whole of `source` (a path, "-" for stdin, or bytes) to mono at `sample_rate`."""
    _check_rate(sample_rate)
    decoder = _open(_resolve(source), sample_rate)
    try:
        samples = decoder.read_all()
    finally:
        decoder.close()
    _check_samples(samples, decoder.name)
    if decoder.rate != sample_rate:
        samples = soxr.resample(samples, decoder.rate, sample_rate, quality=RESAMPLE_QUALITY)
    return DecodedAudio(
        samples=np.ascontiguousarray(samples, dtype=np.float32),
        sample_rate=sample_rate,
        source_sample_rate=decoder.source_sample_rate,
        channels=decoder.channels,
        decoder=decoder.decoder,
        warnings=tuple(decoder.warnings),
    )


def iter_audio(
    source: AudioSource, block_seconds: float = 30.0, sample_rate: int = SAMPLE_RATE
) -> AudioStream:
    """Stream `source` as float32 mono blocks of `block_seconds` at `sample_rate`.

    Every block holds exactly `round(block_seconds * sample_rate)` samples except the last,
    which may be shorter. The file is opened (and bad input reported) before this returns;
    it is decoded piece by piece as the blocks are consumed, so memory stays flat for long
    files. The blocks joined together equal `load_audio(source)` for 16 kHz input and agree
    to about 1e-6 where resampling (soxr's streaming mode) or MP3 decoding is involved.
    """
    _check_rate(sample_rate)
    block_size = round(block_seconds * sample_rate)
    if block_size < 1:
        raise ValueError(f"block_seconds must give at least one sample, not {block_seconds}")
    return AudioStream(_open(_resolve(source), sample_rate), sample_rate, block_size)


def audio_duration(source: AudioSource) -> float | None:
    """The duration in seconds that the file's header states, without decoding it.

    Returns None when that cannot be known cheaply: standard input or another pipe (reading
    it would consume it), a format only the ffmpeg command reads, a header without a
    duration, or input that cannot be decoded at all (`decode_audio` explains why). A
    damaged file may decode to less than this.
    """
    if _is_pipe(source):
        return None
    try:
        decoder = _open(_resolve(source), SAMPLE_RATE)
    except AudioError:
        return None
    decoder.close()
    return decoder.header_duration


class AudioStream(Iterator[np.ndarray]):
    """The blocks of `iter_audio`, plus what is known about the source.

    `warnings` grows while the stream is consumed (a truncated file is only noticed when
    decoding reaches the break). Close it, or use it as a context manager, to release the
    file early when stopping before the end.
    """

    def __init__(self, decoder: _Decoder, sample_rate: int, block_size: int) -> None:
        self._decoder = decoder
        self.sample_rate = sample_rate
        self.source_sample_rate = decoder.source_sample_rate
        self.channels = decoder.channels
        self.decoder = decoder.decoder
        self._blocks = _rechunk(self._resampled(), block_size)

    @property
    def warnings(self) -> tuple[str, ...]:
        """Problems met so far that did not stop decoding, one line each."""
        return tuple(self._decoder.warnings)

    def __next__(self) -> np.ndarray:
        return next(self._blocks)

    def close(self) -> None:
        """Stop decoding and release the file."""
        self._blocks.close()
        self._decoder.close()

    def __enter__(self) -> AudioStream:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _resampled(self) -> Iterator[np.ndarray]:
        """The decoder's pieces at `sample_rate`, with soxr in streaming mode where needed."""
        decoder, n_samples = self._decoder, 0
        try:
            resampler = None
            if decoder.rate != self.sample_rate:
                resampler = soxr.ResampleStream(
                    decoder.rate, self.sample_rate, 1, dtype="float32", quality=RESAMPLE_QUALITY
                )
            for piece in decoder.pieces():
                _check_finite(piece, decoder.name)
                n_samples += len(piece)
                yield piece if resampler is None else resampler.resample_chunk(piece)
            if n_samples == 0:
                raise AudioError(f"{decoder.name}: no audio samples in the file")
            if resampler is not None:
                yield resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
        finally:
            decoder.close()


# ---------------------------------------------------------------------------------------------
# Where the bytes come from


def _resolve(source: AudioSource) -> _Input:
    """Check the input and turn it into a path or an in-memory file."""
    if isinstance(source, bytes | bytearray | memoryview):
        return _in_memory(BYTES_NAME, bytes(source))
    if isinstance(source, str) and source == "-":
        return _in_memory(STDIN_NAME, _read_stdin())
    path = os.fspath(source)
    name = os.fsdecode(path)
    mode = _stat_mode(path, name)
    try:
        with open(path, "rb") as file:
            if not stat.S_ISREG(mode):  # a pipe or a device: soundfile needs to seek
                return _in_memory(name, file.read())
    except OSError as err:
        raise AudioError(f"{name}: cannot read the file ({os_reason(err)})") from err
    if os.path.getsize(path) == 0:
        raise AudioError(f"{name}: empty file")
    return _Input(name, os.fsdecode(path))


def _stat_mode(path: str | bytes, name: str) -> int:
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise AudioError(f"{name}: no such file") from None
    except OSError as err:
        raise AudioError(f"{name}: cannot read the file ({os_reason(err)})") from err
    if stat.S_ISDIR(mode):
        raise AudioError(f"{name}: is a directory, not an audio file")
    return mode


def _in_memory(name: str, data: bytes) -> _Input:
    if not data:
        raise AudioError(f"{name}: empty input")
    return _Input(name, io.BytesIO(data))


def _read_stdin() -> bytes:
    if sys.stdin is None:
        raise AudioError(f"{STDIN_NAME}: there is no standard input")
    stream = sys.stdin.buffer
    if stream.isatty():
        raise AudioError(f"{STDIN_NAME}: standard input is a terminal; pipe audio into it")
    return stream.read()


def _is_pipe(source: AudioSource) -> bool:
    """Whether reading `source` would consume it (stdin, a FIFO, a device)."""
    if isinstance(source, str) and source == "-":
        return True
    if isinstance(source, bytes | bytearray | memoryview):
        return False
    try:
        return not stat.S_ISREG(os.stat(source).st_mode)
    except OSError:
        return False


# ---------------------------------------------------------------------------------------------
# Small helpers


def _rechunk(pieces: Iterable[np.ndarray], size: int) -> Iterator[np.ndarray]:
    """Regroup 1-D pieces into blocks of exactly `size` samples; the last may be shorter."""
    pending: list[np.ndarray] = []
    n_pending = 0
    for piece in pieces:
        pending.append(piece)
        n_pending += len(piece)
        while n_pending >= size:
            joined = pending[0] if len(pending) == 1 else np.concatenate(pending)
            yield joined[:size]
            pending, n_pending = [joined[size:]], n_pending - size
    if n_pending:
        yield np.concatenate(pending)


def _check_rate(sample_rate: int) -> None:
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, not {sample_rate}")


def _check_samples(samples: np.ndarray, name: str) -> None:
    if len(samples) == 0:
        raise AudioError(f"{name}: no audio samples in the file")
    _check_finite(samples, name)


def _check_finite(samples: np.ndarray, name: str) -> None:
    if not np.isfinite(samples).all():
        raise AudioError(f"{name}: contains NaN or infinite samples")
