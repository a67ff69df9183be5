"""Tests for whisper_cli.audio: decoding, streaming, and clean errors for bad input."""

from __future__ import annotations

import io
import os
import re
import shutil
import struct
import sys
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr
from hypothesis import given
from hypothesis import strategies as st

from tests.audio_helpers import (
    AUDIO_DIR,
    best_correlation,
    canonical_decode,
    dominant_frequency,
    manifest,
    sine,
    write_aac,
)
from whisper_cli.audio import (
    INSTALL_HINT,
    AudioStream,
    DecodedAudio,
    audio_duration,
    decode,
    decode_audio,
    decoders,
    iter_audio,
    load_audio,
)
from whisper_cli.constants import SAMPLE_RATE
from whisper_cli.errors import AudioError

needs_audio = pytest.mark.skipif(not AUDIO_DIR.is_dir(), reason=f"no dev audio at {AUDIO_DIR}")

DECODABLE = (
    [m for m in manifest() if m["expect"] in ("speech", "no_speech")] if AUDIO_DIR.is_dir() else []
)
TRUNCATED = AUDIO_DIR / "truncated_2412-153948-0000.flac"
INTACT = AUDIO_DIR / "en_ls_2412-153948-0000.flac"  # the file that TRUNCATED is half of
SHORT_WAV = AUDIO_DIR / "en_ls_251-137823-0002.wav"  # 3.13 s, 16 kHz mono


