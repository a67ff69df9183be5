"""The long-form algorithm: window splitting as units, and whole transcripts against the
reference implementation's on the real base weights (tests/reference/*.json)."""

import functools
import json

import numpy as np
import pytest

from tests.conftest import load_reference
from whisper_cli.audio import load_audio
from whisper_cli.errors import OptionsError
from whisper_cli.options import TranscribeOptions, parse_clip_timestamps
from whisper_cli.whisper.transcribe import transcribe_stream
from whisper_cli.whisper.window import decode_with_fallback, split_window

BEGIN = 1000  # timestamp_begin in the splitting tests


def _split(tokens, seek=0, segment_size=3000):
    return split_window(
        tuple(tokens), BEGIN, seek, seek / 100, segment_size / 100, segment_size, 0.02, 2
    )


def test_window_ending_on_a_single_timestamp_is_consumed_whole():
    segments, single_ending, advance = _split(
        [BEGIN, 5, 6, BEGIN + 100, BEGIN + 100, 7, BEGIN + 250]
    )
    assert single_ending and advance == 3000
    assert [(s.start, s.end) for s in segments] == [(0.0, 2.0), (2.0, 5.0)]
    assert segments[1].tokens == [BEGIN + 100, 7, BEGIN + 250]


def test_window_with_cut_off_speech_seeks_to_the_last_complete_timestamp():
    tokens = [BEGIN, 5, BEGIN + 100, BEGIN + 100, 7, 8]  # the last segment never closed
    segments, single_ending, advance = _split(tokens, seek=500)
    assert not single_ending
    assert [(s.start, s.end) for s in segments] == [(5.0, 7.0)]
    assert advance == 200  # frames up to <|2.00|>; the rest is decoded again


def test_window_without_timestamp_pairs_is_one_segment():
    segments, _, advance = _split([BEGIN, 5, 6, BEGIN + 40], segment_size=1200)
    assert [(s.start, s.end) for s in segments] == [(0.0, 0.8)]
    assert advance == 1200
    segments, _, _ = _split([5, 6], segment_size=1200)
    assert [(s.start, s.end) for s in segments] == [(0.0, 12.0)]


def test_flat_options_map_onto_the_dataclasses():
    options = TranscribeOptions.from_kwargs(
        temperature=0.0, beam_size=5, language="de", word_timestamps=True, clip_timestamps="1,5"
    )
    assert options.temperatures == (0.0,)
    assert options.decoding.beam_size == 5 and options.decoding.language == "de"
    assert options.word_timestamps and options.clip_timestamps == (1.0, 5.0)
    assert TranscribeOptions.from_kwargs(temperature=(0.0, 0.5)).temperatures == (0.0, 0.5)
    with pytest.raises(OptionsError, match="unknown transcription option"):
        TranscribeOptions.from_kwargs(beam=5)
    with pytest.raises(OptionsError):
        parse_clip_timestamps("1,x")


def test_clips_limit_what_is_transcribed(tiny_model):
    audio = np.random.default_rng(0).normal(0, 0.1, 16000 * 8).astype(np.float32)
    transcript = tiny_model.transcribe(
        audio,
        temperature=0.0,
        sample_len=30,
        clip_timestamps=(2.0, 4.0),
        language="en",
        skip_silent_windows=False,  # noise holds no speech
    )
    assert transcript.segments
    assert all(200 <= s.seek < 400 for s in transcript.segments)
    assert all(2.0 <= s.start <= s.end for s in transcript.segments)


def test_progress_reaches_the_duration(tiny_model):
    audio = np.zeros(16000 * 3, dtype=np.float32)
    reports = []
    tiny_model.transcribe(
        audio,
        progress=lambda done, total: reports.append((done, total)),
        temperature=0.0,
        sample_len=10,
        language="en",
    )
    assert reports and reports[-1] == (3.0, 3.0)
    assert [d for d, _ in reports] == sorted(d for d, _ in reports)


def test_each_window_gives_back_what_the_last_one_freed(tiny_model, monkeypatch):
    """Before a window is encoded, and once a decoding's caches are built, freed memory goes
    back to the system (`memory.release_freed_memory`)."""
    from whisper_cli import memory
    from whisper_cli.whisper.decoding import DecodingTask

    events = []
    monkeypatch.setattr(memory, "_malloc_trim", lambda: lambda pad: events.append("release"))
    model = tiny_model.model
    for module, name in [(model.encoder, "forward"), (model.decoder, "new_cache")]:
        original = getattr(module, name)
        monkeypatch.setattr(
            module, name, lambda *a, _f=original, _n=name: events.append(_n) or _f(*a)
        )
    run = DecodingTask.run
    monkeypatch.setattr(DecodingTask, "run", lambda *a: (run(*a), events.append("decoded"))[0])
    audio = np.random.default_rng(5).normal(0, 0.1, 16000 * 70).astype(np.float32)
    tiny_model.transcribe(
        audio, temperature=0.0, sample_len=4, language="en", skip_silent_windows=False
    )
    assert events.count("forward") >= 3  # 70 s: three windows at least
    # every encoding starts from a release, none of them from a decoding's leftovers
    assert events[0] == "release"
    assert "decoded forward" not in " ".join(events)
    assert " ".join(events).count("new_cache release") == events.count("new_cache")


