"""Giving freed memory back: the pages go back to the system, and where the C library is not
glibc nothing happens."""

import ctypes
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.test_cli import tone
from whisper_cli import memory
from whisper_cli.memory import release_freed_memory

REPO = Path(__file__).resolve().parent.parent


def _resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or memory._malloc_trim() is None,
    reason="malloc_trim is glibc's",
)
def test_the_pages_of_freed_memory_go_back_to_the_system():
    # 60-kB blocks (under glibc's mmap threshold: from the heap), each followed by a 1-kB one
    # that stays: holes the heap cannot shrink over, as tensors freed between others leave
    size, count = 60_000, 2000
    kept, freed = [], []
    for _ in range(count):
        freed.append(bytearray(b"\x01") * size)  # written, so resident
        kept.append(bytearray(b"\x01") * 1000)
    del freed
    before = _resident_bytes()
    release_freed_memory()
    given_back = before - _resident_bytes()
    assert given_back > size * count // 2
    assert all(block[-1] == 1 for block in kept)  # what is in use is left alone


def _no_library(name):
    raise OSError(f"{name}: no such library")


@pytest.mark.parametrize(
    "library",
    [
        pytest.param(lambda name: SimpleNamespace(), id="no malloc_trim"),
        pytest.param(_no_library, id="no library"),
    ],
)
def test_without_glibc_nothing_happens(monkeypatch, library):
    monkeypatch.setattr(ctypes, "CDLL", library)
    memory._malloc_trim.cache_clear()
    try:
        assert memory._malloc_trim() is None
        release_freed_memory()
    finally:
        monkeypatch.undo()
        memory._malloc_trim.cache_clear()


def test_bench_memory_measures_the_command_on_one_file_under_each_python(tmp_path, tiny_checkpoint):
    import torch

    audio = tone(tmp_path / "tone.wav", seconds=1.0)
    command = [sys.executable, str(REPO / "bench" / "memory.py"), "--audio", str(audio)]
    command += ["--model", str(tiny_checkpoint), "--threads", "1", "--repeats", "2"]
    command += ["--python", sys.executable]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith(f"| {sys.executable} ")]
    assert len(rows) == 1, result.stdout
    python, version, rss, wall = rows[0].strip("| ").split(" | ")
    assert version.split()[0] == torch.__version__
    assert re.fullmatch(r"\d+ / \d+", rss) and re.fullmatch(r"[\d.]+ / [\d.]+", wall)
    assert all(int(mib) > 100 for mib in rss.split(" / "))  # torch's import alone is more