@pytest.fixture(scope="module")
def m4a(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An AAC .m4a made from SHORT_WAV, which soundfile cannot read."""
    pytest.importorskip("av")
    if not SHORT_WAV.is_file():
        pytest.skip(f"no dev audio at {AUDIO_DIR}")
    path = tmp_path_factory.mktemp("aac") / "short.m4a"
    samples, rate = sf.read(SHORT_WAV, dtype="float32")
    write_aac(samples, rate, path)
    return path


@pytest.fixture
def without_av(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "av", None)  # `import av` now raises ImportError


@pytest.fixture
def without_ffmpeg(monkeypatch: pytest.MonkeyPatch) -> None:
    real_which = shutil.which
    monkeypatch.setattr(
        shutil, "which", lambda cmd, *a, **k: None if cmd == "ffmpeg" else real_which(cmd, *a, **k)
    )


def write_wav(path: Path, samples: np.ndarray, rate: int, subtype: str = "PCM_16") -> Path:
    sf.write(path, samples, rate, subtype=subtype)
    return path


# ---------------------------------------------------------------------------------------------
# The dev audio set


@needs_audio
@pytest.mark.parametrize("entry", DECODABLE, ids=lambda m: m["file"])
def test_manifest_file_decodes_like_the_canonical_recipe(entry: dict) -> None:
    path = AUDIO_DIR / entry["file"]
    decoded = decode_audio(path)
    assert decoded.samples.dtype == np.float32
    assert decoded.samples.ndim == 1 and decoded.samples.flags.c_contiguous
    assert decoded.sample_rate == SAMPLE_RATE
    assert decoded.source_sample_rate == entry["sample_rate"]
    assert decoded.channels == entry["channels"]
    assert decoded.warnings == ()
    assert decoded.duration == pytest.approx(entry["duration_s"], rel=0.01)
    if entry["format"].startswith("MP3"):  # PyAV first: libmpg123 prints on standard error
        assert decoded.decoder == "pyav"
        np.testing.assert_allclose(decoded.samples, canonical_decode(path), rtol=0, atol=3e-6)
    else:
        assert decoded.decoder == "soundfile"
        np.testing.assert_array_equal(decoded.samples, canonical_decode(path))


@needs_audio
def test_stereo_44k_decodes_to_mono() -> None:
    decoded = decode_audio(AUDIO_DIR / "en_sr_one_two_three_44k_stereo.flac")
    assert (decoded.channels, decoded.source_sample_rate) == (2, 44100)
    assert decoded.samples.ndim == 1
    assert len(decoded.samples) == pytest.approx(121052 * SAMPLE_RATE / 44100, abs=1)


@needs_audio
def test_load_audio_is_decode_audio_samples() -> None:
    np.testing.assert_array_equal(load_audio(SHORT_WAV), decode_audio(SHORT_WAV).samples)


@needs_audio
def test_bytes_and_pathlike_and_str_sources_agree() -> None:
    from_path = load_audio(INTACT)
    np.testing.assert_array_equal(load_audio(str(INTACT)), from_path)
    np.testing.assert_array_equal(load_audio(INTACT.read_bytes()), from_path)
    np.testing.assert_array_equal(load_audio(bytearray(INTACT.read_bytes())), from_path)


@needs_audio
def test_other_target_sample_rate() -> None:
    decoded = decode_audio(SHORT_WAV, sample_rate=8000)
    assert decoded.sample_rate == 8000
    assert len(decoded.samples) == 50080 // 2
    assert decoded.duration == pytest.approx(3.13)


# ---------------------------------------------------------------------------------------------
# Standard input


class FakeStdin:
    def __init__(self, data: bytes, tty: bool = False) -> None:
        self.buffer = io.BytesIO(data)
        self.buffer.isatty = lambda: tty  # type: ignore[method-assign]


@needs_audio
def test_dash_reads_standard_input(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", FakeStdin(INTACT.read_bytes()))
    np.testing.assert_array_equal(load_audio("-"), load_audio(INTACT))


def test_empty_standard_input(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", FakeStdin(b""))
    with pytest.raises(AudioError, match=r"^<stdin>: empty input$"):
        load_audio("-")


def test_standard_input_that_is_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", FakeStdin(b"", tty=True))
    with pytest.raises(AudioError, match=r"^<stdin>: standard input is a terminal"):
        load_audio("-")


@needs_audio
def test_path_named_dash_is_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copy(SHORT_WAV, tmp_path / "-")
    monkeypatch.chdir(tmp_path)
    assert len(load_audio(Path("-"))) == 50080


@pytest.mark.parametrize("name", ["-", "a:b.m4a", "-x.m4a"])
def test_odd_file_names_are_plain_files(
    m4a: Path, name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Neither libsndfile ("-" is stdin) nor FFmpeg ("a:" is a protocol) reinterprets them."""
    shutil.copy(m4a, tmp_path / name)
    monkeypatch.chdir(tmp_path)
    np.testing.assert_array_equal(load_audio(Path(name)), load_audio(m4a))
    if shutil.which("ffmpeg"):
        monkeypatch.setitem(sys.modules, "av", None)
        assert decode_audio(Path(name)).decoder == "ffmpeg"


@needs_audio
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_named_pipe_is_read_into_memory(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.flac"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_bytes(INTACT.read_bytes()))
    writer.start()
    samples = load_audio(fifo)
    writer.join()
    np.testing.assert_array_equal(samples, load_audio(INTACT))
    assert audio_duration(fifo) is None  # would consume the pipe


# ---------------------------------------------------------------------------------------------
# Bad input: one clean line naming the input and the cause


def test_nonexistent_path(tmp_path: Path) -> None:
    path = tmp_path / "missing.wav"
    with pytest.raises(AudioError, match=rf"^{path}: no such file$"):
        load_audio(path)


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match=rf"^{tmp_path}: is a directory"):
        load_audio(tmp_path)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads anything")
def test_unreadable_file(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "secret.wav", np.zeros(16000, np.float32), 16000)
    path.chmod(0)
    try:
        with pytest.raises(
            AudioError, match=rf"^{path}: cannot read the file \(permission denied\)$"
        ):
            load_audio(path)
    finally:
        path.chmod(0o644)


def test_permission_denied_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same message as above, for runs as root (where chmod 000 does not stop reading)."""
    path = write_wav(tmp_path / "secret.wav", np.zeros(16000, np.float32), 16000)

    def refuse(file: object, *args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied", str(file))

    monkeypatch.setattr(decode, "open", refuse, raising=False)  # shadows the builtin in decode.py
    with pytest.raises(AudioError, match=rf"^{path}: cannot read the file \(permission denied\)$"):
        load_audio(path)


@needs_audio
def test_zero_length_file() -> None:
    path = AUDIO_DIR / "zero_length.wav"
    with pytest.raises(AudioError, match=rf"^{path}: empty file$"):
        load_audio(path)


def test_empty_bytes() -> None:
    with pytest.raises(AudioError, match=r"^<bytes>: empty input$"):
        load_audio(b"")


def test_header_without_samples(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "no_frames.wav", np.zeros((0, 1), np.float32), 16000)
    assert sf.info(path).frames == 0  # a valid header
    with pytest.raises(AudioError, match=rf"^{path}: no audio samples in the file$"):
        load_audio(path)
    with pytest.raises(AudioError, match="no audio samples"):
        list(iter_audio(path))


@needs_audio
def test_random_bytes() -> None:
    path = AUDIO_DIR / "corrupt_random_bytes.wav"
    with pytest.raises(AudioError, match=rf"^{path}: ") as error:
        load_audio(path)
    assert "\n" not in str(error.value)


def test_text_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.wav"
    path.write_text("This is a text file, not audio.\n" * 20, encoding="utf-8")
    with pytest.raises(AudioError, match=rf"^{path}: ") as error:
        load_audio(path)
    assert "\n" not in str(error.value)


def png_bytes() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 2, 2, 8, 0, 0, 0, 0)  # 2×2 grey, 8 bits
    pixels = zlib.compress(b"\x00\x00\x00" * 2)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def test_png_image(tmp_path: Path) -> None:
    path = tmp_path / "picture.png"
    path.write_bytes(png_bytes())
    with pytest.raises(AudioError, match=rf"^{path}: ") as error:
        load_audio(path)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_or_infinite_samples(tmp_path: Path, bad: float) -> None:
    samples = sine(440, 16000, 0.5)
    samples[1000] = bad
    path = write_wav(tmp_path / "bad.wav", samples, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match=rf"^{path}: contains NaN or infinite samples$"):
        load_audio(path)
    with pytest.raises(AudioError, match="contains NaN or infinite samples"):
        list(iter_audio(path))


def test_one_sample_file_decodes(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "one.wav", np.array([0.25], np.float32), 16000)
    np.testing.assert_allclose(load_audio(path), [0.25], atol=1e-4)


def test_one_sample_file_at_44k_gives_what_soxr_gives(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "one.wav", np.array([0.25], np.float32), 44100)
    expected = soxr.resample(np.array([0.25], np.float32), 44100, 16000, quality="HQ")
    assert len(load_audio(path)) == len(expected)  # soxr rounds 16000/44100 samples down to 0


@pytest.mark.parametrize("rate", [8000, 192000])
def test_extreme_sample_rates(tmp_path: Path, rate: int) -> None:
    path = write_wav(tmp_path / f"sine_{rate}.wav", sine(440, rate, 2.0), rate)
    decoded = decode_audio(path)
    assert decoded.source_sample_rate == rate
    assert len(decoded.samples) == pytest.approx(2.0 * SAMPLE_RATE, abs=2)
    assert dominant_frequency(decoded.samples, SAMPLE_RATE) == pytest.approx(440, abs=1)


def test_bad_arguments(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "a.wav", np.zeros(100, np.float32), 16000)
    with pytest.raises(ValueError, match="sample_rate"):
        load_audio(path, sample_rate=0)
    with pytest.raises(ValueError, match="block_seconds"):
        iter_audio(path, block_seconds=0)


# ---------------------------------------------------------------------------------------------
# Truncated and damaged files


@needs_audio
def test_truncated_flac_decodes_the_part_that_decodes() -> None:
    assert sf.info(TRUNCATED).duration == pytest.approx(11.66)  # the header describes it all
    decoded = decode_audio(TRUNCATED)
    assert 5.12 <= decoded.duration < 6.0  # about half of the 11.66 s
    np.testing.assert_array_equal(decoded.samples, load_audio(INTACT)[: len(decoded.samples)])
    (warning,) = decoded.warnings
    assert warning.startswith(f"{TRUNCATED}: truncated or damaged after {decoded.duration:.2f} s")
    assert "flac decoder lost sync" in warning
    assert audio_duration(TRUNCATED) == pytest.approx(11.66)


@needs_audio
def test_truncated_flac_streams_the_same_part() -> None:
    stream = iter_audio(TRUNCATED, block_seconds=1.0)
    assert stream.warnings == ()  # the break is only found while decoding
    samples = np.concatenate(list(stream))
    np.testing.assert_array_equal(samples, load_audio(TRUNCATED))
    assert stream.warnings == decode_audio(TRUNCATED).warnings


@needs_audio
def test_flac_cut_before_its_first_frame(tmp_path: Path) -> None:
    path = tmp_path / "cut.flac"
    path.write_bytes(INTACT.read_bytes()[:9000])  # the header and part of the first frame
    assert sf.info(path).frames > 0
    with pytest.raises(AudioError, match=rf"^{path}: cannot decode audio \("):
        load_audio(path)


@needs_audio
def test_mp3_cut_short_warns() -> None:
    data = (AUDIO_DIR / "en_pv_today_only_platforms.mp3").read_bytes()
    decoded = decode_audio(data[: len(data) // 2])
    (warning,) = decoded.warnings
    promise = re.match(r"<bytes>: the header promises 4\.46 s but only (\S+) s decodes", warning)
    assert promise and float(promise[1]) == pytest.approx(2.2, abs=0.1)  # half the bytes


MP3 = AUDIO_DIR / "en_pv_today_only_platforms.mp3"  # 4.46 s, an ID3 tag, then MPEG frames


@needs_audio
def test_mp3_with_a_damaged_stretch_decodes_around_it_quietly(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """libsndfile's MP3 decoder (libmpg123) prints "Note: Illegal Audio-MPEG-Header …" on
    standard error from C and gives up; PyAV skips the damaged frames and says so once."""
    data = MP3.read_bytes()
    noise = np.random.default_rng(2).integers(0, 256, 3000, dtype=np.uint8).tobytes()
    path = tmp_path / "damaged.mp3"
    path.write_bytes(data[:2000] + noise + data[5000:])
    decoded = decode_audio(path)
    (warning,) = decoded.warnings
    assert re.match(rf"{path}: skipped \d damaged packets \(", warning)
    assert 3.5 < decoded.duration < 4.5
    assert capfd.readouterr().err == ""


@needs_audio
@pytest.mark.parametrize("source", ["file", "bytes", "misnamed file"])
def test_mp3_cut_inside_its_first_frame_is_a_corrupt_mp3_quietly(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], source: str
) -> None:
    """libmpg123 printed "warning: Cannot read next header, a one-frame stream? Duh..." and
    libsndfile said "not a regular file (possibly a pipe?)"."""
    data = MP3.read_bytes()[:200]
    path = tmp_path / ("cut.mp3" if source == "file" else "cut.wav")
    path.write_bytes(data)
    name = "<bytes>" if source == "bytes" else str(path)
    with pytest.raises(AudioError, match=rf"^{re.escape(name)}: corrupt MP3 \(FFmpeg: ") as error:
        load_audio(data if source == "bytes" else path)
    assert "regular file" not in str(error.value)
    assert capfd.readouterr().err == ""


@needs_audio
@pytest.mark.usefixtures("without_av", "without_ffmpeg")
def test_mp3_cut_inside_its_first_frame_without_pyav(tmp_path: Path) -> None:
    path = tmp_path / "cut.mp3"
    path.write_bytes(MP3.read_bytes()[:200])
    with pytest.raises(AudioError, match=rf"^{path}: corrupt MP3 \(soundfile: ") as error:
        load_audio(path)
    assert "regular file" not in str(error.value)


@pytest.mark.parametrize("av_installed", [True, False])
def test_a_text_file_named_wav_is_not_audio(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, av_installed: bool
) -> None:
    """Not "install PyAV", not the decoders' jargon: what the file is."""
    if not av_installed:
        monkeypatch.setitem(sys.modules, "av", None)
        monkeypatch.setattr(shutil, "which", lambda cmd, *args, **kwargs: None)
    path = tmp_path / "x.wav"
    path.write_text("hello, this is not a recording — ça va\n" * 30, encoding="utf-8")
    with pytest.raises(AudioError, match=rf"^{path}: not an audio file \(it holds text\)$"):
        load_audio(path)


@needs_audio
def test_random_bytes_are_not_an_audio_file() -> None:
    path = AUDIO_DIR / "corrupt_random_bytes.wav"
    with pytest.raises(AudioError, match=rf"^{path}: not an audio file \(no decoder recognises"):
        load_audio(path)


def test_pyav_is_a_dependency() -> None:
    """`pip install .` brings PyAV, so M4A, MP4 and the like decode without an ffmpeg command."""
    import tomllib

    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    names = [re.split(r"[<>=!~ \[;]", dep)[0] for dep in pyproject["project"]["dependencies"]]
    assert "av" in names
    assert pyproject["project"]["optional-dependencies"].get("av", []) == []  # an old alias


def test_m4a_with_damaged_packets_skips_them(m4a: Path) -> None:
    data = bytearray(m4a.read_bytes())
    noise = np.random.default_rng(1).integers(0, 256, 3000, dtype=np.uint8).tobytes()
    data[20000:23000] = noise  # inside the AAC packets, before the index at the end
    decoded = decode_audio(bytes(data))
    assert decoded.decoder == "pyav"
    assert any("damaged packets" in warning for warning in decoded.warnings)
    assert decoded.duration > 2.0


# ---------------------------------------------------------------------------------------------
# Streaming


@needs_audio
@pytest.mark.parametrize(
    ("name", "exact"),
    [
        ("en_ls_2412-153948-0000.flac", True),  # 16 kHz: no resampling, so exactly equal
        ("en_ls_1995-1837-0001.wav", True),
        ("en_sr_one_two_three_44k_stereo.flac", False),  # resampled by soxr in streaming mode
        ("en_lj_LJ050-0131.wav", False),
        ("en_ls_1995-1837-0001_8k.wav", False),
        ("en_pv_today_only_platforms.mp3", True),  # PyAV: no resampling
    ],
)
@pytest.mark.parametrize("block_seconds", [30.0, 1.0, 0.37])
def test_iter_audio_joins_to_load_audio(name: str, exact: bool, block_seconds: float) -> None:
    path = AUDIO_DIR / name
    whole = load_audio(path)
    with iter_audio(path, block_seconds=block_seconds) as stream:
        blocks = list(stream)
    size = round(block_seconds * SAMPLE_RATE)
    assert all(len(block) == size for block in blocks[:-1])
    assert 0 < len(blocks[-1]) <= size
    assert all(block.dtype == np.float32 and block.ndim == 1 for block in blocks)
    joined = np.concatenate(blocks)
    assert len(joined) == len(whole)
    if exact:
        np.testing.assert_array_equal(joined, whole)
    else:
        np.testing.assert_allclose(joined, whole, rtol=0, atol=1e-6)


@needs_audio
def test_iter_audio_on_long_file_is_exact() -> None:
    path = AUDIO_DIR / "en_longform_dev.flac"
    blocks = list(iter_audio(path))
    assert [len(b) for b in blocks] == [480000] * 5 + [2515049 - 5 * 480000]
    np.testing.assert_array_equal(np.concatenate(blocks), load_audio(path))


def test_iter_audio_reports_bad_input_before_iterating(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match="no such file"):
        iter_audio(tmp_path / "missing.flac")


@needs_audio
def test_audio_stream_describes_the_source() -> None:
    stream = iter_audio(AUDIO_DIR / "en_sr_one_two_three_44k_stereo.flac")
    assert isinstance(stream, AudioStream)
    assert (stream.source_sample_rate, stream.channels, stream.decoder) == (44100, 2, "soundfile")
    stream.close()
    assert list(stream) == []


@given(
    st.lists(st.integers(min_value=0, max_value=50), max_size=20),
    st.integers(min_value=1, max_value=40),
)
def test_rechunk_keeps_every_sample(sizes: list[int], block: int) -> None:
    pieces = [np.arange(n, dtype=np.float32) + sum(sizes[:i]) for i, n in enumerate(sizes)]
    blocks = list(decode._rechunk(pieces, block))
    assert all(len(b) == block for b in blocks[:-1])
    assert all(0 < len(b) <= block for b in blocks)
    joined = np.concatenate(blocks) if blocks else np.zeros(0, np.float32)
    np.testing.assert_array_equal(joined, np.arange(sum(sizes), dtype=np.float32))


# ---------------------------------------------------------------------------------------------
# Formats soundfile cannot read: PyAV, then the ffmpeg command, then a hint


@pytest.mark.parametrize(
    ("sample_format", "dtype", "full_scale", "offset"),
    [
        ("s16", np.int16, 2**15, 0),  # interleaved
        ("s16p", np.int16, 2**15, 0),  # planar
        ("s32", np.int32, 2**31, 0),
        ("u8", np.uint8, 2**7, 2**7),
        ("flt", np.float32, 1, 0),
        ("dblp", np.float64, 1, 0),
    ],
)
def test_pyav_frames_in_any_sample_format_become_mono_float32(
    sample_format: str, dtype: type, full_scale: int, offset: int
) -> None:
    av = pytest.importorskip("av")
    stereo = np.random.default_rng(0).uniform(-0.99, 0.99, (2, 500))
    values = stereo * full_scale + offset
    values = (values if full_scale == 1 else np.round(values)).astype(dtype)
    layout = values if sample_format.endswith("p") else values.T.reshape(1, -1)
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(layout), sample_format, "stereo")
    mono = decoders._frame_to_mono(frame)
    assert mono.dtype == np.float32 and mono.shape == (500,)
    expected = ((values.astype(np.float64) - offset) / full_scale).mean(axis=0)
    np.testing.assert_allclose(mono, expected, atol=1e-7)