def test_fallback_goes_on_from_a_first_result_already_decoded(tiny_model, monkeypatch):
    import torch

    from whisper_cli.whisper.decoding import DecodingOptions, DecodingResult, DecodingTask

    runs = []
    original = DecodingTask.run
    monkeypatch.setattr(
        DecodingTask,
        "run",
        lambda self, *a: runs.append(self.options.temperature) or original(self, *a),
    )
    mel = torch.randn(1, 80, 3000, generator=torch.Generator().manual_seed(2))
    features = tiny_model.model.encoder(mel)
    options = TranscribeOptions(
        decoding=DecodingOptions(language="en", sample_len=8), temperatures=(0.0, 0.5)
    )
    fine = DecodingResult("en", (1, 2), "words", -0.2, -0.6, 0.0, 0.0, 1.0)
    assert decode_with_fallback(tiny_model, features, options.decoding, options, first=fine) == (
        fine,
        False,
    )
    assert runs == []  # acceptable: nothing decoded
    unsure = DecodingResult("en", (1, 2), "words", -3.0, -9.0, 0.0, 0.0, 1.0)
    decode_with_fallback(tiny_model, features, options.decoding, options, first=unsure)
    assert runs == [0.5]  # only the next temperature
    decode_with_fallback(tiny_model, features, options.decoding, options)
    assert runs == [0.5, 0.0, 0.5] or runs == [0.5, 0.0]


def test_hallucination_threshold_needs_word_timestamps(tiny_model):
    with pytest.raises(OptionsError, match="needs word_timestamps"):
        tiny_model.transcribe(np.zeros(16000, np.float32), hallucination_silence_threshold=2.0)


# ---------------------------------------------------------------------------------------------
# real weights


def assert_well_formed(transcript, duration):
    starts = [s.start for s in transcript.segments]
    assert starts == sorted(starts)
    for segment in transcript.segments:
        assert 0 <= segment.start <= segment.end <= duration + 0.02, segment
        for word in segment.words or ():
            assert 0 <= word.start <= word.end <= duration + 0.02, word
    assert transcript.text == "".join(s.text for s in transcript.segments)


def _texts(segments):
    return [s["text"] if isinstance(s, dict) else s.text for s in segments if _text(s).strip()]


def _text(segment):
    return segment["text"] if isinstance(segment, dict) else segment.text


def _compare_segments(ours, reference, name, duration):
    """Texts equal, times within 0.1 s; the reference's times clamped to the audio as ours
    are (it can place a last timestamp in the padding after the end)."""
    theirs = [s for s in reference["segments"] if s["text"].strip()]
    assert [s.text for s in ours.segments] == [s["text"] for s in theirs], name
    for mine, expected in zip(ours.segments, theirs, strict=True):
        start, end = min(expected["start"], duration), min(expected["end"], duration)
        assert abs(mine.start - start) <= 0.1, (name, mine.start, expected["start"])
        assert abs(mine.end - end) <= 0.1, (name, mine.end, expected["end"])


def _english_short(reference):
    return {n: e for n, e in reference["files"].items() if e["manifest_language"] == "en"}


@pytest.mark.real_model
def test_short_files_greedy_equal_the_reference(real_model, audio_dir):
    reference = _english_short(load_reference("short_greedy.json"))
    for name, entry in reference.items():
        audio = load_audio(audio_dir / name)
        transcript = real_model.transcribe(audio, temperature=0.0)
        assert transcript.language == "en"
        _compare_segments(transcript, entry["transcribe"], name, len(audio) / 16000)
        assert_well_formed(transcript, len(audio) / 16000)


@functools.cache
def _longform(model, audio_dir, **options):
    audio = load_audio(audio_dir / "en_longform_dev.flac")
    return model.transcribe(audio, **options), len(audio) / 16000


@pytest.mark.real_model
def test_longform_greedy_equals_the_reference(real_model, audio_dir):
    transcript, duration = _longform(real_model, audio_dir, temperature=0.0)
    _compare_segments(transcript, load_reference("longform.json")["greedy"], "longform", duration)
    assert_well_formed(transcript, duration)


def _wer(reference_text: str, hypothesis: str) -> float:
    import jiwer
    from whisper_normalizer.english import EnglishTextNormalizer

    normalise = EnglishTextNormalizer()
    return jiwer.wer(normalise(reference_text), normalise(hypothesis))


@pytest.mark.real_model
def test_longform_with_the_cli_defaults_is_as_accurate_as_the_reference(
    real_model, audio_dir, manifest
):
    truth = next(e["text"] for e in manifest if e["file"] == "en_longform_dev.flac")
    transcript, duration = _longform(real_model, audio_dir, beam_size=5, best_of=5)
    reference = load_reference("longform.json")
    ours, theirs = _wer(truth, transcript.text), _wer(truth, reference["cli_defaults"]["text"])
    print(f"longform WER (beam 5, best of 5, fallback): ours {ours:.4f}, reference {theirs:.4f}")
    assert ours <= theirs + 1e-9
    assert_well_formed(transcript, duration)


