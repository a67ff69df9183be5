"""Recordings without speech: no text, no language, a notice; and the language of a recording
that opens without speech detected where the speech is.

The animal recording (tests/data/animal_pig_cc0.flac, see tests/data/README.md) is a grunt
that Silero VAD takes for 0.7 s of speech, over which the model, fairly sure there is no
speech (0.67), wrote "I don't know, I don't know, I don't know." with the reference's rules.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.test_cli import errors, fast, invoke, tone
from whisper_cli.audio import load_audio
from whisper_cli.audio.vad import CHUNK, SpeechDetector
from whisper_cli.constants import N_FRAMES
from whisper_cli.options import TranscribeOptions
from whisper_cli.whisper.decoding import DecodingResult
from whisper_cli.whisper.timing import PendingSegment
from whisper_cli.whisper.transcribe import speech_window, transcribe_stream
from whisper_cli.whisper.window import MAX_TOKENS_PER_SECOND, is_silent, shown_text

DATA = Path(__file__).resolve().parent / "data"
PER_SECOND = 16000 / CHUNK  # speech probabilities a second


def _detector(voiced_seconds: list[tuple[float, float]], duration: float) -> SpeechDetector:
    """A detector that has heard speech in those (start, end) seconds, and silence elsewhere."""
    probabilities = np.zeros(int(duration * PER_SECOND))
    for start, end in voiced_seconds:
        probabilities[int(start * PER_SECOND) : int(end * PER_SECOND)] = 0.9
    detector = SpeechDetector()
    detector.probabilities = probabilities.tolist()
    return detector


# ---------------------------------------------------------------------------------------------
# the rules, without a model


def test_a_segment_of_punctuation_only_is_not_shown(tiny_model):
    tokenizer = tiny_model.tokenizer
    begin = tokenizer.timestamp_begin

    def segment(text: str) -> PendingSegment:
        return PendingSegment(0, 0.0, 7.0, [begin, *tokenizer.encode(text), begin + 350])

    for text in (".", " ...", " - !", " ♪"):
        assert shown_text(segment(text), tokenizer) is None, text
    assert shown_text(segment(" a."), tokenizer) == " a."
    assert shown_text(segment(" 5"), tokenizer) == " 5"


def test_a_window_is_silent_when_its_text_is_more_than_the_speech_heard_could_carry():
    options = TranscribeOptions()
    # the model leans to silence but is sure of its text: the reference keeps it
    result = DecodingResult("en", avg_logprob=-0.98, no_speech_prob=0.67)
    assert not is_silent(result, options)
    assert is_silent(result, options, 0.67, 15)  # 15 tokens over 0.67 s of voice
    assert not is_silent(result, options, 0.67, 3)  # "Oh no." fits
    assert not is_silent(result, options, 15 / MAX_TOKENS_PER_SECOND + 0.1, 15)
    # the model hears speech: whatever the detector says
    assert not is_silent(DecodingResult("en", avg_logprob=-0.5, no_speech_prob=0.1), options, 0, 9)
    # the reference's rule holds as before
    unsure = DecodingResult("en", avg_logprob=-1.3, no_speech_prob=0.7)
    assert is_silent(unsure, options) and is_silent(unsure, options, 30.0, 5)


def test_first_speech_passes_over_a_click_to_where_speech_starts():
    detector = _detector([(2.0, 2.1), (40.0, 45.0)], 60.0)  # a click, then speech
    start = detector.first_speech(N_FRAMES)
    assert start is not None and abs(start / 100 - 40.0) <= 0.05
    assert _detector([(2.0, 2.1)], 60.0).first_speech(N_FRAMES) is None
    assert _detector([], 60.0).first_speech(N_FRAMES) is None


def test_the_language_is_detected_on_the_first_30_s_if_they_hold_speech_else_where_it_starts():
    assert speech_window(_detector([(25.0, 31.0)], 60.0)) == (0, N_FRAMES)  # the reference's
    start, length = speech_window(_detector([(35.0, 40.0)], 60.0))
    assert abs(start / 100 - 35.0) <= 0.05 and length == N_FRAMES
    assert speech_window(_detector([], 60.0)) is None


# ---------------------------------------------------------------------------------------------
# the command line, with the tiny random-weight model


def _detecting(model: Path) -> list[str]:
    """`fast` without the language, and with the voice gate on (the default)."""
    options = fast(model)
    return [o for o in options if o not in ("--no-skip-silent-windows", "-l", "en")]


def test_a_file_without_speech_gets_its_empty_outputs_and_a_notice(tmp_path, tiny_checkpoint):
    audio = tone(tmp_path / "a.wav", seconds=3.0)  # no voice: every window is skipped
    out = tmp_path / "out"
    result = invoke("transcribe", *_detecting(tiny_checkpoint), audio, "-f", "srt,json", "-o", out)
    assert result.exit_code == 0, result.output
    assert (out / "a.srt").read_text() == ""
    record = json.loads((out / "a.json").read_text())
    assert record["segments"] == [] and record["language"] is None
    assert "language_probability" not in record
    assert f"{audio}: no speech found" in result.stderr.splitlines()

    result = invoke("transcribe", *_detecting(tiny_checkpoint), audio, "-o", out, "-q", "-f", "txt")
    assert result.exit_code == 0 and result.stderr == ""

    result = invoke("transcribe", *_detecting(tiny_checkpoint), audio, "-f", "srt", "--stdout")
    assert result.exit_code == 0 and result.stdout == ""
    assert f"{audio}: no speech found" in result.stderr.splitlines()


def test_files_without_speech_batched_together_get_the_notice_and_no_language(
    tmp_path, tiny_checkpoint
):
    folder = tmp_path / "in"
    a, b = tone(folder / "a.wav", seconds=2.0), tone(folder / "b.wav", seconds=3.0)
    out = tmp_path / "out"
    options = [*_detecting(tiny_checkpoint), "--batch-size", "2"]
    result = invoke("transcribe", *options, folder, "-f", "json", "-o", out)
    assert result.exit_code == 0, result.output
    for audio in (a, b):
        record = json.loads((out / f"{audio.stem}.json").read_text())
        assert record["segments"] == [] and record["language"] is None
        assert f"{audio}: no speech found" in result.stderr.splitlines()


def test_detect_language_says_none_for_a_file_without_speech(tmp_path, tiny_checkpoint):
    silent, speech = tone(tmp_path / "a.wav"), tone(tmp_path / "b.wav")
    model = ["-m", tiny_checkpoint, "--threads", "1"]
    result = invoke("detect-language", *model, silent)
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{silent}\tnone\n"
    assert f"{silent}: no speech found" in result.stderr.splitlines()
    assert not errors(result.stderr)

    result = invoke("detect-language", *model, silent, "--json", "--top", "3")
    record = json.loads(result.stdout)
    assert record == {"file": str(silent), "language": None, "probability": None, "top": []}

    result = invoke("detect-language", *model, silent, speech, "-q")
    assert result.exit_code == 0 and result.stderr == ""
    assert result.stdout.splitlines() == [f"{silent}\tnone", f"{speech}\tnone"]


def test_an_uncertain_language_is_warned_of(tmp_path, tiny_checkpoint, monkeypatch):
    """The tiny model's random weights give every language about the same probability."""
    import whisper_cli.whisper.transcribe as transcribe_module

    monkeypatch.setattr(transcribe_module, "speech_window", lambda detector: (0, N_FRAMES))
    audio = tone(tmp_path / "a.wav")
    result = invoke("detect-language", "-m", tiny_checkpoint, "--threads", "1", audio)
    assert result.exit_code == 0, result.output
    code, probability = result.stdout.split("\t")[1:]
    assert float(probability) < 0.5
    assert f"warning: {audio}: the language is uncertain" in result.stderr

    options = [o for o in fast(tiny_checkpoint) if o not in ("-l", "en")]  # every window decoded
    result = invoke("transcribe", *options, audio, "-f", "json", "--stdout")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["segments"]  # garbage, but text
    assert f"warning: {audio}: the language is uncertain" in result.stderr
    result = invoke("transcribe", *fast(tiny_checkpoint), audio, "-f", "json", "--stdout")
    assert "uncertain" not in result.stderr  # given, not detected