def test_m4a_decodes_through_pyav(m4a: Path) -> None:
    wav = load_audio(SHORT_WAV)
    decoded = decode_audio(m4a)
    assert decoded.decoder == "pyav"
    assert (decoded.source_sample_rate, decoded.channels) == (16000, 1)
    assert decoded.duration == pytest.approx(3.13, abs=0.1)
    assert best_correlation(decoded.samples, wav) > 0.9
    assert audio_duration(m4a) == pytest.approx(3.13, abs=0.01)


def test_m4a_streams_through_pyav(m4a: Path) -> None:
    joined = np.concatenate(list(iter_audio(m4a, block_seconds=1.0)))
    np.testing.assert_array_equal(joined, load_audio(m4a))  # 16 kHz AAC: no resampling


def test_m4a_bytes_through_pyav(m4a: Path) -> None:
    np.testing.assert_array_equal(load_audio(m4a.read_bytes()), load_audio(m4a))


@pytest.mark.usefixtures("without_av", "without_ffmpeg")
def test_without_pyav_or_ffmpeg_says_what_to_install(m4a: Path) -> None:
    with pytest.raises(AudioError) as error:
        load_audio(m4a)
    message = str(error.value)
    assert message.startswith(f"{m4a}: unsupported audio format (soundfile: Format not recognised)")
    assert message.endswith(INSTALL_HINT)
    assert "`pip install av`" in message
    assert "whisper-cli[" not in message  # `whisper-cli` on PyPI is someone else's package
    assert audio_duration(m4a) is None


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="no ffmpeg on PATH")
@pytest.mark.usefixtures("without_av")
def test_m4a_decodes_through_the_ffmpeg_command(m4a: Path) -> None:
    decoded = decode_audio(m4a)
    assert decoded.decoder == "ffmpeg"
    assert (decoded.source_sample_rate, decoded.channels) == (None, None)
    assert best_correlation(decoded.samples, load_audio(SHORT_WAV)) > 0.9
    np.testing.assert_array_equal(load_audio(m4a.read_bytes()), decoded.samples)  # via a pipe
    joined = np.concatenate(list(iter_audio(m4a, block_seconds=1.0)))
    np.testing.assert_array_equal(joined, decoded.samples)
    assert audio_duration(m4a) is None


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="no ffmpeg on PATH")
@pytest.mark.usefixtures("without_av")
def test_ffmpeg_command_errors_are_one_line(tmp_path: Path) -> None:
    path = tmp_path / "picture.png"
    path.write_bytes(png_bytes())
    with pytest.raises(AudioError, match=rf"^{path}: not an audio file \(no audio stream found\)$"):
        load_audio(path)
    with pytest.raises(AudioError, match=r"^<bytes>: cannot decode audio \(ffmpeg: ") as error:
        load_audio(os.urandom(4096))
    assert "\n" not in str(error.value)


