"""Voice activity: the streaming tap, the batched network against the per-chunk model, speech
versus silence, noise and music, and speech regions."""

import json
import subprocess
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from whisper_cli.audio import load_audio, vad
from whisper_cli.audio.vad import (
    BATCH,
    CHUNK,
    SpeechDetector,
    detect_speech,
    merge_regions,
    speech_regions,
)

SECONDS_PER_CHUNK = CHUNK / 16000


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


def test_streaming_holds_at_most_a_batch_and_batches_do_not_change_the_probabilities():
    rng = np.random.default_rng(1)
    audio = (rng.normal(0, 0.05, 16000 * 40) * np.sin(np.arange(16000 * 40) / 3000) ** 2).astype(
        np.float32
    )
    blocks = [audio[i : i + 5000] for i in range(0, len(audio), 5000)]
    detector, heard = SpeechDetector(), 0
    for block in detector.observe(blocks):
        heard += len(block)
        assert heard // CHUNK - len(detector.probabilities) <= BATCH  # bounded memory
    whole = detect_speech(audio).probabilities
    np.testing.assert_allclose(detector.probabilities, whole, atol=1e-5)


def test_reading_the_detector_scores_the_audio_still_waiting():
    audio = np.random.default_rng(2).normal(0, 0.05, 16000 * 3).astype(np.float32)
    detector = SpeechDetector()
    next(detector.observe([audio]))  # the stream is not over: its chunks wait for a batch
    assert detector.probabilities == []
    detector.has_speech(0, 300)
    assert len(detector.probabilities) == len(audio) // CHUNK


def test_observing_again_starts_a_new_recording():
    audio = np.random.default_rng(3).normal(0, 0.05, 16000 * 2).astype(np.float32)
    detector = SpeechDetector()
    list(detector.observe([audio]))
    first = list(detector.probabilities)
    list(detector.observe([audio]))
    np.testing.assert_allclose(detector.probabilities, first, atol=1e-6)


def test_digital_silence_has_no_speech():
    detector = SpeechDetector()
    list(detector.observe([np.zeros(16000 * 30, dtype=np.float32)]))
    assert not detector.has_speech(0, 3000)
    assert detector.speech_seconds(0, 3000) == 0.0
    assert detector.regions() == []


def test_the_installed_silero_vad_runs_batched():
    """The load-time check found the batched network equal to the packaged model; were it to
    fall back to the per-chunk model, transcription would be an order of magnitude slower."""
    assert isinstance(vad._network(), vad._BatchedNetwork)


def _unknown_layout(self, jit):
    raise AttributeError("no _model")


def _wrong_probabilities(self, chunks, state):
    return np.zeros(len(chunks), dtype=np.float32), state


@pytest.mark.parametrize(
    ("method", "sabotage"), [("__init__", _unknown_layout), ("__call__", _wrong_probabilities)]
)
def test_a_network_the_batched_path_gets_wrong_falls_back_to_the_per_chunk_model(
    monkeypatch, method, sabotage
):
    audio = np.random.default_rng(4).normal(0, 0.05, 16000 * 2).astype(np.float32)
    monkeypatch.setattr(vad._BatchedNetwork, method, sabotage)
    vad._network.cache_clear()
    try:
        assert isinstance(vad._network(), vad._ChunkByChunkNetwork)
        slow = detect_speech(audio).probabilities
    finally:
        monkeypatch.undo()
        vad._network.cache_clear()
    np.testing.assert_allclose(detect_speech(audio).probabilities, slow, atol=1e-5)


