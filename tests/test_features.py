"""Log-mel features against openai-whisper's, recorded in tests/reference (make_reference.py)."""

import numpy as np
import pytest
import torch

from tests.conftest import load_reference
from whisper_cli.audio import load_audio
from whisper_cli.constants import N_FRAMES, N_SAMPLES, SAMPLE_RATE
from whisper_cli.whisper.features import LogMelFrames, log_mel_spectrogram, mel_filters, pad_or_trim


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
        head = reference[f"{name}|audio_head"]
        if name.endswith(".mp3"):  # decoded by PyAV (FFmpeg), the reference by libmpg123
            np.testing.assert_allclose(audio[:1000], head, rtol=0, atol=3e-6, err_msg=name)
        else:
            np.testing.assert_array_equal(audio[:1000], head, err_msg=name)
        mel = log_mel_spectrogram(audio, n_mels, padding=N_SAMPLES)
        assert mel.shape[-1] == int(reference[f"{name}|{n_mels}|n_frames"]), name
        frames = reference[f"{name}|{n_mels}|idx"]
        expected = reference[f"{name}|{n_mels}|mel"]
        difference = np.abs(mel[:, frames].numpy() - expected).max()
        assert difference < 1e-4, f"{name}: max |Δ| = {difference:.2e}"


_SHORT = [0, 1, 150, 200, 201, 5000]
_LONG = [N_SAMPLES + 77, 1_234_567]


@pytest.mark.parametrize(
    ("n_samples", "block"),
    [(n, b) for n in _SHORT for b in (7, 1000, N_SAMPLES)]
    + [(n, b) for n in _LONG for b in (1000, N_SAMPLES)],
)
def test_streamed_features_equal_the_whole_file_computation(n_samples, block):
    audio = np.random.default_rng(n_samples).normal(0, 0.1, n_samples).astype(np.float32)
    whole = log_mel_spectrogram(audio, 80, padding=N_SAMPLES)
    blocks = [audio[i : i + block] for i in range(0, n_samples, block)]
    frames = LogMelFrames.from_blocks(blocks, 80)
    assert frames.n_samples == n_samples
    assert frames.content_frames == whole.shape[-1] - N_FRAMES
    torch.testing.assert_close(frames.window(0, frames.n_frames), whole, atol=1e-6, rtol=0)
    if whole.shape[-1] > 4000:  # a window across two chunks
        torch.testing.assert_close(
            frames.window(2500, 1000), whole[:, 2500:3500], atol=1e-6, rtol=0
        )
