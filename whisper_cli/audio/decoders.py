"""The decoders behind `whisper_cli.audio`: each opens an input and yields float32 mono pieces
at its own rate.

Decoders, tried in this order:

1. soundfile (libsndfile): WAV, FLAC, Ogg Vorbis and Opus, AIFF and friends, in any sample
   format. The canonical decode, which the test fixtures depend on, is::

       x, sr = soundfile.read(file, dtype="float32", always_2d=True)
       x = x.mean(axis=1, dtype=np.float32)  # downmix to mono
       if sr != 16000:
           x = soxr.resample(x, sr, 16000, quality="HQ")

2. PyAV (a dependency; it bundles FFmpeg's libraries), when soundfile does not recognise the
   format (AAC/M4A/MP4, WebM, WMA, video files), and first for MP3 (MPEG audio, known by its
   first bytes or its extension): libsndfile's MP3 decoder, libmpg123, prints its complaints
   about a damaged file on standard error from C, and gives up where FFmpeg skips the damaged
   frames. Its samples differ from libsndfile's by about 1e-6. Audio stream 0 is decoded frame
   by frame, damaged packets are skipped, channels are averaged, and soxr resamples (in
   `decode`), so that every path uses the same resampler.
3. The `ffmpeg` command, when it is on PATH and PyAV is missing. ffmpeg resamples itself
   (libswresample), so its samples differ slightly from the other two.

Input that none of them reads is named for what it is where that can be told: text, a damaged
MP3, or data that no decoder recognises.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import IO, TYPE_CHECKING, ClassVar, Literal

import numpy as np
import soundfile as sf

from whisper_cli.constants import SAMPLE_RATE
from whisper_cli.errors import AudioError, os_reason

if TYPE_CHECKING:
    import av

DecoderName = Literal["soundfile", "pyav", "ffmpeg"]

NO_AUDIO_STREAM = "not an audio file (no audio stream found)"
INSTALL_HINT = (
    "PyAV, a dependency of whisper-cli, is missing: `pip install av`, or put ffmpeg on PATH"
)
MPEG_EXTENSIONS = frozenset({".mp3", ".mp2", ".mp1", ".mpga"})  # libsndfile reads these as MPEG

_READ_FRAMES = 1 << 16  # frames per soundfile read when streaming
_FFMPEG_READ_SAMPLES = 1 << 16  # samples per read from the ffmpeg pipe
_HEADER_SLACK_SECONDS = 0.5  # decoding this much less than the header promises is not reported


# ---------------------------------------------------------------------------------------------
# What the decoders read


@dataclass(frozen=True)
class _Input:
    """An input checked and resolved (by `decode`) into what a decoder opens."""

    name: str  # how messages name the input
    data: str | io.BytesIO  # a path that decoders open themselves, or the bytes in memory

    def open_data(self) -> str | bytes | io.BytesIO:
        """For soundfile: the path, or the bytes rewound so each decoder starts at the top.

        The path is given as bytes except on Windows, so that a name that is not UTF-8 reaches
        the file system as it is (soundfile would encode it strictly).
        """
        if isinstance(self.data, io.BytesIO):
            self.data.seek(0)
            return self.data
        path = os.path.join(os.curdir, self.data) if self.data == "-" else self.data  # not stdin
        return path if os.name == "nt" else os.fsencode(path)

    def url(self) -> str | io.BytesIO:
        """For FFmpeg (PyAV and the command): "file:" keeps "a:b.m4a" or "-" a plain file."""
        if isinstance(self.data, io.BytesIO):
            self.data.seek(0)
            return self.data
        return f"file:{self.data}"

    def read_at(self, offset: int, size: int) -> bytes:
        """`size` bytes from `offset` (fewer at the end), for guessing what the data is."""
        if isinstance(self.data, io.BytesIO):
            return self.data.getbuffer()[offset : offset + size].tobytes()
        try:
            with open(self.data, "rb") as file:
                file.seek(offset)
                return file.read(size)
        except OSError:
            return b""

    def is_mpeg(self) -> bool:
        """Whether libsndfile would read it as MP3: its data starts as MP3's does, or, for a
        file, it has an MP3 extension."""
        named = not isinstance(self.data, io.BytesIO)
        if named and os.path.splitext(self.data)[1].lower() in MPEG_EXTENSIONS:
            return True
        return self.starts_as_mpeg()

    def starts_as_mpeg(self) -> bool:
        """Whether the data starts with an MPEG audio frame header, after an ID3v2 tag if any."""
        head = self.read_at(0, 10)
        offset = 0
        if len(head) == 10 and head.startswith(b"ID3"):  # size: 4 × 7 bits, then a footer?
            size = sum(
                (byte & 0x7F) << shift for byte, shift in zip(head[6:], (21, 14, 7, 0), strict=True)
            )
            offset = 10 + size + (10 if head[5] & 0x10 else 0)
        frame = self.read_at(offset, 2) if offset else head[:2]
        # 11 sync bits, then any version and a layer that is not 0 (0 is AAC's ADTS)
        return (
            len(frame) == 2 and frame[0] == 0xFF and frame[1] & 0xE0 == 0xE0 and frame[1] & 6 != 0
        )

    def is_text(self) -> bool:
        """Whether it starts like a text file: UTF-8 without NUL bytes."""
        head = self.read_at(0, 1024)
        if not head or b"\0" in head:
            return False
        for cut in range(4):  # the last character may be cut off
            try:
                head[: len(head) - cut].decode("utf-8")
            except UnicodeDecodeError:
                continue
            return True
        return False


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

    def _check_length(self, decoded_seconds: float) -> None:
        """Warn when much less decodes than the header promises (an MP3 cut short)."""
        stated = self.header_duration
        if stated is not None and stated - decoded_seconds > _HEADER_SLACK_SECONDS:
            self.warnings.append(
                f"{self.name}: the header promises {stated:.2f} s but only "
                f"{decoded_seconds:.2f} s decodes; the file may be truncated"
            )


def _open(inp: _Input, sample_rate: int) -> _Decoder:
    """The first decoder that accepts the input: soundfile, then PyAV, then ffmpeg; PyAV first
    for MP3."""
    # PyAV is imported only when it is needed (50 ms and 16 MiB of libraries otherwise)
    if inp.is_mpeg() and (av := _import_av()) is not None:
        return _PyAVDecoder(inp, av)
    try:
        return _SoundfileDecoder(inp)
    except sf.LibsndfileError as err:
        reason = _sf_reason(err)
    if (av := _import_av()) is not None:
        return _PyAVDecoder(inp, av, reason)
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is not None:
        return _FFmpegDecoder(inp, ffmpeg, sample_rate)
    if inp.is_text() or inp.starts_as_mpeg():
        raise AudioError(_unreadable(inp, reason))
    raise AudioError(f"{inp.name}: unsupported audio format (soundfile: {reason}); {INSTALL_HINT}")


def _unreadable(inp: _Input, soundfile_reason: str | None, av_reason: str | None = None) -> str:
    """The message for input that no decoder could open: what it is, where that can be told."""
    reasons = []
    if soundfile_reason is not None:
        if "not a regular file" in soundfile_reason:  # what libsndfile says of a broken MP3
            soundfile_reason = "no MPEG audio frame it could read"
        reasons.append(f"soundfile: {soundfile_reason}")
    if av_reason is not None:
        reasons.append(f"FFmpeg: {av_reason}")
    detail = "; ".join(reasons)
    if inp.is_text():
        return f"{inp.name}: not an audio file (it holds text)"
    if inp.starts_as_mpeg():
        return f"{inp.name}: corrupt MP3 ({detail})"
    return f"{inp.name}: not an audio file (no decoder recognises the data; {detail})"


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
        self._check_length(len(frames) / self.rate)
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
        self._check_length(done / self.rate)

    def close(self) -> None:
        self._file.close()


class _PyAVDecoder(_Decoder):
    decoder = "pyav"

    def __init__(self, inp: _Input, av: ModuleType, soundfile_reason: str | None = None) -> None:
        super().__init__(inp.name)
        self._av = av
        self._mpeg = soundfile_reason is None  # tried first, as MP3
        try:
            self._container = av.open(inp.url(), mode="r", metadata_errors="ignore")
        except av.error.FFmpegError as err:
            raise AudioError(_unreadable(inp, soundfile_reason, _av_reason(err))) from err
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
            what = "corrupt MP3" if self._mpeg else "cannot decode audio"
            raise AudioError(f"{self.name}: {what} (FFmpeg: {skip_reason})")
        if n_skipped:
            self.warnings.append(
                f"{self.name}: skipped {n_skipped} damaged packets ({skip_reason})"
            )
        elif self._stream.duration is not None:  # stated by the stream, not guessed
            self._check_length(n_samples / self.rate)

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
                raise AudioError(f"{self.name}: cannot run ffmpeg ({os_reason(err)})") from err
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
