"""Turn command-line arguments into transcription jobs, and name their outputs.

An argument is a file (taken whatever its extension), a folder (walked recursively for audio and
video files, hidden files and folders skipped) or `-` for standard input. Each input becomes one
job, once, however many arguments name it; jobs keep the order of the arguments, and the files of
a folder come sorted by their path in it.

Every job gets an output base, the output path without a format's extension, inside the output
folder: `talk.mp3` → `out/talk`; a file found in a folder mirrors its place there (`in/sub/a.wav`
→ `out/sub/a`); standard input → `out/stdin`. When two inputs would get the same base (`a.mp3`
and `a.wav`), the clashing ones keep their extension (`out/a.mp3`, `out/a.wav`), and if that
still clashes a number is added (`out/a-2.wav`). Clashes are found ignoring case, as on macOS
and Windows, so no output silently overwrites another.

Names are kept as the file system gives them: a name that is not valid UTF-8 (decoded by Python
with `surrogateescape`) gives an output name with the same bytes. `Job.renamed` tells the jobs
whose output name is not simply the input's stem, so that the caller can say so.

Two processes may work through the same folder: `claim` takes a lock file next to a job's outputs
so that each job is done by one of them; the other can wait for it (`claim(job, wait=...)`).
The processes may run on different hosts (a shared NFS folder, a Slurm array): while a lock is
held, a thread of the holder sets its modification time to now every `LOCK_HEARTBEAT_SECONDS`,
so a lock of another host that has not been refreshed for `LOCK_STALE_SECONDS` was left behind
by a process that no longer runs (or no longer runs Python code), and is taken over. This
assumes the hosts' clocks (and the file server's) agree to within a few minutes.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

from whisper_cli.atomic import signals_held
from whisper_cli.errors import os_reason
from whisper_cli.writers import output_path

STDIN = "-"  # the argument that means standard input
STDIN_DISPLAY = "<stdin>"
STDIN_NAME = "stdin"  # its output base name

# extensions (lower case) of the files taken from folders; files named explicitly need none
AUDIO_EXTENSIONS = frozenset(
    "." + extension
    for extension in (
        # audio
        "wav wave bwf rf64 w64 flac mp3 mp2 mpga ogg oga opus spx m4a m4b aac adts wma "
        "aiff aif aifc caf au snd amr awb wv ape tta ac3 eac3 dts mka voc ra "
        # video
        "mp4 m4v webm mkv mov avi wmv flv 3gp 3g2 mpg mpeg mts m2ts ogv mxf"
    ).split()
)

_MAX_NAME_BYTES = 200  # leaves room for `-<n>`, an extension and `.lock` under NAME_MAX (255)
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})  # control, surrogate, line breaks
_UNREADABLE_LOCK_GRACE = 10.0  # seconds a lock file without a pid may be in the middle of writing
LOCK_POLL_SECONDS = 1.0  # how often a process waiting for another's lock looks at it again
LOCK_HEARTBEAT_SECONDS = 60.0  # how often a holder sets the modification time of its locks
# a lock of another host older than this (ten heartbeats) is taken over: its holder is gone
LOCK_STALE_SECONDS = 600.0


@dataclass(frozen=True)
class Job:
    """One input to transcribe and where its outputs go."""

    source: Path | None  # None: standard input
    display: str  # how messages name the input
    output_base: Path  # output path without the format's extension, inside the output folder
    key: str = ""  # its path relative to the argument it came from: the same on every machine
    renamed: bool = False  # the output name is not the input's stem (sanitized or made distinct)


@dataclass(frozen=True)
class _Found:
    """An input found in the arguments, before its output is named."""

    source: Path | None
    display: str
    parts: tuple[str, ...]  # folders of the output, relative to the output folder, then the stem
    suffix: str  # the input's extension, added to the output name when names clash
    key: str  # the path relative to the argument it came from (see Job)


def discover(
    args: Sequence[str],
    output_dir: Path,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    hidden: list[tuple[str, int]] | None = None,
) -> tuple[list[Job], list[tuple[str, str]]]:
    """Turn arguments into jobs; also return `(input, message)` for each input that is an error.

    `include` and `exclude` are glob patterns for the files found in folders, matched against
    the path relative to the folder (`sub/*.wav`) and against the file name (`*.wav`). With
    `include`, a file must match one of them (and still be audio); a file matching an `exclude`
    pattern, or inside a folder that matches one, is skipped. Files named explicitly are taken
    as they are. When `hidden` is a list, `(folder argument, count)` is appended to it for each
    folder in which hidden files or folders were passed over.
    """
    errors: list[tuple[str, str]] = []
    patterns = (tuple(include), tuple(exclude))
    found = _unique(item for arg in args for item in _expand(arg, patterns, errors, hidden))
    return _name_jobs(found, Path(output_dir), errors), errors


def _expand(
    arg: str,
    patterns: tuple[tuple[str, ...], tuple[str, ...]],
    errors: list[tuple[str, str]],
    hidden: list[tuple[str, int]] | None,
) -> Iterator[_Found]:
    """The inputs one argument stands for; an argument that is an error goes to `errors`."""
    if arg == STDIN:
        yield _Found(None, STDIN_DISPLAY, (STDIN_NAME,), "", STDIN)
        return
    if not arg:  # Path("") would be the current folder
        errors.append((arg, "no such file or directory"))
        return
    path = Path(arg)
    try:
        is_dir = path.is_dir()
        exists = is_dir or path.exists()
    except OSError as error:
        errors.append((arg, os_reason(error)))
        return
    if not exists:
        errors.append((arg, "no such file or directory"))
    elif not is_dir:
        yield _Found(path, arg, (path.stem,), path.suffix, path.name)
    else:
        known_errors = len(errors)
        files, n_hidden = _walk(path, *patterns, errors)
        if n_hidden and hidden is not None:
            hidden.append((arg, n_hidden))
        if not files and len(errors) == known_errors:
            errors.append((arg, "no audio files found in folder"))
        for relative in files:
            parts = (*relative.parent.parts, relative.stem)
            key = relative.as_posix()
            yield _Found(path / relative, str(path / relative), parts, relative.suffix, key)


def _walk(
    root: Path, include: tuple[str, ...], exclude: tuple[str, ...], errors: list[tuple[str, str]]
) -> tuple[list[Path], int]:
    """The audio files under a folder, as sorted paths relative to it, and how many hidden
    files and folders were passed over."""

    def on_error(error: OSError) -> None:
        errors.append((str(error.filename), f"cannot read folder ({os_reason(error)})"))

    files, n_hidden = [], 0
    for folder, subfolders, names in os.walk(root, onerror=on_error):
        here = Path(folder).relative_to(root)
        n_hidden += sum(name.startswith(".") for name in (*subfolders, *names))
        subfolders[:] = [
            name
            for name in subfolders
            if not name.startswith(".") and not _matches(here / name, exclude)
        ]
        for name in names:
            relative = here / name
            if _wanted(relative, include, exclude) and (root / relative).is_file():
                files.append(relative)
    return sorted(files, key=lambda path: path.parts), n_hidden


def _wanted(relative: Path, include: tuple[str, ...], exclude: tuple[str, ...]) -> bool:
    if relative.name.startswith(".") or relative.suffix.lower() not in AUDIO_EXTENSIONS:
        return False
    if include and not _matches(relative, include):
        return False
    return not _matches(relative, exclude)


def _matches(relative: Path, patterns: tuple[str, ...]) -> bool:
    """Whether a relative path or its name matches one of the glob patterns."""
    posix = relative.as_posix()
    return any(fnmatch(posix, pattern) or fnmatch(relative.name, pattern) for pattern in patterns)


def _unique(found: Iterator[_Found]) -> list[_Found]:
    """The inputs in order, each file once (the same file under two names counts once)."""
    seen: set[Path | None] = set()
    unique = []
    for item in found:
        key = None if item.source is None else _identity(item.source)
        if key not in seen:
            seen.add(key)
            unique.append(item)
    return unique


def _identity(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # a symlink loop
        return path.absolute()


# output names


def _name_jobs(found: list[_Found], output_dir: Path, errors: list[tuple[str, str]]) -> list[Job]:
    """Give every input an output base that no other input shares and that stays in `output_dir`."""
    root = output_dir.resolve()
    jobs = []
    for item, name in zip(found, _unique_names(found), strict=True):
        base = output_dir.joinpath(*name)
        if not base.resolve().is_relative_to(root):  # only a symbolic link can lead out
            errors.append((item.display, f"output {base} would be outside {output_dir}"))
            continue
        jobs.append(Job(item.source, item.display, base, item.key, renamed=name != item.parts))
    return jobs


def _unique_names(found: list[_Found]) -> list[tuple[str, ...]]:
    """Sanitized output paths (relative parts), distinct even on case-insensitive file systems.

    Inputs whose names clash keep their extension; what still clashes gets a number, skipping
    numbered names that another input has anyway.
    """
    names = [tuple(_sanitize(part) for part in item.parts) for item in found]
    counts = Counter(_clash_key(name) for name in names)
    for index, item in enumerate(found):
        if counts[_clash_key(names[index])] > 1 and item.suffix:
            names[index] = _renamed(names[index], item.suffix, 1)
    counts = Counter(_clash_key(name) for name in names)
    used: set[tuple[str, ...]] = set()
    for index, item in enumerate(found):
        number = 1
        while _clash_key(names[index]) in used:
            number += 1
            candidate = _renamed(tuple(map(_sanitize, item.parts)), item.suffix, number)
            if _clash_key(candidate) not in counts:
                names[index] = candidate
        used.add(_clash_key(names[index]))
    return names


def _renamed(parts: tuple[str, ...], suffix: str, number: int) -> tuple[str, ...]:
    """The parts with the stem numbered (from 2) and the input's extension appended."""
    tail = _truncate(_safe_chars((f"-{number}" if number > 1 else "") + suffix), 50)
    stem = _truncate(parts[-1], _MAX_NAME_BYTES - _n_bytes(tail))
    return (*parts[:-1], stem + tail)


