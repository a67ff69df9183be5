"""Decode audio files into float32 mono samples at 16 kHz, without needing a system ffmpeg.

Decoders, tried in this order:

1. soundfile (libsndfile): WAV, FLAC, Ogg Vorbis and Opus, MP3, AIFF and friends, in any
   sample format. The canonical decode, which the test fixtures depend on, is::

       x, sr = soundfile.read(file, dtype="float32", always_2d=True)
       x = x.mean(axis=1, dtype=np.float32)  # downmix to mono
       if sr != 16000:
           x = soxr.resample(x, sr, 16000, quality="HQ")

2. PyAV (`pip install 'whisper-cli[av]'`), when soundfile does not recognise the format
   (AAC/M4A/MP4, WebM, WMA, video files): audio stream 0 is decoded frame by frame, damaged
   packets are skipped, channels are averaged, and soxr resamples, so that every path uses the
   same resampler.
3. The `ffmpeg` command, when it is on PATH and PyAV is not installed. ffmpeg resamples itself
   (libswresample), so its samples differ slightly from the other two.

Anything else raises `AudioError` with one line that names the input and the cause: a missing
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
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from types import ModuleType, TracebackType
from typing import IO, TYPE_CHECKING, ClassVar, Literal

import numpy as np
import soundfile as sf
import soxr

from whisper_cli.constants import SAMPLE_RATE
from whisper_cli.errors import AudioError

if TYPE_CHECKING:
    import av

AudioSource = str | os.PathLike | bytes
DecoderName = Literal["soundfile", "pyav", "ffmpeg"]

STDIN_NAME = "<stdin>"
BYTES_NAME = "<bytes>"
NO_AUDIO_STREAM = "not an audio file (no audio stream found)"
INSTALL_HINT = "install PyAV with `pip install 'whisper-cli[av]'` or put ffmpeg on PATH"
RESAMPLE_QUALITY = "HQ"  # soxr's high quality: about -150 dB of aliasing, and fast

_READ_FRAMES = 1 << 16  # frames per soundfile read when streaming
_FFMPEG_READ_SAMPLES = 1 << 16  # samples per read from the ffmpeg pipe
_HEADER_SLACK_SECONDS = 0.5  # decoding this much less than the header promises is not reported


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


@dataclass(frozen=True)
class _Input:
    name: str  # how messages name the input
    data: str | io.BytesIO  # a path that decoders open themselves, or the bytes in memory

    def open_data(self) -> str | io.BytesIO:
        """For soundfile: the path, or the bytes rewound so each decoder starts at the top."""
        if isinstance(self.data, io.BytesIO):
            self.data.seek(0)
            return self.data
        return os.path.join(os.curdir, self.data) if self.data == "-" else self.data  # not stdin

    def url(self) -> str | io.BytesIO:
        """For FFmpeg (PyAV and the command): "file:" keeps "a:b.m4a" or "-" a plain file."""
        if isinstance(self.data, io.BytesIO):
            return self.open_data()
        return f"file:{self.data}"


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
        raise AudioError(f"{name}: cannot read the file ({_os_reason(err)})") from err
    if os.path.getsize(path) == 0:
        raise AudioError(f"{name}: empty file")
    return _Input(name, os.fsdecode(path))


def _stat_mode(path: str | bytes, name: str) -> int:
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise AudioError(f"{name}: no such file") from None
    except OSError as err:
        raise AudioError(f"{name}: cannot read the file ({_os_reason(err)})") from err
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


def _os_reason(err: OSError) -> str:
    return (err.strerror or str(err)).lower()


# ---------------------------------------------------------------------------------------------
# Decoders: each yields float32 mono pieces at its own `rate`


class _Decoder:
    """An opened input. `pieces()` may be consumed once; `close()` may be called any time."""

    decoder: ClassVar[DecoderName]

    def __init__(self, name: str) -> None:
        self.name = name
        self.warnings: list[str] = []
        self.rate = SAMPLE_RATE  # Hz, of the pieces
        self.source_sample_rate: int | None = None
        self.channels: int | None = None
        self.header_duration: float | None = None  # seconds, as the header states

    def pieces(self) -> Iterator[np.ndarray]:
        raise NotImplementedError

    def read_all(self) -> np.ndarray:
        return _concatenate(list(self.pieces()))

    def close(self) -> None:
        pass

    def _broken(self, decoded_seconds: float, cause: str) -> None:
        """Record a stream that breaks partway, or raise if it broke before any audio."""
        if decoded_seconds == 0:
            raise AudioError(f"{self.name}: cannot decode audio ({cause})")
        self.warnings.append(
            f"{self.name}: truncated or damaged after {decoded_seconds:.2f} s ({cause}); "
            "transcribing the part that decodes"
        )


def _open(inp: _Input, sample_rate: int) -> _Decoder:
    """The first decoder that accepts the input: soundfile, then PyAV, then ffmpeg."""
    try:
        return _SoundfileDecoder(inp)
    except sf.LibsndfileError as err:
        reason = _sf_reason(err)
    av = _import_av()
    if av is not None:
        return _PyAVDecoder(inp, av, reason)
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is not None:
        return _FFmpegDecoder(inp, ffmpeg, sample_rate)
    raise AudioError(f"{inp.name}: unsupported audio format (soundfile: {reason}); {INSTALL_HINT}")


class _SoundfileDecoder(_Decoder):
    decoder = "soundfile"

    def __init__(self, inp: _Input) -> None:
        super().__init__(inp.name)
        self._inp = inp
        self._file = sf.SoundFile(inp.open_data())
        self.rate = self.source_sample_rate = self._file.samplerate
        self.channels = self._file.channels
        self.header_duration = self._file.frames / self.rate

    def read_all(self) -> np.ndarray:
        """The canonical decode in one read; a stream that breaks is re-read up to the break."""
        try:
            if self._file.seekable():
                self._file.seek(0)  # as soundfile.read does (MP3 samples depend on it)
            frames = self._file.read(dtype="float32", always_2d=True)
        except sf.LibsndfileError:
            self.close()
            self._file = sf.SoundFile(self._inp.open_data())
            return super().read_all()
        self.close()
        self._check_length(len(frames))
        return _downmix(frames)

    def pieces(self) -> Iterator[np.ndarray]:
        file, done, rewind = self._file, 0, self._file.seekable()
        with file:
            while True:
                out = np.empty((_READ_FRAMES, file.channels), dtype=np.float32)
                try:
                    if rewind:  # as soundfile.read does; even this fails on some broken files
                        file.seek(0)
                        rewind = False
                    frames = file.read(out=out)
                except sf.LibsndfileError as err:
                    # libsndfile's position still counts the frames it decoded before the break
                    good = min(max(_tell(file) - done, 0), _READ_FRAMES)
                    if good:
                        yield _downmix(out[:good])
                    self._broken((done + good) / self.rate, _sf_reason(err))
                    return
                if len(frames):
                    yield _downmix(frames)
                done += len(frames)
                if len(frames) < _READ_FRAMES:
                    break
        self._check_length(done)

    def close(self) -> None:
        self._file.close()

    def _check_length(self, n_frames: int) -> None:
        """Warn when much less decodes than the header promises (an MP3 cut short)."""
        header_frames = self._file.frames
        if header_frames - n_frames > _HEADER_SLACK_SECONDS * self.rate:
            self.warnings.append(
                f"{self.name}: the header promises {header_frames / self.rate:.2f} s "
                f"but only {n_frames / self.rate:.2f} s decodes; the file may be truncated"
            )


class _PyAVDecoder(_Decoder):
    decoder = "pyav"

    def __init__(self, inp: _Input, av: ModuleType, soundfile_reason: str) -> None:
        super().__init__(inp.name)
        self._av = av
        try:
            self._container = av.open(inp.url(), mode="r", metadata_errors="ignore")
        except av.error.FFmpegError as err:
            raise AudioError(
                f"{inp.name}: not a recognised audio format "
                f"(soundfile: {soundfile_reason}; PyAV: {_av_reason(err)})"
            ) from err
        if not self._container.streams.audio:
            self._container.close()
            raise AudioError(f"{inp.name}: {NO_AUDIO_STREAM}")
        self._stream = self._container.streams.audio[0]
        context = self._stream.codec_context
        if not context.sample_rate:
            self._container.close()
            raise AudioError(f"{inp.name}: the audio stream has no sample rate")
        self.rate = self.source_sample_rate = context.sample_rate
        self.channels = context.channels
        self.header_duration = self._stated_duration()

    def pieces(self) -> Iterator[np.ndarray]:
        error = self._av.error
        n_samples, n_skipped, skip_reason = 0, 0, ""
        with self._container:
            packets = self._container.demux(self._stream)
            while True:
                try:
                    packet = next(packets)
                except StopIteration:
                    break
                except error.FFmpegError as err:
                    self._broken(n_samples / self.rate, _av_reason(err))
                    return
                try:
                    frames = self._stream.decode(packet)
                except error.FFmpegError as err:  # a damaged packet: skip it, as ffmpeg does
                    n_skipped, skip_reason = n_skipped + 1, _av_reason(err)
                    continue
                for frame in frames:
                    if frame.sample_rate != self.rate:
                        raise AudioError(
                            f"{self.name}: the sample rate changes from {self.rate} Hz "
                            f"to {frame.sample_rate} Hz partway"
                        )
                    n_samples += frame.samples
                    yield _frame_to_mono(frame)
        if n_skipped and not n_samples:
            raise AudioError(f"{self.name}: cannot decode audio (PyAV: {skip_reason})")
        if n_skipped:
            self.warnings.append(
                f"{self.name}: skipped {n_skipped} damaged packets ({skip_reason})"
            )

    def close(self) -> None:
        self._container.close()

    def _stated_duration(self) -> float | None:
        stream = self._stream
        if stream.duration is not None and stream.time_base is not None:
            return float(stream.duration * stream.time_base)
        if self._container.duration is not None:
            return self._container.duration / self._av.time_base
        return None


class _FFmpegDecoder(_Decoder):
    """The ffmpeg command, which converts to mono at the target rate itself."""

    decoder = "ffmpeg"

    def __init__(self, inp: _Input, executable: str, sample_rate: int) -> None:
        super().__init__(inp.name)
        self._inp = inp
        self._executable = executable
        self.rate = sample_rate
        self._piped = isinstance(inp.data, io.BytesIO)
        self._input_arg = "pipe:0" if self._piped else inp.url()
        self._process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        return [
            self._executable, "-nostdin", "-hide_banner", "-loglevel", "error", "-threads", "0",
            "-i", self._input_arg, "-map", "0:a:0",
            "-f", "f32le", "-ac", "1", "-ar", str(self.rate), "-",
        ]  # fmt: skip

    def pieces(self) -> Iterator[np.ndarray]:
        with tempfile.TemporaryFile() as stderr:
            try:
                self._process = process = subprocess.Popen(
                    self.command(),
                    stdin=subprocess.PIPE if self._piped else subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=stderr,
                )
            except OSError as err:
                raise AudioError(f"{self.name}: cannot run ffmpeg ({_os_reason(err)})") from err
            if self._piped:
                _feed_in_background(process.stdin, self._inp.data.getvalue())
            n_samples = 0
            try:
                while chunk := process.stdout.read(4 * _FFMPEG_READ_SAMPLES):
                    samples = np.frombuffer(chunk[: len(chunk) // 4 * 4], dtype="<f4")
                    n_samples += len(samples)
                    yield samples.astype(np.float32)
                returncode = process.wait()
            finally:
                self.close()
            if returncode != 0:
                stderr.seek(0)
                self._failed(n_samples, _first_line(stderr.read()))

    def _failed(self, n_samples: int, message: str) -> None:
        message = message.removeprefix(f"{self._input_arg}: ")
        if n_samples == 0 and "matches no streams" in message:
            raise AudioError(f"{self.name}: {NO_AUDIO_STREAM}")
        self._broken(n_samples / self.rate, f"ffmpeg: {message}")

    def close(self) -> None:
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()


# ---------------------------------------------------------------------------------------------
# Small helpers


def _import_av() -> ModuleType | None:
    try:
        import av
    except ImportError:
        return None
    return av


def _downmix(frames: np.ndarray) -> np.ndarray:
    """(n_frames, n_channels) → (n_frames,), averaging the channels in float32."""
    return frames.mean(axis=1, dtype=np.float32)


def _frame_to_mono(frame: av.AudioFrame) -> np.ndarray:
    """A PyAV audio frame, in any sample format, as float32 mono at its own rate."""
    samples = frame.to_ndarray()
    if not frame.format.is_planar:  # interleaved: (1, n_samples * n_channels)
        samples = samples.reshape(-1, frame.layout.nb_channels).T
    return _to_float32(samples).mean(axis=0, dtype=np.float32)


def _to_float32(samples: np.ndarray) -> np.ndarray:
    """Integer PCM scaled to [-1, 1); float samples as they are."""
    if samples.dtype.kind == "f":
        return samples.astype(np.float32, copy=False)
    full_scale = float(2 ** (8 * samples.dtype.itemsize - 1))
    if samples.dtype.kind == "u":  # unsigned PCM (u8) is centred on half scale
        return (samples.astype(np.float64) - full_scale).astype(np.float32) / full_scale
    return samples.astype(np.float32) / full_scale


def _concatenate(pieces: list[np.ndarray]) -> np.ndarray:
    if not pieces:
        return np.zeros(0, dtype=np.float32)
    return np.concatenate(pieces)


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


def _tell(file: sf.SoundFile) -> int:
    try:
        return file.tell()
    except sf.LibsndfileError:
        return -1


def _sf_reason(err: sf.LibsndfileError) -> str:
    """libsndfile's message without its decorations: "Error : flac decoder lost sync." → …"""
    return err.error_string.removeprefix("Error : ").strip().rstrip(".")


def _av_reason(err: Exception) -> str:
    return getattr(err, "strerror", None) or str(err)


def _first_line(stderr: bytes) -> str:
    lines = stderr.decode(errors="replace").strip().splitlines()
    return lines[0].strip() if lines else "ffmpeg failed without a message"


def _feed_in_background(pipe: IO[bytes], data: bytes) -> None:
    """Write `data` to a child's stdin from a thread, so reading its stdout cannot deadlock."""

    def feed() -> None:
        try:
            pipe.write(data)
            pipe.close()
        except (BrokenPipeError, ValueError, OSError):  # the child stopped reading early
            pass

    threading.Thread(target=feed, daemon=True).start()
