"""Speech2Text fbank features against transformers 4.40's Speech2TextFeatureExtractor.

The reference values are in tests/reference/speech2text (make_speech2text_reference.py):
`features.npz` holds every 10th frame and the frame count of every readable dev file, and
`expected.npz` every frame of one file. Tests that read the recordings skip without them
(see conftest.py); the others use synthetic signals.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.audio_helpers import canonical_decode
from tests.conftest import REFERENCE
from whisper_cli.audio import load_audio
from whisper_cli.errors import AudioError
from whisper_cli.speech2text import features as fbank
from whisper_cli.speech2text.features import log_mel_fbank, speech2text_features, utterance_cmvn

FIXTURES = REFERENCE / "speech2text"
TOLERANCE = 1e-4  # max |Δ| on normalised features; measured about 2e-5
DEV_FILE = "en_ls_61-70968-0000.flac"


def _reference_files() -> list[str]:
    with np.load(FIXTURES / "features.npz") as reference:
        return sorted(key.removesuffix("|frames") for key in reference if key.endswith("|frames"))


def _tone(frequency: float, seconds: float = 1.0, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * fbank.SAMPLE_RATE)) / fbank.SAMPLE_RATE
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


def test_the_fixture_covers_every_readable_file(manifest):
    readable = {e["file"] for e in manifest if e["expect"] not in ("error", "error_or_partial")}
    assert set(_reference_files()) == readable


@pytest.mark.parametrize("name", _reference_files())
def test_features_match_transformers(audio_dir, name):
    with np.load(FIXTURES / "features.npz") as reference:
        expected = reference[f"{name}|every10"]
        frames = int(reference[f"{name}|frames"])
    # MP3 is decoded by PyAV now, within 3e-6 of libsndfile's samples, which the fixture was
    # made from; the fbank of quiet frames magnifies that, so MP3s take the fixture's samples
    path = audio_dir / name
    samples = canonical_decode(path) if name.endswith(".mp3") else load_audio(path)
    ours = speech2text_features(samples)
    assert ours.dtype == torch.float32
    assert ours.shape == (frames, 80)
    strided = ours[::10].numpy()
    finite = np.isfinite(expected)
    if finite.any():
        difference = np.abs(strided[finite] - expected[finite]).max()
        assert difference < TOLERANCE, f"{name}: max |Δ| = {difference:.2e}"
    # transformers divides 0 by a zero standard deviation where a bin is constant (digital
    # silence); features.py floors the variance instead, which turns those bins into zeros
    assert np.all(strided[~finite] == 0), name


def test_every_frame_of_one_file_matches(audio_dir):
    expected = np.load(FIXTURES / "expected.npz")["input_features"]
    ours = speech2text_features(load_audio(audio_dir / DEV_FILE)).numpy()
    assert ours.shape == expected.shape
    assert np.abs(ours - expected).max() < TOLERANCE


@pytest.mark.parametrize(("samples", "frames"), [(400, 1), (559, 1), (560, 2), (16_000, 98)])
def test_frame_count_snips_edges(samples, frames):
    audio = np.random.default_rng(0).standard_normal(samples).astype(np.float32) * 0.1
    assert log_mel_fbank(audio).shape == (frames, 80)


@pytest.mark.parametrize("samples", [0, 1, 399])
def test_audio_shorter_than_one_window_raises(samples):
    with pytest.raises(AudioError, match="too short"):
        speech2text_features(np.zeros(samples, dtype=np.float32))


def test_a_single_frame_normalises_to_zeros_not_nan():
    audio = np.random.default_rng(1).standard_normal(400).astype(np.float32) * 0.1
    features = speech2text_features(audio)
    assert features.shape == (1, 80)
    assert torch.all(features == 0)


def test_digital_silence_gives_zeros():
    features = speech2text_features(np.zeros(16_000, dtype=np.float32))
    assert torch.all(features == 0)
    raw = log_mel_fbank(np.zeros(16_000, dtype=np.float32))
    assert torch.allclose(raw, torch.tensor(np.log(fbank.LOG_FLOOR), dtype=torch.float32))


def test_a_tone_lands_in_the_filter_around_its_frequency():
    raw = log_mel_fbank(_tone(1000.0)).mean(dim=0)  # (80,)
    peak = int(raw.argmax())
    edges = np.linspace(fbank.kaldi_mel(fbank.LOW_FREQUENCY), fbank.kaldi_mel(8000.0), 82)
    assert edges[peak] < fbank.kaldi_mel(1000.0) < edges[peak + 2]


def test_mel_filters_shape_and_nyquist_row():
    filters = fbank.kaldi_mel_filters(80)
    assert filters.shape == (257, 80)
    assert np.all(filters[-1] == 0) and np.all(filters[0] == 0)  # 0 Hz is below 20 Hz
    assert np.all(filters.max(axis=0) > 0.4)  # no filter falls between two FFT bins


def test_normalisation_switches():
    audio = (
        _tone(440.0) + np.random.default_rng(2).standard_normal(16_000).astype(np.float32) * 0.01
    )
    raw = log_mel_fbank(audio).double()
    none = speech2text_features(audio, normalize_means=False, normalize_vars=False)
    assert torch.equal(none, raw.float())
    means = speech2text_features(audio, normalize_vars=False).double()
    assert means.mean(dim=0).abs().max() < 1e-5
    torch.testing.assert_close(means, raw - raw.mean(dim=0), atol=1e-5, rtol=0)
    # variance only: divided by the standard deviation around the mean, mean kept
    variances = speech2text_features(audio, normalize_means=False).double()
    expected = raw / raw.std(dim=0, correction=0)
    torch.testing.assert_close(variances, expected, atol=1e-5, rtol=1e-6)
    both = speech2text_features(audio).double()
    assert (both.std(dim=0, correction=0) - 1).abs().max() < 1e-4


def test_blocks_do_not_change_the_result(monkeypatch):
    audio = _tone(300.0, seconds=0.5)
    whole = log_mel_fbank(audio)
    monkeypatch.setattr(fbank, "_BLOCK_FRAMES", 7)
    assert torch.equal(log_mel_fbank(audio), whole)


def test_float64_input_is_rounded_to_float32_first():
    audio = _tone(440.0, seconds=0.2).astype(np.float64) + 1e-12
    assert torch.equal(speech2text_features(audio), speech2text_features(audio.astype(np.float32)))


def test_cmvn_on_a_constant_bin_is_zero():
    features = torch.tensor([[1.0, 2.0], [1.0, 4.0], [1.0, 6.0]])
    normalised = utterance_cmvn(features)
    assert torch.all(normalised[:, 0] == 0)
    torch.testing.assert_close(normalised[:, 1], torch.tensor([-1.2247449, 0.0, 1.2247449]))


def test_bad_shapes_and_bin_counts_raise():
    with pytest.raises(ValueError, match="mono"):
        log_mel_fbank(np.zeros((2, 1000), dtype=np.float32))
    with pytest.raises(ValueError, match="num_mel_bins"):
        log_mel_fbank(np.zeros(1000, dtype=np.float32), num_mel_bins=0)
