"""The command line: options → library options, files and exit codes, signals, start-up cost.

Most tests run the app in-process with Typer's CliRunner on the tiny random-weight checkpoint
(its text is garbage, its structure real), decoding greedily without fallback so each file
takes well under a second. Exit codes on signals, the offline Hub cache and what `--help` and
completion import are checked in real subprocesses. A few tests use the real base model and
recordings (they skip when those are absent).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import typing
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from whisper_cli import __version__
from whisper_cli.cli.app import app
from whisper_cli.cli.detect_language import format_detection
from whisper_cli.cli.options import build_options, temperatures
from whisper_cli.cli.params import ComputeType, parse_optional_float
from whisper_cli.cli.transcribe import cli_names, transcribe
from whisper_cli.hub import MODELS

CLI = [sys.executable, "-m", "whisper_cli"]
ERROR_LINE = re.compile(r"^error: (.+?): (.+)$")

runner = CliRunner()


def tone(path: Path, seconds: float = 1.0, frequency: float = 440.0) -> Path:
    """A short sine wave as a 16 kHz WAV file."""
    t = np.arange(round(seconds * 16000)) / 16000
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, (0.3 * np.sin(2 * np.pi * frequency * t)).astype(np.float32), 16000)
    return path


def fast(model: Path) -> list[str]:
    """Options that keep the tiny model quick: greedy, no fallback, no language detection;
    and every window decoded (a tone holds no speech, so the voice gate would skip it)."""
    return [
        "-m",
        str(model),
        "--no-skip-silent-windows",
        "--threads",
        "1",
        "--beam-size",
        "1",
        "--best-of",
        "1",
        "--temperature-increment-on-fallback",
        "none",
        "-l",
        "en",
    ]


def invoke(*args: str | Path, input: bytes | None = None, env: dict | None = None):
    return runner.invoke(app, [str(a) for a in args], input=input, env=env)


def errors(stderr: str) -> list[tuple[str, str]]:
    return [m.groups() for line in stderr.splitlines() if (m := ERROR_LINE.match(line))]


def run(args: list[str], env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=300,
        **kwargs,
    )


# ---------------------------------------------------------------------------------------------
# parameters → options


def defaults() -> dict[str, typing.Any]:
    """The transcribe command's defaults (nothing given on the command line) for the
    parameters that `build_options` takes."""
    import inspect

    taken = inspect.signature(build_options).parameters
    return {
        name: parameter.default
        for name, parameter in inspect.signature(transcribe).parameters.items()
        if name in taken
    }


def test_build_options_defaults_follow_openai_cli():
    options, writer = build_options("transcribe", **defaults())
    assert options.decoding.task == "transcribe"
    assert options.decoding.language is None
    assert options.decoding.beam_size == 5 and options.decoding.best_of == 5
    assert options.decoding.seed == 0
    assert options.decoding.patience is None and options.decoding.length_penalty is None
    assert options.decoding.suppress_tokens == (-1,)
    assert options.temperatures == pytest.approx((0.0, 0.2, 0.4, 0.6, 0.8, 1.0))
    assert options.compression_ratio_threshold == 2.4
    assert options.logprob_threshold == -1.0
    assert options.no_speech_threshold == 0.6
    assert options.condition_on_previous_text is True
    assert options.word_timestamps is False
    assert options.clip_timestamps == (0.0,)
    assert options.language_detection_windows == 1
    assert writer.needs_words is False


def test_build_options_maps_every_value():
    values = defaults() | {
        "language": "de",
        "temperature": 0.3,
        "temperature_increment_on_fallback": None,
        "compression_ratio_threshold": None,
        "logprob_threshold": None,
        "no_speech_threshold": None,
        "best_of": 3,
        "seed": 42,
        "beam_size": 2,
        "patience": 1.5,
        "length_penalty": 0.5,
        "suppress_tokens": "-1,220",
        "initial_prompt": "Hello.",
        "carry_initial_prompt": True,
        "condition_on_previous_text": False,
        "clip_timestamps": "1.5,3",
        "language_detection_windows": 2,
        "max_line_width": 42,
        "max_line_count": 2,
    }
    options, writer = build_options("translate", **values)
    assert options.decoding.task == "translate" and options.decoding.language == "de"
    assert (options.decoding.best_of, options.decoding.beam_size) == (3, 2)
    assert options.decoding.seed == 42
    assert (options.decoding.patience, options.decoding.length_penalty) == (1.5, 0.5)
    assert options.decoding.suppress_tokens == (-1, 220)
    assert options.temperatures == (0.3,)
    assert options.compression_ratio_threshold is None
    assert options.logprob_threshold is None and options.no_speech_threshold is None
    assert options.initial_prompt == "Hello." and options.carry_initial_prompt
    assert not options.condition_on_previous_text
    assert options.clip_timestamps == (1.5, 3.0)
    assert options.language_detection_windows == 2
    assert (writer.max_line_width, writer.max_line_count) == (42, 2)
    assert options.word_timestamps, "subtitle layout options need word timestamps"


@pytest.mark.parametrize(
    "change",
    [
        {"highlight_words": True},
        {"max_words_per_line": 3},
        {"max_line_width": 30},
        {"word_timestamps": True},
        {"hallucination_silence_threshold": 2.0},
    ],
)
def test_options_that_turn_word_timestamps_on(change):
    options, _ = build_options("transcribe", **(defaults() | change))
    assert options.word_timestamps


def test_build_options_takes_only_known_names():
    with pytest.raises(TypeError):
        build_options("transcribe", **defaults(), beam_sise=3)
    values = defaults()
    del values["beam_size"]
    with pytest.raises(TypeError):
        build_options("transcribe", **values)


def test_temperatures():
    assert temperatures(0.0, 0.2) == pytest.approx((0.0, 0.2, 0.4, 0.6, 0.8, 1.0))
    assert temperatures(0.5, 0.25) == pytest.approx((0.5, 0.75, 1.0))
    assert temperatures(0.4, 0) == (0.4,)
    assert temperatures(0.4, None) == (0.4,)
    assert temperatures(1.5, 0.2) == (1.5,)  # above 1: tried alone, as given
    assert all(type(t) is float for t in temperatures(0.0, 0.2))


def test_parse_optional_float():
    assert parse_optional_float("none") is None
    assert parse_optional_float("None") is None
    assert parse_optional_float("-1.5") == -1.5
    assert parse_optional_float(2.4) == 2.4  # a default, already a number
    with pytest.raises(Exception, match="not a number"):
        parse_optional_float("abc")


def test_cli_names_turns_fields_into_flags():
    assert cli_names("max_line_count needs max_line_width") == (
        "--max-line-count needs --max-line-width"
    )
    message = "the model does not know language 'xx'"
    assert cli_names(message) == message


def test_constants_mirror_the_library():
    from whisper_cli.loading import COMPUTE_TYPES

    assert typing.get_args(ComputeType) == COMPUTE_TYPES


def test_format_detection():
    probabilities = {"de": 0.9, "en": 0.06, "fr": 0.04}
    assert format_detection("a.wav", probabilities, 1, False) == "a.wav\tde\t0.9000"
    assert format_detection("a.wav", probabilities, 2, False) == "a.wav\tde\t0.9000\ten\t0.0600"
    record = json.loads(format_detection("a.wav", probabilities, 2, True))
    assert record == {
        "file": "a.wav",
        "language": "de",
        "probability": 0.9,
        "top": [{"language": "de", "probability": 0.9}, {"language": "en", "probability": 0.06}],
    }


# ---------------------------------------------------------------------------------------------
# help, version, usage errors


def test_version_and_help():
    result = invoke("--version")
    assert result.exit_code == 0 and result.stdout.strip() == f"whisper-cli {__version__}"
    for args in (["--help"], ["-h"], ["transcribe", "-h"], ["models", "download", "-h"]):
        result = invoke(*args)
        assert result.exit_code == 0 and "Usage" in result.stdout, args
    assert "Examples" in invoke("--help").stdout
    result = invoke()  # no arguments: the help
    assert "Usage" in result.stdout + result.stderr


def test_help_lists_panels():
    text = invoke("transcribe", "--help", env={"COLUMNS": "200"}).stdout
    for panel in ("Model", "Decoding", "Fallback", "Prompt", "Word timestamps", "Output"):
        assert f"─ {panel} " in text, panel
    assert "WHISPER_CLI_MODEL" in text


@pytest.mark.parametrize(
    "args",
    [
        ["--beam-size", "0"],
        ["--best-of", "0"],
        ["-f", "xml"],
        ["-f", "srt,docx"],
        ["--stdout"],  # the default is every format
        ["--stdout", "-f", "srt,json"],
        ["--stdout", "-f", "srt", "--skip-existing"],
        ["--language", "klingon"],
        ["--temperature", "-1"],
        ["--temperature-increment-on-fallback", "abc"],
        ["--clip-timestamps", "a,b"],
        ["--suppress-tokens", "x"],
        ["--max-line-count", "2"],  # needs --max-line-width
        ["--patience", "0"],
        ["--length-penalty", "2"],
        ["--quiet", "--verbose"],
        ["--device", "tpu"],
        ["--compute-type", "int4"],
        ["--no-such-option"],
    ],
)
def test_usage_errors_exit_2(tmp_path, args):
    audio = tone(tmp_path / "a.wav")
    result = invoke("transcribe", "-m", tmp_path / "no-model", *args, audio, "-o", tmp_path)
    assert result.exit_code == 2, result.output
    assert "Usage" in result.stderr
    assert not result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav"]


def test_missing_input_argument_exits_2():
    assert invoke("transcribe", "-m", "base", "-f", "txt").exit_code == 2


def test_stdout_with_several_inputs_needs_json(tmp_path):
    a, b = tone(tmp_path / "a.wav"), tone(tmp_path / "b.wav")
    result = invoke("transcribe", "-m", tmp_path / "no-model", "--stdout", "-f", "srt", a, b)
    assert result.exit_code == 2 and "-f json" in result.stderr


def test_stdin_that_is_a_terminal_is_a_usage_error(tmp_path):
    pty = pytest.importorskip("pty")
    primary, secondary = pty.openpty()
    try:
        result = run(["transcribe", "-m", str(tmp_path / "no-model"), "-"], stdin=secondary)
    finally:
        os.close(primary)
        os.close(secondary)
    assert result.returncode == 2, result.stderr
    assert "terminal" in result.stderr


# ---------------------------------------------------------------------------------------------
# transcription with the tiny model

TRANSCRIPT_KEYS = {"text", "segments", "language", "duration", "model"}
SEGMENT_KEYS = {"id", "seek", "start", "end", "text", "tokens", "temperature", "avg_logprob"}
SEGMENT_KEYS |= {"compression_ratio", "no_speech_prob"}


@pytest.mark.parametrize("native", [False, True])
def test_bfloat16_where_the_cpu_emulates_it_is_warned_of(
    tmp_path, tiny_checkpoint, monkeypatch, native
):
    from whisper_cli import loading

    monkeypatch.setattr(loading, "native_bfloat16", lambda: native)
    audio = tone(tmp_path / "talk.wav", seconds=1.0)
    args = ["--compute-type", "bfloat16", "--device", "cpu", "-f", "txt", "--stdout"]
    result = invoke("transcribe", *fast(tiny_checkpoint), *args, audio)
    assert result.exit_code == 0, result.output
    warned = [line for line in result.stderr.splitlines() if "bfloat16 is emulated" in line]
    assert len(warned) == (0 if native else 1)


def test_transcribe_writes_every_format(tmp_path, tiny_checkpoint):
    audio = tone(tmp_path / "in" / "talk.wav", seconds=1.5)
    out = tmp_path / "out" / "new"  # created
    result = invoke("transcribe", *fast(tiny_checkpoint), audio, "-o", out)
    assert result.exit_code == 0, result.output
    assert result.stdout == ""  # data goes to files; messages to standard error
    assert sorted(p.name for p in out.iterdir()) == [
        f"talk.{ext}" for ext in sorted(("txt", "srt", "vtt", "tsv", "json"))
    ]
    assert result.stderr.strip().splitlines()[-1] == "1 transcribed, 0 failed"

    data = json.loads((out / "talk.json").read_text(encoding="utf-8"))
    assert set(data) >= TRANSCRIPT_KEYS
    assert data["language"] == "en"
    assert data["duration"] == pytest.approx(1.5, abs=0.01)
    assert data["model"] == str(tiny_checkpoint)
    for index, segment in enumerate(data["segments"]):
        assert set(segment) >= SEGMENT_KEYS
        assert segment["id"] == index
        assert "words" not in segment
    assert (out / "talk.vtt").read_text(encoding="utf-8").startswith("WEBVTT\n")
    assert (out / "talk.tsv").read_text(encoding="utf-8").startswith("start\tend\ttext\n")


def test_batch_size_reaches_the_transcriber(tmp_path, tiny_checkpoint):
    audio = tone(tmp_path / "talk.wav", seconds=1.5)
    result = invoke(
        "transcribe", *fast(tiny_checkpoint), audio, "--batch-size", "2", "-o", tmp_path
    )
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "talk.json").read_text(encoding="utf-8"))["segments"] == []
    clash = invoke("transcribe", "--batch-size", "2", "--clip-timestamps", "0,1", audio)
    assert clash.exit_code == 2
    assert "--batch-size" in clash.stderr


def test_stdout_is_byte_identical_to_the_file(tmp_path, tiny_checkpoint):
    audio = tone(tmp_path / "talk.wav")
    assert invoke("transcribe", *fast(tiny_checkpoint), audio, "-o", tmp_path).exit_code == 0
    for extension in ("txt", "srt", "vtt", "tsv", "json"):
        result = invoke(
            "transcribe", *fast(tiny_checkpoint), audio, "-f", extension, "--stdout", "-q"
        )
        assert result.exit_code == 0, result.output
        assert result.stdout_bytes == (tmp_path / f"talk.{extension}").read_bytes(), extension
        assert result.stderr == ""


def test_some_formats(tmp_path, tiny_checkpoint):
    audio = tone(tmp_path / "in" / "a.wav")
    result = invoke("transcribe", *fast(tiny_checkpoint), audio, "-f", "srt,json", "-o", tmp_path)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "a.srt", "in"]


def test_language_by_name_and_default_output_folder(tmp_path, tiny_checkpoint, monkeypatch):
    audio = tone(tmp_path / "in" / "a.wav")
    monkeypatch.chdir(tmp_path)
    result = invoke("transcribe", *fast(tiny_checkpoint), "-l", "GERMAN", audio, "-f", "json")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "a.json").read_text(encoding="utf-8"))["language"] == "de"


def test_same_stem_gives_distinct_outputs(tmp_path, tiny_checkpoint):
    first = tone(tmp_path / "x" / "talk.wav", frequency=300)
    second = tone(tmp_path / "y" / "talk.wav", frequency=900, seconds=2.0)
    out = tmp_path / "out"
    result = invoke("transcribe", *fast(tiny_checkpoint), first, second, "-f", "json", "-o", out)
    assert result.exit_code == 0, result.output
    outputs = sorted(out.glob("*.json"))
    assert len(outputs) == 2
    durations = sorted(json.loads(p.read_text(encoding="utf-8"))["duration"] for p in outputs)
    assert durations == pytest.approx([1.0, 2.0], abs=0.01)


def test_folder_with_a_corrupt_file(tmp_path, tiny_checkpoint):
    folder = tmp_path / "in"
    tone(folder / "a.wav")
    tone(folder / "sub" / "b.wav")
    (folder / "c.wav").write_bytes(os.urandom(4096))
    out = tmp_path / "out"
    result = invoke("transcribe", *fast(tiny_checkpoint), folder, "-f", "txt,json", "-o", out)
    assert result.exit_code == 1
    [(name, cause)] = errors(result.stderr)
    assert name == str(folder / "c.wav") and "c.wav" not in cause  # named once
    assert len([line for line in result.stderr.splitlines() if "c.wav" in line]) == 1
    assert "Traceback" not in result.stderr
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "a.json",
        "a.txt",
        "sub/b.json",
        "sub/b.txt",
    ]
    assert result.stderr.strip().splitlines()[-1] == "2 transcribed, 1 failed"


def test_skip_existing(tmp_path, tiny_checkpoint):
    folder = tmp_path / "in"
    tone(folder / "a.wav")
    tone(folder / "b.wav", frequency=880)
    out = tmp_path / "out"
    args = ["transcribe", *fast(tiny_checkpoint), folder, "-f", "txt,srt", "-o", out]
    assert invoke(*args, "--skip-existing").exit_code == 0
    written = {p: p.stat().st_mtime_ns for p in out.iterdir()}
    assert len(written) == 4
    result = invoke(*args, "--skip-existing")
    assert result.exit_code == 0, result.output
    assert result.stderr.strip().splitlines()[-1] == "0 transcribed, 0 failed, 2 skipped"
    assert {p: p.stat().st_mtime_ns for p in out.iterdir()} == written
    # an input with an output missing is done again
    (out / "b.srt").unlink()
    result = invoke(*args, "--skip-existing")
    assert result.stderr.strip().splitlines()[-1] == "1 transcribed, 0 failed, 1 skipped"


@pytest.mark.parametrize(
    ("how", "batch_size"),
    [("released", 1), ("holder killed", 1), ("done meanwhile", 1), ("released", 2)],
)
def test_input_held_by_another_process_is_waited_for(
    tmp_path, tiny_checkpoint, monkeypatch, how, batch_size
):
    """Another process holds a.wav's lock (and has written a.srt): this run does b.wav first,
    then waits for the lock to go (removed, or left by a process that has ended) and writes
    the JSON that it was asked for, or skips a.wav if --skip-existing finds it done by then.
    With --batch-size 2 the files go through the engine, a.wav then alone."""
    import socket
    import threading

    from whisper_cli import inputs

    monkeypatch.setattr(inputs, "LOCK_POLL_SECONDS", 0.02)
    a, b = tone(tmp_path / "in" / "a.wav"), tone(tmp_path / "in" / "b.wav", frequency=880)
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.srt").write_text("the other process's work\n")
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    (out / "a.lock").write_text(f"{holder.pid} {socket.gethostname()}\n")

    def other_process_finishes() -> None:
        deadline = time.monotonic() + 120
        while not (out / "b.json").exists() and time.monotonic() < deadline:
            time.sleep(0.05)  # until this run has done b.wav and waits for a.wav
        time.sleep(0.2)
        if how == "done meanwhile":
            (out / "a.json").write_text("{}")
        if how == "holder killed":
            holder.kill()  # the lock stays, stale
            holder.wait()
        else:
            (out / "a.lock").unlink()

    other = threading.Thread(target=other_process_finishes)
    other.start()
    try:
        extra = ["--skip-existing"] if how == "done meanwhile" else []
        extra += ["--batch-size", str(batch_size)]
        result = invoke("transcribe", *fast(tiny_checkpoint), a, b, "-f", "json", "-o", out, *extra)
    finally:
        other.join()
        holder.kill()
        holder.wait()
    assert f"{a}: waiting for process {holder.pid} on {socket.gethostname()}" in result.stderr
    assert result.exit_code == 0, result.output
    if how == "done meanwhile":
        assert result.stderr.strip().splitlines()[-1] == "1 transcribed, 0 failed, 1 skipped"
        assert (out / "a.json").read_text() == "{}"
    else:
        assert result.stderr.strip().splitlines()[-1] == "2 transcribed, 0 failed"
        assert json.loads((out / "a.json").read_text(encoding="utf-8"))["duration"] == 1.0
    assert (out / "a.srt").read_text() == "the other process's work\n"
    assert not (out / "a.lock").exists()


def test_a_name_that_is_not_utf8(tmp_path, tiny_checkpoint):
    """Transcribed, its outputs named with its bytes, its name escaped in messages and kept
    in JSON Lines (as JSON escapes that give the name back)."""
    folder = os.fsencode(tmp_path)
    try:
        audio = Path(os.fsdecode(os.path.join(folder, b"caf\xe9.wav")))
        shutil.copy(tone(tmp_path / "tone.wav"), audio)
    except OSError:
        pytest.skip("the file system takes only UTF-8 names")
    out = tmp_path / "out"
    result = invoke("transcribe", *fast(tiny_checkpoint), audio, "-f", "txt,json", "-o", out, "-v")
    assert result.exit_code == 0, result.output
    assert sorted(os.listdir(os.fsencode(out))) == [b"caf\xe9.json", b"caf\xe9.txt"]
    assert f"{tmp_path}/caf\\xe9.wav: wrote" in result.stderr
    assert "\udce9" not in result.stderr

    lines = invoke("transcribe", *fast(tiny_checkpoint), audio, audio.with_name("tone.wav"),
                   "-f", "json", "--stdout")  # fmt: skip
    assert lines.exit_code == 0, lines.output
    assert "\\udce9" in lines.stdout_bytes.decode("ascii", "replace")  # valid UTF-8 JSON
    assert [json.loads(line)["path"] for line in lines.stdout_bytes.decode().splitlines()] == [
        str(audio),
        str(audio.with_name("tone.wav")),
    ]

    detected = invoke("detect-language", "-m", tiny_checkpoint, audio)
    assert detected.exit_code == 0, detected.output
    assert detected.stdout_bytes.startswith(os.fsencode(audio) + b"\t")


def test_renamed_outputs_are_told(tmp_path, tiny_checkpoint):
    first, second = tone(tmp_path / "x" / "clip.wav"), tone(tmp_path / "y" / "clip.wav")
    dash, plain = tone(tmp_path / "-dash.wav"), tone(tmp_path / "plain.wav")
    out = tmp_path / "out"
    args = [first, second, "--", dash, plain]
    result = invoke("transcribe", *fast(tiny_checkpoint), "-f", "txt", "-o", out, *args)
    assert result.exit_code == 0, result.output
    told = [line for line in result.stderr.splitlines() if " → " in line]
    assert told == [
        f"{first} → {out}/clip.wav.*",
        f"{second} → {out}/clip-2.wav.*",
        f"{dash} → {out}/_dash.*",
    ]
    assert sorted(p.name for p in out.iterdir()) == [
        "_dash.txt",
        "clip-2.wav.txt",
        "clip.wav.txt",
        "plain.txt",
    ]


def test_hidden_files_skipped_are_counted_with_verbose(tmp_path, tiny_checkpoint):
    folder = tmp_path / "in"
    tone(folder / "a.wav")
    tone(folder / ".b.wav")
    tone(folder / ".cache" / "c.wav")
    args = ["transcribe", *fast(tiny_checkpoint), folder, "-f", "txt", "-o", tmp_path / "out"]
    result = invoke(*args, "-v")
    assert result.exit_code == 0, result.output
    assert f"{folder}: 2 hidden entries skipped" in result.stderr.splitlines()
    assert "hidden" not in invoke(*args).stderr


def test_nonexistent_input_fails_alone(tmp_path, tiny_checkpoint):
    audio = tone(tmp_path / "a.wav")
    missing = tmp_path / "missing.wav"
    result = invoke(
        "transcribe", *fast(tiny_checkpoint), missing, audio, "-f", "txt", "-o", tmp_path
    )
    assert result.exit_code == 1
    assert errors(result.stderr) == [(str(missing), "no such file or directory")]
    assert (tmp_path / "a.txt").exists()
    assert "1 transcribed, 1 failed" in result.stderr


def test_decoder_warnings_go_to_stderr(tmp_path, tiny_checkpoint):
    noise = np.random.default_rng(0).standard_normal(48000).astype(np.float32) * 0.1
    sf.write(tmp_path / "whole.flac", noise, 16000)
    data = (tmp_path / "whole.flac").read_bytes()
    truncated = tmp_path / "cut.flac"
    truncated.write_bytes(data[: len(data) // 2])
    result = invoke("transcribe", *fast(tiny_checkpoint), truncated, "-f", "txt", "-o", tmp_path)
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1 and "truncated" in warnings[0]
    assert (tmp_path / "cut.txt").exists()


def test_standard_input(tmp_path, tiny_checkpoint):
    data = tone(tmp_path / "a.wav").read_bytes()
    out = tmp_path / "out"
    result = invoke("transcribe", *fast(tiny_checkpoint), "-", "-f", "json", "-o", out, input=data)
    assert result.exit_code == 0, result.output
    assert json.loads((out / "stdin.json").read_text(encoding="utf-8"))["duration"] == 1.0


def test_empty_standard_input_fails(tmp_path, tiny_checkpoint):
    result = invoke("transcribe", *fast(tiny_checkpoint), "-", "-o", tmp_path, input=b"")
    assert result.exit_code == 1
    assert errors(result.stderr) == [("<stdin>", "empty input")]


def test_json_lines_for_several_inputs_on_stdout(tmp_path, tiny_checkpoint):
    a, b = tone(tmp_path / "a.wav"), tone(tmp_path / "b.wav", seconds=2.0)
    result = invoke("transcribe", *fast(tiny_checkpoint), a, b, "-f", "json", "--stdout")
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["path"] for r in records] == [str(a), str(b)]
    assert [r["duration"] for r in records] == pytest.approx([1.0, 2.0], abs=0.01)
    assert all(set(r) >= TRANSCRIPT_KEYS for r in records)


def test_verbose_prints_segments_on_stderr(tmp_path, tiny_checkpoint):
    audio = tone(tmp_path / "a.wav")
    result = invoke("transcribe", *fast(tiny_checkpoint), audio, "-f", "json", "-o", tmp_path, "-v")
    assert result.exit_code == 0
    data = json.loads((tmp_path / "a.json").read_text(encoding="utf-8"))
    lines = [
        line for line in result.stderr.splitlines() if re.match(r"^\[\d\d:\d\d\.\d{3} --> ", line)
    ]
    assert len(lines) == len(data["segments"])
    assert result.stdout == ""


def test_quiet_prints_nothing_on_success(tmp_path, tiny_checkpoint):
    audio = tone(tmp_path / "a.wav")
    result = invoke("transcribe", *fast(tiny_checkpoint), audio, "-f", "txt", "-o", tmp_path, "-q")
    assert result.exit_code == 0 and result.stderr == "" and result.stdout == ""


def test_word_layout_options(tmp_path, tiny_checkpoint):
    audio = tone(tmp_path / "a.wav")
    args = ["-f", "json,srt", "-o", tmp_path, "--max-line-width", "20", "--max-line-count", "2"]
    result = invoke("transcribe", *fast(tiny_checkpoint), audio, *args)
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "a.json").read_text(encoding="utf-8"))
    assert all("words" in segment for segment in data["segments"])


def test_translate_warns_when_the_model_cannot(tmp_path, tiny_checkpoint, monkeypatch):
    from whisper_cli.whisper.transcribe import WhisperModel

    monkeypatch.setattr(WhisperModel, "can_translate", property(lambda self: False))
    audio = tone(tmp_path / "a.wav")
    result = invoke("translate", *fast(tiny_checkpoint), audio, "-f", "txt", "-o", tmp_path)
    assert result.exit_code == 0
    assert "warning:" in result.stderr and "translate" in result.stderr
    assert "1 translated, 0 failed" in result.stderr


def test_unexpected_error_is_one_line_without_debug(tmp_path, tiny_checkpoint, monkeypatch):
    import whisper_cli.whisper.transcribe

    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(whisper_cli.whisper.transcribe, "transcribe_stream", boom)
    audio, other = tone(tmp_path / "a.wav"), tone(tmp_path / "b.wav")
    result = invoke("transcribe", *fast(tiny_checkpoint), audio, other, "-o", tmp_path)
    assert result.exit_code == 1
    assert errors(result.stderr) == [
        (str(path), "internal error: RuntimeError: boom (run with --debug for the traceback)")
        for path in (audio, other)
    ]
    assert "Traceback" not in result.stderr
    result = invoke("transcribe", *fast(tiny_checkpoint), audio, "-o", tmp_path, "--debug")
    assert result.exit_code == 1 and "Traceback" in result.stderr


@pytest.mark.parametrize("model", ["missing-folder/", "empty", "not-a-model.pt"])
def test_bad_model_path_is_one_line(tmp_path, model):
    (tmp_path / "empty").mkdir()
    (tmp_path / "not-a-model.pt").write_bytes(b"not a checkpoint")
    audio = tone(tmp_path / "a.wav")
    out = tmp_path / "out"
    result = invoke("transcribe", "-m", tmp_path / model, audio, "-o", out)
    assert result.exit_code == 1, result.output
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith("error: ")
    assert not out.exists()


def test_malformed_config_is_fatal(tmp_path, tiny_checkpoint):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_checkpoint, broken)
    (broken / "config.json").write_text("{not json")
    audio = tone(tmp_path / "a.wav")
    result = invoke("transcribe", "-m", broken, audio, "-o", tmp_path / "out")
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and "config.json" in result.stderr
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------
# the Hugging Face cache, in subprocesses (huggingface_hub reads its variables at import)

SNAPSHOT = "0123456789abcdef0123456789abcdef01234567"


def hub_home(tmp_path: Path, checkpoint: Path | None) -> dict[str, str]:
    """A temporary HF_HOME, with the checkpoint as openai/whisper-base if one is given."""
    home = tmp_path / "hf"
    if checkpoint is not None:
        repo = home / "hub" / "models--openai--whisper-base"
        shutil.copytree(checkpoint, repo / "snapshots" / SNAPSHOT)
        (repo / "refs").mkdir()
        (repo / "refs" / "main").write_text(SNAPSHOT)
    home.mkdir(exist_ok=True)
    env = {"HF_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    return {k: v for k, v in os.environ.items() if not k.startswith("HF_")} | env


def test_missing_model_offline_is_a_clear_error(tmp_path):
    audio = tone(tmp_path / "a.wav")
    env = hub_home(tmp_path, None)
    result = subprocess.run(
        [*CLI, "transcribe", "-m", "base", str(audio), "-o", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert "not in the Hugging Face cache" in lines[0]
    assert "whisper-cli models download base" in lines[0]
    assert not (tmp_path / "out").exists()


def test_short_name_resolves_from_the_hub_cache_offline(tmp_path, tiny_checkpoint):
    audio = tone(tmp_path / "a.wav")
    env = hub_home(tmp_path, tiny_checkpoint)
    args = [*fast(tiny_checkpoint)[2:], "-m", "base", "-f", "json", "-o", str(tmp_path)]
    result = subprocess.run(
        [*CLI, "transcribe", *args, str(audio)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "a.json").read_text(encoding="utf-8"))["model"] == "base"

    listing = subprocess.run(
        [*CLI, "models", "list", "--json"], capture_output=True, text=True, env=env, timeout=120
    )
    assert listing.returncode == 0, listing.stderr
    records = {r["name"]: r for r in map(json.loads, listing.stdout.splitlines())}
    assert set(records) == set(MODELS)
    assert records["base"]["cached"] is True and records["base"]["size"] > 0
    assert records["small"] == {
        "name": "small",
        "repo": "openai/whisper-small",
        "cached": False,
        "size": None,
    }
    table = subprocess.run([*CLI, "models"], capture_output=True, text=True, env=env, timeout=120)
    assert table.returncode == 0
    rows = {line.split()[0]: line.split() for line in table.stdout.splitlines()[1:]}
    assert rows["base"][:3] == ["base", "openai/whisper-base", "yes"]
    assert rows["tiny"] == ["tiny", "openai/whisper-tiny", "no"]


def test_models_list_in_an_empty_cache(tmp_path):
    result = invoke("models", "list", "--cache-dir", tmp_path / "none")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["NAME", "REPO", "CACHED", "SIZE"]
    assert len(lines) == 1 + len(MODELS)
    assert all(line.split()[2] == "no" for line in lines[1:])


def test_models_download_reports_paths_and_errors(tiny_checkpoint):
    result = invoke("models", "download", tiny_checkpoint, "no-such-model")
    assert result.exit_code == 1
    assert result.stdout == f"{tiny_checkpoint}\t{tiny_checkpoint}\n"
    assert errors(result.stderr)[0][0] == "no-such-model"


# ---------------------------------------------------------------------------------------------
# detect-language with the tiny model (the format; the real model checks the languages)


def test_detect_language_output_forms(tmp_path, tiny_checkpoint, monkeypatch):
    import whisper_cli.whisper.transcribe as transcribe_module

    # tones hold no speech: detect on their first 30 s all the same
    monkeypatch.setattr(transcribe_module, "speech_window", lambda detector: (0, 3000))
    a, b = tone(tmp_path / "a.wav"), tone(tmp_path / "b.wav", frequency=200)
    model = ["-m", tiny_checkpoint, "--threads", "1"]
    result = invoke("detect-language", *model, a, b)
    assert result.exit_code == 0, result.output
    rows = [line.split("\t") for line in result.stdout.splitlines()]
    assert [row[0] for row in rows] == [str(a), str(b)]
    assert all(len(row) == 3 and re.fullmatch(r"[a-z]{2,3}", row[1]) for row in rows)
    assert all(0 < float(row[2]) <= 1 for row in rows)

    result = invoke("detect-language", *model, a, "--top", "3")
    row = result.stdout.strip().split("\t")
    assert len(row) == 7
    assert float(row[2]) >= float(row[4]) >= float(row[6])

    result = invoke("detect-language", *model, a, b, "--json", "--top", "2")
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["file"] for r in records] == [str(a), str(b)]
    for record in records:
        assert set(record) == {"file", "language", "probability", "top"}
        assert len(record["top"]) == 2
        assert record["top"][0] == {
            "language": record["language"],
            "probability": record["probability"],
        }


def test_detect_language_failures(tmp_path, tiny_checkpoint):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF not really")
    good = tone(tmp_path / "good.wav")
    result = invoke("detect-language", "-m", tiny_checkpoint, "--threads", "1", bad, good)
    assert result.exit_code == 1
    assert [name for name, _ in errors(result.stderr)] == [str(bad)]
    assert result.stdout.startswith(f"{good}\t")


def test_english_only_model_cannot_detect_language(tmp_path, tiny_checkpoint, monkeypatch):
    from whisper_cli.whisper.transcribe import WhisperModel

    monkeypatch.setattr(WhisperModel, "is_multilingual", property(lambda self: False))
    result = invoke("detect-language", "-m", tiny_checkpoint, tone(tmp_path / "a.wav"))
    assert result.exit_code == 1
    assert "English-only" in result.stderr and result.stdout == ""


# ---------------------------------------------------------------------------------------------
# signals: an interrupted batch leaves whole files and no temporary or lock files


@pytest.mark.parametrize(
    ("signum", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["INT", "TERM"]
)
def test_signal_mid_batch(tmp_path, tiny_checkpoint, signum, status):
    folder = tmp_path / "in"
    for index in range(8):
        tone(folder / f"f{index}.wav", seconds=1.5, frequency=200 + 100 * index)
    out = tmp_path / "out"
    args = [
        *CLI,
        "transcribe",
        *fast(tiny_checkpoint),
        str(folder),
        "-f",
        "json,srt",
        "-o",
        str(out),
    ]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not list(out.glob("*.json")):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "no output appeared"
            time.sleep(0.02)
        process.send_signal(signum)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == status, stderr
    assert "Traceback" not in stderr
    names = sorted(p.name for p in out.iterdir())
    assert not [n for n in names if n.endswith((".tmp", ".lock")) or n.startswith(".")], names
    done = [p for p in out.glob("*.json")]
    assert 1 <= len(done) < 8
    for path in done:
        json.loads(path.read_text(encoding="utf-8"))  # whole
    for path in out.glob("*.srt"):
        text = path.read_text(encoding="utf-8")
        assert text == "" or text.endswith("\n\n")


# ---------------------------------------------------------------------------------------------
# start-up cost: --help and completion must not import torch (nor pydantic, which typer 0.29
# brought in: 0.3 s more for every command and every Tab press; see pyproject.toml)


HEAVY = ("torch", "numpy", "huggingface_hub", "pydantic")


def imported(stderr: str) -> set[str]:
    """Top-level modules named in `python -X importtime` output."""
    names = set()
    for line in stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    return names


def test_help_does_not_import_torch():
    result = run(["--help"], env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert result.returncode == 0 and "transcribe" in result.stdout
    modules = imported(result.stderr)
    assert "typer" in modules  # the check itself works
    assert not modules & set(HEAVY), modules & set(HEAVY)
    result = run(["transcribe", "--help"], env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert result.returncode == 0 and not imported(result.stderr) & set(HEAVY)


@pytest.mark.parametrize(
    ("words", "cword", "expected"),
    [
        ("whisper-cli trans", 1, "transcribe"),
        ("whisper-cli detect-language --js", 2, "--json"),
        ("whisper-cli transcribe --language d", 3, "de"),
        ("whisper-cli transcribe -m ba", 3, "base"),
        ("whisper-cli transcribe -f srt,js", 3, "srt,json"),
        ("whisper-cli models down", 2, "download"),
    ],
)
def test_bash_completion_protocol(words, cword, expected):
    env = {
        "_WHISPER_CLI_COMPLETE": "complete_bash",
        "COMP_WORDS": words,
        "COMP_CWORD": str(cword),
        "PYTHONPROFILEIMPORTTIME": "1",
    }
    result = run([], env=env)
    assert result.returncode == 0
    assert expected in result.stdout.split(), result.stdout
    assert not imported(result.stderr) & {"torch", "huggingface_hub", "pydantic"}


def test_fish_completion_protocol():
    env = {
        "_WHISPER_CLI_COMPLETE": "complete_fish",
        "_TYPER_COMPLETE_FISH_ACTION": "get-args",
        "_TYPER_COMPLETE_ARGS": "whisper-cli transcribe --outp",
    }
    result = run([], env=env)
    assert result.stdout.startswith("--output-format\t") or "--output-format\t" in result.stdout


def test_show_completion():
    env = {"_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}
    result = run(["--show-completion", "bash"], env=env)
    assert result.returncode == 0
    assert "_WHISPER_CLI_COMPLETE=complete_bash" in result.stdout


def test_entry_point():
    script = Path(sys.executable).with_name("whisper-cli")
    if not script.exists():
        pytest.skip("the whisper-cli script is not installed beside this Python")
    result = subprocess.run([script, "--version"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.startswith("whisper-cli ")


def test_the_program_spares_the_interpreter_its_last_collection():
    """Once the program is done, the objects left are frozen out of the cyclic collector, whose
    last pass at exit over everything PyTorch loaded costs 0.3-0.8 s of a one-file run; the
    exit's own work (atexit hooks, flushing) still runs."""
    script = (
        "import atexit, gc, sys\n"
        "atexit.register(lambda: print('frozen' if gc.get_freeze_count() else 'not frozen'))\n"
        "from whisper_cli.cli import main\n"
        "sys.argv = ['whisper-cli', '--version']\n"
        "main()\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"whisper-cli {__version__}", "frozen"]


def test_the_program_imports_pytorch_without_collecting_and_freezes_it():
    """PyTorch's ~170,000 objects are frozen out of the cyclic collector once imported, so
    that no full collection walks them again, and none runs during the import itself."""
    script = (
        "import gc, sys\n"
        "full = []\n"
        "gc.callbacks.append(lambda phase, info: full.append(info['generation'] == 2))\n"
        "from whisper_cli.cli.run import import_torch\n"
        "import_torch()\n"
        "print('torch' in sys.modules, any(full), gc.isenabled(), gc.get_freeze_count() > 10**5)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "False", "True", "True"]


# ---------------------------------------------------------------------------------------------
# the real base model on real recordings


@pytest.mark.real_model
def test_detect_language_real(real_model_path, audio_dir, manifest):
    speech = [
        entry
        for entry in manifest
        if entry["expect"] == "speech"
        and entry["language"] not in (None, "en")
        and entry["category"] == "multilingual"
        and entry["duration_s"] < 6  # four files: de, it, pt, zh
    ]
    assert len(speech) >= 3
    files = [str(audio_dir / entry["file"]) for entry in speech]
    expected = {str(audio_dir / e["file"]): e["language"] for e in speech}
    model = ["-m", str(real_model_path), "--threads", "2"]

    result = invoke("detect-language", *model, *files)
    assert result.exit_code == 0, result.output
    rows = [line.split("\t") for line in result.stdout.splitlines()]
    assert {row[0]: row[1] for row in rows} == expected
    assert [row[0] for row in rows] == files

    subset = files[:2]
    result = invoke("detect-language", *model, *subset, "--json", "--top", "3")
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert {r["file"]: r["language"] for r in records} == {f: expected[f] for f in subset}
    assert all(r["probability"] > 0.5 and len(r["top"]) == 3 for r in records)


@pytest.mark.real_model
def test_batch_real(tmp_path, real_model_path, audio_dir):
    import srt
    import webvtt

    folder = tmp_path / "in"
    folder.mkdir()
    names = ["en_ls_251-137823-0002.wav", "en_lj_LJ002-0020.wav"]
    for name in names:
        shutil.copy(audio_dir / name, folder / name)
    shutil.copy(audio_dir / "corrupt_random_bytes.wav", folder / "corrupt.wav")
    out = tmp_path / "out"
    model = ["-m", str(real_model_path), "--threads", "2", "--beam-size", "1", "-l", "en"]
    result = invoke("transcribe", *model, folder, "-o", out)
    assert result.exit_code == 1
    assert [name for name, _ in errors(result.stderr)] == [str(folder / "corrupt.wav")]
    assert "2 transcribed, 1 failed" in result.stderr

    stems = [Path(name).stem for name in names]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{stem}.{ext}" for stem in stems for ext in ("txt", "srt", "vtt", "tsv", "json")
    )
    text = (out / "en_ls_251-137823-0002.txt").read_text(encoding="utf-8").lower()
    assert "testing routine" in text
    for stem in stems:
        data = json.loads((out / f"{stem}.json").read_text(encoding="utf-8"))
        subtitles = (out / f"{stem}.srt").read_text(encoding="utf-8")
        cues = list(srt.parse(subtitles))
        assert srt.compose(cues) == subtitles
        assert len(cues) == len(data["segments"]) >= 1
        captions = webvtt.from_string((out / f"{stem}.vtt").read_text(encoding="utf-8"))
        assert len(captions) == len(cues)


@pytest.mark.real_model
def test_every_damaged_file_of_the_manifest_behaves_as_it_says(
    tmp_path, tiny_checkpoint, audio_dir, manifest
):
    """`error` files: one line naming the file, exit 1, no output, no traceback.
    `error_or_partial` files: that, or a warning and the transcript of what decodes."""
    damaged = [e for e in manifest if e["expect"] in ("error", "error_or_partial")]
    assert len(damaged) >= 3
    for entry in damaged:
        path = audio_dir / entry["file"]
        out = tmp_path / entry["file"]
        result = run(["transcribe", *fast(tiny_checkpoint), str(path), "-f", "txt", "-o", str(out)])
        assert "Traceback" not in result.stderr, entry["file"]
        outputs = list(out.glob("*")) if out.exists() else []
        if result.returncode == 1:
            [(name, cause)] = errors(result.stderr)
            assert name == str(path) and cause, entry["file"]
            assert outputs == [], entry["file"]
        else:
            assert entry["expect"] == "error_or_partial", (entry["file"], result.stderr)
            assert result.returncode == 0
            assert any(line.startswith("warning: ") for line in result.stderr.splitlines())
            assert [p.name for p in outputs] == [Path(entry["file"]).stem + ".txt"]


@pytest.mark.parametrize(("given", "expected"), [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_openmp_threads_wait_passively_unless_told(given, expected):
    """Set before PyTorch starts its threads (spinning threads collapse on a busy machine);
    a user's own OMP_WAIT_POLICY stays."""
    code = (
        "import os, sys\n"
        "from whisper_cli.cli.app import main\n"
        "sys.argv = ['whisper-cli', '--version']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if given is not None:
        env["OMP_WAIT_POLICY"] = given
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-2:] == [expected, "False"]  # and torch not yet imported
