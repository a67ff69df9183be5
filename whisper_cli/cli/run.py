"""The batch runner behind `transcribe` and `translate` (and the model loading that every
command shares): find the inputs, load the model once, then transcribe each input into its
files or onto standard output; one input failing does not stop the others.
"""

from __future__ import annotations

import dataclasses
import gc
import io
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from whisper_cli.cli.output import OutputPlan, Utf8Stdout, claim_for_writing, json_line
from whisper_cli.cli.ui import Busy, FileProgress, Ui, stdout_on_the_terminal

if TYPE_CHECKING:
    from whisper_cli.audio import DecodedAudio
    from whisper_cli.cli.cluster import ClusterSettings
    from whisper_cli.inputs import Job
    from whisper_cli.loading import ModelSpec
    from whisper_cli.options import TranscribeOptions
    from whisper_cli.protocol import SpeechModel
    from whisper_cli.results import Segment, TranscriptionInfo


@dataclasses.dataclass(frozen=True)
class ModelSettings:
    """Which model to load and where to run it."""

    name: str
    revision: str | None
    offline: bool
    cache_dir: Path | None
    device: str
    compute_type: str
    threads: int

    def load(self, ui: Ui) -> SpeechModel:
        """Load the model (raises ModelError); sets PyTorch's thread count first."""
        import_torch()
        from whisper_cli.errors import ModelError
        from whisper_cli.loading import resolve_device, slow_compute_type

        try:
            slow = slow_compute_type(self.compute_type, resolve_device(self.device))
        except ModelError:
            slow = None  # an unusable device: the load says so
        if slow is not None:
            ui.warning(slow)
        return self.spec().load(download_progress(ui.interactive))

    def spec(self) -> ModelSpec:
        """These settings as one value that pickles (for the workers of a cluster too)."""
        from whisper_cli.loading import ModelSpec

        cache_dir = None if self.cache_dir is None else str(self.cache_dir.absolute())
        return ModelSpec(
            self.name,
            self.revision,
            self.offline,
            cache_dir,
            self.device,
            self.compute_type,
            self.threads,
        )


def import_torch() -> None:
    """Import PyTorch with the cyclic garbage collector paused, then freeze everything the
    program holds so far out of its later passes. The import makes ~170,000 objects and sets
    off two full collections (0.07 s), and every full collection after it walks them all again
    (0.1 s more in a one-file run); the price is the import's own cyclic garbage, ~7,000
    objects that stay. For the program only: a library leaves its host's collector alone."""
    if "torch" in sys.modules:
        return
    enabled = gc.isenabled()
    gc.disable()
    try:
        import torch  # noqa: F401
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def download_progress(show: bool) -> type | None:
    """The tqdm class for Hub downloads: the hub's own bars, or silent ones."""
    if show:
        return None
    from huggingface_hub.utils import tqdm

    class SilentTqdm(tqdm):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)

    return SilentTqdm


def run_transcription(
    task: str,
    inputs: Sequence[str],
    include: Sequence[str] | None,
    exclude: Sequence[str] | None,
    settings: ModelSettings,
    options: TranscribeOptions,
    plan: OutputPlan,
    ui: Ui,
    shard: tuple[int, int] | None = None,
    cluster: ClusterSettings | None = None,
) -> None:
    """Transcribe (`task` "transcribe") or translate every input, as `plan` says (only
    those of part K of N, with `shard` (K, N)); on a Ray cluster with `cluster`."""
    from whisper_cli.inputs import outputs_exist

    jobs = discover_jobs(inputs, plan.output_dir, include, exclude, ui)
    if shard is not None:
        from whisper_cli.shard import shard_of

        index, count = shard
        found = len(jobs)
        jobs = [job for job in jobs if shard_of(job.key, count) == index]
        ui.info(f"shard {index}/{count}: {len(jobs)} of {found} inputs")
    if not plan.to_stdout:
        tell_renames(jobs, ui)
    if plan.to_stdout and len(jobs) > 1 and plan.formats != ("json",):
        raise typer.BadParameter(
            f"with several inputs it needs -f json (JSON Lines); {len(jobs)} inputs found",
            param_hint="'--stdout'",
        )
    with ui.batch(verb="translated" if task == "translate" else "transcribed") as batch:
        pending = []
        for job in jobs:
            if plan.skip_existing and outputs_exist(job, plan.formats):
                batch.skip(job.display, "outputs exist")  # before loading the model
            else:
                pending.append(job)
        if not pending:
            return
        json_lines = len(jobs) > 1
        if cluster is not None:
            from whisper_cli.cli.cluster import run_on_cluster

            run_on_cluster(pending, settings.spec(), options, plan, ui, batch, cluster, json_lines)
            return
        with ui.fatal_errors():
            whisper = settings.load(ui)
        ui.unsuited_model(whisper, options)
        # a transcript streaming onto the terminal shows the progress, and bars would overwrite it
        draw = not (plan.to_stdout and stdout_on_the_terminal())
        if len(pending) > 1 and options.batch_size > 1 and whisper.family == "whisper":
            from whisper_cli.cli.folder import run_many  # windows of many files at once

            busy = run_many(pending, whisper, options, plan, ui, batch, json_lines)
            pending = []
        else:
            busy = []
        # jobs that another process holds come last, each waited for (here, in the main
        # thread, where Ctrl-C stops the wait) and then done alone
        with ui.progress(pending + busy, draw) as progress:
            for job in pending:
                try:
                    with batch.job(job):
                        _transcribe_job(job, whisper, options, plan, ui, progress, json_lines)
                except Busy:
                    busy.append(job)
            for job in busy:
                with batch.job(job):
                    _transcribe_job(
                        job, whisper, options, plan, ui, progress, json_lines, wait=True
                    )


