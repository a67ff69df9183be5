"""Atomic writes: nothing left behind on failure, interrupts held until the file is complete."""

from __future__ import annotations

import os
import signal

import pytest

from whisper_cli.atomic import atomic_write, signals_held


class Boom(Exception):
    pass


def test_atomic_write_leaves_nothing_when_the_writer_fails(tmp_path) -> None:
    target = tmp_path / "talk.srt"
    with pytest.raises(Boom), atomic_write(target) as stream:
        stream.write("1\n00:00:00,000 --> ")
        raise Boom
    assert list(tmp_path.iterdir()) == []


def test_an_interrupt_during_a_write_lands_after_the_file_is_complete(tmp_path) -> None:
    interrupted_inside = False
    with pytest.raises(KeyboardInterrupt), atomic_write(tmp_path / "talk.txt") as stream:
        stream.write("partial")
        os.kill(os.getpid(), signal.SIGINT)  # held: KeyboardInterrupt must not fire here
        interrupted_inside = True
        stream.write(" then complete\n")
    assert interrupted_inside
    assert [p.name for p in tmp_path.iterdir()] == ["talk.txt"]
    assert (tmp_path / "talk.txt").read_text(encoding="utf-8") == "partial then complete\n"


def test_signals_held_restores_the_handlers() -> None:
    before = signal.getsignal(signal.SIGINT)
    with signals_held(), signals_held():
        assert signal.getsignal(signal.SIGINT) is not before
    assert signal.getsignal(signal.SIGINT) is before
