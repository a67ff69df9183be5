"""Signals, files and comparisons for the audio tests."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

# the shared dev audio set (../shared/audio next to the checkout), or where this variable says
AUDIO_DIR = Path(
    os.environ.get("WHISPER_CLI_TEST_AUDIO", Path(__file__).resolve().parents[2] / "shared/audio")
)


def manifest() -> list[dict]:
    """The dev audio set's manifest, one dict per file."""
    with open(AUDIO_DIR / "manifest.jsonl", encoding="utf-8") as file:
        return [json.loads(line) for line in file if line.strip()]


def canonical_decode(path: Path | str) -> np.ndarray:
    """The reference recipe that `whisper_cli.audio` must reproduce exactly."""
    x, sr = sf.read(path, dtype="float32", always_2d=True)
    x = x.mean(axis=1, dtype=np.float32)
    if sr != 16000:
        x = soxr.resample(x, sr, 16000, quality="HQ")
    return np.ascontiguousarray(x, dtype=np.float32)


def sine(frequency: float, sample_rate: int, seconds: float, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


def dominant_frequency(samples: np.ndarray, sample_rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / sample_rate)[np.argmax(spectrum)])


def write_aac(samples: np.ndarray, sample_rate: int, path: Path) -> None:
    """Encode mono float32 samples as AAC in an .m4a (MP4) container with PyAV."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=sample_rate, layout="mono")
        frame_size = 1024
        for start in range(0, len(samples), frame_size):
            chunk = np.ascontiguousarray(samples[None, start : start + frame_size])
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
            frame.sample_rate = sample_rate
            frame.pts = start
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def best_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """The peak of the normalised cross-correlation of `a` and `b`, over every lag.

    Lossy encoders delay the signal (AAC's priming samples), so the peak, not the value at
    lag 0, says whether two decodes hold the same audio.
    """
    n = len(a) + len(b)
    spectrum = np.fft.rfft(a, n) * np.conj(np.fft.rfft(b, n))
    correlation = np.fft.irfft(spectrum, n)
    return float(correlation.max() / (np.linalg.norm(a) * np.linalg.norm(b)))