def _word_agreement(ours, reference_segments) -> tuple[int, int]:
    mine = [w for s in ours.segments for w in s.words]
    theirs = [w for s in reference_segments for w in s.get("words", [])]
    assert [w.word for w in mine] == [w["word"] for w in theirs]
    close = sum(
        abs(a.start - b["start"]) <= 0.1 and abs(a.end - b["end"]) <= 0.1
        for a, b in zip(mine, theirs, strict=True)
    )
    return close, len(mine)


@pytest.mark.real_model
def test_word_timestamps_agree_with_the_reference(real_model, audio_dir):
    close = total = 0
    for name, entry in load_reference("short_words.json")["files"].items():
        audio = load_audio(audio_dir / name)
        transcript = real_model.transcribe(audio, temperature=0.0, word_timestamps=True)
        assert_well_formed(transcript, len(audio) / 16000)
        c, t = _word_agreement(transcript, entry["segments"])
        close, total = close + c, total + t
    transcript, duration = _longform(real_model, audio_dir, temperature=0.0, word_timestamps=True)
    assert_well_formed(transcript, duration)
    c, t = _word_agreement(transcript, load_reference("longform.json")["greedy_words"]["segments"])
    close, total = close + c, total + t
    print(f"words within 0.1 s of the reference: {close}/{total}")
    assert total > 400 and close / total >= 0.95


@pytest.mark.real_model
def test_utterance_boundaries_fall_between_segments(real_model, audio_dir):
    transcript, _ = _longform(real_model, audio_dir, temperature=0.0, word_timestamps=True)
    layout = json.loads((audio_dir / "en_longform_dev.segments.json").read_text())
    utterances = layout["segments"]
    for before, after in zip(utterances, utterances[1:], strict=False):
        pause = (before["end"] + after["start"]) / 2
        straddling = [
            s for s in transcript.segments if s.start < pause - 0.2 and s.end > pause + 0.2
        ]
        assert not straddling, (pause, [(s.start, s.end, s.text) for s in straddling])


@pytest.mark.real_model
def test_silence_noise_and_music_produce_no_segments_and_no_language(
    real_model, audio_dir, manifest
):
    for entry in (e for e in manifest if e["expect"] == "no_speech"):
        transcript = real_model.transcribe(
            load_audio(audio_dir / entry["file"]), beam_size=5, best_of=5
        )
        assert transcript.segments == (), (entry["file"], transcript.text)
        assert transcript.language is None, entry["file"]  # none was heard
        assert transcript.language_probability is None, entry["file"]


@pytest.mark.real_model
def test_other_languages_and_formats_equal_the_reference(real_model, audio_dir):
    """Opus, MP3 at 32 kHz, and the other languages, greedy, against the reference's text."""
    reference = load_reference("short_greedy.json")["files"]
    others = {n: e for n, e in reference.items() if e["manifest_language"] != "en"}
    assert {"es_mls_13697_11991_000000.opus", "ja_cv_24511055.mp3"} <= set(others)
    for name, entry in others.items():
        audio = load_audio(audio_dir / name)
        transcript = real_model.transcribe(audio, temperature=0.0)
        assert transcript.language == entry["manifest_language"], name
        assert transcript.text == entry["transcribe"]["text"], name


@pytest.mark.real_model
def test_an_m4a_made_from_a_dev_file_transcribes_like_it(real_model, audio_dir, tmp_path):
    av = pytest.importorskip("av", reason="PyAV (the [av] extra) is a test dependency")
    source = audio_dir / "en_ls_1995-1837-0001.wav"
    audio = load_audio(source)
    m4a = tmp_path / "speech.m4a"
    with av.open(str(m4a), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        stream.layout = "mono"
        samples = (audio * 32767).astype(np.int16)
        for start in range(0, len(samples), 1024):
            frame = av.AudioFrame.from_ndarray(samples[None, start : start + 1024], "s16", "mono")
            frame.rate = 16000
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    wav_text = real_model.transcribe(audio, temperature=0.0).text
    m4a_text = real_model.transcribe(str(m4a), temperature=0.0).text
    assert _wer(wav_text, m4a_text) <= 0.05, (wav_text, m4a_text)


@pytest.mark.real_model
def test_language_detection_over_several_windows_skips_an_opening_without_speech(
    real_model, audio_dir
):
    music = load_audio(audio_dir / "music_brahms_hungarian_dance_5.flac")[: 30 * 16000]
    speech = load_audio(audio_dir / "es_pv_A.wav")
    audio = np.concatenate([music, speech, speech])
    info, _ = transcribe_stream(
        real_model, audio, TranscribeOptions.from_kwargs(language_detection_windows=3)
    )
    assert info.language == "es"
