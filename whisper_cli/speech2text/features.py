"""Kaldi-style log-mel filterbank features for Speech2Text (fairseq S2T) checkpoints.

Speech2Text models were trained on Kaldi `compute-fbank-feats` features followed by
utterance-level mean and variance normalisation (CMVN), not on Whisper's log-mel spectrogram.
This module reproduces what transformers' `Speech2TextFeatureExtractor` (4.40) computes with
its numpy code path, which in turn mirrors `torchaudio.compliance.kaldi.fbank` with Kaldi's
defaults:

* samples are scaled to the 16-bit integer range (× 2**15), as Kaldi reads PCM; dither is 0;
* 25 ms frames (400 samples) every 10 ms (160 samples), only frames that fit entirely inside
  the signal ("snip edges"), so `frames = 1 + (samples - 400) // 160`;
* per frame: subtract its mean (DC offset), pre-emphasis 0.97 (the first sample is scaled by
  0.03, as if it were preceded by a copy of itself), a Povey window (Hann to the power 0.85);
* power spectrum of a 512-point FFT, a bank of triangular filters equally spaced on Kaldi's
  mel scale (1127 ln(1 + f/700)) from 20 Hz to Nyquist, floored at float32 epsilon, then the
  natural log;
* CMVN over the whole utterance, per mel bin, with the population standard deviation.

One deliberate difference: transformers divides by the standard deviation with no floor, so a
bin that is constant over the utterance (digital silence, or a single frame) becomes NaN or
infinite. Here the variance is floored at 1e-10 as in fairseq's own `UtteranceCMVN`, which
the checkpoints were trained with, and such a bin becomes 0. Everywhere else the two agree to
float32 rounding.

Audio shorter than one window (400 samples, 25 ms) has no frame at all; `speech2text_features`
raises `AudioError` for it (`require_samples`, which Speech2Text2's waveform input uses too)
rather than return an empty array that the encoder cannot use.
The arithmetic is done in float64 in blocks of frames, so memory stays bounded on long files.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from whisper_cli.constants import SAMPLE_RATE
from whisper_cli.errors import AudioError

WINDOW_SAMPLES = 400  # 25 ms: the shortest input that gives one frame
HOP_SAMPLES = 160  # 10 ms
FFT_SIZE = 512  # the window rounded up to a power of two, as Kaldi does
PREEMPHASIS = 0.97
LOW_FREQUENCY = 20.0  # Hz, Kaldi's default lower edge of the first filter
LOG_FLOOR = float(np.finfo(np.float32).eps)  # mel energies are clamped here before the log
VARIANCE_FLOOR = 1e-10  # fairseq's floor; transformers has none (see the module docstring)
INT16_SCALE = 2.0**15
MAX_MEL_BINS = 128  # more filters than this leave some without a single FFT bin

_BLOCK_FRAMES = 4096  # frames transformed at once: about 17 MB of float64 spectrum


def require_samples(n_samples: int, needed: int) -> None:
    """Raise AudioError when `n_samples` of audio are fewer than the `needed` for one frame.

    Both families' features say it the same way: the fbank's 25-ms window, or the receptive
    field of Speech2Text2's convolutional feature encoder (also 25 ms in the real checkpoints).
    """
    if n_samples < needed:
        seconds = needed / SAMPLE_RATE
        raise AudioError(
            f"audio is too short for Speech2Text features: {n_samples} samples, and one "
            f"{seconds * 1000:g} ms frame needs {needed} ({seconds:.3f} s)"
        )


def kaldi_mel(frequency: np.ndarray | float) -> np.ndarray | float:
    """Kaldi's mel scale: natural log, 1127 mel per e-fold, knee at 700 Hz."""
    return 1127.0 * np.log(1.0 + np.asarray(frequency) / 700.0)


