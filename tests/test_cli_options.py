"""The command line as a new user meets it (issue 21): nonsense values refused, language tags,
the English-only warning, help readable at 80 columns, plain usage errors off a terminal,
progress that stays out of the transcript's way, and openai-whisper's option spellings.

The options tests stop before the model loads (`run_transcription` is replaced), so they see
exactly what the command line turned the arguments into; the terminal tests run the program
on a pseudo-terminal.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from tests.test_cli import CLI, fast, invoke, run, tone
from whisper_cli import _docs
from whisper_cli.cli.app import app
from whisper_cli.cli.compat import ALIASES, openai_verbose
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

    def fake_run(
        task, inputs, include, exclude, settings, options, plan, ui, shard=None, cluster=None
    ):
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
    lines = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(lines) == 1 and args[0] in lines[0], result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav"]


def test_serve_pack_needs_batches(tmp_path):
    result = invoke("serve", "-m", tmp_path / "no-model", "--pack", "--batch-size", "1")
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(lines) == 1 and "--pack" in lines[0] and "--batch-size" in lines[0]


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


# ---------------------------------------------------------------------------------------------
# 2. help at 80 columns, usage errors, progress on a terminal


def _visible_names(command_name: str) -> list[str]:
    group = typer.main.get_command(app)
    command = group.commands[command_name]
    return [
        name
        for param in command.params
        if param.param_type_name == "option" and not param.hidden
        for name in (*param.opts, *param.secondary_opts)
    ]


@pytest.mark.parametrize("command", ["transcribe", "detect-language"])
def test_help_at_80_columns_shows_every_option_name_whole(command):
    text = invoke(command, "--help", env={"COLUMNS": "80"}).stdout
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "…" not in re.sub(r"\(.*?….*?\)|, …|… ", "", text)  # no name cut short
    for name in _visible_names(command):
        assert re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text), name


def test_usage_error_is_plain_when_stderr_is_not_a_terminal(tmp_path):
    result = invoke("transcribe", "--temperature", "5", tone(tmp_path / "a.wav"))
    assert result.exit_code == 2
    assert "╭" not in result.stderr and "│" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("Usage: whisper-cli transcribe ")
    assert lines[-1] == (
        "Error: Invalid value for '--temperature': 5.0 is not in the range 0.0<=x<=1.0."
    )
    result = run(["transcribe", "--no-such-option", "a.wav"])  # the program, on a pipe
    assert result.returncode == 2 and "╭" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == "Error: No such option: --no-such-option"
    result = run(["no-such-command"])
    assert result.returncode == 2 and "╭" not in result.stderr
    assert "Error: No such command 'no-such-command'." in result.stderr


def on_a_terminal(args: list[str], columns: int = 100, timeout: float = 240) -> tuple[str, int]:
    """Run the program with standard output and error on one pseudo-terminal: the text the
    terminal received (escape sequences removed), and the exit status."""
    pty = pytest.importorskip("pty")
    import fcntl
    import select
    import struct
    import termios

    primary, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "NO_COLOR")}
    env |= {"TERM": "xterm-256color"}
    process = subprocess.Popen(
        [*CLI, *args], stdin=subprocess.DEVNULL, stdout=secondary, stderr=secondary, env=env
    )
    os.close(secondary)
    received = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([primary], [], [], 1.0)
            if not ready:
                if process.poll() is not None:
                    break
                continue
            try:
                data = os.read(primary, 65536)
            except OSError:  # EIO: every writer closed the terminal
                break
            if not data:
                break
            received.append(data)
        status = process.wait(timeout=60)
    finally:
        process.kill()
        os.close(primary)
    text = b"".join(received).decode("utf-8", errors="replace")
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text), status  # without colours and cursor moves


def test_usage_error_on_a_terminal_keeps_typer_box():
    output, status = on_a_terminal(["transcribe", "--temperature", "5", "a.wav"])
    assert status == 2 and "╭" in output and "--temperature" in output


def test_no_progress_over_a_transcript_on_the_same_terminal(tmp_path, tiny_checkpoint):
    a, b = tone(tmp_path / "a.wav", seconds=1.5), tone(tmp_path / "b.wav", seconds=1.5)
    args = ["transcribe", *map(str, fast(tiny_checkpoint)), str(a), str(b), "-f", "json"]
    output, status = on_a_terminal([*args, "-o", str(tmp_path)])
    assert status == 0, output
    assert "RTF" in output, "the bars are drawn when the transcripts go to files"
    output, status = on_a_terminal([*args, "--stdout"])
    assert status == 0, output
    assert "RTF" not in output and "2 files" not in output
    records = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert [Path(r["path"]).name for r in records] == ["a.wav", "b.wav"]


def test_progress_leaves_room_for_an_echoed_ctrl_c():
    """A terminal echoes `^C`; on a full-width last line it wraps onto a new line and the
    transient bars, cleared from where the cursor is, would stay on screen."""
    from rich.console import Console, Group
    from rich.segment import Segment

    from whisper_cli.cli.ui import _rich_progress

    console = Console(width=60, file=io.StringIO(), force_terminal=True)
    bars = _rich_progress(console)
    bars.add_task("a-very-long-folder-name/" * 5 + "talk.flac", total=100.0)
    bars.add_task("2 files", total=200.0)
    lines = console.render_lines(Group(*bars.get_renderables()), pad=False)
    assert lines and max(Segment.get_line_length(line) for line in lines) <= 60 - 2


# ---------------------------------------------------------------------------------------------
# 3. openai-whisper's spellings; 4. --vad


OPENAI_COMMAND_LINE = """
    --model_dir models --output_dir out --output_format srt --verbose False --task transcribe
    --language English --temperature 0 --best_of 3 --beam_size 2 --patience 1.5
    --length_penalty 0.5 --suppress_tokens -1,220 --initial_prompt Hello.
    --carry_initial_prompt True --condition_on_previous_text False --fp16 False
    --temperature_increment_on_fallback None --compression_ratio_threshold 2.0
    --logprob_threshold None --no_speech_threshold 0.5 --word_timestamps True
    --prepend_punctuations ¿ --append_punctuations . --highlight_words True --max_line_width 40
    --max_line_count 2 --threads 0 --clip_timestamps 1,20
    --hallucination_silence_threshold 2