def _transcribe_job(
    job: Job,
    whisper: SpeechModel,
    options: TranscribeOptions,
    plan: OutputPlan,
    ui: Ui,
    progress: FileProgress,
    json_lines: bool,
    wait: bool = False,
) -> None:
    """Decode, transcribe and write one input (raises for a failure of this input).

    Raises `Busy` when another process holds the input's lock, unless `wait`.
    """
    from whisper_cli.writers import write_outputs

    with claim_for_writing(job, plan, ui, wait):
        info, segments = _start(job, whisper, options, ui, progress)
        found = 0

        def counted() -> Iterator[Segment]:
            nonlocal found
            for segment in segments:
                found += 1
                yield segment

        if plan.to_stdout:
            _write_stdout(job, whisper, info, counted(), plan, json_lines)
        else:
            transcript = whisper.collect(info, counted())
            written = write_outputs(transcript, job.output_base, plan.formats, plan.writer_options)
            ui.info(f"{job.display}: wrote {', '.join(str(path) for path in written)}")
        if not found:
            ui.no_speech(job.display)
        elif options.decoding.language is None and info.language is not None:
            ui.uncertain_language(job.display, info.language, info.language_probability)
        progress.done(job)


def _write_stdout(
    job: Job,
    whisper: SpeechModel,
    info: TranscriptionInfo,
    segments: Iterator[Segment],
    plan: OutputPlan,
    json_lines: bool,
) -> None:
    """Write the one format to standard output: subtitles and text as they are decoded."""
    from whisper_cli.writers import SegmentWriter, get_writer

    writer = get_writer(plan.formats[0], plan.writer_options)
    out = Utf8Stdout()
    sys.stdout.flush()
    if isinstance(writer, SegmentWriter):
        writer.write_segments(segments, out)
    else:
        text = io.StringIO()
        writer.write(whisper.collect(info, segments), text)
        out.write(json_line(job, text.getvalue()) if json_lines else text.getvalue())
    out.flush()


def decode_job(job: Job, ui: Ui) -> DecodedAudio:
    """An input's whole audio; its decoding warnings go to standard error."""
    from whisper_cli.audio import decode_audio

    decoded = decode_audio("-" if job.source is None else job.source)
    for warning in decoded.warnings:
        ui.warning(warning)
    return decoded


def _start(
    job: Job,
    whisper: SpeechModel,
    options: TranscribeOptions,
    ui: Ui,
    progress: FileProgress,
) -> tuple[TranscriptionInfo, Iterator[Segment]]:
    """Start transcribing one input; its segments, echoed with --verbose, as they come.

    The audio streams into the features block by block, so a long recording is never held
    in memory whole; decoding warnings are known once the features are.
    """
    from whisper_cli.audio import iter_audio
    from whisper_cli.whisper.languages import LANGUAGES

    with iter_audio("-" if job.source is None else job.source) as stream:
        info, segments = whisper.transcribe_stream(stream, options, progress.update)
        for warning in stream.warnings:
            ui.warning(warning)
    progress.start(job, info.duration)
    if options.decoding.language is None and info.language is not None:
        name = LANGUAGES.get(info.language, info.language).title()
        probability = f" ({info.language_probability:.2f})" if info.language_probability else ""
        ui.info(f"{job.display}: detected language {name}{probability}")
    return info, ui.echo_segments(segments)


def discover_jobs(
    inputs: Sequence[str],
    output_dir: Path,
    include: Sequence[str] | None,
    exclude: Sequence[str] | None,
    ui: Ui,
) -> list[Job]:
    """The jobs for the arguments; inputs that are errors are reported and counted as failed.
    With --verbose, a line tells how many hidden files and folders a folder walk passed over.
    """
    from whisper_cli.inputs import STDIN, discover

    if STDIN in inputs and sys.stdin is not None and sys.stdin.isatty():
        raise typer.BadParameter(
            "- reads audio from standard input, which is a terminal", param_hint="INPUT"
        )
    hidden: list[tuple[str, int]] = []
    jobs, errors = discover(inputs, output_dir, include or (), exclude or (), hidden)
    for name, count in hidden:
        ui.info(f"{name}: {count} hidden {'entry' if count == 1 else 'entries'} skipped")
    for name, message in errors:
        ui.input_error(name, message)
    return jobs


def tell_renames(jobs: Sequence[Job], ui: Ui) -> None:
    """A line for each input whose output name is not its stem (a name made safe, or made
    distinct from another input's): where its outputs go."""
    for job in jobs:
        if job.renamed:
            ui.notice(f"{job.display} → {job.output_base}.*")
