"""Write a file atomically, and hold SIGINT and SIGTERM while doing it.

A file is written to a hidden temporary file next to it and renamed onto it once complete, so a
reader sees the old content or the new, never half of it; an interrupt cannot strand the
temporary file.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO


@contextlib.contextmanager
def atomic_write(path: Path) -> Iterator[TextIO]:
    """Open a UTF-8 text stream whose content replaces `path` only once the block succeeds.

    The text goes to a hidden temporary file in the same folder, which is flushed, synced to disk
    and renamed onto `path`. If the block raises, the temporary file is removed and `path` is left
    as it was. The new file gets the permissions a plain `open` would give it. SIGINT and
    SIGTERM are held while the block runs, so an interrupt cannot strand the temporary file.
    """
    path = Path(path)
    with signals_held():
        temporary = tempfile.NamedTemporaryFile(  # noqa: SIM115 (the file outlives a with block)
            mode="w",
            encoding="utf-8",
            newline="\n",
            dir=path.parent,
            prefix=f".{path.name[:100]}.",
            suffix=".tmp",
            delete=False,
        )
        try:
            with temporary:
                yield temporary
                temporary.flush()
                os.fsync(temporary.fileno())
            os.chmod(temporary.name, _new_file_mode(path))
            os.replace(temporary.name, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary.name)
            raise


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM until the block ends, then deliver them.

    Writing a file takes milliseconds; an interrupt that lands in the middle of one (between
    creating the temporary file and renaming it, say) could otherwise strand it. While the block
    runs, the two signals are only recorded; afterwards the previous handlers are put back and
    each recorded signal is raised again, so it acts as if it had arrived just after the block.
    (A signal mask would not do: the kernel hands a process signal to any thread that has it
    unblocked, and the interpreter then raises in the main thread at once.) Only the main thread
    can change handlers; elsewhere this does nothing.
    """
    signals = [signal.SIGINT] + ([signal.SIGTERM] if hasattr(signal, "SIGTERM") else [])
    if threading.current_thread() is not threading.main_thread() or any(
        signal.getsignal(signum) is None
        for signum in signals  # a handler Python cannot restore
    ):
        yield
        return
    caught: list[int] = []
    previous = {
        signum: signal.signal(signum, lambda signum, _: caught.append(signum)) for signum in signals
    }
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for signum in dict.fromkeys(caught):
            signal.raise_signal(signum)


def _new_file_mode(path: Path) -> int:
    """The mode of the file being replaced, or what the umask gives a new file."""
    try:
        return path.stat().st_mode & 0o777
    except FileNotFoundError:
        return 0o666 & ~_umask()


@functools.cache
def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask
