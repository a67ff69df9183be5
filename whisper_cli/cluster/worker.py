"""What each Ray worker runs: the model, loaded once, and the files it is handed.

`Transcriber` is a plain class (`pool` makes it a Ray actor), so it can be tried without Ray.
Everything that crosses between the driver and a worker is a frozen dataclass that pickles:
the settings (`WorkerSpec`), the files (`FileTask`) and their outcomes (`FileResult`).
"""

from __future__ import annotations

import os
import pickle
import socket
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from whisper_cli.options import TranscribeOptions
    from whisper_cli.protocol import SpeechModel
    from whisper_cli.results import Transcript, TranscriptionInfo
    from whisper_cli.writers import WriterOptions


@dataclass(frozen=True)
class ModelSpec:
    """Which model each worker loads, and how: the driver's command-line settings."""

    name: str
    revision: str | None = None
    offline: bool = False
    cache_dir: str | None = None
    device: str = "auto"
    compute_type: str = "auto"
    threads: int = 0  # PyTorch's CPU threads in each worker; 0 keeps PyTorch's default


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker needs besides its files."""

    model: ModelSpec
    options: TranscribeOptions
    formats: tuple[str, ...]
    writer_options: WriterOptions
    cwd: str  # the driver's working folder: relative paths are taken from there


@dataclass(frozen=True)
class FileTask:
    """One file to transcribe: `source` as the driver names it; the outputs are written at
    `output_base` by the worker, or (None) the transcript is sent back."""

    key: Any
    source: str
    output_base: str | None = None


@dataclass(frozen=True)
class FileResult:
    """One file's outcome: why it failed, or what was found (and the transcript itself when
    it was not written by the worker), with the decoder's warnings."""

    key: Any
    error: BaseException | None = None
    warnings: tuple[str, ...] = ()
    info: TranscriptionInfo | None = None
    has_speech: bool = False
    transcript: Transcript | None = None
    written: tuple[str, ...] = ()


@dataclass(frozen=True)
class ModelFacts:
    """What a worker's model is, for the driver's warnings, and where the worker runs."""

    name: str
    family: str
    can_translate: bool
    is_multilingual: bool
    device: str
    host: str
    pid: int


@dataclass(frozen=True)
class Refused:
    """A worker whose model could not be loaded answers every call with this."""

    error: BaseException


class Transcriber:
    """One worker: loads the model on creation, then transcribes the files it is handed."""

    def __init__(self, spec: WorkerSpec) -> None:
        self.spec = spec
        # the driver's relative paths hold where its working folder exists (shared storage)
        self.relative_ok = _enter(spec.cwd)
        self.model: SpeechModel | None = None
        self.error: BaseException | None = None
        try:
            self.model = _load(spec.model)
        except Exception as error:  # told to the driver by `ready`, not raised
            self.error = portable(error)

    def ready(self) -> ModelFacts | Refused:
        """The model's facts once it is loaded, or why it could not be."""
        if self.model is None:
            assert self.error is not None
            return Refused(self.error)
        return ModelFacts(
            name=self.model.name,
            family=self.model.family,
            can_translate=self.model.can_translate,
            is_multilingual=self.model.is_multilingual,
            device=str(self.model.device),
            host=socket.gethostname(),
            pid=os.getpid(),
        )

    def transcribe(self, tag: Any, tasks: Sequence[FileTask]) -> tuple[Any, list[FileResult]]:
        """Transcribe the files; `tag` comes back with their results. (The driver hands files
        only to workers whose `ready` said the model loaded.)"""
        if self.model is None:
            assert self.error is not None
            return tag, [FileResult(task.key, error=self.error) for task in tasks]
        return tag, list(self._results(self.model, tasks))

    def _results(self, model: SpeechModel, tasks: Sequence[FileTask]) -> Iterator[FileResult]:
        options = self.spec.options
        if len(tasks) > 1 and options.batch_size > 1 and model.family == "whisper":
            yield from self._together(model, tasks)
        else:
            for task in tasks:
                yield self._alone(model, task)

    def _alone(self, model: SpeechModel, task: FileTask) -> FileResult:
        """One file on its own, as the command line does it with one input."""
        from whisper_cli.audio import iter_audio

        try:
            with iter_audio(self._path(task.source)) as stream:
                info, segments = model.transcribe_stream(stream, self.spec.options)
                transcript = model.collect(info, segments)
                warnings = stream.warnings
            return self._finish(task, transcript, warnings)
        except Exception as error:  # this file's failure; the others go on
            return FileResult(task.key, error=portable(error))

    def _together(self, model: SpeechModel, tasks: Sequence[FileTask]) -> Iterator[FileResult]:
        """The files through the many-files engine: windows of several files at once."""
        from whisper_cli.whisper.engine import transcribe_files
        from whisper_cli.whisper.transcribe import read_samples

        items = ((task, self._path(task.source)) for task in tasks)
        for done in transcribe_files(model, items, self.spec.options, read_samples):  # type: ignore[arg-type]
            task = done.key
            if done.error is not None:
                yield FileResult(task.key, error=portable(done.error), warnings=done.warnings)
                continue
            assert done.transcript is not None
            try:
                yield self._finish(task, done.transcript, done.warnings)
            except Exception as error:
                yield FileResult(task.key, error=portable(error), warnings=done.warnings)

    def _finish(
        self, task: FileTask, transcript: Transcript, warnings: Sequence[str]
    ) -> FileResult:
        """Write the outputs here, or keep the transcript to send back."""
        from whisper_cli.results import TranscriptionInfo

        written: tuple[str, ...] = ()
        if task.output_base is not None:
            from whisper_cli.writers import write_outputs

            paths = write_outputs(
                transcript,
                Path(self._path(task.output_base)),
                self.spec.formats,
                self.spec.writer_options,
            )
            written = tuple(str(path) for path in paths)
        info = TranscriptionInfo(
            transcript.language, transcript.language_probability, transcript.duration
        )
        return FileResult(
            task.key,
            warnings=tuple(warnings),
            info=info,
            has_speech=bool(transcript.segments),
            transcript=None if task.output_base is not None else transcript,
            written=written,
        )

    def _path(self, name: str) -> str:
        return name if self.relative_ok else os.path.join(self.spec.cwd, name)


def _enter(folder: str) -> bool:
    """Work from the driver's folder where it exists here, so that paths and messages read
    the same as the driver's."""
    try:
        os.chdir(folder)
    except OSError:
        return False
    return True


def _load(spec: ModelSpec) -> SpeechModel:
    if spec.threads > 0:
        import torch

        torch.set_num_threads(spec.threads)
    from whisper_cli.loading import load_model

    return load_model(
        spec.name,
        device=spec.device,
        compute_type=spec.compute_type,
        revision=spec.revision,
        offline=spec.offline,
        cache_dir=spec.cache_dir,
    )


def portable(error: BaseException) -> BaseException:
    """The error itself if it survives pickling (to cross to the driver), else a
    RuntimeError that names it."""
    try:
        copy = pickle.loads(pickle.dumps(error))
    except Exception:
        return RuntimeError(f"{type(error).__name__}: {error}")
    return error if type(copy) is type(error) else RuntimeError(f"{type(error).__name__}: {error}")
