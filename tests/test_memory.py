"""Giving freed memory back: the pages go back to the system, and where the C library is not
glibc nothing happens."""

import ctypes
import os
import sys
from types import SimpleNamespace

import pytest

from whisper_cli import memory
from whisper_cli.memory import release_freed_memory


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
