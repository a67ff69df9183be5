"""Batched mode: VAD chunks decoded several at a time, each with its own seek loop."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import load_reference
from tests.test_transcribe import _wer, assert_well_formed
from whisper_cli.audio import load_audio
from whisper_cli.audio.vad import CHUNK, SpeechDetector
from whisper_cli.constants import N_FRAMES
from whisper_cli.errors import OptionsError
from whisper_cli.whisper.batched import speech_chunks


def _detector(probabilities) -> SpeechDetector:
    detector = SpeechDetector()
    detector.probabilities = list(probabilities)
    return detector


def test_chunks_are_in_order_and_at_most_one_window():
    per_second = 16000 / CHUNK
    # speech 1–20 s, 21–45 s, 60–130 s (longer than a window), silence elsewhere
    probabilities = np.zeros(int(140 * per_second))
    for start, end in ((1, 20), (21, 45), (60, 130)):
        probabilities[int(start * per_second) : int(end * per_second)] = 0.9
    chunks = speech_chunks(_detector(probabilities), duration=140.0)
    assert chunks
    assert all(0 < end - start <= N_FRAMES for start, end in chunks)
    assert all(a[1] <= b[0] for a, b in zip(chunks, chunks[1:], strict=False))
    covered = sum(end - start for start, end in chunks)
    assert covered >= (19 + 24 + 70) * 100  # every second of speech is in some chunk
    assert not any(start <= 50 * 100 < end for start, end in chunks)  # 46–59 s is silent


def test_chunk_length_is_the_longest_chunk():
    per_second = 16000 / CHUNK
    # speech 1–20 s and 21–29 s: one chunk of 30 s by default
    probabilities = np.zeros(int(40 * per_second))
    for start, end in ((1, 20), (21, 29)):
        probabilities[int(start * per_second) : int(end * per_second)] = 0.9
    detector = _detector(probabilities)
    assert len(speech_chunks(detector, 40.0)) == 1
    assert speech_chunks(detector, 40.0, 30.0) == speech_chunks(detector, 40.0)
    short = speech_chunks(detector, 40.0, 5.0)
    assert len(short) >= 5 and all(0 < end - start <= 500 for start, end in short)
    assert short[0][0] == speech_chunks(detector, 40.0)[0][0]


def test_options_the_batched_mode_cannot_keep_are_refused(tiny_model):
    samples = np.zeros(16000, dtype=np.float32)
    with pytest.raises(OptionsError, match="clip_timestamps"):
        tiny_model.transcribe(samples, batch_size=4, clip_timestamps="1,2")
    with pytest.raises(OptionsError, match="batch_size"):
        tiny_model.transcribe(samples, batch_size=0)
    with pytest.raises(OptionsError, match="chunk_length needs batch_size"):
        tiny_model.transcribe(samples, chunk_length=10)
    for seconds in (0, 31):
        with pytest.raises(OptionsError, match="chunk_length must be"):
            tiny_model.transcribe(samples, batch_size=4, chunk_length=seconds)


def test_silence_gives_no_segments(tiny_model):
    transcript = tiny_model.transcribe(np.zeros(16000 * 40, dtype=np.float32), batch_size=4)
    assert transcript.segments == ()


@pytest.mark.real_model
def test_batched_longform_is_as_accurate_as_sequential(
    real_model, audio_dir, manifest, monkeypatch
):
    """Greedy, batch 4, against the reference's sequential greedy run (recorded). Whisper
    stops early in most of this file's chunks, whose ends cut sentences; each chunk is still
    transcribed to its end in its one window (`FinishTheWindow`), so no speech is lost and
    none is decoded apart from the words before it."""
    from whisper_cli.whisper import batched

    chunks, windows = [], []
    find, encode = batched.speech_chunks, batched._encode_windows
    monkeypatch.setattr(batched, "speech_chunks", lambda *a: chunks.extend(find(*a)) or chunks)
    monkeypatch.setattr(batched, "_encode_windows", lambda e, w: windows.extend(w) or encode(e, w))
    truth = next(e["text"] for e in manifest if e["file"] == "en_longform_dev.flac")
    audio = load_audio(audio_dir / "en_longform_dev.flac")
    duration = len(audio) / 16000
    transcript = real_model.transcribe(audio, temperature=0.0, batch_size=4, word_timestamps=True)
    assert_well_formed(transcript, duration)
    sequential = load_reference("longform.json")["greedy"]["text"]
    ours, theirs = _wer(truth, transcript.text), _wer(truth, sequential)
    print(f"longform greedy WER: batched {ours:.4f}, openai-whisper sequential {theirs:.4f}")
    assert ours <= theirs + 0.01
    assert len(chunks) >= 5
    assert [start for start, _ in windows] == [start for start, _ in chunks]
    assert [s.id for s in transcript.segments] == list(range(len(transcript.segments)))
    for segment in transcript.segments:
        assert segment.words
        assert segment.start - 0.02 <= segment.words[0].start
        assert segment.words[-1].end <= segment.end + 0.02
        # inside its chunk, though the model may place a timestamp in the padding after it
        start, end = next((s, e) for s, e in chunks if s <= round(segment.start * 100) < e)
        assert segment.end <= end / 100


@pytest.mark.real_model
def test_language_is_detected_on_the_first_chunk_which_is_then_not_encoded_again(
    real_model, audio_dir, monkeypatch
):
    """German speech after 35 s of silence: the language comes from the first speech chunk's
    window (the reference's first 30 s would be silence), and that window's encoder output,
    computed for the detection, is the one its decoding uses: the encoder runs once per
    decoded window, no more."""
    from whisper_cli.whisper import batched

    speech = load_audio(audio_dir / "de_pv_A.wav")
    audio = np.concatenate([np.zeros(35 * 16000, dtype=np.float32), speech])
    encoded, decoded = [], []
    original = batched._decode_round

    def counting(encode, chunks, *rest):
        decoded.append(len(chunks))
        return original(encode, chunks, *rest)

    monkeypatch.setattr(batched, "_decode_round", counting)
    hook = real_model.model.encoder.register_forward_hook(
        lambda module, args, output: encoded.append(output.shape[0])
    )
    try:
        transcript = real_model.transcribe(audio, batch_size=4, temperature=0.0)
    finally:
        hook.remove()
    assert transcript.language == "de"
    assert transcript.segments and transcript.segments[0].start >= 34.0
    assert sum(decoded) >= 1
    assert sum(encoded) == sum(decoded)
