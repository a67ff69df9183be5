"""Many inputs with `--batch-size` > 1 and a Whisper model: the library's engine decodes windows
of several files together and packs short ones (`whisper_cli.whisper.engine`); this module
claims each input, writes its outputs the moment it is done, and shows one progress display
for the whole batch (files done of all, audio done, rate, time left)."""

from __future__ import annotations

import contextlib
import io
import sys
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from whisper_cli.cli.output import Utf8Stdout, claim_for_writing, json_line
from whisper_cli.cli.ui import Busy, Skipped

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from whisper_cli.cli.output import OutputPlan
    from whisper_cli.cli.ui import Batch, Ui
    from whisper_cli.inputs import Job
    from whisper_cli.options import TranscribeOptions
    from whisper_cli.results import Transcript
    from whisper_cli.whisper.transcribe import WhisperModel


def run_many(
    jobs: Sequence[Job],
    whisper: WhisperModel,
    options: TranscribeOptions,
    plan: OutputPlan,
    ui: Ui,
    batch: Batch,
    json_lines: bool,
) -> list[Job]:
    """Transcribe `jobs` together; each is written (or printed as a JSON line) when done, and
    each failure is reported on its own line while the rest go on.

    Returns the jobs that another process holds, neither done nor counted, for the caller to
    come back to (waiting for a lock here would hold up the thread that reads ahead).
    """
    from whisper_cli.whisper.engine import transcribe_files
    from whisper_cli.whisper.transcribe import read_samples

    locks: dict[Job, contextlib.ExitStack] = {}
    refused: list[tuple[Job, str]] = []
    busy: list[Job] = []

    def claimed_jobs() -> Iterator[tuple[Job, str]]:
        """The jobs this process may do, each claimed just before it is read."""
        for job in jobs:
            lock = contextlib.ExitStack()
            try:
                lock.enter_context(claim_for_writing(job, plan, ui))
            except Skipped as skipped:
                refused.append((job, str(skipped)))
                continue
            except Busy:
                busy.append(job)
                continue
            locks[job] = lock
            yield job, "-" if job.source is None else str(job.source)

    def report_refused() -> None:
        while refused:
            job, reason = refused.pop(0)
            batch.skip(job.display, reason)

    detected = options.decoding.language is None and whisper.tokenizer.multilingual
    if detected and len(jobs) > 1 and ui.interactive:  # a hint a script's log need not hold
        ui.notice(
            "each file's language is detected on its own audio, so short files are not packed "
            "together; --language lets them share windows"
        )
    stream = transcribe_files(whisper, claimed_jobs(), options, read_samples)
    try:
        with many_progress(ui, len(jobs)) as progress:
            for done in stream:
                job = done.key
                report_refused()
                for warning in done.warnings:
                    ui.warning(f"{job.display}: {warning}")
                with batch.job(job), locks.pop(job):
                    if done.error is not None:
                        raise done.error
                    assert done.transcript is not None
                    write_transcript(job, done.transcript, plan, ui, json_lines)
                    _notes(job, done.transcript, options, ui)
                progress.done(0.0 if done.transcript is None else done.transcript.duration)
            report_refused()
    finally:  # interrupted: reading stops, then the claims still held are given back
        stream.close()
        for lock in locks.values():
            lock.close()
    return busy


def _notes(job: Job, transcript: Transcript, options: TranscribeOptions, ui: Ui) -> None:
    """What standard error says of a transcript: no speech, or an uncertain language."""
    if not transcript.segments:
        ui.no_speech(job.display)
    elif options.decoding.language is None and transcript.language is not None:
        ui.uncertain_language(job.display, transcript.language, transcript.language_probability)


def write_transcript(
    job: Job,
    transcript: Transcript,
    plan: OutputPlan,
    ui: Ui,
    json_lines: bool,
) -> None:
    """Write a transcript into its files (a line for --verbose), or onto standard output."""
    from whisper_cli.writers import get_writer, write_outputs

    if plan.to_stdout:
        text = io.StringIO()
        get_writer(plan.formats[0], plan.writer_options).write(transcript, text)
        out = Utf8Stdout()
        sys.stdout.flush()
        out.write(json_line(job, text.getvalue()) if json_lines else text.getvalue())
        out.flush()
        return
    written = write_outputs(transcript, job.output_base, plan.formats, plan.writer_options)
    ui.info(f"{job.display}: wrote {', '.join(str(path) for path in written)}")


class _ManyProgress:
    """One bar for the whole batch on a terminal: files done of all, audio done, rate, time
    left. Without a terminal (or with --quiet) it does nothing."""

    def __init__(self, bars: Progress | None = None, total: int = 0):
        self.bars = bars
        self.audio = 0.0
        self.task: TaskID | None = None
        if bars is not None:
            self.task = bars.add_task("files", total=total, audio="0 s")

    def done(self, seconds: float) -> None:
        if self.bars is None or self.task is None:
            return
        self.audio += seconds
        self.bars.update(self.task, advance=1, audio=_audio(self.audio))


def _audio(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.2f} h"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.0f} s"


@contextlib.contextmanager
def many_progress(ui: Ui, total: int) -> Iterator[_ManyProgress]:
    """One progress display for `total` files (nothing off a terminal or with --quiet)."""
    if not ui.interactive:
        yield _ManyProgress()
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        Task,
        TextColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class Rate(ProgressColumn):
        """Files a minute, once the first is done."""

        def render(self, task: Task) -> Text:
            rate = (
                "-"
                if not task.completed or not task.elapsed
                else f"{60 * task.completed / task.elapsed:.1f}"
            )
            return Text(f"{rate} files/min", style="progress.data.speed")

    columns: list[Any] = [
        TextColumn("files"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[audio]} of audio"),
        Rate(),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, console=ui.console, transient=True) as bars:
        yield _ManyProgress(bars, total)
