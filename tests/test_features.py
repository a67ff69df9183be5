"""Log-mel features against openai-whisper's, recorded in tests/reference (make_reference.py)."""

import numpy as np
import pytest
import torch

from tests.conftest import load_reference
from whisper_cli.audio import load_audio
from whisper_cli.constants import N_SAMPLES, SAMPLE_RATE
from whisper_cli.features import log_mel_spectrogram, mel_filters, pad_or_trim


@pytest.mark.parametrize("n_mels", [80, 128])
def test_mel_filters_match_the_reference_filters(n_mels):
    reference = load_reference("mel_filters.npz")[f"mel_{n_mels}"]
    ours = mel_filters(n_mels)
    assert ours.shape == reference.shape == (n_mels, 201)
    np.testing.assert_allclose(ours, reference, atol=1e-8, rtol=0)


def test_log_mel_shape_range_and_padding():
    audio = np.sin(2 * np.pi * 440 * np.arange(SAMPLE_RATE) / SAMPLE_RATE).astype(np.float32)
    mel = log_mel_spectrogram(audio, 80)
    assert mel.shape == (80, SAMPLE_RATE // 160)
    # after the clamp to 8 below the maximum and (x + 4) / 4, values span at most 2
    assert float(mel.max() - mel.min()) <= 2.0 + 1e-6
    padded = log_mel_spectrogram(audio, 80, padding=N_SAMPLES)
    assert padded.shape == (80, (SAMPLE_RATE + N_SAMPLES) // 160)


def test_pad_or_trim_both_ways():
    x = torch.arange(10.0).reshape(2, 5)
    assert pad_or_trim(x, 3).tolist() == [[0, 1, 2], [5, 6, 7]]
    padded = pad_or_trim(x, 7)
    assert padded.shape == (2, 7) and padded[:, 5:].abs().sum() == 0
    assert pad_or_trim(x, 1, axis=0).shape == (1, 5)


def _mel_files(manifest):
    return [e["file"] for e in manifest if e["expect"] in ("speech", "no_speech")]


@pytest.mark.real_model
@pytest.mark.parametrize("n_mels", [80, 128])
def test_log_mel_matches_the_reference_on_every_readable_file(audio_dir, manifest, n_mels):
    reference = load_reference("mel.npz")
    files = _mel_files(manifest)
    assert len(files) >= 20
    for name in files:
        audio = load_audio(audio_dir / name)
        assert len(audio) == int(reference[f"{name}|samples"]), name
        np.testing.assert_array_equal(audio[:1000], reference[f"{name}|audio_head"], err_msg=name)
        mel = log_mel_spectrogram(audio, n_mels, padding=N_SAMPLES)
        assert mel.shape[-1] == int(reference[f"{name}|{n_mels}|n_frames"]), name
        frames = reference[f"{name}|{n_mels}|idx"]
        expected = reference[f"{name}|{n_mels}|mel"]
        difference = np.abs(mel[:, frames].numpy() - expected).max()
        assert difference < 1e-4, f"{name}: max |Δ| = {difference:.2e}"