def kaldi_mel_filters(num_mel_bins: int = 80, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Triangular filters, shape (FFT_SIZE // 2 + 1, num_mel_bins), float64.

    Filter edges are equally spaced in mel between LOW_FREQUENCY and Nyquist, and the
    triangles are linear in mel (not in Hz), as in Kaldi. The Nyquist bin gets no weight:
    Kaldi builds the bank over the first FFT_SIZE // 2 bins only.
    """
    edges = np.linspace(kaldi_mel(LOW_FREQUENCY), kaldi_mel(sample_rate / 2), num_mel_bins + 2)
    left, center, right = edges[:-2], edges[1:-1], edges[2:]  # (num_mel_bins,) each
    bin_mel = kaldi_mel(np.arange(FFT_SIZE // 2) * sample_rate / FFT_SIZE)[:, None]  # (256, 1)
    rising = (bin_mel - left) / (center - left)
    falling = (right - bin_mel) / (right - center)
    weights = np.maximum(0.0, np.minimum(rising, falling))  # (256, num_mel_bins)
    return np.concatenate([weights, np.zeros((1, num_mel_bins))])  # (257, num_mel_bins)


def povey_window(length: int = WINDOW_SAMPLES) -> np.ndarray:
    """Kaldi's default window: a symmetric Hann window raised to the power 0.85."""
    n = np.arange(length)
    return (0.5 - 0.5 * np.cos(2 * math.pi * n / (length - 1))) ** 0.85


def log_mel_fbank(samples: np.ndarray, num_mel_bins: int = 80) -> Tensor:
    """Kaldi log-mel filterbank energies without normalisation.

    samples: (n,) mono audio at 16 kHz in [-1, 1] → (frames, num_mel_bins) float32,
    frames = 1 + (n - 400) // 160. Raises AudioError when n < 400, ValueError for a
    num_mel_bins outside [1, MAX_MEL_BINS] or samples that are not one-dimensional.
    """
    if isinstance(num_mel_bins, bool) or not isinstance(num_mel_bins, int):
        raise ValueError(f"num_mel_bins must be an integer, not {num_mel_bins!r}")
    if not 1 <= num_mel_bins <= MAX_MEL_BINS:
        raise ValueError(f"num_mel_bins = {num_mel_bins} is out of range [1, {MAX_MEL_BINS}]")
    audio = np.asarray(samples)
    if audio.ndim != 1:
        raise ValueError(f"expected mono samples of shape (n,), got {audio.shape}")
    require_samples(audio.shape[0], WINDOW_SAMPLES)
    # the reference rounds to float32 before scaling, whatever the input type
    waveform = torch.from_numpy(audio.astype(np.float32)).double() * INT16_SCALE
    n_frames = 1 + (waveform.shape[0] - WINDOW_SAMPLES) // HOP_SAMPLES
    frames = waveform.as_strided((n_frames, WINDOW_SAMPLES), (HOP_SAMPLES, 1))  # a view
    window = torch.from_numpy(povey_window())
    filters = torch.from_numpy(kaldi_mel_filters(num_mel_bins))  # (257, num_mel_bins)

    out = torch.empty(n_frames, num_mel_bins, dtype=torch.float32)
    for start in range(0, n_frames, _BLOCK_FRAMES):
        block = frames[start : start + _BLOCK_FRAMES]  # (b, 400)
        block = block - block.mean(dim=1, keepdim=True)
        emphasised = torch.cat(
            [block[:, :1] * (1 - PREEMPHASIS), block[:, 1:] - PREEMPHASIS * block[:, :-1]], dim=1
        )
        spectrum = torch.fft.rfft(emphasised * window, n=FFT_SIZE)  # (b, 257) complex
        power = spectrum.real.square() + spectrum.imag.square()
        mel = (power @ filters).clamp_min(LOG_FLOOR)  # (b, num_mel_bins)
        out[start : start + block.shape[0]] = mel.log()
    return out


def utterance_cmvn(
    features: Tensor, normalize_means: bool = True, normalize_vars: bool = True
) -> Tensor:
    """Normalise each bin over the utterance: (frames, bins) → (frames, bins) float32.

    The standard deviation is the population one (divide by the frame count) and is always
    taken around the mean, also when the mean itself is kept (`normalize_means=False`), which
    is what transformers does.
    """
    x = features.double()
    mean = x.mean(dim=0)
    if normalize_vars:
        variance = (x - mean).square().mean(dim=0)
        std = variance.clamp_min(VARIANCE_FLOOR).sqrt()
    if normalize_means:
        x = x - mean
    if normalize_vars:
        x = x / std
    return x.float()


def speech2text_features(
    samples: np.ndarray,
    num_mel_bins: int = 80,
    normalize_means: bool = True,
    normalize_vars: bool = True,
) -> Tensor:
    """What a Speech2Text encoder reads: (frames, num_mel_bins) float32 normalised fbank.

    samples: (n,) mono float audio at 16 kHz (`whisper_cli.audio.load_audio`); n ≥ 400, else
    AudioError. Pass `normalize_means` / `normalize_vars` from the checkpoint's
    preprocessor_config.json (both default to true there, and `do_ceptral_normalize: false`
    means both false).
    """
    return utterance_cmvn(log_mel_fbank(samples, num_mel_bins), normalize_means, normalize_vars)