def _clash_key(parts: tuple[str, ...]) -> tuple[str, ...]:
    """What two output names must differ in on a case-insensitive file system."""
    return tuple(unicodedata.normalize("NFC", part).casefold() for part in parts)


def _sanitize(name: str) -> str:
    """A name safe as one path component: no separators or control characters, not `.`/`..`,
    not hidden, not starting with `-`, and at most `_MAX_NAME_BYTES` long."""
    safe = _safe_chars(name)
    stripped = safe.lstrip(".-")
    safe = "_" * (len(safe) - len(stripped)) + stripped
    return _truncate(safe, _MAX_NAME_BYTES) or "_"


def _safe_chars(text: str) -> str:
    """The text with path separators, control characters and line breaks replaced by `_`.

    The bytes of a name that is not UTF-8 (U+DC80 to U+DCFF under `surrogateescape`) stay.
    """
    return "".join(
        "_"
        if char in "/\\"
        or (unicodedata.category(char) in _UNSAFE_CATEGORIES and not _is_escaped_byte(char))
        else char
        for char in text
    )


def _is_escaped_byte(char: str) -> bool:
    return "\udc80" <= char <= "\udcff"


def _n_bytes(text: str) -> int:
    """The length of a name in bytes, as the file system gets it."""
    return len(text.encode("utf-8", "surrogateescape"))


