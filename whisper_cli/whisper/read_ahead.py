"""Reading ahead: the next inputs decoded, resampled and analysed on a background thread
while the model works on the ones before, a bounded number (and amount of audio) at a time."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any


class ReadAhead:
    """`read(key, audio)` of each `(key, audio)` item on a background thread, at most `depth`
    results and `seconds` of audio waiting (`weigh(result)` seconds each: a long recording's
    features take memory; one result always may): `take` gives (key, result or the exception
    it raised), in input order, then `END`."""

    END = object()

    def __init__(
        self,
        items: Iterable[tuple[Any, Any]],
        read: Callable[[Any, Any], Any],
        depth: int,
        seconds: float = float("inf"),
        weigh: Callable[[Any], float] = lambda result: 0.0,
    ):
        self._weigh = weigh
        self._waiting: deque[tuple[Any, float]] = deque()
        self._seconds = 0.0  # of audio waiting
        self._limits = (depth, seconds)
        self._changed = threading.Condition()
        self._reading = False  # an item taken from `items` is being read
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(iter(items), read), name="whisper-cli-read", daemon=True
        )
        self._thread.start()

    def _run(self, items: Iterator[tuple[Any, Any]], read: Callable[[Any, Any], Any]) -> None:
        try:
            for key, audio in items:
                if self._stop.is_set():
                    return
                with self._changed:
                    self._reading = True
                try:
                    result = read(key, audio)
                    seconds = self._weigh(result)
                except Exception as error:  # the file's own failure, reported with it
                    result, seconds = error, 0.0
                self._put((key, result), seconds)
        except Exception as error:  # the items themselves failed: end with it
            self._put((self.END, error))
        finally:
            self._put(self.END)

    def _put(self, item: Any, seconds: float = 0.0) -> None:
        depth, most = self._limits
        with self._changed:
            while self._waiting and (len(self._waiting) >= depth or self._seconds + seconds > most):
                if self._stop.is_set():
                    return
                self._changed.wait(0.1)
            self._waiting.append((item, seconds))
            self._seconds += seconds
            self._reading = False
            self._changed.notify_all()

    def take(self, block: bool = True, wait_reading: float = 0.0) -> Any:
        """The next (key, result), `END` after the last; or, when not blocking, None if
        nothing waits. Not blocking, an item being read (it has come) is waited for up to
        `wait_reading` seconds."""
        deadline = time.monotonic() + wait_reading
        with self._changed:
            while not self._waiting:
                left = deadline - time.monotonic()
                if not block and not (self._reading and left > 0):
                    return None
                self._changed.wait(None if block else left)
            item, seconds = self._waiting.popleft()
            self._seconds -= seconds
            self._changed.notify_all()
            return item

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