def test_loading_the_detector_keeps_the_thread_count():
    """Importing silero_vad sets one thread process-wide, which would slow Whisper down; a
    fresh interpreter, since this one has imported it already."""
    code = (
        "import torch; torch.set_num_threads(2); from whisper_cli.audio.vad import SpeechDetector; "
        "SpeechDetector(); print(torch.get_num_threads())"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "2"


# ---------------------------------------------------------------------------------------------
# real recordings, against the packaged model called once per chunk


def _silero_vad():
    """The silero_vad package, imported without its setting one thread process-wide."""
    threads = torch.get_num_threads()
    import silero_vad

    torch.set_num_threads(threads)
    return silero_vad


@pytest.fixture(scope="module")
def sequential():
    """The plain computation: silero-vad's own model, one call per 32-ms chunk, state carried
    by the model; a model of its own, so that the detector's cannot disturb it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        model = _silero_vad().load_silero_vad()

    @torch.inference_mode()
    def probabilities(audio: np.ndarray) -> np.ndarray:
        model.reset_states()
        whole = len(audio) // CHUNK * CHUNK
        chunks = (torch.from_numpy(audio[i : i + CHUNK].copy()) for i in range(0, whole, CHUNK))
        with _one_thread():
            return np.array([float(model(chunk, 16000)) for chunk in chunks])

    return probabilities


@contextmanager
def _one_thread() -> Iterator[None]:
    """Tiny operations in many threads crawl on a busy machine (each waits for all threads):
    these comparisons need not be slowed down by the fixtures' thread count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _windows_with_speech(probabilities, n_samples: int) -> list[bool]:
    """`has_speech` for every 30-s window, from probabilities computed any way."""
    detector = SpeechDetector()
    detector.probabilities = list(probabilities)
    return [detector.has_speech(s, 3000) for s in range(0, max(1, n_samples // 160), 3000)]


@pytest.mark.real_model
@pytest.mark.parametrize(
    "name",
    [
        "en_longform_dev.flac",
        "en_lj_LJ002-0020.wav",
        "ja_cv_24511055.mp3",
        "noise_pink_-45dBFS_30s.flac",
        "music_brahms_hungarian_dance_5.flac",
    ],
)
def test_batched_detector_decides_as_the_per_chunk_model(audio_dir, sequential, name):
    audio = load_audio(audio_dir / name)
    expected = sequential(audio)
    blocks = [audio[i : i + 480000] for i in range(0, len(audio), 480000)]  # 30 s, as streamed
    detector = SpeechDetector()
    with _one_thread():
        list(detector.observe(blocks))
    got = np.array(detector.probabilities)
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() < 1e-3
    assert np.mean((got >= 0.5) != (expected >= 0.5)) < 0.005
    windows = [detector.has_speech(s, 3000) for s in range(0, max(1, len(audio) // 160), 3000)]
    assert windows == _windows_with_speech(expected, len(audio))


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


@pytest.mark.real_model
def test_speech_regions_cover_every_utterance_of_the_long_recording(audio_dir):
    audio = load_audio(audio_dir / "en_longform_dev.flac")
    segments = json.loads((audio_dir / "en_longform_dev.segments.json").read_text())["segments"]
    duration = len(audio) / 16000
    regions = detect_speech(audio).regions()
    chunks = merge_regions(regions, 30.0)
    for spans in (regions, chunks):
        assert spans == sorted(spans)
        assert all(0 <= s < e <= duration for s, e in spans)
        assert all(e1 <= s2 for (_, e1), (s2, _) in zip(spans, spans[1:], strict=False))
        for segment in segments:
            middle = (segment["start"] + segment["end"]) / 2
            assert any(s <= middle <= e for s, e in spans), (segment["text"][:40], spans)
    assert all(e - s <= 30.0 for s, e in chunks)
    speech = sum(e - s for s, e in regions)
    assert 0.5 * duration < speech < duration  # pauses between utterances are left out


# ---------------------------------------------------------------------------------------------
# speech regions from hand-made probabilities


def _probabilities(*runs: tuple[float, int]) -> np.ndarray:
    """Runs of (probability, chunks)."""
    return np.concatenate([np.full(n, p) for p, n in runs])


def _chunks(n: int) -> float:
    return n * SECONDS_PER_CHUNK


def _close(regions: list[tuple[float, float]], expected: list[tuple[float, float]]) -> bool:
    got, want = np.array(regions).reshape(-1), np.array(expected).reshape(-1)
    return got.shape == want.shape and np.allclose(got, want, rtol=0, atol=1e-9)


def test_a_region_runs_from_its_first_speech_chunk_to_the_first_silent_one_padded():
    probabilities = _probabilities((0.0, 10), (0.9, 20), (0.0, 30))
    padded = [(_chunks(10) - 0.03, _chunks(30) + 0.03)]
    assert _close(speech_regions(probabilities), padded)
    assert _close(speech_regions(probabilities, pad=0), [(_chunks(10), _chunks(30))])


def test_a_region_shorter_than_min_speech_is_dropped():
    short = _probabilities((0.0, 10), (0.9, 7), (0.0, 30))  # 224 ms
    long = _probabilities((0.0, 10), (0.9, 9), (0.0, 30))  # 288 ms
    assert speech_regions(short) == []
    assert len(speech_regions(long)) == 1
    assert len(speech_regions(short, min_speech=0.2)) == 1


def test_a_gap_shorter_than_min_silence_is_bridged():
    bridged = _probabilities((0.0, 10), (0.9, 20), (0.0, 2), (0.9, 20), (0.0, 30))  # 64 ms gap
    split = _probabilities((0.0, 10), (0.9, 20), (0.0, 10), (0.9, 20), (0.0, 30))  # 320 ms gap
    assert _close(speech_regions(bridged, pad=0), [(_chunks(10), _chunks(52))])
    two = [(_chunks(10), _chunks(30)), (_chunks(40), _chunks(60))]
    assert _close(speech_regions(split, pad=0), two)
    assert len(speech_regions(split, min_silence=0.5)) == 1


def test_speech_ends_only_below_the_lower_threshold():
    wavering = _probabilities((0.9, 20), (0.4, 30), (0.9, 20), (0.0, 30))  # 0.4 ≥ 0.5 - 0.15
    assert _close(speech_regions(wavering, pad=0), [(0.0, _chunks(70))])
    assert len(speech_regions(wavering, neg_threshold=0.45, pad=0)) == 2
    with pytest.raises(ValueError, match="neg_threshold"):
        speech_regions(wavering, neg_threshold=0.6)


def test_padding_never_makes_regions_overlap_or_leave_the_recording():
    # five silent chunks (160 ms) end a region; padding of 100 ms each side would overlap
    probabilities = _probabilities((0.9, 20), (0.0, 5), (0.9, 20), (0.0, 5), (0.9, 20))
    duration = _chunks(65)
    regions = speech_regions(probabilities, pad=0.1, duration=duration)
    assert len(regions) == 3
    assert regions[0][0] == 0.0 and regions[-1][1] == pytest.approx(duration)
    for (_, end), (start, _) in zip(regions, regions[1:], strict=False):
        assert end == pytest.approx(start)  # they share the gap, meeting in its middle
        assert end <= start


def test_speech_runs_to_the_end_of_the_recording_and_stops_there():
    probabilities = _probabilities((0.0, 10), (0.9, 20))
    assert speech_regions(probabilities)[-1][1] == pytest.approx(_chunks(30))
    assert speech_regions(probabilities, duration=_chunks(30) + 0.01)[-1][1] == pytest.approx(
        _chunks(30) + 0.01
    )  # the tail shorter than a chunk belongs to it
    assert speech_regions(probabilities, duration=_chunks(25))[-1][1] == pytest.approx(_chunks(25))
    assert speech_regions(probabilities, duration=_chunks(5)) == []
    assert speech_regions([]) == []


@settings(max_examples=200, deadline=None)
@given(
    probabilities=st.lists(st.floats(0, 1), max_size=300),
    pad=st.floats(0, 0.5),
    min_silence=st.floats(0, 0.5),
    extra=st.floats(-2, 1),
)
def test_regions_are_ordered_disjoint_and_inside_the_recording(
    probabilities, pad, min_silence, extra
):
    duration = max(0.0, _chunks(len(probabilities)) + extra)
    regions = speech_regions(probabilities, pad=pad, min_silence=min_silence, duration=duration)
    assert all(0 <= s < e <= duration for s, e in regions)
    assert all(e1 <= s2 for (_, e1), (s2, _) in zip(regions, regions[1:], strict=False))


@settings(max_examples=200, deadline=None)
@given(
    runs=st.lists(st.tuples(st.floats(0, 1), st.integers(1, 20)), max_size=30),
    tail=st.integers(0, CHUNK - 1),
    threshold=st.sampled_from([0.3, 0.5, 0.7]),
    min_speech_ms=st.integers(0, 500),
    min_silence_ms=st.integers(0, 500),
    pad_ms=st.integers(0, 300),
)
def test_regions_are_silero_vads_speech_timestamps(
    runs, tail, threshold, min_speech_ms, min_silence_ms, pad_ms
):
    """The same regions as silero-vad's own rules (without their maximum length)."""
    reference = getattr(_silero_vad(), "get_speech_timestamps_from_probs", None)
    if reference is None:
        pytest.skip("this silero-vad has no get_speech_timestamps_from_probs")
    probabilities = [p for p, n in runs for _ in range(n)]
    n_samples = len(probabilities) * CHUNK + tail
    expected = reference(
        list(probabilities),
        threshold=threshold,
        min_speech_duration_ms=min_speech_ms,
        min_silence_duration_ms=min_silence_ms,
        speech_pad_ms=pad_ms,
        audio_length_samples=n_samples,
    )
    got = speech_regions(
        probabilities,
        threshold=threshold,
        min_speech=min_speech_ms / 1000,
        min_silence=min_silence_ms / 1000,
        pad=pad_ms / 1000,
        duration=n_samples / 16000,
    )
    assert _close(got, [(r["start"] / 16000, r["end"] / 16000) for r in expected])


# ---------------------------------------------------------------------------------------------
# merging regions into pieces of at most 30 s


def test_neighbouring_regions_are_joined_while_they_fit():
    regions = [(0.0, 5.0), (6.0, 10.0), (29.0, 31.0), (40.0, 45.0), (80.0, 81.0)]
    assert merge_regions(regions) == [(0.0, 10.0), (29.0, 45.0), (80.0, 81.0)]
    assert merge_regions(regions, max_duration=100) == [(0.0, 81.0)]
    assert merge_regions([]) == []
    with pytest.raises(ValueError, match="max_duration"):
        merge_regions(regions, max_duration=0)


def test_a_region_longer_than_the_maximum_is_cut_into_equal_pieces():
    chunks = merge_regions([(5.0, 75.0)], max_duration=30.0)
    assert len(chunks) == 3
    assert [e - s for s, e in chunks] == pytest.approx([70 / 3] * 3)
    assert chunks[0][0] == 5.0 and chunks[-1][1] == 75.0
    assert all(e1 == s2 for (_, e1), (s2, _) in zip(chunks, chunks[1:], strict=False))
    # its pieces join their neighbours where they fit
    joined = merge_regions([(1.0, 3.0), (5.0, 75.0), (76.0, 77.0)], max_duration=30.0)
    assert joined == [(1.0, chunks[0][1]), chunks[1], (chunks[2][0], 77.0)]


@st.composite
def _regions(draw):
    bounds = sorted(draw(st.lists(st.floats(0, 500), max_size=40, unique=True)))
    return [(s, e) for s, e in zip(bounds[::2], bounds[1::2], strict=False)]


@settings(max_examples=200, deadline=None)
@given(regions=_regions(), max_duration=st.floats(1, 60))
def test_merged_chunks_are_short_ordered_and_cover_every_region(regions, max_duration):
    chunks = merge_regions(regions, max_duration)
    assert all(s <= e and e - s <= max_duration + 1e-9 for s, e in chunks)
    assert all(e1 <= s2 for (_, e1), (s2, _) in zip(chunks, chunks[1:], strict=False))
    for start, end in regions:  # each region is in one chunk, or cut across consecutive ones
        inside = [(s, e) for s, e in chunks if s < end and start < e]
        assert inside and inside[0][0] <= start and inside[-1][1] >= end
        assert all(e1 == s2 for (_, e1), (s2, _) in zip(inside, inside[1:], strict=False))
