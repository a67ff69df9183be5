"""Voice activity: the streaming tap, and speech versus silence, noise and music."""

import numpy as np
import pytest

from whisper_cli.audio import load_audio
from whisper_cli.vad import CHUNK, SpeechDetector


def test_observing_passes_blocks_through_unchanged():
    blocks = [np.full(n, 0.1, dtype=np.float32) for n in (100, 1000, 3)]
    detector = SpeechDetector()
    passed = list(detector.observe(blocks))
    assert all(a is b for a, b in zip(passed, blocks, strict=True))
    assert len(detector.probabilities) == sum(len(b) for b in blocks) // CHUNK


def test_block_boundaries_do_not_change_the_probabilities():
    audio = np.random.default_rng(0).normal(0, 0.05, 16000 * 3).astype(np.float32)
    whole, pieces = SpeechDetector(), SpeechDetector()
    list(whole.observe([audio]))
    list(pieces.observe([audio[i : i + 777] for i in range(0, len(audio), 777)]))
    np.testing.assert_allclose(whole.probabilities, pieces.probabilities, atol=1e-6)


def test_digital_silence_has_no_speech():
    detector = SpeechDetector()
    list(detector.observe([np.zeros(16000 * 30, dtype=np.float32)]))
    assert not detector.has_speech(0, 3000)
    assert detector.speech_seconds(0, 3000) == 0.0


@pytest.mark.real_model
@pytest.mark.parametrize(
    ("name", "speech"),
    [
        ("en_ls_251-137823-0002.wav", True),
        ("ja_cv_24511055.mp3", True),
        ("silence_30s.wav", False),
        ("noise_pink_-45dBFS_30s.flac", False),
        ("music_brahms_hungarian_dance_5.flac", False),
    ],
)
def test_speech_is_heard_and_silence_noise_and_music_are_not(audio_dir, name, speech):
    detector = SpeechDetector()
    audio = load_audio(audio_dir / name)
    list(detector.observe([audio]))
    windows = range(0, max(1, len(audio) // 160), 3000)
    assert any(detector.has_speech(start, 3000) for start in windows) is speech
