"""Many files at once: windows of several files decoded together, short files packed into one
window, each file's segments on its own clock, each failure its own."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from whisper_cli.constants import FRAMES_PER_SECOND, SAMPLE_RATE
from whisper_cli.errors import AudioError
from whisper_cli.options import TranscribeOptions
from whisper_cli.whisper import engine
from whisper_cli.whisper.timing import PendingSegment

# quick on the random-weight model: greedy, one temperature
FAST = {"temperature": 0.0, "beam_size": 1, "best_of": 1}


def _tone(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.1 * rng.standard_normal(round(seconds * SAMPLE_RATE))).astype(np.float32)


@pytest.fixture
def chunks_everywhere(monkeypatch):
    """Speech from 0.5 s to the end of every file, whatever voice activity detection says
    about random noise (bookkeeping tests with random weights)."""

    def whole(detector, duration, max_seconds=30.0):
        return [(50, round(duration * FRAMES_PER_SECOND))] if duration > 0.6 else []

    monkeypatch.setattr(engine, "speech_chunks", whole)


def test_short_files_share_windows_and_each_gets_its_own_transcript(
    tiny_model, chunks_everywhere, packed_windows
):
    audios = [_tone(seconds, seed) for seed, seconds in enumerate([3.0, 4.5, 2.0, 6.0, 0.3])]
    results = list(tiny_model.transcribe_many(audios, language="en", batch_size=4, **FAST))
    assert sorted(id(audio) for audio, _ in results) == sorted(id(audio) for audio in audios)
    assert any(count > 1 for count in packed_windows)  # several files in one window
    for audio, transcript in results:
        duration = len(audio) / SAMPLE_RATE
        assert transcript.language == "en"
        assert transcript.duration == pytest.approx(duration)
        for segment in transcript.segments:
            assert 0 <= segment.start <= segment.end <= duration
        assert [s.id for s in transcript.segments] == list(range(len(transcript.segments)))


def test_a_piece_not_safely_its_own_is_packed_once_more_then_decoded_alone(
    tiny_model, chunks_everywhere, monkeypatch, packed_windows
):
    """Every piece unsafe in every window: each file goes through two packed windows, then
    its own, and is handed over once, with its own transcript."""
    monkeypatch.setattr(engine, "assign_to_pieces", lambda segments, spans: [None] * len(spans))
    chunks: list[object] = []
    queue_chunk = engine._Engine._queue_chunk
    monkeypatch.setattr(
        engine._Engine,
        "_queue_chunk",
        lambda self, file, *a, **k: (chunks.append(file.key), queue_chunk(self, file, *a, **k))[1],
    )
    audios = [_tone(seconds, seed) for seed, seconds in enumerate([3.0, 4.5, 2.0, 6.0])]
    results = list(tiny_model.transcribe_many(audios, language="en", batch_size=4, **FAST))
    assert sorted(id(audio) for audio, _ in results) == sorted(id(audio) for audio in audios)
    packed = sum(count for count in packed_windows if count > 1)
    assert packed == 2 * len(audios)  # each file packed twice
    assert sorted(chunks) == list(range(len(audios)))  # then each alone, once
    assert all(not isinstance(result, Exception) for _, result in results)


@pytest.mark.parametrize("speech_left", [False, True])
def test_a_chunks_rest_is_decoded_only_if_it_holds_speech(
    tiny_model, chunks_everywhere, monkeypatch, speech_left
):
    """A window that closes its last segment a few frames short of its chunk's end leaves a
    sliver: decoded as a window of its own only when voice activity detection hears enough
    speech in it (else the model makes words up over the padding)."""
    from whisper_cli.audio.vad import SpeechDetector

    windows: list[tuple[int, int]] = []

    def decoded(model, chunk, size, *args):
        windows.append((chunk.index, chunk.seek))
        chunk.seek = chunk.end - 7 if len(windows) == 1 else chunk.end

    monkeypatch.setattr(engine, "chunk_window_decoded", decoded)
    monkeypatch.setattr(SpeechDetector, "has_speech", lambda self, start, n: speech_left)
    audio = _tone(engine.PACK_SECONDS + 4, 5)  # one chunk, too long to be packed
    [(_, transcript)] = tiny_model.transcribe_many([audio], language="en", batch_size=2, **FAST)
    assert not isinstance(transcript, Exception)
    assert windows == [(0, 50)] + ([(0, round(len(audio) / SAMPLE_RATE * 100) - 7)] * speech_left)


def test_eager_packs_the_files_read_together(tiny_model, chunks_everywhere, packed_windows):
    """Items that arrive over time (a server's requests): those already read when the model
    is free are packed into one window, not decoded one by one as each is taken."""
    import queue

    from whisper_cli.whisper.transcribe import read_samples

    arrivals: queue.Queue = queue.Queue()
    for seed, seconds in enumerate([3.0, 2.5, 4.0]):
        arrivals.put((seed, _tone(seconds, seed)))

    def items():
        while (item := arrivals.get()) is not None:
            yield item

    options = TranscribeOptions.from_kwargs(language="en", batch_size=4, **FAST)
    stream = engine.transcribe_files(tiny_model, items(), options, read_samples, eager=True)
    first = next(stream)  # decoded while the items still wait for more
    arrivals.put(None)
    done = [first, *stream]
    assert sorted(d.key for d in done) == [0, 1, 2]
    assert all(d.error is None for d in done)
    assert packed_windows[0] == 3


def test_a_bad_file_in_the_middle_is_its_own_failure(tiny_model, chunks_everywhere, tmp_path):
    import soundfile as sf

    good = tmp_path / "good.wav"
    sf.write(good, _tone(3.0, 1), SAMPLE_RATE)
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio at all" * 100)
    inputs = [str(good), str(bad), _tone(2.0, 2)]
    results = list(tiny_model.transcribe_many(inputs, language="en", batch_size=2, **FAST))
    assert len(results) == 3
    outcome = {
        index: next(r for a, r in results if a is audio) for index, audio in enumerate(inputs)
    }
    assert isinstance(outcome[1], AudioError) and "bad.wav" in str(outcome[1])
    assert not isinstance(outcome[0], Exception) and not isinstance(outcome[2], Exception)


def test_batch_size_one_is_transcribe_one_after_another(tiny_model):
    audios = [_tone(2.0, 3), _tone(3.0, 4)]
    many = [result for _, result in tiny_model.transcribe_many(audios, language="en", **FAST)]
    assert many == [tiny_model.transcribe(audio, language="en", **FAST) for audio in audios]


def test_each_file_detects_its_own_language(tiny_model, chunks_everywhere, monkeypatch):
    import whisper_cli.whisper.transcribe as transcribe_module

    # tones hold no speech: detect alone on their first 30 s all the same
    monkeypatch.setattr(transcribe_module, "speech_window", lambda detector: (0, 3000))
    audios = [_tone(3.0, 5), _tone(2.5, 6)]
    many = dict(
        (id(audio), result)
        for audio, result in tiny_model.transcribe_many(audios, batch_size=2, **FAST)
    )
    for audio in audios:
        alone = tiny_model.detect_language(audio)
        assert many[id(audio)].language in alone


# ---------------------------------------------------------------------------------------------
# real speech


def _short_english(manifest):
    return [
        e
        for e in manifest
        if e["language"] == "en" and e["expect"] == "speech" and e["category"] != "longform"
    ]


@pytest.mark.real_model
@pytest.mark.parametrize("language", ["en", None])
def test_a_folder_of_short_files_keeps_each_files_words(real_model, audio_dir, manifest, language):
    """Packed (with --language) or batched across files (without), each file's transcript is
    about as good as alone (at most a few words worse), the folder as a whole within 5 points
    of WER (words sent to the wrong file would cost far more), and times stay within the
    file."""
    import jiwer
    from whisper_normalizer.english import EnglishTextNormalizer

    normalize = EnglishTextNormalizer()
    entries = _short_english(manifest)
    assert len(entries) >= 6
    paths = [str(audio_dir / e["file"]) for e in entries]
    options = {"language": language} if language else {}
    many = dict(real_model.transcribe_many(paths, batch_size=8, **options))
    totals = {"many": 0, "alone": 0, "words": 0}
    for entry, path in zip(entries, paths, strict=True):
        transcript = many[path]
        assert not isinstance(transcript, Exception), transcript
        alone = real_model.transcribe(path, **options)
        reference = normalize(entry["text"])
        errors = {}
        for name, text in (("many", transcript.text), ("alone", alone.text)):
            measure = jiwer.process_words(reference, normalize(text) or "-")
            errors[name] = measure.substitutions + measure.deletions + measure.insertions
            totals[name] += errors[name]
        totals["words"] += len(reference.split())
        assert errors["many"] <= errors["alone"] + 3, (entry["file"], transcript.text, alone.text)
        assert transcript.language == "en"
        for segment in transcript.segments:
            assert 0 <= segment.start <= segment.end <= transcript.duration + 1e-6
    assert totals["many"] <= totals["alone"] + 0.05 * totals["words"], totals


@pytest.mark.real_model
def test_files_that_repeat_each_other_share_a_window(real_model, audio_dir, monkeypatch):
    """Repetition is judged on each file's own text, not on the packed window's: two files of
    the same sentence (a prompt read by two speakers) take one encoder pass together, where
    the window's text, the sentence twice, is too repetitive by the window's measure, and
    each gets the words it gets alone (within a word or two: packed, the second copy is heard
    after the first, and another CPU's products may tip a word)."""
    import jiwer

    from whisper_cli.whisper.model import AudioEncoder

    passes = []
    forward = AudioEncoder.forward
    monkeypatch.setattr(AudioEncoder, "forward", lambda *a: (passes.append(1), forward(*a))[1])
    path = str(audio_dir / "en_ls_1995-1837-0001.wav")
    alone = real_model.transcribe(path, language="en").text
    passes.clear()
    many = [t for _, t in real_model.transcribe_many([path, path], language="en", batch_size=8)]
    assert len(passes) == 1
    for transcript in many:
        measure = jiwer.process_words(alone.lower(), transcript.text.lower())
        assert measure.substitutions + measure.deletions + measure.insertions <= 2, transcript.text


def test_a_piece_is_repetitive_by_its_own_text(tiny_model):
    options = TranscribeOptions.from_kwargs(language="en", batch_size=2)
    parts = engine._Engine(tiny_model, options)
    tokenizer = tiny_model.tokenizer
    once = PendingSegment(0, 0.0, 5.0, tokenizer.encode(" The sound of rain on the roof."), [])
    again = PendingSegment(0, 0.0, 9.0, tokenizer.encode(" again and" * 30), [])
    assert not parts._repetitive([once, once])  # two sentences of its own: judged as one text
    assert parts._repetitive([once, again])
    unchecked = engine._Engine(tiny_model, replace(options, compression_ratio_threshold=None))
    assert not unchecked._repetitive([again])
