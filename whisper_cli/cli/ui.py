"""Standard error: messages, progress bars, and the batch's count and summary.

Data (transcripts, detected languages, model folders) never goes through here.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sys
import traceback
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, NoReturn

import typer

from whisper_cli.errors import HubUnavailableError, WhisperCliError, os_reason

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID

    from whisper_cli.cluster.worker import ModelFacts
    from whisper_cli.inputs import Job
    from whisper_cli.options import TranscribeOptions
    from whisper_cli.protocol import SpeechModel
    from whisper_cli.results import Segment

# a detected language less probable than this is reported as uncertain (faster-whisper's
# language_detection_threshold)
UNCERTAIN_LANGUAGE = 0.5

# exit status (2, for usage errors, is Typer's)
EXIT_FAILED = 1
EXIT_INTERRUPTED = 128 + signal.SIGINT  # 130
EXIT_TERMINATED = 128 + signal.SIGTERM  # 143

ECHO_ROOM = 3  # columns the progress bars leave free at the right: room for an echoed `^C`


class Terminated(BaseException):
    """SIGTERM arrived: unwinds like KeyboardInterrupt, so atomic writes and locks clean up."""


class Skipped(Exception):
    """Raised inside a job to skip it, with the reason."""


class Busy(Exception):
    """Raised inside a job that another process holds: `Batch.job` lets it through uncounted,
    for the caller to come back to the job later."""


class Ui:
    """Everything that goes to standard error. Data never goes through here."""

    def __init__(self, quiet: bool = False, verbose: bool = False, debug: bool = False) -> None:
        from rich.console import Console

        self.console: Console = Console(
            stderr=True, highlight=False, soft_wrap=True, markup=False, emoji=False
        )
        self.quiet, self.verbose, self.debug = quiet, verbose, debug
        self.failures = 0  # inputs reported as failed, the arguments that are errors included

    @property
    def interactive(self) -> bool:
        """Whether to draw progress: standard error is a terminal and --quiet is off."""
        return self.console.is_terminal and not self.quiet

    def _print(self, label: str, style: str, message: str) -> None:
        from rich.text import Text

        message = printable(message)
        self.console.print(Text.assemble((label, style), f": {message}" if label else message))

    def error(self, message: str) -> None:
        self._print("error", "bold red", message)

    def input_error(self, name: str, message: str) -> None:
        self.failures += 1
        self.error(f"{name}: {message}")

    def warning(self, message: str) -> None:
        self._print("warning", "yellow", message)

    def notice(self, message: str) -> None:
        """A line that tells what is going on, unless --quiet."""
        if not self.quiet:
            self._print("", "", message)

    def info(self, message: str) -> None:
        """A line for --verbose."""
        if self.verbose:
            self._print("", "", message)

    def summary(self, message: str) -> None:
        if not self.quiet:
            self._print("", "", message)

    def no_speech(self, name: str) -> None:
        """An input in which no speech was found: a fact, not a failure."""
        self.notice(f"{name}: no speech found")

    def uncertain_language(self, name: str, code: str, probability: float | None) -> None:
        """A warning for a detected language less probable than `UNCERTAIN_LANGUAGE`."""
        if probability is None or probability >= UNCERTAIN_LANGUAGE:
            return
        from whisper_cli.whisper.languages import LANGUAGES  # no torch

        language = LANGUAGES.get(code, code).title()
        self.warning(
            f"{name}: the language is uncertain: {language} ({probability:.2f}) is the most "
            "likely; if it is wrong, give the right one with --language"
        )

    def unsuited_model(self, model: SpeechModel | ModelFacts, options: TranscribeOptions) -> None:
        """A warning for a model that cannot do what the options ask: translate, or take
        another language than English."""
        if options.decoding.task == "translate" and not model.can_translate:
            self.warning(
                f"model {model.name!r} was not trained to translate; the output may be a "
                "transcript in the spoken language"
            )
        language = options.decoding.language
        if language not in (None, "en") and model.family == "whisper" and not model.is_multilingual:
            self.warning(
                f"model {model.name!r} is English-only: --language {language} is ignored and "
                "the text will be English"
            )

    def echo_segments(self, segments: Iterable[Segment]) -> Iterator[Segment]:
        """The segments, each printed as `[start --> end] text` first with --verbose."""
        from whisper_cli.writers import format_timestamp

        for segment in segments:
            if self.verbose:
                start, end = format_timestamp(segment.start), format_timestamp(segment.end)
                self._print("", "", f"[{start} --> {end}] {segment.text.strip()}")
            yield segment

    def fatal(self, message: str) -> NoReturn:
        self.error(message)
        raise typer.Exit(EXIT_FAILED)

    @contextlib.contextmanager
    def fatal_errors(self) -> Iterator[None]:
        """Errors that stop the whole run (loading the model): one line, exit 1."""
        try:
            yield
        except WhisperCliError as error:
            self.fatal(str(error))
        except Exception as error:
            if self.debug:
                raise
            self.fatal(internal_error(error))

    @contextlib.contextmanager
    def batch(self, verb: str) -> Iterator[Batch]:
        """Count the jobs, print the summary, and exit with the batch's status. While it runs
        (the model loads, the jobs run), other libraries' warnings and log records are hidden
        unless verbose or debug."""
        batch = Batch(self, verb)
        try:
            with library_output(show=self.verbose or self.debug):
                yield batch
        except KeyboardInterrupt:
            self.summary(f"interrupted; {batch.describe()}")
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except Terminated:
            self.summary(f"terminated; {batch.describe()}")
            raise typer.Exit(EXIT_TERMINATED) from None
        self.summary(batch.describe())
        if self.failures:
            raise typer.Exit(EXIT_FAILED)

    @contextlib.contextmanager
    def progress(self, jobs: Sequence[Job], draw: bool = True) -> Iterator[FileProgress]:
        """Bars for the jobs while a terminal shows them (not when `draw` is False)."""
        if not (draw and self.interactive):
            yield FileProgress()
            return
        from whisper_cli.audio import audio_duration

        estimates = {job: (job.source and audio_duration(job.source)) or 0.0 for job in jobs}
        with _rich_progress(self.console) as bars:
            yield FileProgress(bars, estimates)


@contextlib.contextmanager
def library_output(show: bool) -> Iterator[None]:
    """Python warnings and log records (huggingface_hub's retries, PyTorch's deprecations, …)
    reach standard error only when `show` (--verbose, --debug); otherwise the terminal holds
    this program's own lines alone. A `-W` option or PYTHONWARNINGS still rules warnings."""
    if show:
        yield
        return
    import logging
    import warnings

    disabled = logging.root.manager.disable
    with warnings.catch_warnings():
        if not sys.warnoptions:
            warnings.simplefilter("ignore")
        logging.disable(logging.CRITICAL)
        try:
            yield
        finally:
            logging.disable(disabled)


