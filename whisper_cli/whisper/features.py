"""Log-mel spectrograms exactly as the Whisper models were trained on them.

Hann-windowed STFT (400-sample window, 160-sample hop), power spectrum without the last frame,
Slaney-style mel filters (80 or 128 bins), log10 clamped to 8 below the maximum, then scaled by
(x + 4) / 4. The mel filters are computed here rather than shipped: `mel_filters` reproduces
librosa's `filters.mel(sr=16000, n_fft=400, n_mels=N)`, which is what openai-whisper ships.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from whisper_cli.constants import HOP_LENGTH, N_FFT, N_SAMPLES, SAMPLE_RATE

# Slaney's mel scale: linear below 1 kHz, logarithmic above.
_MEL_LINEAR_STEP_HZ = 200.0 / 3  # Hz per mel in the linear part
_MEL_LOG_START_HZ = 1000.0
_MEL_LOG_START = _MEL_LOG_START_HZ / _MEL_LINEAR_STEP_HZ  # 15 mels
_MEL_LOG_STEP = np.log(6.4) / 27.0  # log-Hz per mel in the logarithmic part


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz / _MEL_LINEAR_STEP_HZ
    logarithmic = _MEL_LOG_START + np.log(np.maximum(hz, 1e-10) / _MEL_LOG_START_HZ) / _MEL_LOG_STEP
    return np.where(hz >= _MEL_LOG_START_HZ, logarithmic, linear)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    linear = mel * _MEL_LINEAR_STEP_HZ
    logarithmic = _MEL_LOG_START_HZ * np.exp(_MEL_LOG_STEP * (mel - _MEL_LOG_START))
    return np.where(mel >= _MEL_LOG_START, logarithmic, linear)


@lru_cache(maxsize=4)
def mel_filters(n_mels: int, sample_rate: int = SAMPLE_RATE, n_fft: int = N_FFT) -> np.ndarray:
    """Triangular, area-normalised ("slaney") mel filters: shape = (n_mels, n_fft // 2 + 1)."""
    fft_freqs = np.fft.rfftfreq(n_fft, d=1.0 / sample_rate)  # (n_fft // 2 + 1,)
    edges_mel = np.linspace(_hz_to_mel(0.0), _hz_to_mel(sample_rate / 2), n_mels + 2)
    edges_hz = _mel_to_hz(edges_mel)  # (n_mels + 2,): lower edge, centre, upper edge of each
    widths = np.diff(edges_hz)  # (n_mels + 1,)
    distance = edges_hz[:, None] - fft_freqs[None, :]  # (n_mels + 2, n_freqs)
    rising = -distance[:-2] / widths[:-1, None]
    falling = distance[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))  # (n_mels, n_freqs)
    weights *= (2.0 / (edges_hz[2:] - edges_hz[:-2]))[:, None]  # equal area per filter
    weights.setflags(write=False)
    return weights.astype(np.float32)


def log_mel_spectrogram(
    audio: np.ndarray | torch.Tensor,
    n_mels: int = 80,
    padding: int = 0,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """The log-mel spectrogram of 16 kHz mono audio: shape = (n_mels, n_frames), float32.

    `padding` zero samples are appended first (the reference appends one window, N_SAMPLES, so
    that the last window is complete). The clamp to 8 below the maximum uses the maximum of the
    whole input, as the reference does.
    """
    if not torch.is_tensor(audio):
        audio = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))
    audio = audio.to(device=device, dtype=torch.float32)
    if padding > 0:
        audio = F.pad(audio, (0, padding))
    window = torch.hann_window(N_FFT, device=audio.device)
    stft = torch.stft(audio, N_FFT, HOP_LENGTH, window=window, return_complex=True)
    filters = torch.from_numpy(mel_filters(n_mels)).to(audio.device)
    log_spec = _log_mel_power(stft[..., :-1], filters)  # the last frame is dropped
    return _clamp_and_scale(log_spec, float(log_spec.max()))


def _log_mel_power(stft: torch.Tensor, filters: torch.Tensor) -> torch.Tensor:
    """STFT (n_freqs, n_frames) → log10 mel power (n_mels, n_frames), before the clamp."""
    return torch.clamp(filters @ (stft.abs() ** 2), min=1e-10).log10()


def _clamp_and_scale(log_spec: torch.Tensor, maximum: float) -> torch.Tensor:
    """At most 8 (a factor 10^8 in power) below the recording's maximum, then about [-1, 1]."""
    return (torch.maximum(log_spec, torch.tensor(maximum - 8.0)) + 4.0) / 4.0


class LogMelFrames:
    """The log-mel spectrogram of a recording, computed piece by piece as its audio streams
    in, so that neither the whole recording nor its whole STFT is ever held in memory.

    Frames are stored as log10 power before the clamp, which needs the maximum of the whole
    recording; `window` applies it, so every window equals the same slice of
    `log_mel_spectrogram(audio, n_mels, padding=N_SAMPLES)` of the whole recording.
    """

    def __init__(self, n_mels: int = 80, padding: int = N_SAMPLES, chunk_frames: int = 3000):
        self.n_mels = n_mels
        self.padding = padding
        self.chunk_frames = chunk_frames
        self.n_samples = 0  # audio samples seen, without the padding
        self._chunks: list[torch.Tensor] = []  # (n_mels, frames) log10 power, unclamped
        self._starts: list[int] = []  # first frame of each chunk
        self.n_frames = 0
        self._max = -torch.inf

    @classmethod
    def from_blocks(
        cls, blocks: Iterable[np.ndarray], n_mels: int = 80, padding: int = N_SAMPLES
    ) -> LogMelFrames:
        """From 16 kHz mono float32 sample blocks of any sizes."""
        frames = cls(n_mels, padding)
        frames._consume(blocks)
        return frames

    def _padded_signal(self, blocks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """The signal torch.stft(center=True) sees: reflected at the start, then the audio,
        then `padding` zeros and the reflection of zeros at the end."""
        half = N_FFT // 2
        head = np.zeros(0, dtype=np.float32)
        started = False
        for block in blocks:
            block = np.asarray(block, dtype=np.float32).reshape(-1)
            self.n_samples += len(block)
            if not started:
                head = np.concatenate([head, block])
                if len(head) <= half:
                    continue
                yield head[1 : half + 1][::-1].copy()
                yield head
                started = True
            else:
                yield block
        zeros = np.zeros(self.padding + half, dtype=np.float32)
        if not started:  # shorter than the reflection: it reaches into the padding
            signal = np.concatenate([head, zeros])
            yield signal[1 : half + 1][::-1].copy()
            yield signal
        else:
            yield zeros

    def _consume(self, blocks: Iterable[np.ndarray]) -> None:
        window = torch.hann_window(N_FFT)
        filters = torch.from_numpy(mel_filters(self.n_mels))
        span = (self.chunk_frames - 1) * HOP_LENGTH + N_FFT  # samples behind one chunk
        buffer = np.zeros(0, dtype=np.float32)
        for piece in self._padded_signal(blocks):
            buffer = np.concatenate([buffer, piece])
            while len(buffer) >= span:
                self._add(buffer[:span], window, filters)
                buffer = buffer[self.chunk_frames * HOP_LENGTH :]
        # the total matches torch.stft(center=True) with its last frame dropped
        total = (self.n_samples + self.padding) // HOP_LENGTH
        remaining = total - self.n_frames
        if remaining > 0:
            needed = (remaining - 1) * HOP_LENGTH + N_FFT
            self._add(np.pad(buffer, (0, max(0, needed - len(buffer))))[:needed], window, filters)

    def _add(self, signal: np.ndarray, window: torch.Tensor, filters: torch.Tensor) -> None:
        audio = torch.from_numpy(signal)
        stft = torch.stft(
            audio, N_FFT, HOP_LENGTH, window=window, center=False, return_complex=True
        )
        log_spec = _log_mel_power(stft, filters)  # (n_mels, T)
        self._starts.append(self.n_frames)
        self._chunks.append(log_spec)
        self.n_frames += log_spec.shape[1]
        self._max = max(self._max, float(log_spec.max()))

    @property
    def content_frames(self) -> int:
        """Frames of the audio itself (the padding excluded)."""
        return self.n_frames - self.padding // HOP_LENGTH

    def window(self, start: int, length: int) -> torch.Tensor:
        """Frames [start, start + length), clamped and scaled: shape = (n_mels, ≤ length)."""
        end = min(start + length, self.n_frames)
        pieces = []
        for chunk_start, chunk in zip(self._starts, self._chunks, strict=True):
            chunk_end = chunk_start + chunk.shape[1]
            if chunk_end <= start or chunk_start >= end:
                continue
            pieces.append(chunk[:, max(start, chunk_start) - chunk_start : end - chunk_start])
        log_spec = torch.cat(pieces, dim=1) if pieces else torch.zeros(self.n_mels, 0)
        return _clamp_and_scale(log_spec, self._max)


def pad_or_trim(array: torch.Tensor, length: int, axis: int = -1) -> torch.Tensor:
    """Zero-pad or cut `array` along `axis` to exactly `length` entries."""
    size = array.shape[axis]
    if size > length:
        return array.narrow(axis, 0, length)
    if size < length:
        pad = [0, 0] * array.ndim
        pad[2 * (array.ndim - 1 - (axis % array.ndim)) + 1] = length - size
        return F.pad(array, pad)
    return array


__all__ = ["LogMelFrames", "log_mel_spectrogram", "mel_filters", "pad_or_trim"]