@pytest.mark.usefixtures("without_av")
def test_ffmpeg_that_cannot_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda cmd, *args, **kwargs: "/nonexistent/ffmpeg")
    with pytest.raises(AudioError, match=r"^<bytes>: cannot run ffmpeg \(no such file"):
        load_audio(png_bytes())


# ---------------------------------------------------------------------------------------------
# audio_duration and DecodedAudio


@needs_audio
def test_audio_duration_reads_the_header() -> None:
    assert audio_duration(SHORT_WAV) == pytest.approx(3.13)
    assert audio_duration(SHORT_WAV.read_bytes()) == pytest.approx(3.13)


def test_audio_duration_is_none_when_unknown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", FakeStdin(b"never read"))
    assert audio_duration("-") is None
    assert sys.stdin.buffer.tell() == 0
    assert audio_duration(tmp_path / "missing.wav") is None
    (tmp_path / "notes.txt").write_text("not audio")
    assert audio_duration(tmp_path / "notes.txt") is None


def test_decoded_audio_duration() -> None:
    decoded = DecodedAudio(np.zeros(24000, np.float32), 16000, 48000, 2, "soundfile")
    assert decoded.duration == 1.5
    assert decoded.warnings == ()


def test_pyav_is_imported_only_for_files_that_need_it(tmp_path):
    """A WAV or FLAC goes to soundfile without importing PyAV (50 ms and 16 MiB of every
    one-file process); an MP3 still goes to PyAV."""
    import subprocess

    wav = tmp_path / "tone.wav"
    sf.write(wav, sine(440, 16000, 0.5), 16000)
    script = (
        "import sys; from whisper_cli.audio import load_audio; "
        f"load_audio({str(wav)!r}); print('av' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