def stdout_on_the_terminal() -> bool:
    """Whether standard output goes to the terminal that standard error (and its progress
    bars) goes to: there, the bars' redrawing would overwrite the data."""
    if not (sys.stdout is not None and sys.stdout.isatty() and sys.stderr.isatty()):
        return False
    try:
        return os.ttyname(sys.stdout.fileno()) == os.ttyname(sys.stderr.fileno())
    except (AttributeError, OSError, ValueError):  # no ttyname (Windows): assume the same
        return True


def printable(text: str) -> str:
    """Text safe to print: the bytes of a file name that is not UTF-8, which Python holds as
    lone surrogates (`surrogateescape`), shown as `\\xe9`; other lone surrogates as `\\ud800`."""
    return _SURROGATE.sub(_escape_surrogate, text)


_SURROGATE = re.compile(r"[\ud800-\udfff]")


def _escape_surrogate(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"\\u{code:04x}"


def internal_error(error: BaseException) -> str:
    """The one line for an exception that is a bug, not a user's mistake."""
    detail = f": {error}" if str(error) else ""
    return f"internal error: {type(error).__name__}{detail} (run with --debug for the traceback)"


class Batch:
    """Counts what happened to each job of a run."""

    def __init__(self, ui: Ui, verb: str) -> None:
        self.ui, self.verb = ui, verb
        self.done = self.skipped = 0

    def skip(self, name: str, reason: str) -> None:
        self.skipped += 1
        self.ui.info(f"{name}: skipped ({reason})")

    def describe(self) -> str:
        parts = [f"{self.done} {self.verb}", f"{self.ui.failures} failed"]
        if self.skipped:
            parts.append(f"{self.skipped} skipped")
        return ", ".join(parts)

    @contextlib.contextmanager
    def job(self, job: Job | str) -> Iterator[None]:
        """One job: a failure is reported in one line and counted; the batch goes on."""
        name = job if isinstance(job, str) else job.display
        try:
            yield
        except Skipped as skipped:
            self.skip(name, str(skipped))
            return
        except Busy:
            raise
        except BrokenPipeError:  # standard output was closed (`| head`): stop, as Typer does
            raise
        except HubUnavailableError:  # every other job would fail the same way: stop the run
            raise
        except (WhisperCliError, OSError) as error:  # OSError: a folder not writable, a full disk
            self.ui.input_error(name, _cause(error, job))
            return
        except Exception as error:
            if self.ui.debug:
                self.ui.console.print(traceback.format_exc(), end="")
            self.ui.input_error(name, internal_error(error))
            return
        self.done += 1


def _cause(error: BaseException, job: Job | str) -> str:
    """The error's message without the input's name in front (the error line names it)."""
    message = str(error).strip() or type(error).__name__
    if isinstance(error, OSError) and error.strerror:
        message = os_reason(error) + (f": {error.filename}" if error.filename else "")
    if isinstance(job, str):
        names = {job}
    else:
        names = {job.display} | ({str(job.source)} if job.source else set())
    for name in sorted(names, key=len, reverse=True):
        if message.startswith(f"{name}: "):
            return message[len(name) + 2 :]
    return message


class FileProgress:
    """Progress bars on a terminal: the current file and the whole batch, in audio seconds.

    Without bars (not a terminal, or --quiet) every method does nothing.
    """

    def __init__(self, bars: Progress | None = None, estimates: Mapping[Job, float] | None = None):
        self.bars = bars
        self.estimates = dict(estimates or {})  # the header's duration of files not started
        self.finished = 0.0  # audio seconds of the files done
        self.file: TaskID | None = None
        self.file_seconds = 0.0
        self.overall: TaskID | None = None
        self.overall_seconds = sum(self.estimates.values())
        if bars is not None and len(self.estimates) > 1:
            self.overall = bars.add_task(f"{len(self.estimates)} files", total=self.overall_seconds)

    def start(self, job: Job, duration: float) -> None:
        if self.bars is None:
            return
        if self.file is not None:  # the previous file failed
            self.bars.remove_task(self.file)
        self.file = self.bars.add_task(printable(job.display), total=duration)
        self.file_seconds = duration
        if self.overall is not None:  # the decoded length replaces the header's estimate
            self.overall_seconds += duration - self.estimates.pop(job, 0.0)
            self.bars.update(self.overall, total=self.overall_seconds)

    def update(self, done: float, total: float) -> None:
        if self.bars is None or self.file is None:
            return
        self.bars.update(self.file, completed=done)
        if self.overall is not None:
            self.bars.update(self.overall, completed=self.finished + done)

    def done(self, job: Job) -> None:
        if self.bars is None or self.file is None:
            return
        self.finished += self.file_seconds
        self.bars.remove_task(self.file)
        self.file = None
        if self.overall is not None:
            self.bars.update(self.overall, completed=self.finished)


def _rich_progress(console: Console) -> Progress:
    from rich.console import RenderableType
    from rich.constrain import Constrain
    from rich.progress import (
        BarColumn,
        Progress,
        ProgressColumn,
        Task,
        TextColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class RealTimeFactor(ProgressColumn):
        """Processing time over audio time: below 1 is faster than real time."""

        def render(self, task: Task) -> Text:
            if not task.completed or not task.elapsed:
                return Text("RTF  -  ", style="progress.data.speed")
            return Text(f"RTF {task.elapsed / task.completed:.2f}", style="progress.data.speed")

    class NarrowProgress(Progress):
        """Lines that stop short of the terminal's last columns, so that the `^C` a terminal
        echoes on Ctrl-C stays on the last line (a `^C` wrapped onto a new line would leave
        the bars on screen: the transient display clears only the lines it drew)."""

        def get_renderables(self) -> Iterable[RenderableType]:
            width = max(console.width - ECHO_ROOM, 1)
            yield Constrain(self.make_tasks_table(self.tasks), width)

    return NarrowProgress(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        TextColumn("{task.completed:>6.1f}/{task.total:.1f} s"),
        RealTimeFactor(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )
