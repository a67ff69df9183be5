"""`--ray`: transcribe and translate on a Ray cluster (`whisper_cli.cluster`).

The driver (this process) claims each input with its lock file just before a worker is handed
it, so that other whisper-cli processes over the same output folder (another driver, `--shard`
jobs) never do it twice; the workers write the outputs atomically into the shared output
folder, or with `--ray-collect` (and `--stdout`) send the transcripts back to be written here.
One progress display covers the corpus, and every file is reported as a local run reports
it: an error line for each failure, the summary, and the exit status.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import typer

from whisper_cli.cli.folder import many_progress, write_transcript
from whisper_cli.cli.output import claim_for_writing
from whisper_cli.cli.ui import Busy, Skipped

if TYPE_CHECKING:
    from whisper_cli.cli.output import OutputPlan
    from whisper_cli.cli.ui import Batch, Ui
    from whisper_cli.cluster.pool import Event
    from whisper_cli.cluster.session import ClusterInfo
    from whisper_cli.cluster.worker import FileResult, FileTask, ModelSpec
    from whisper_cli.inputs import Job
    from whisper_cli.options import TranscribeOptions

GROUP_BATCHES = 4  # with --batch-size N > 1, a worker is handed up to 4N files at a time


@dataclass(frozen=True)
class ClusterSettings:
    """Where and how: the Ray address, the workers to start, and who writes the outputs."""

    address: str
    workers: int | None
    collect: bool  # the transcripts come back and are written (or printed) here


def cluster_settings(
    address: str | None, workers: int | None, collect: bool, stdout: bool, inputs: Sequence[str]
) -> ClusterSettings | None:
    """The cluster options, checked against each other: None without --ray."""
    if address is None:
        for given, name in ((workers is not None, "--ray-workers"), (collect, "--ray-collect")):
            if given:
                raise typer.BadParameter("it needs --ray ADDRESS", param_hint=f"'{name}'")
        return None
    from whisper_cli.inputs import STDIN

    if STDIN in inputs:
        raise typer.BadParameter(
            "Ray workers cannot read standard input (-): give files or folders",
            param_hint="'--ray'",
        )
    return ClusterSettings(address, workers, collect or stdout)


def run_on_cluster(
    jobs: Sequence[Job],
    model: ModelSpec,
    options: TranscribeOptions,
    plan: OutputPlan,
    ui: Ui,
    batch: Batch,
    cluster: ClusterSettings,
    json_lines: bool,
) -> None:
    """Transcribe `jobs` on the cluster, each claimed just before a worker gets it, and
    reported as it comes back; each failure on its own line while the rest go on. Each
    worker loads `model` with its `threads` CPU threads (1 when 0)."""
    from whisper_cli.cluster.pool import Cluster
    from whisper_cli.cluster.session import LOCAL, connect
    from whisper_cli.cluster.worker import WorkerSpec

    threads = model.threads or 1
    with contextlib.ExitStack() as stack:
        with ui.fatal_errors():
            cpus = cluster.workers * threads if cluster.workers else None
            info = stack.enter_context(
                connect(cluster.address, num_cpus=cpus, keep_session=ui.debug)
            )
            workers, gpus = _workers(cluster, info, model.device, threads)
            group = _group_size(options.batch_size, len(jobs), workers)
            workers = min(workers, math.ceil(len(jobs) / group))
            model = replace(model, threads=threads)
            spec = WorkerSpec(model, options, plan.formats, plan.writer_options, os.getcwd())
            pool = Cluster(spec, workers, cpus=threads, gpus=gpus)
        stack.callback(pool.close)
        where = "this machine" if cluster.address == LOCAL else f"{info.nodes} nodes"
        ui.info(
            f"Ray on {where} ({info.cpus:g} CPUs, {info.gpus:g} GPUs): {workers} workers, "
            f"{threads} threads{' and a GPU' if gpus else ''} each"
        )
        if ui.debug and info.session:
            ui.notice(f"Ray's logs are kept in {info.session}")
        run = _Run(jobs, plan, ui, batch, cluster.collect, json_lines)
        try:  # no worker could load the model, or every worker died: one line, exit 1
            with ui.fatal_errors(), many_progress(ui, len(jobs)) as progress:
                for event in pool.run(run.groups(group)):
                    seconds = run.handle(event, options)
                    if seconds is not None:
                        progress.done(seconds)
                run.report_refused()
        finally:  # interrupted: the claims still held are given back
            run.release()


def _workers(
    cluster: ClusterSettings, info: ClusterInfo, device: str, threads: int
) -> tuple[int, float]:
    """How many workers, and GPUs each: one per GPU when the model runs on GPUs, else one
    per `threads` CPUs, unless --ray-workers says."""
    on_gpus = device == "cuda" or (device == "auto" and info.gpus >= 1)
    if cluster.workers:
        return cluster.workers, 1.0 if on_gpus else 0.0
    if on_gpus:
        return max(1, int(info.gpus)), 1.0
    return max(1, int(info.cpus // threads)), 0.0


def _group_size(batch_size: int, files: int, workers: int) -> int:
    """Files handed to a worker at a time: one, or with --batch-size N up to 4N (for the engine
    to decode together), but no more than an even share, so that every worker has some."""
    if batch_size == 1:
        return 1
    return max(1, min(GROUP_BATCHES * batch_size, math.ceil(files / workers)))


class _Run:
    """The driver's side of one run: claims, and what each outcome means on the terminal."""

    def __init__(
        self,
        jobs: Sequence[Job],
        plan: OutputPlan,
        ui: Ui,
        batch: Batch,
        collect: bool,
        json_lines: bool,
    ) -> None:
        self.jobs, self.plan, self.ui, self.batch = jobs, plan, ui, batch
        self.collect, self.json_lines = collect, json_lines
        self.locks: dict[int, contextlib.ExitStack] = {}
        self.refused: list[tuple[Job, str]] = []

    def groups(self, size: int) -> Iterator[tuple[FileTask, ...]]:
        """The jobs this process may do, in groups of `size`, each job claimed just before its
        group is handed out; jobs that another process holds come last, each waited for."""
        busy: list[int] = []
        group: list[FileTask] = []
        for index in range(len(self.jobs)):
            try:
                group += self._claim(index, wait=False)
            except Busy:
                busy.append(index)
            if len(group) >= size:
                yield tuple(group)
                group = []
        if group:
            yield tuple(group)
        for index in busy:
            if task := self._claim(index, wait=True):
                yield tuple(task)

    def _claim(self, index: int, wait: bool) -> list[FileTask]:
        from whisper_cli.cluster.worker import FileTask

        job = self.jobs[index]
        lock = contextlib.ExitStack()
        try:
            lock.enter_context(claim_for_writing(job, self.plan, self.ui, wait))
        except Skipped as skipped:
            self.refused.append((job, str(skipped)))
            return []
        self.locks[index] = lock
        assert job.source is not None  # standard input is refused with --ray
        base = None if self.collect else str(job.output_base)
        return [FileTask(index, str(job.source), base)]

    def report_refused(self) -> None:
        while self.refused:
            job, reason = self.refused.pop(0)
            self.batch.skip(job.display, reason)

    def handle(self, event: Event, options: TranscribeOptions) -> float | None:
        """Tell what happened; the seconds of audio of a file done (None for other events)."""
        from whisper_cli.cluster.pool import WorkerLost, WorkerRefused
        from whisper_cli.cluster.worker import ModelFacts

        self.report_refused()
        if isinstance(event, ModelFacts):
            self.ui.unsuited_model(event, options)
            self.ui.info(f"the first Ray worker is ready: pid {event.pid} on {event.host}")
            return None
        if isinstance(event, WorkerLost):
            files = f"{len(event.keys)} file{'s' if len(event.keys) != 1 else ''}"
            then = "given up" if event.given_up else "handed to another worker"
            self.ui.notice(f"a Ray worker died ({event.where}) with {files} in work: {then}")
            return None
        if isinstance(event, WorkerRefused):
            self.ui.warning(
                f"a Ray worker cannot load the model; going on without it: {event.error}"
            )
            return None
        return self._file(event, options)

    def _file(self, result: FileResult, options: TranscribeOptions) -> float:
        job = self.jobs[result.key]
        for warning in result.warnings:
            self.ui.warning(warning)
        with self.batch.job(job), self.locks.pop(result.key):
            if result.error is not None:
                raise result.error
            if result.transcript is not None:
                write_transcript(job, result.transcript, self.plan, self.ui, self.json_lines)
            else:
                self.ui.info(f"{job.display}: wrote {', '.join(result.written)}")
            info = result.info
            if not result.has_speech:
                self.ui.no_speech(job.display)
            elif info and options.decoding.language is None and info.language is not None:
                self.ui.uncertain_language(job.display, info.language, info.language_probability)
        return 0.0 if result.info is None else result.info.duration

    def release(self) -> None:
        for lock in self.locks.values():
            lock.close()
        self.locks.clear()