def _truncate(text: str, max_bytes: int) -> str:
    """The longest prefix of the text, in whole characters, that takes at most `max_bytes`."""
    size = 0
    for index, char in enumerate(text):
        size += _n_bytes(char)
        if size > max_bytes:
            return text[:index]
    return text


# skip-existing and locks


def outputs_exist(job: Job, formats: Sequence[str]) -> bool:
    """Whether every format's output file of the job exists already (for `--skip-existing`)."""
    return all(output_path(job.output_base, name).exists() for name in formats)


def lock_path(job: Job) -> Path:
    """The lock file of a job: its output base plus `.lock`."""
    return job.output_base.with_name(f"{job.output_base.name}.lock")


@contextlib.contextmanager
def claim(
    job: Job,
    wait: bool = False,
    on_wait: Callable[[], None] | None = None,
    on_takeover: Callable[[str], None] | None = None,
) -> Iterator[bool]:
    """Lock a job against other processes; yield whether this process got it.

    The lock is `<output base>.lock`, created atomically and holding `<pid> <host>`; while it is
    held its modification time is kept fresh (see the module's docstring), and it is removed on
    exit unless another process has taken it over meanwhile. A stale lock is taken over: one
    left by a process that no longer runs on this host, or one of another host that has not
    been refreshed for `LOCK_STALE_SECONDS`; `on_takeover` is then called with who held it.
    With `wait`, a lock that another process holds is looked at every `LOCK_POLL_SECONDS`
    until that process removes it or it goes stale, and then taken: the job is always claimed
    (`on_wait` is called once, before waiting, if it has to wait). Without, the job is not
    claimed and the caller must not count it as done.
    """
    lock = lock_path(job)
    lock.parent.mkdir(parents=True, exist_ok=True)
    content = _lock_content()
    claimed = False
    try:
        while True:
            with signals_held():  # an interrupt cannot fall between creating and owning it
                claimed, taken_over = _acquire(lock, content)
                if claimed:
                    _HEARTBEAT.hold(lock, content)
            if claimed and taken_over is not None and on_takeover is not None:
                on_takeover(taken_over)
            if claimed or not wait:
                break
            if on_wait is not None:
                on_wait()
                on_wait = None
            time.sleep(LOCK_POLL_SECONDS)
        yield claimed
    finally:
        if claimed:
            with signals_held():  # nor between letting go of it and removing it
                _HEARTBEAT.release(lock)
                _remove_own(lock, content)


