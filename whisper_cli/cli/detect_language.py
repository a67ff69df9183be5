"""The `detect-language` command: the spoken language of each input."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

import typer

from whisper_cli.cli.output import json_text
from whisper_cli.cli.params import (
    DEFAULT_MODEL,
    OUTPUT,
    CacheDirOpt,
    ComputeTypeOpt,
    DebugOpt,
    DeviceOpt,
    ExcludeOpt,
    IncludeOpt,
    InputsArg,
    ModelOpt,
    OfflineOpt,
    QuietOpt,
    RevisionOpt,
    ThreadsOpt,
)
from whisper_cli.cli.run import ModelSettings, decode_job, discover_jobs
from whisper_cli.cli.ui import Ui


def detect_language(
    inputs: InputsArg,
    top: Annotated[
        int,
        typer.Option(
            min=1, help="Print the K most likely languages.", metavar="K", rich_help_panel=OUTPUT
        ),
    ] = 1,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help='One JSON object per line: {"file", "language", "probability", "top": '
            '[{"language", "probability"}, …]}.',
            rich_help_panel=OUTPUT,
        ),
    ] = False,
    model: ModelOpt = DEFAULT_MODEL,
    revision: RevisionOpt = None,
    offline: OfflineOpt = False,
    cache_dir: CacheDirOpt = None,
    device: DeviceOpt = "auto",
    compute_type: ComputeTypeOpt = "auto",
    threads: ThreadsOpt = 0,
    include: IncludeOpt = None,
    exclude: ExcludeOpt = None,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Detect the spoken language of each input, from its first 30 seconds of speech.

    Prints one line per input on standard output: the input, the language code and its
    probability, tab-separated (with --top, more code and probability pairs follow). An input
    in which voice activity detection hears no speech gets "none" for its language (null in
    JSON) and a notice on standard error; it is not a failure (exit status 0). A language less
    probable than 0.5 gets a warning.
    """
    ui = Ui(quiet=quiet, debug=debug)
    jobs = discover_jobs(inputs, Path(), include, exclude, ui)
    settings = ModelSettings(model, revision, offline, cache_dir, device, compute_type, threads)
    with ui.batch(verb="detected") as batch:
        if not jobs:
            return
        with ui.fatal_errors():
            whisper = settings.load(ui)
        if not whisper.can_detect_language:
            why = "is English-only" if whisper.family == "whisper" else "is not a Whisper model"
            ui.fatal(f"model {whisper.name!r} {why}, so it cannot detect languages")
        for job in jobs:
            with batch.job(job):
                probabilities = whisper.detect_language(decode_job(job, ui).samples)
                line = format_detection(job.display, probabilities, top, as_json) + "\n"
                sys.stdout.flush()
                sys.stdout.buffer.write(line.encode("utf-8", "surrogateescape"))  # a name's bytes
                sys.stdout.buffer.flush()
                if not probabilities:
                    ui.no_speech(job.display)
                else:
                    code, probability = next(iter(probabilities.items()))
                    ui.uncertain_language(job.display, code, probability)


def format_detection(path: str, probabilities: Mapping[str, float], top: int, as_json: bool) -> str:
    """One line of `detect-language` output; `probabilities` are sorted most likely first, and
    empty where no speech was heard (the language is then "none", or null in JSON)."""
    best = list(probabilities.items())[:top]
    if as_json:
        record = {
            "file": path,
            "language": best[0][0] if best else None,
            "probability": best[0][1] if best else None,
            "top": [{"language": code, "probability": p} for code, p in best],
        }
        return json_text(record)
    if not best:
        return f"{path}\tnone"
    return "\t".join([path, *(f"{code}\t{p:.4f}" for code, p in best)])