""".split()


def test_openai_whisper_command_line_means_the_same(captured):
    seen = parse(captured, *OPENAI_COMMAND_LINE)
    options, settings, plan = seen.options, seen.settings, seen.plan
    assert seen.task == "transcribe" and not seen.ui.verbose
    assert settings.cache_dir == Path("models") and settings.compute_type == "float32"
    assert plan.formats == ("srt",) and plan.output_dir == Path("out")
    decoding = options.decoding
    assert decoding.language == "en" and (decoding.best_of, decoding.beam_size) == (3, 2)
    assert (decoding.patience, decoding.length_penalty) == (1.5, 0.5)
    assert decoding.suppress_tokens == (-1, 220)
    assert options.initial_prompt == "Hello." and options.carry_initial_prompt
    assert not options.condition_on_previous_text
    assert options.temperatures == (0.0,)
    assert options.compression_ratio_threshold == 2.0 and options.logprob_threshold is None
    assert options.no_speech_threshold == 0.5 and options.word_timestamps
    assert (options.prepend_punctuations, options.append_punctuations) == ("¿", ".")
    assert options.clip_timestamps == (1.0, 20.0)
    assert options.hallucination_silence_threshold == 2.0
    writer = plan.writer_options
    assert writer.highlight_words and (writer.max_line_width, writer.max_line_count) == (40, 2)
    seen = parse(captured, "--max_words_per_line", "5")
    assert seen.plan.writer_options.max_words_per_line == 5


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--word_timestamps", "False"], {"word_timestamps": False}),
        (["--condition_on_previous_text", "True"], {"condition_on_previous_text": True}),
        (["--fp16", "True"], {"compute_type": "auto"}),
        (["--fp16", "False", "--compute-type", "int8"], {"compute_type": "int8"}),
        (["--verbose", "True"], {"verbose": True}),
        (["--verbose=True"], {"verbose": True}),
        (["--verbose=False"], {"verbose": False}),
        (["--task", "translate"], {"task": "translate"}),
        (["--no-vad"], {"skip_silent_windows": False}),
        (["--vad"], {"skip_silent_windows": True}),
        ([], {"skip_silent_windows": True, "verbose": False, "task": "transcribe"}),
    ],
)
def test_openai_switches(captured, args, expected):
    seen = parse(captured, *args)
    found = {
        "word_timestamps": seen.options.word_timestamps,
        "condition_on_previous_text": seen.options.condition_on_previous_text,
        "compute_type": seen.settings.compute_type,
        "verbose": seen.ui.verbose,
        "task": seen.task,
        "skip_silent_windows": seen.options.skip_silent_windows,
    }
    assert {name: found[name] for name in expected} == expected


def test_task_transcribe_from_translate(captured):
    assert parse(captured, "--task", "transcribe", command="translate").task == "transcribe"


@pytest.mark.parametrize(
    "args",
    [
        ["--word_timestamps", "maybe"],
        ["--fp16", "maybe"],
        ["--task", "summarise"],
        ["--beam_size", "0"],
        ["--temperature_increment_on_fallback", "-1"],
        ["--clip_timestamps", "5,2"],
        ["--output_format", "docx"],
    ],
)
def test_openai_spellings_are_checked_as_ours(tmp_path, args):
    result = invoke("transcribe", "-m", tmp_path / "no-model", *args, tone(tmp_path / "a.wav"))
    assert result.exit_code == 2, result.output


def test_openai_verbose_rewrite():
    assert openai_verbose(["--verbose", "True", "a.wav"]) == ["--verbose", "a.wav"]
    assert openai_verbose(["a.wav", "--verbose", "False"]) == ["a.wav"]
    assert openai_verbose(["--verbose", "a.wav"]) == ["--verbose", "a.wav"]
    assert openai_verbose(["--", "--verbose", "True"]) == ["--", "--verbose", "True"]


def test_openai_spellings_are_hidden():
    help_text = invoke("transcribe", "--help", env={"COLUMNS": "250"}).stdout
    page = _docs.man_page()
    for alias in [*ALIASES, "--fp16", "--task"]:
        assert alias not in help_text, alias
        assert _docs.escape(alias) not in page, alias
    assert "--vad" in help_text and _docs.escape("--no-vad") in page
    env = {"_WHISPER_CLI_COMPLETE": "complete_bash", "COMP_CWORD": "2"}
    for words in ("whisper-cli transcribe --output", "whisper-cli transcribe --t"):
        result = run([], env={**env, "COMP_WORDS": words})
        assert result.returncode == 0 and result.stdout.split(), words
        assert not [w for w in result.stdout.split() if "_" in w or w in ("--task", "--fp16")]


def test_openai_style_run_writes_its_outputs(tmp_path, tiny_checkpoint):
    """A command line written for openai-whisper, the program's name aside."""
    audio = tone(tmp_path / "talk.wav", seconds=1.5)
    out = tmp_path / "out"
    args = ["--model", str(tiny_checkpoint), "--output_dir", str(out), "--output_format", "json"]
    args += ["--word_timestamps", "True", "--verbose", "False", "--fp16", "False"]
    args += ["--temperature_increment_on_fallback", "None", "--beam_size", "1", "--best_of", "1"]
    args += ["--language", "en", "--task", "transcribe", "--threads", "1", "--no-vad"]
    result = subprocess.run(
        [*CLI, "transcribe", str(audio), *args], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    data = json.loads((out / "talk.json").read_text(encoding="utf-8"))
    assert all("words" in segment for segment in data["segments"])