def lock_holder(job: Job) -> str:
    """Who holds a job's lock, for messages: `process 123 on host`, or "" if unknown."""
    try:
        fields = lock_path(job).read_bytes().decode("utf-8", "replace").split()
    except OSError:
        return ""
    if not fields or not fields[0].isdigit():
        return ""
    return f"process {fields[0]}" + (f" on {fields[1]}" if len(fields) > 1 else "")


def _lock_content() -> bytes:
    return f"{os.getpid()} {socket.gethostname()}\n".encode()


def _acquire(lock: Path, content: bytes) -> tuple[bool, str | None]:
    """Create the lock file, taking over a stale one: (whether this process holds it now,
    who held the stale lock it took over, if it did)."""
    taken_over = None
    for _ in range(3):
        try:
            descriptor = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            retry, stale = _remove_if_stale(lock)
            if not retry:
                return False, None
            taken_over = stale or taken_over
            continue
        with os.fdopen(descriptor, "wb") as file:
            file.write(content)
        return True, taken_over
    return False, None


def _remove_if_stale(lock: Path) -> tuple[bool, str | None]:
    """Remove the lock if it is stale: (whether the lock may be tried again, who held the
    stale lock if this process removed it).

    The lock is first renamed aside, and removed only if it is still the stale one that was
    read, so two processes taking over the same stale lock cannot remove each other's.
    """
    try:
        content = lock.read_bytes()
        age = time.time() - lock.stat().st_mtime
    except FileNotFoundError:
        return True, None  # released meanwhile
    stale = _stale(content, age)
    if stale is None:
        return False, None
    aside = lock.with_name(f"{lock.name}.{os.getpid()}.stale")
    try:
        os.rename(lock, aside)
    except FileNotFoundError:
        return True, None  # another process removed it first
    try:
        if aside.read_bytes() != content:  # a new lock replaced the stale one: put it back
            with contextlib.suppress(OSError):
                os.link(aside, lock)
            return False, None
    finally:
        aside.unlink(missing_ok=True)
    return True, stale


def _stale(content: bytes, age: float) -> str | None:
    """Who left the lock file, if its process no longer runs (None while it may)."""
    fields = content.decode("utf-8", "replace").split()
    try:
        pid = int(fields[0])
    except (IndexError, ValueError):
        pid = 0
    if pid <= 0:  # not written yet, or garbage
        return f"an unreadable lock {age:.0f} s old" if age > _UNREADABLE_LOCK_GRACE else None
    holder = f"process {pid}" + (f" on {fields[1]}" if len(fields) > 1 else "")
    if len(fields) > 1 and fields[1] != socket.gethostname():
        # another machine's process: it runs as long as it keeps the lock fresh
        if age > LOCK_STALE_SECONDS:
            return f"{holder}, not refreshed for {age / 60:.0f} min"
        return None
    return None if _pid_alive(pid) else f"{holder}, which no longer runs"


def _remove_own(lock: Path, content: bytes) -> None:
    """Remove the lock file if it still holds this process's content (another process may
    have taken it over, had this one stopped refreshing it)."""
    with contextlib.suppress(FileNotFoundError):
        if lock.read_bytes() == content:
            lock.unlink()


class _Heartbeat:
    """Keeps the locks this process holds fresh: every `LOCK_HEARTBEAT_SECONDS` a daemon
    thread sets the modification time of each to now, as long as it still holds this
    process's content.

    A thread rather than the waiting loop: a holder spends its time in the model (one long
    recording may take hours), not in a loop of ours. The thread runs whenever the
    interpreter lets it, as it does while torch computes; a process that is stopped, or stuck
    without releasing the interpreter, stops refreshing, and its locks go stale, as they
    should. The thread ends when no lock is held, and starts again with the next.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[Path, bytes] = {}
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()

    def hold(self, path: Path, content: bytes) -> None:
        with self._lock:
            self._held[path] = content
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="whisper-cli-lock-heartbeat", daemon=True
                )
                self._thread.start()
            else:
                self._wake.set()  # look at LOCK_HEARTBEAT_SECONDS again

    def release(self, path: Path) -> None:
        with self._lock:
            self._held.pop(path, None)

    def _run(self) -> None:
        while True:
            self._wake.wait(LOCK_HEARTBEAT_SECONDS)
            self._wake.clear()
            with self._lock:
                held = list(self._held.items())
                if not held:
                    self._thread = None
                    return
            for path, content in held:
                _refresh(path, content)


def _refresh(lock: Path, content: bytes) -> None:
    with contextlib.suppress(OSError):  # gone, or the file server is away for a moment
        if lock.read_bytes() == content:
            os.utime(lock)


_HEARTBEAT = _Heartbeat()


def _pid_alive(pid: int) -> bool:
    if os.name == "nt":  # os.kill would terminate the process there
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it runs under another user
        return True
    return True
