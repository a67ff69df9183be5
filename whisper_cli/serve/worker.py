"""The one thread that runs the model: requests wait in a bounded queue and are decoded
together.

A Whisper model with `batch_size` > 1 runs the library's engine (`whisper.engine`) over the
requests as they arrive: the windows of one decoding batch come from several requests. By
default each request is decoded on its own, so its answer is what `transcribe` in batched mode
gives for it, whatever else is in work, and a streamed request gets its segments as the engine
finishes them: streamed or not, the same decode. With `pack`, short requests read at the same
time (and with a language given) share windows, as the short files of a folder do: fewer
encoder passes, but a request's words may then differ slightly from its audio alone. The
engine takes one set of options per pass, so requests whose options are equal share batches;
a request with other options (another language, task, prompt, temperature, word timestamps,
chunk length) ends the pass, and the next pass starts with it. Other model families, and
`batch_size` 1, go one request at a time through `transcribe_stream`.

A request whose client went away before its audio was taken is skipped; one already in a batch
is finished and dropped.
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from whisper_cli.options import TranscribeOptions
    from whisper_cli.protocol import SpeechModel
    from whisper_cli.results import Segment


class Busy(Exception):
    """The queue is full: the client should come back later."""


@dataclass(eq=False)
class Job:
    """One request's audio (16 kHz mono samples) and options, and where its outcome goes."""

    samples: np.ndarray
    options: TranscribeOptions
    # streamed: called on the worker thread with the next segments, in order, as decoded
    on_segments: Callable[[list[Segment]], None] | None = None
    future: Future[Any] = field(default_factory=Future)
    cancelled: bool = False


_STOP = object()


class Worker:
    """Runs `model` on its own thread over the jobs submitted, at most `limit` in work."""

    def __init__(self, model: SpeechModel, limit: int, pack: bool = False):
        self.model = model
        self.limit = limit
        self.pack = pack
        self._jobs: queue.Queue[Any] = queue.Queue()
        self._in_work = 0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="whisper-cli-serve", daemon=True)
        self._thread.start()

    @property
    def in_work(self) -> int:
        return self._in_work

    def text_of(self, segments: list[Segment]) -> str:
        """The text a transcript of these segments has (as the finished one will, where they
        are its first)."""
        from whisper_cli.results import TranscriptionInfo

        return self.model.collect(TranscriptionInfo(None, None, 0.0), segments).text

    def submit(self, job: Job) -> Job:
        """Queue a job; raises `Busy` when `limit` jobs are already waiting or in work."""
        with self._lock:
            if self._in_work >= self.limit:
                raise Busy()
            self._in_work += 1
        self._jobs.put(job)
        return job

    def stop(self, timeout: float | None = None) -> None:
        """Cancel what waits, let the work in hand finish, and end the thread."""
        self._jobs.put(_STOP)
        self._thread.join(timeout)

    def _finish(self, job: Job, result: Any = None, error: BaseException | None = None) -> None:
        with self._lock:
            self._in_work -= 1
        if job.future.done():
            return
        if error is not None:
            job.future.set_exception(error)
        else:
            job.future.set_result(result)

    def _run(self) -> None:
        pending: Any = None
        while True:
            job = pending if pending is not None else self._jobs.get()
            pending = None
            if job is _STOP:
                break
            if job.cancelled:
                self._finish(job, error=Busy())
                continue
            if self._batches(job.options):
                pending = self._pass(job)
            else:
                self._one(job)
        while True:  # stopped: what still waits is cancelled
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                return
            if job is not _STOP:
                self._finish(job, error=Busy())

    def _batches(self, options: TranscribeOptions) -> bool:
        return self.model.family == "whisper" and options.batch_size > 1

    def _one(self, job: Job) -> None:
        try:
            info, segments = self.model.transcribe_stream(job.samples, job.options)
            if job.on_segments is None:
                self._finish(job, self.model.collect(info, segments))
                return
            kept: list[Segment] = []
            for segment in segments:
                if job.cancelled:
                    break
                kept.append(segment)
                job.on_segments([segment])
            self._finish(job, self.model.collect(info, kept))
        except Exception as error:  # that request's failure; the server goes on
            self._finish(job, error=error)

    def _pass(self, first: Job) -> Any:
        """One engine pass over `first` and the jobs with equal options that follow it;
        returns the job that ended the pass (other options, or the stop), if any."""
        from whisper_cli.whisper.engine import transcribe_files
        from whisper_cli.whisper.transcribe import read_samples

        options = first.options
        ended: list[Any] = []
        taken: dict[int, Job] = {}

        def items() -> Iterator[tuple[int, np.ndarray]]:
            job: Any = first
            for number in itertools.count():
                if not job.cancelled:
                    taken[number] = job
                    yield number, job.samples
                else:
                    self._finish(job, error=Busy())
                job = self._jobs.get()
                if job is _STOP or job.options != options:
                    ended.append(job)
                    return

        def on_segments(number: int, segments: list[Segment]) -> None:
            job = taken[number]
            if job.on_segments is not None and not job.cancelled:
                job.on_segments(segments)

        stream = transcribe_files(
            self.model,
            items(),
            options,
            read_samples,
            eager=True,
            pack=self.pack,
            on_segments=on_segments,
        )
        try:
            for done in stream:
                job = taken.pop(done.key)
                if done.error is not None:
                    self._finish(job, error=done.error)
                else:
                    self._finish(job, done.transcript)
        except Exception as error:  # the pass itself failed: every job in it fails
            for job in taken.values():
                self._finish(job, error=error)
        return ended[0] if ended else None
