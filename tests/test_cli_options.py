"""The command line as a new user meets it (issue 21): nonsense values refused, language tags,
the English-only warning, help readable at 80 columns, plain usage errors off a terminal,
progress that stays out of the transcript's way, and openai-whisper's option spellings.

The options tests stop before the model loads (`run_transcription` is replaced), so they see
exactly what the command line turned the arguments into; the terminal tests run the program
on a pseudo-terminal.
"""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from tests.test_cli import fast, invoke, tone
from whisper_cli.errors import OptionsError
from whisper_cli.options import TranscribeOptions, parse_clip_timestamps, verify
from whisper_cli.whisper.languages import language_code

runner = CliRunner()


class Captured:
    """What `transcribe` handed to the batch runner."""

    task: str
    settings: object
    options: TranscribeOptions
    plan: object
    ui: object


@pytest.fixture
def captured(monkeypatch) -> Captured:
    import whisper_cli.cli.transcribe

    seen = Captured()

    def fake_run(task, inputs, include, exclude, settings, options, plan, ui):
        seen.task, seen.settings, seen.options, seen.plan, seen.ui = (
            task,
            settings,
            options,
            plan,
            ui,
        )

    monkeypatch.setattr(whisper_cli.cli.transcribe, "run_transcription", fake_run)
    return seen


def parse(captured: Captured, *args: str, command: str = "transcribe") -> Captured:
    result = invoke(command, "a.wav", *args)
    assert result.exit_code == 0, result.output
    return captured


# ---------------------------------------------------------------------------------------------
# 1. nonsense refused, tags understood, English-only models warn


@pytest.mark.parametrize(
    "args",
    [
        ["--temperature", "5"],
        ["--temperature", "1.2"],
        ["--temperature-increment-on-fallback", "-0.2"],
        ["--clip-timestamps", "5,2"],
        ["--clip-timestamps", "5,5"],
        ["--clip-timestamps", "0,10,5,20"],  # overlapping
        ["--clip-timestamps", "20,30,0,10"],  # out of order
        ["--clip-timestamps", "0,10,5"],  # the open last clip starts inside the one before
    ],
)
def test_nonsense_is_a_usage_error(tmp_path, args):
    audio = tone(tmp_path / "a.wav")
    result = invoke("transcribe", "-m", tmp_path / "no-model", *args, audio, "-o", tmp_path)
    assert result.exit_code == 2, result.output
    assert args[0] in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav"]


@pytest.mark.parametrize("value", ["1", "1.0", "0.7"])
def test_temperatures_up_to_1_are_fine(captured, value):
    assert parse(captured, "--temperature", value).options.temperatures[0] == float(value)


def test_clips_must_end_after_they_start_and_not_overlap():
    assert parse_clip_timestamps("0,10,10,20,25") == (0, 10, 10, 20, 25)
    for text in ("5,2", "5,5", "0,10,5,20", "0,10,5"):
        with pytest.raises(OptionsError, match="clip"):
            parse_clip_timestamps(text)
    with pytest.raises(OptionsError, match="end after it starts"):
        verify(TranscribeOptions(clip_timestamps=(5.0, 2.0)))
    with pytest.raises(OptionsError, match="overlap"):
        verify(TranscribeOptions(clip_timestamps=(0.0, 10.0, 5.0, 20.0)))


@pytest.mark.parametrize(
    ("tag", "code"),
    [
        ("fr-FR", "fr"),
        ("pt_BR", "pt"),
        ("zh-Hant", "zh"),
        ("zh-Hans-CN", "zh"),
        ("en-US", "en"),
        ("yue-HK", "yue"),
        ("jv-ID", "jw"),
        ("nb-NO", "no"),
        ("DE", "de"),
    ],
)
def test_language_tags_are_their_language(tag, code):
    assert language_code(tag) == code


@pytest.mark.parametrize("tag", ["xx-YY", "english-US", "fr-", "-FR"])
def test_unknown_language_tags(tag):
    with pytest.raises(ValueError):
        language_code(tag)


def test_language_tag_on_the_command_line(captured):
    assert parse(captured, "-l", "fr-FR").options.decoding.language == "fr"


@pytest.mark.parametrize("command", ["transcribe", "translate"])
def test_english_only_model_warns_that_it_ignores_the_language(
    tmp_path, tiny_checkpoint, monkeypatch, command
):
    from whisper_cli.whisper.transcribe import WhisperModel

    monkeypatch.setattr(WhisperModel, "is_multilingual", property(lambda self: False))
    audio = tone(tmp_path / "a.wav")
    args = [*fast(tiny_checkpoint), audio, "-f", "txt", "-o", tmp_path]
    result = invoke(command, *args, "-l", "de")
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if "English-only" in line]
    assert len(warnings) == 1 and "de" in warnings[0] and warnings[0].startswith("warning: ")
    result = invoke(command, *args, "-l", "en")
    assert result.exit_code == 0 and "English-only" not in result.stderr
