"""The command line over many files with --batch-size > 1: windows of several files decoded
together, each file written when done, each failure on its own line."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import whole_recording
from tests.test_cli import CLI, errors, fast, invoke, tone
from whisper_cli.cli.ui import EXIT_INTERRUPTED, EXIT_TERMINATED
from whisper_cli.whisper import engine


@pytest.fixture(autouse=True)
def speech_everywhere(monkeypatch):
    """A tone holds no speech for the voice detector: call all of it speech, so that the
    random-weight model decodes every file."""
    monkeypatch.setattr(engine, "speech_chunks", whole_recording)


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


@pytest.mark.parametrize("language", [None, "en"])
def test_a_terminal_is_told_that_a_language_lets_short_files_share_windows(
    tmp_path, tiny_checkpoint, monkeypatch, language
):
    from whisper_cli.cli.ui import Ui

    monkeypatch.setattr(Ui, "interactive", property(lambda self: True))
    options = fast(tiny_checkpoint)[:-2] + (["-l", language] if language else [])
    folder = _folder(tmp_path, seconds=(1.0, 1.5))
    out = tmp_path / "out"
    result = invoke("transcribe", *options, "--batch-size", "2", "-f", "txt", "-o", out, folder)
    assert result.exit_code == 0, result.output
    hinted = "--language lets them share windows" in result.stderr
    assert hinted is (language is None)


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


# ---------------------------------------------------------------------------------------------
# an interrupted folder run: whole files only, and --skip-existing does the rest

SHORT = (
    "en_ls_61-70968-0000.flac",
    "en_ls_251-137823-0002.wav",
    "en_lj_LJ002-0020.wav",
    "en_lj_LJ002-0035.ogg",
    "en_pv_today_only_platforms.mp3",
    "en_sr_one_two_three_44k_stereo.flac",
)


def _leftovers(out: Path) -> list[str]:
    """Files that a clean stop must not leave: temporary outputs, locks, locks set aside."""
    return sorted(
        str(path.relative_to(out))
        for path in out.rglob("*")
        if path.name.startswith(".") or path.name.endswith((".tmp", ".lock", ".stale"))
    )


def _outputs(out: Path) -> dict[str, tuple[int, int]]:
    """Each output file (relative path) with its inode and modification time."""
    return {
        str(path.relative_to(out)): (path.stat().st_ino, path.stat().st_mtime_ns)
        for path in out.rglob("*")
        if path.is_file()
    }


@pytest.mark.parametrize(
    ("signum", "status"),
    [(signal.SIGINT, EXIT_INTERRUPTED), (signal.SIGTERM, EXIT_TERMINATED)],
    ids=["INT", "TERM"],
)
def test_an_interrupted_folder_run_leaves_whole_files_and_resumes(
    tmp_path, tiny_checkpoint, audio_dir, signum, status
):
    """`whisper-cli transcribe DIR --batch-size 8` stopped by a signal once its first output
    is there: it exits with the signal's status, leaves no temporary, partial or lock file,
    and every output it wrote is whole (both formats of an input, or neither). The same
    command with --skip-existing then writes exactly the missing inputs, leaves the others as
    they are and counts them skipped; the outputs are those of a run never interrupted.

    Real recordings (the voice detector must hear speech for the engine to decode them) and
    the random-weight model (fast: a decoding round of 8 files takes about a second, so the
    signal lands before the folder is done); language detection on each file keeps them from
    being packed into one window, so outputs come a round at a time."""
    folder = tmp_path / "in"
    for copy in range(5):
        for name in SHORT:
            target = folder / f"part{copy % 2}" / f"{copy}_{name}"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(audio_dir / name, target)
    inputs = 5 * len(SHORT)
    out = tmp_path / "out"
    command = [*CLI, "transcribe", "-m", str(tiny_checkpoint), "--threads", "1"]
    command += ["--beam-size", "1", "--best-of", "1", "--temperature-increment-on-fallback"]
    command += ["none", "--batch-size", "8", "-f", "json,srt"]

    process = subprocess.Popen(
        [*command, "-o", str(out), str(folder)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 240
        while not list(out.rglob("*.json")):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "no output appeared"
            time.sleep(0.02)
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == status, stderr
    assert "Traceback" not in stderr
    assert _leftovers(out) == []
    done = {path.relative_to(out).with_suffix("") for path in out.rglob("*.json")}
    assert 1 <= len(done) < inputs, "the signal should land mid-folder"
    assert {path.relative_to(out).with_suffix("") for path in out.rglob("*.srt")} == done
    for stem in done:
        record = json.loads((out / stem).with_suffix(".json").read_text(encoding="utf-8"))
        assert record["duration"] > 0 and isinstance(record["segments"], list)
        srt = (out / stem).with_suffix(".srt").read_text(encoding="utf-8")
        assert srt == "" or srt.endswith("\n\n")
    before = _outputs(out)

    resumed = subprocess.run(
        [*command, "--skip-existing", "-v", "-o", str(out), str(folder)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr
    summary = resumed.stderr.strip().splitlines()[-1]
    assert summary == f"{inputs - len(done)} transcribed, 0 failed, {len(done)} skipped"
    skipped = {
        Path(line.split(": skipped (")[0]).relative_to(folder).with_suffix("")
        for line in resumed.stderr.splitlines()
        if ": skipped (" in line
    }
    assert skipped == done
    after = _outputs(out)
    assert {name: after[name] for name in before} == before  # not written again
    assert _leftovers(out) == []

    whole = tmp_path / "whole"
    result = subprocess.run(
        [*command, "-o", str(whole), str(folder)], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr
    assert sorted(after) == sorted(_outputs(whole))
    assert len(after) == 2 * inputs
    for name in after:
        if name.endswith(".json"):
            ours = json.loads((out / name).read_text(encoding="utf-8"))
            theirs = json.loads((whole / name).read_text(encoding="utf-8"))
            assert ours["duration"] == theirs["duration"], name