# ---------------------------------------------------------------------------------------------
# the real base model


def _cli_defaults() -> TranscribeOptions:
    return TranscribeOptions.from_kwargs(beam_size=5, best_of=5)


def _transcribe(model, path: Path):
    return model.collect(*transcribe_stream(model, load_audio(path), _cli_defaults()))


@pytest.mark.real_model
def test_a_grunt_taken_for_speech_gives_no_text(real_model):
    transcript = _transcribe(real_model, DATA / "animal_pig_cc0.flac")
    assert transcript.segments == (), transcript.text


@pytest.mark.real_model
def test_files_without_speech_transcribed_together_have_no_language(real_model, audio_dir):
    paths = [str(DATA / "animal_pig_cc0.flac"), str(audio_dir / "silence_30s.wav")]
    speech = str(audio_dir / "en_ls_251-137823-0002.wav")
    many = dict(real_model.transcribe_many([*paths, speech], batch_size=4, beam_size=5, best_of=5))
    for path in paths:
        assert many[path].segments == () and many[path].language is None, path
        assert many[path].language_probability is None, path
    assert many[speech].language == "en" and many[speech].segments


@pytest.mark.real_model
def test_a_silent_opening_does_not_decide_the_language(real_model, audio_dir):
    speech = load_audio(audio_dir / "de_pv_A.wav")
    audio = np.concatenate([np.zeros(35 * 16000, np.float32), speech])
    info, segments = transcribe_stream(real_model, audio, _cli_defaults())
    assert info.language == "de" and info.language_probability > 0.9
    text = "".join(s.text for s in segments)
    assert "Portal" in text and "genutzt" in text, text  # German, not an English sentence
    probabilities = real_model.detect_language(audio)
    assert next(iter(probabilities)) == "de" and probabilities["de"] > 0.9
    assert real_model.detect_language(np.zeros(35 * 16000, np.float32)) == {}


@pytest.mark.real_model
def test_recordings_that_open_with_speech_keep_the_reference_language(real_model, audio_dir):
    """The language and its probability as the reference's, on its first 30 s."""
    from tests.conftest import load_reference

    reference = load_reference("language.json")["files"]
    for name, expected in reference.items():
        probabilities = real_model.detect_language(str(audio_dir / name))
        assert next(iter(probabilities)) == expected["detected"], name
        for code, probability in expected["top5"]:
            assert probabilities[code] == pytest.approx(probability, abs=2e-3), (name, code)
    name = "es_pv_A.wav"
    info, _ = transcribe_stream(real_model, load_audio(audio_dir / name), _cli_defaults())
    expected = reference[name]["top5"][0]
    assert info.language == expected[0]
    assert info.language_probability == pytest.approx(expected[1], abs=2e-3)
