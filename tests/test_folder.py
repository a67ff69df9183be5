"""The command line over many files with --batch-size > 1: windows of several files decoded
together, each file written when done, each failure on its own line."""

from __future__ import annotations

import json

import pytest

from tests.test_cli import errors, fast, invoke, tone
from whisper_cli.constants import FRAMES_PER_SECOND
from whisper_cli.whisper import engine


@pytest.fixture(autouse=True)
def speech_everywhere(monkeypatch):
    """A tone holds no speech for the voice detector: call all of it speech, so that the
    random-weight model decodes every file."""
    monkeypatch.setattr(
        engine,
        "speech_chunks",
        lambda detector, duration, max_seconds=30.0: [(0, round(duration * FRAMES_PER_SECOND))],
    )


def _folder(tmp_path, seconds=(1.0, 2.0, 1.5, 3.0)):
    folder = tmp_path / "in"
    for index, length in enumerate(seconds):
        tone(folder / f"clip{index}.wav", seconds=length, frequency=300 + 100 * index)
    return folder


def test_a_folder_is_transcribed_together_and_a_bad_file_is_reported(tmp_path, tiny_checkpoint):
    folder = _folder(tmp_path)
    (folder / "broken.wav").write_bytes(b"RIFF but not really a wave file" * 10)
    out = tmp_path / "out"
    result = invoke(
        "transcribe", *fast(tiny_checkpoint), "--batch-size", "4", "-f", "json", "-o", out, folder
    )
    assert result.exit_code == 1, result.output
    assert [name for name, _ in errors(result.stderr)] == [str(folder / "broken.wav")]
    assert "4 transcribed, 1 failed" in result.stderr
    for index, seconds in enumerate((1.0, 2.0, 1.5, 3.0)):
        record = json.loads((out / f"clip{index}.json").read_text(encoding="utf-8"))
        assert record["duration"] == pytest.approx(seconds, abs=0.01)
        assert all(0 <= s["start"] <= s["end"] <= seconds + 1e-6 for s in record["segments"])
    assert not (out / "broken.json").exists()
    assert not list(out.glob("*.lock")) and not list(out.glob("*.tmp*"))


def test_json_lines_name_each_file_whatever_order_they_finish_in(tmp_path, tiny_checkpoint):
    folder = _folder(tmp_path)
    result = invoke(
        "transcribe", *fast(tiny_checkpoint), "--batch-size", "3", "-f", "json", "--stdout", folder
    )
    assert result.exit_code == 0, result.output
    records = {json.loads(line)["path"]: json.loads(line) for line in result.stdout.splitlines()}
    assert sorted(records) == sorted(str(folder / f"clip{i}.wav") for i in range(4))
    assert records[str(folder / "clip3.wav")]["duration"] == pytest.approx(3.0, abs=0.01)


def test_skip_existing_resumes_a_folder(tmp_path, tiny_checkpoint):
    folder = _folder(tmp_path, seconds=(1.0, 2.0))
    out = tmp_path / "out"
    command = ("transcribe", *fast(tiny_checkpoint), "--batch-size", "4", "-f", "txt", "-o", out)
    assert invoke(*command, folder).exit_code == 0
    tone(folder / "late.wav", seconds=1.2)
    again = invoke(*command, "--skip-existing", "-v", folder)
    assert again.exit_code == 0, again.output
    assert "1 transcribed, 0 failed, 2 skipped" in again.stderr
    assert (out / "late.txt").exists()
