"""Reading ahead of the model: bounded in files and in audio."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

from whisper_cli.whisper.read_ahead import ReadAhead


def test_a_files_failure_is_handed_over_with_it_in_order():
    def read(key: int, name: str) -> str:
        if name == "bad":
            raise ValueError(f"{name}: not audio")
        return name.upper()

    reader = ReadAhead(enumerate(["a", "bad", "c"]), read, 2)
    try:
        taken = [reader.take() for _ in range(3)]
        assert [key for key, _ in taken] == [0, 1, 2]
        assert taken[0][1] == "A" and taken[2][1] == "C"
        assert isinstance(taken[1][1], ValueError)
        assert reader.take() is ReadAhead.END
    finally:
        reader.close()


def test_reading_ahead_stops_at_an_hour_of_audio_waiting():
    """A folder of long recordings: features of at most an hour wait, not eight files'
    worth, however many files that is; one always may (a longer one alone)."""
    hours = [0.6, 0.6, 2.0, 0.1]
    reads: list[float] = []
    more = threading.Event()

    def read(hour: float) -> SimpleNamespace:
        reads.append(hour)
        more.set()
        return SimpleNamespace(duration=hour * 3600)

    def settled(count: int) -> None:  # the reader has read `count` and reads no further
        deadline = time.monotonic() + 10
        while len(reads) < count and time.monotonic() < deadline:
            more.wait(0.05)
        more.clear()
        assert not more.wait(0.3) and len(reads) == count

    reader = ReadAhead(
        enumerate(hours), lambda key, hour: read(hour), 8, 3600, lambda result: result.duration
    )
    try:
        settled(2)  # 0.6 h waits; the second 0.6 h is read but must wait its turn
        assert reader.take()[0] == 0
        settled(3)  # the second waits; the 2-h one is read, and waits until it may go alone
        assert reader.take()[0] == 1
        settled(4)  # alone now; then the 0.1 h after it waits
        assert [reader.take()[0] for _ in range(2)] == [2, 3]
        assert reader.take() is ReadAhead.END
    finally:
        reader.close()


def test_not_blocking_waits_for_an_item_being_read_but_not_for_the_next_to_come():
    """A server's requests: one that has come and is being read is worth waiting for (it
    may be packed with the others); one that has not come yet is not."""
    arrived, release = threading.Event(), threading.Event()

    def items():
        yield 0, "slow"
        arrived.set()
        release.wait(10)  # no further request for now
        yield 1, "late"

    def read(key: int, name: str) -> str:
        if name == "slow":
            time.sleep(0.3)
        return name

    reader = ReadAhead(items(), read, 4)
    try:
        time.sleep(0.05)  # the first item is being read
        assert reader.take(block=False) is None  # unless asked to wait for it
        assert reader.take(block=False, wait_reading=0.01) is None  # and long enough
        assert reader.take(block=False, wait_reading=10) == (0, "slow")
        assert arrived.wait(5)
        assert reader.take(block=False, wait_reading=10) is None
        release.set()
        assert reader.take() == (1, "late")
    finally:
        release.set()
        reader.close()
