"""The `whisper-cli` command line: a thin adapter from Typer parameters to the library.

Parameters become one `TranscribeOptions` and one `WriterOptions` (`build_options`), which
are passed down; the library does the work and raises `WhisperCliError` for problems a user
can fix. Data goes to standard output, everything else (progress, warnings, errors, the
summary) to standard error.

Exit status: 0 when every input succeeded, 1 when any failed (the others are still done) or
the model cannot be loaded, 2 for usage errors, 130 on Ctrl-C and 143 on SIGTERM. Outputs are
written atomically, so an interrupted run leaves no partial file.

`--help` and shell completion must stay fast (completion runs the program on every TAB), so
this module imports neither torch nor numpy nor huggingface_hub at the top: commands import
what they need when they run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import json
import re
import signal
import sys
import traceback
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, NoReturn

import typer

from whisper_cli import __version__
from whisper_cli.errors import OptionsError, WhisperCliError
from whisper_cli.models import MODELS
from whisper_cli.options import APPEND_PUNCTUATIONS, PREPEND_PUNCTUATIONS
from whisper_cli.writers import FORMATS

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID

    from whisper_cli.audio import DecodedAudio
    from whisper_cli.inputs import Job
    from whisper_cli.models import WhisperModel
    from whisper_cli.options import TranscribeOptions
    from whisper_cli.results import Segment
    from whisper_cli.speech2text import Speech2TextModel
    from whisper_cli.transcribe import TranscriptionInfo
    from whisper_cli.writers import WriterOptions

    Model = WhisperModel | Speech2TextModel

PROG = "whisper-cli"

# exit status (2, for usage errors, is Typer's)
EXIT_FAILED = 1
EXIT_INTERRUPTED = 128 + signal.SIGINT  # 130
EXIT_TERMINATED = 128 + signal.SIGTERM  # 143

# defaults that differ from the library's: openai-whisper's command line decodes with beams
DEFAULT_MODEL = "turbo"
DEFAULT_FORMAT = "all"

# (what it does, the command): the help's epilog and the man page's EXAMPLES
EXAMPLES: tuple[tuple[str, str], ...] = (
    ("Subtitles for one file, in the current folder", "whisper-cli transcribe -f srt talk.mp3"),
    (
        "A whole folder, every format, resumable",
        "whisper-cli transcribe -m base --skip-existing -o out/ recordings/",
    ),
    (
        "Pipe audio in and SRT out",
        "cat talk.ogg | whisper-cli transcribe -f srt --stdout - > talk.srt",
    ),
    ("Translate French speech into English text", "whisper-cli translate -m small -f txt fr.wav"),
    ("Guess the spoken language of files", "whisper-cli detect-language -m base --top 3 *.wav"),
    ("Prepare a machine for offline use", "whisper-cli models download base small"),
)

# help panels
MODEL = "Model"
DECODING = "Decoding"
FALLBACK = "Fallback"
PROMPT = "Prompt"
WORDS = "Word timestamps"
INPUT = "Input"
OUTPUT = "Output"
RUN = "Run"


Device = Literal["auto", "cpu", "cuda"]
ComputeType = Literal["auto", "float32", "float16", "bfloat16", "int8"]  # models.COMPUTE_TYPES


class Terminated(BaseException):
    """SIGTERM arrived: unwinds like KeyboardInterrupt, so atomic writes and locks clean up."""


# ---------------------------------------------------------------------------------------------
# parsing values (callbacks run at parse time, before anything heavy is imported)


def parse_optional_float(text: str | float | None) -> float | None:
    """openai-whisper's `optional_float`: a number, or `none` to switch the feature off."""
    if text is None or isinstance(text, float | int):  # a default, already parsed
        return text
    if text.strip().lower() == "none":
        return None
    try:
        return float(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a number or 'none'") from None


def _check_formats(value: str) -> str:
    from whisper_cli.writers import parse_formats

    try:
        parse_formats(value)
    except OptionsError as error:
        raise typer.BadParameter(str(error)) from None
    return value


def _check_language(value: str | None) -> str | None:
    if value is None:
        return None
    from whisper_cli.tokenizer import language_code

    try:
        return language_code(value)
    except ValueError:
        raise typer.BadParameter(
            f"unknown language {value!r}: use a code such as en or de, or a name such as German"
        ) from None


def _check_clip_timestamps(value: str) -> str:
    parse_clip_timestamps(value)
    return value


def parse_clip_timestamps(value: str) -> tuple[float, ...]:
    """'0' or '10,20.5,30' → seconds; a usage error for anything else."""
    from whisper_cli.options import parse_clip_timestamps as parse

    try:
        return parse(value)
    except OptionsError as error:
        raise typer.BadParameter(str(error)) from None


def _check_suppress_tokens(value: str) -> str:
    parse_suppress_tokens(value)
    return value


def parse_suppress_tokens(value: str) -> tuple[int, ...]:
    """'-1' or '-1,50257' → token ids (-1: the non-speech symbols); a usage error otherwise."""
    try:
        tokens = tuple(int(part) for part in value.split(",") if part.strip())
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a comma-separated list of token ids") from None
    if any(token < -1 for token in tokens):
        raise typer.BadParameter("token ids cannot be below -1")
    return tokens


def _check_patience(value: float | None) -> float | None:
    if value is not None and value <= 0:
        raise typer.BadParameter("patience must be above 0")
    return value


def _complete_models(incomplete: str) -> list[str]:
    return [name for name in MODELS if name.startswith(incomplete)]


def _complete_languages(incomplete: str) -> list[str]:
    from whisper_cli.tokenizer import LANGUAGES

    return [code for code in LANGUAGES if code.startswith(incomplete.lower())]


def _complete_formats(incomplete: str) -> list[str]:
    done, _, last = incomplete.rpartition(",")
    prefix = f"{done}," if done else ""
    return [prefix + name for name in (*FORMATS, "all") if name.startswith(last)]


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"{PROG} {__version__}")
        raise typer.Exit()


# ---------------------------------------------------------------------------------------------
# the app

app = typer.Typer(
    name=PROG,
    epilog="**Examples**\n\n"
    + "\n".join(f"* {what}:\\\n  `{command}`" for what, command in EXAMPLES),
    no_args_is_help=True,
    rich_markup_mode="markdown",
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_show_locals=False,
)
models_app = typer.Typer(
    help="List the known models and which are cached (the default), or download models for "
    "offline use.",
    invoke_without_command=True,
    rich_markup_mode="markdown",
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(models_app, name="models")


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_show_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Transcribe speech to text, subtitles and JSON with OpenAI's Whisper models, in plain
    PyTorch.

    Give the commands files, folders (searched recursively) or - for standard input. A model
    is a short name (base, small, turbo, …) downloaded once into the Hugging Face cache, a
    Hub repo id or a local folder; `whisper-cli models` shows which are cached.

    Outputs go to files (or to standard output with --stdout); progress, warnings and errors
    go to standard error, one line per failed input. The exit status is 0 when every input
    succeeded, 1 when any failed, 2 for a wrong command line.
    """


# options shared by every command that loads a model
ModelOpt = Annotated[
    str,
    typer.Option(
        "--model",
        "-m",
        metavar="NAME",
        envvar="WHISPER_CLI_MODEL",
        help="A short name (tiny, base, small, medium, large-v3, turbo, …), a Hugging Face repo "
        "id, a local model folder, or an openai-whisper .pt file.",
        autocompletion=_complete_models,
        rich_help_panel=MODEL,
    ),
]
RevisionOpt = Annotated[
    str | None,
    typer.Option(
        metavar="REV",
        help="The Hub revision (branch, tag or commit) of the model (default: main).",
        rich_help_panel=MODEL,
    ),
]
OfflineOpt = Annotated[
    bool,
    typer.Option(
        "--offline",
        help="Use the local Hugging Face cache only, never the network "
        "(also when HF_HUB_OFFLINE=1).",
        rich_help_panel=MODEL,
    ),
]
CacheDirOpt = Annotated[
    Path | None,
    typer.Option(
        metavar="DIR",
        help="The Hugging Face cache folder (default: $HF_HUB_CACHE, else $HF_HOME/hub).",
        file_okay=False,
        rich_help_panel=MODEL,
    ),
]
DeviceOpt = Annotated[
    Device,
    typer.Option(
        help="Where to run the model: auto picks CUDA when available.", rich_help_panel=MODEL
    ),
]
ComputeTypeOpt = Annotated[
    ComputeType,
    typer.Option(
        help="Weight precision: auto is float16 on CUDA, float32 on the CPU; int8 is CPU only.",
        rich_help_panel=MODEL,
    ),
]
ThreadsOpt = Annotated[
    int,
    typer.Option(
        help="CPU threads for PyTorch; 0 keeps PyTorch's default.",
        min=0,
        metavar="N",
        rich_help_panel=MODEL,
    ),
]
InputsArg = Annotated[
    list[str],
    typer.Argument(
        metavar="INPUT...",
        help="Audio or video files, folders (searched recursively), or - for standard input.",
        show_default=False,
        rich_help_panel=INPUT,
    ),
]
IncludeOpt = Annotated[
    list[str] | None,
    typer.Option(
        metavar="GLOB",
        help="In folders, take only files matching this pattern (repeatable).",
        show_default=False,
        rich_help_panel=INPUT,
    ),
]
ExcludeOpt = Annotated[
    list[str] | None,
    typer.Option(
        metavar="GLOB",
        help="In folders, skip files and folders matching this pattern (repeatable).",
        show_default=False,
        rich_help_panel=INPUT,
    ),
]
QuietOpt = Annotated[
    bool,
    typer.Option(
        "--quiet",
        "-q",
        help="No progress and no summary: errors and warnings only.",
        rich_help_panel=RUN,
    ),
]
DebugOpt = Annotated[
    bool,
    typer.Option("--debug", help="Show tracebacks for unexpected errors.", rich_help_panel=RUN),
]


@app.command(no_args_is_help=True)
def transcribe(
    inputs: InputsArg,
    # model
    model: ModelOpt = DEFAULT_MODEL,
    revision: RevisionOpt = None,
    offline: OfflineOpt = False,
    cache_dir: CacheDirOpt = None,
    device: DeviceOpt = "auto",
    compute_type: ComputeTypeOpt = "auto",
    threads: ThreadsOpt = 0,
    # decoding
    language: Annotated[
        str | None,
        typer.Option(
            "--language",
            "-l",
            metavar="LANG",
            help="The spoken language, as a code (en, de, …) or a name (English, German, …); "
            "detected when not given.",
            callback=_check_language,
            autocompletion=_complete_languages,
            show_default=False,
            rich_help_panel=DECODING,
        ),
    ] = None,
    temperature: Annotated[
        float,
        typer.Option(
            metavar="FLOAT",
            min=0.0,
            help="Temperature of the first decoding attempt.",
            rich_help_panel=DECODING,
        ),
    ] = 0.0,
    best_of: Annotated[
        int,
        typer.Option(
            metavar="N",
            min=1,
            help="Candidates sampled when the temperature is above 0.",
            rich_help_panel=DECODING,
        ),
    ] = 5,
    beam_size: Annotated[
        int,
        typer.Option(
            metavar="N",
            min=1,
            help="Beams of the beam search at temperature 0.",
            rich_help_panel=DECODING,
        ),
    ] = 5,
    patience: Annotated[
        float | None,
        typer.Option(
            metavar="FLOAT",
            help="Beam search patience: finished beams to wait for, as a multiple of the beam "
            "size (default: 1.0).",
            callback=_check_patience,
            show_default=False,
            rich_help_panel=DECODING,
        ),
    ] = None,
    length_penalty: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=1.0,
            metavar="ALPHA",
            help="Rank candidates by length-penalised log-probability, with this alpha; "
            "by their mean log-probability when not given.",
            show_default=False,
            rich_help_panel=DECODING,
        ),
    ] = None,
    suppress_tokens: Annotated[
        str,
        typer.Option(
            metavar="IDS",
            help="Comma-separated token ids never to sample; -1 stands for the non-speech symbols.",
            callback=_check_suppress_tokens,
            rich_help_panel=DECODING,
        ),
    ] = "-1",
    language_detection_windows: Annotated[
        int,
        typer.Option(
            min=1,
            metavar="N",
            help="Detect the language over this many 30-second windows that hold speech.",
            rich_help_panel=DECODING,
        ),
    ] = 1,
    batch_size: Annotated[
        int,
        typer.Option(
            min=1,
            metavar="N",
            help="Decode N speech chunks (found by voice activity detection, up to 30 s each) "
            "at once instead of the sequential 30-s windows; faster, with no previous-text "
            "prompt between chunks.",
            rich_help_panel=DECODING,
        ),
    ] = 1,
    # fallback
    temperature_increment_on_fallback: Annotated[
        float | None,
        typer.Option(
            parser=parse_optional_float,
            metavar="FLOAT|none",
            help="Raise the temperature by this much while a window's text fails the "
            "thresholds below; 0 or none: no fallback.",
            rich_help_panel=FALLBACK,
        ),
    ] = 0.2,
    compression_ratio_threshold: Annotated[
        float | None,
        typer.Option(
            parser=parse_optional_float,
            metavar="FLOAT|none",
            help="Decode again hotter when the text's gzip compression ratio is above this "
            "(too repetitive).",
            rich_help_panel=FALLBACK,
        ),
    ] = 2.4,
    logprob_threshold: Annotated[
        float | None,
        typer.Option(
            parser=parse_optional_float,
            metavar="FLOAT|none",
            help="Decode again hotter when the mean token log-probability is below this.",
            rich_help_panel=FALLBACK,
        ),
    ] = -1.0,
    no_speech_threshold: Annotated[
        float | None,
        typer.Option(
            parser=parse_optional_float,
            metavar="FLOAT|none",
            help="Treat a window as silent when its no-speech probability is above this and "
            "its log-probability below --logprob-threshold.",
            rich_help_panel=FALLBACK,
        ),
    ] = 0.6,
    skip_silent_windows: Annotated[
        bool,
        typer.Option(
            "--skip-silent-windows/--no-skip-silent-windows",
            help="Skip 30-s windows in which voice activity detection (Silero VAD) hears no "
            "speech, instead of letting the model invent text for silence or music.",
            rich_help_panel=FALLBACK,
        ),
    ] = True,
    # prompt
    initial_prompt: Annotated[
        str | None,
        typer.Option(
            metavar="TEXT",
            help="Text to prime the first window with: names, spelling, style.",
            show_default=False,
            rich_help_panel=PROMPT,
        ),
    ] = None,
    carry_initial_prompt: Annotated[
        bool,
        typer.Option(
            "--carry-initial-prompt",
            help="Put the initial prompt before every window's prompt, not only the first.",
            rich_help_panel=PROMPT,
        ),
    ] = False,
    condition_on_previous_text: Annotated[
        bool,
        typer.Option(
            "--condition-on-previous-text/--no-condition-on-previous-text",
            help="Prompt each window with the text before it (more consistent; turn off if "
            "the output gets stuck repeating itself).",
            rich_help_panel=PROMPT,
        ),
    ] = True,
    # word timestamps
    word_timestamps: Annotated[
        bool,
        typer.Option(
            "--word-timestamps",
            help="Time every word (from the cross-attention); adds words to the JSON.",
            rich_help_panel=WORDS,
        ),
    ] = False,
    prepend_punctuations: Annotated[
        str,
        typer.Option(
            metavar="CHARS",
            help="Punctuation joined to the word after it.",
            rich_help_panel=WORDS,
        ),
    ] = PREPEND_PUNCTUATIONS,
    append_punctuations: Annotated[
        str,
        typer.Option(
            metavar="CHARS",
            help="Punctuation joined to the word before it.",
            rich_help_panel=WORDS,
        ),
    ] = APPEND_PUNCTUATIONS,
    hallucination_silence_threshold: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            metavar="SECONDS",
            help="Skip silences longer than this around suspected hallucinations; implies "
            "--word-timestamps.",
            show_default=False,
            rich_help_panel=WORDS,
        ),
    ] = None,
    split_on_pauses: Annotated[
        float | None,
        typer.Option(
            parser=parse_optional_float,
            metavar="SECONDS|none",
            help="With word timestamps, end a segment (a subtitle) where its words are this far "
            "apart, so that none spans a silence.",
            rich_help_panel=WORDS,
        ),
    ] = 0.5,
    # input
    clip_timestamps: Annotated[
        str,
        typer.Option(
            metavar="SECONDS",
            help="Only these parts: start,end,start,end,… in seconds; the last end defaults to "
            "the end of the file.",
            callback=_check_clip_timestamps,
            rich_help_panel=INPUT,
        ),
    ] = "0",
    include: IncludeOpt = None,
    exclude: ExcludeOpt = None,
    # output
    output_format: Annotated[
        str,
        typer.Option(
            "--output-format",
            "-f",
            metavar="FORMATS",
            help="txt, srt, vtt, tsv, json, or a comma-separated list of them, or all.",
            callback=_check_formats,
            autocompletion=_complete_formats,
            rich_help_panel=OUTPUT,
        ),
    ] = DEFAULT_FORMAT,
    output_dir: Annotated[
        Path,
        typer.Option(
            "--output-dir",
            "-o",
            metavar="DIR",
            file_okay=False,
            help="Where to write the outputs (created if missing); files found in folders keep "
            "their relative place.",
            show_default="current folder",
            rich_help_panel=OUTPUT,
        ),
    ] = Path(),
    stdout: Annotated[
        bool,
        typer.Option(
            "--stdout",
            help="Write the one chosen format to standard output instead of files (JSON Lines "
            "with a path key for several inputs).",
            rich_help_panel=OUTPUT,
        ),
    ] = False,
    skip_existing: Annotated[
        bool,
        typer.Option(
            "--skip-existing",
            help="Skip inputs whose outputs all exist already (resume a batch).",
            rich_help_panel=OUTPUT,
        ),
    ] = False,
    max_line_width: Annotated[
        int | None,
        typer.Option(
            min=1,
            metavar="CHARS",
            help="Wrap subtitle lines at this width; implies --word-timestamps.",
            show_default=False,
            rich_help_panel=OUTPUT,
        ),
    ] = None,
    max_line_count: Annotated[
        int | None,
        typer.Option(
            min=1,
            metavar="LINES",
            help="At most this many lines per subtitle cue (needs --max-line-width).",
            show_default=False,
            rich_help_panel=OUTPUT,
        ),
    ] = None,
    max_words_per_line: Annotated[
        int | None,
        typer.Option(
            min=1,
            metavar="WORDS",
            help="At most this many words per subtitle cue; implies --word-timestamps.",
            show_default=False,
            rich_help_panel=OUTPUT,
        ),
    ] = None,
    highlight_words: Annotated[
        bool,
        typer.Option(
            "--highlight-words",
            help="Underline each word in subtitles as it is spoken; implies --word-timestamps.",
            rich_help_panel=OUTPUT,
        ),
    ] = False,
    # run
    quiet: QuietOpt = False,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose",
            "-v",
            help="Print each segment on standard error as it is decoded.",
            rich_help_panel=RUN,
        ),
    ] = False,
    debug: DebugOpt = False,
) -> None:
    """Transcribe speech in audio and video files to text, subtitles and JSON."""
    _transcription("transcribe", locals())


@app.command(
    name="translate",
    help="Translate speech in audio and video files into English text, subtitles and JSON.",
    no_args_is_help=True,
)
@functools.wraps(transcribe)  # the same parameters as transcribe, declared once
def translate(**values: Any) -> None:
    _transcription("translate", values)


@app.command("detect-language", no_args_is_help=True)
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
    """Detect the spoken language of each input, from its first 30 seconds.

    Prints one line per input on standard output: the input, the language code and its
    probability, tab-separated (with --top, more code and probability pairs follow).
    """
    ui = Ui(quiet=quiet, debug=debug)
    jobs = _discover(inputs, Path(), include, exclude, ui)
    settings = ModelSettings(model, revision, offline, cache_dir, device, compute_type, threads)
    with ui.batch(verb="detected") as batch:
        if not jobs:
            return
        with ui.fatal_errors():
            whisper = settings.load(ui)
        if not whisper.can_detect_language:
            why = "is English-only" if hasattr(whisper, "tokenizer") else "is not a Whisper model"
            ui.fatal(f"model {whisper.name!r} {why}, so it cannot detect languages")
        for job in jobs:
            with batch.job(job):
                probabilities = whisper.detect_language(_decode(job, ui).samples)
                typer.echo(format_detection(job.display, probabilities, top, as_json))


def format_detection(path: str, probabilities: Mapping[str, float], top: int, as_json: bool) -> str:
    """One line of `detect-language` output; `probabilities` are sorted most likely first."""
    best = list(probabilities.items())[:top]
    if as_json:
        record = {
            "file": path,
            "language": best[0][0],
            "probability": best[0][1],
            "top": [{"language": code, "probability": p} for code, p in best],
        }
        return json.dumps(record, ensure_ascii=False)
    return "\t".join([path, *(f"{code}\t{p:.4f}" for code, p in best)])


@models_app.callback()
def _models_default(ctx: typer.Context) -> None:
    """List the known models and which are cached (`models list`); download models."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(list_models)


@models_app.command("list")
def list_models(
    cache_dir: CacheDirOpt = None,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help='One JSON object per line: {"name", "repo", "cached", "size"} (size in bytes, '
            "null when not cached).",
            rich_help_panel=OUTPUT,
        ),
    ] = False,
) -> None:
    """List the short model names, their Hub repos, and which are in the local cache.

    Looks at the cache only, never the network.
    """
    from whisper_cli.models import is_hub_cached

    cache = str(cache_dir) if cache_dir is not None else None
    sizes = _cached_repo_sizes(cache)
    rows = []
    for name, repo in MODELS.items():
        cached = is_hub_cached(name, cache_dir=cache)
        rows.append((name, repo, cached, sizes.get(repo) if cached else None))
    if as_json:
        for name, repo, cached, size in rows:
            record = {"name": name, "repo": repo, "cached": cached, "size": size}
            typer.echo(json.dumps(record))
        return
    table = [("NAME", "REPO", "CACHED", "SIZE")]
    table += [
        (name, repo, "yes" if cached else "no", "" if size is None else format_size(size))
        for name, repo, cached, size in rows
    ]
    widths = [max(len(row[column]) for row in table) for column in range(4)]
    for row in table:
        typer.echo(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


def _cached_repo_sizes(cache_dir: str | None) -> dict[str, int]:
    """Bytes on disk of every model repo in the Hugging Face cache (empty if there is none)."""
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    try:
        info = scan_cache_dir(cache_dir)
    except (CacheNotFound, OSError):  # no cache folder yet, or an unreadable one
        return {}
    return {repo.repo_id: repo.size_on_disk for repo in info.repos if repo.repo_type == "model"}


def format_size(size: int) -> str:
    """Bytes for people: 151.1 MB, 1.6 GB."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


@models_app.command("download", no_args_is_help=True)
def download_models(
    names: Annotated[
        list[str],
        typer.Argument(
            metavar="NAME...",
            help="Short names (base, small, …) or Hugging Face repo ids.",
            autocompletion=_complete_models,
            show_default=False,
        ),
    ],
    revision: RevisionOpt = None,
    cache_dir: CacheDirOpt = None,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Download models into the Hugging Face cache, for offline use later.

    Prints each model's name and local folder, tab-separated, on standard output. A model
    that is cached already is not downloaded again.
    """
    from whisper_cli.models import resolve_model

    ui = Ui(quiet=quiet, debug=debug)
    with ui.batch(verb="ready") as batch:
        for name in names:
            with batch.job(name):
                checkpoint = resolve_model(
                    name,
                    revision=revision,
                    offline=False,
                    cache_dir=cache_dir,
                    download_progress=_download_progress(ui.interactive),
                )
                typer.echo(f"{name}\t{checkpoint.path}")


# ---------------------------------------------------------------------------------------------
# from parameters to options


def build_options(task: str, values: Mapping[str, Any]) -> tuple[TranscribeOptions, WriterOptions]:
    """The library's options from the transcription command's parameter values.

    `values` holds the parameters of `transcribe` by name (the parsed command line). Raises
    `OptionsError` for values that contradict each other.
    """
    from whisper_cli.options import DecodingOptions, TranscribeOptions, verify
    from whisper_cli.writers import WriterOptions

    writer = WriterOptions(
        max_line_width=values["max_line_width"],
        max_line_count=values["max_line_count"],
        max_words_per_line=values["max_words_per_line"],
        highlight_words=values["highlight_words"],
    )
    decoding = DecodingOptions(
        task=task,
        language=values["language"],
        best_of=values["best_of"],
        beam_size=values["beam_size"],
        patience=values["patience"],
        length_penalty=values["length_penalty"],
        suppress_tokens=parse_suppress_tokens(values["suppress_tokens"]),
    )
    hallucination_threshold = values["hallucination_silence_threshold"]
    options = TranscribeOptions(
        decoding=decoding,
        temperatures=temperatures(
            values["temperature"], values["temperature_increment_on_fallback"]
        ),
        compression_ratio_threshold=values["compression_ratio_threshold"],
        logprob_threshold=values["logprob_threshold"],
        no_speech_threshold=values["no_speech_threshold"],
        skip_silent_windows=values["skip_silent_windows"],
        condition_on_previous_text=values["condition_on_previous_text"],
        initial_prompt=values["initial_prompt"],
        carry_initial_prompt=values["carry_initial_prompt"],
        word_timestamps=values["word_timestamps"]
        or writer.needs_words
        or hallucination_threshold is not None,
        prepend_punctuations=values["prepend_punctuations"],
        append_punctuations=values["append_punctuations"],
        hallucination_silence_threshold=hallucination_threshold,
        split_on_pauses=values["split_on_pauses"],
        clip_timestamps=parse_clip_timestamps(values["clip_timestamps"]),
        language_detection_windows=values["language_detection_windows"],
        batch_size=values["batch_size"],
    )
    verify(options)
    return options, writer


def temperatures(start: float, increment: float | None) -> tuple[float, ...]:
    """The temperatures to try: `start`, then up by `increment` to 1.0 (openai-whisper's rule).

    An increment of 0 or None turns fallback off; a start above 1.0 is tried alone.
    """
    if not increment:
        return (start,)
    import numpy as np

    steps = tuple(float(t) for t in np.arange(start, 1.0 + 1e-6, increment))
    return steps or (start,)


def cli_names(message: str) -> str:
    """A library message with option field names (`max_line_count`) as flags."""
    names = "|".join(sorted((n for n in _TRANSCRIBE_PARAMETERS if "_" in n), key=len, reverse=True))
    return re.sub(rf"\b({names})\b", lambda m: "--" + m.group(1).replace("_", "-"), message)


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

    def load(self, ui: Ui) -> Model:
        """Load the model (raises ModelError); sets PyTorch's thread count first."""
        if self.threads > 0:
            import torch

            torch.set_num_threads(self.threads)
        from whisper_cli.models import load_model

        return load_model(
            self.name,
            device=self.device,
            compute_type=self.compute_type,
            revision=self.revision,
            offline=self.offline,
            cache_dir=self.cache_dir,
            download_progress=_download_progress(ui.interactive),
        )


def _download_progress(show: bool) -> type | None:
    """The tqdm class for Hub downloads: the hub's own bars, or silent ones."""
    if show:
        return None
    from huggingface_hub.utils import tqdm

    class SilentTqdm(tqdm):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)

    return SilentTqdm


@dataclasses.dataclass(frozen=True)
class OutputPlan:
    """Where transcripts go: files in `formats` under `output_dir`, or standard output."""

    formats: tuple[str, ...]
    output_dir: Path
    to_stdout: bool
    skip_existing: bool
    writer_options: WriterOptions


def _transcription(task: str, values: dict[str, Any]) -> None:
    """The body of `transcribe` and `translate`."""
    from whisper_cli.inputs import outputs_exist
    from whisper_cli.writers import parse_formats

    formats = parse_formats(values["output_format"])
    to_stdout = values["stdout"]
    if to_stdout and len(formats) > 1:
        raise typer.BadParameter(
            "it writes one format: choose it with -f (txt, srt, vtt, tsv or json)",
            param_hint="'--stdout'",
        )
    if to_stdout and values["skip_existing"]:
        raise typer.BadParameter("--stdout writes no files to skip", param_hint="'--skip-existing'")
    if values["quiet"] and values["verbose"]:
        raise typer.BadParameter(
            "--quiet and --verbose contradict each other", param_hint="'--verbose'"
        )
    try:
        options, writer_options = build_options(task, values)
    except OptionsError as error:
        raise typer.BadParameter(cli_names(str(error))) from None

    ui = Ui(quiet=values["quiet"], verbose=values["verbose"], debug=values["debug"])
    plan = OutputPlan(
        formats, values["output_dir"], to_stdout, values["skip_existing"], writer_options
    )
    jobs = _discover(values["inputs"], plan.output_dir, values["include"], values["exclude"], ui)
    if to_stdout and len(jobs) > 1 and formats != ("json",):
        raise typer.BadParameter(
            f"with several inputs it needs -f json (JSON Lines); {len(jobs)} inputs found",
            param_hint="'--stdout'",
        )
    settings = ModelSettings(
        values["model"],
        values["revision"],
        values["offline"],
        values["cache_dir"],
        values["device"],
        values["compute_type"],
        values["threads"],
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
        with ui.fatal_errors():
            whisper = settings.load(ui)
        if task == "translate" and not whisper.can_translate:
            ui.warning(
                f"model {whisper.name!r} was not trained to translate; the output may be a "
                "transcript in the spoken language"
            )
        with ui.progress(pending) as progress:
            for job in pending:
                with batch.job(job):
                    _transcribe_job(
                        job, whisper, options, plan, ui, progress, json_lines=len(jobs) > 1
                    )


def _transcribe_job(
    job: Job,
    whisper: Model,
    options: TranscribeOptions,
    plan: OutputPlan,
    ui: Ui,
    progress: FileProgress,
    json_lines: bool,
) -> None:
    """Decode, transcribe and write one input (raises for a failure of this input)."""
    from whisper_cli.writers import write_outputs

    with _claim(job, plan):
        info, segments = _start(job, whisper, options, ui, progress)
        if plan.to_stdout:
            _write_stdout(job, whisper, info, segments, plan, json_lines)
        else:
            transcript = whisper.collect(info, segments)
            written = write_outputs(transcript, job.output_base, plan.formats, plan.writer_options)
            ui.info(f"{job.display}: wrote {', '.join(str(path) for path in written)}")
        progress.done(job)


@contextlib.contextmanager
def _claim(job: Job, plan: OutputPlan) -> Iterator[None]:
    """Hold the job's lock file while writing files; skip a job taken or done meanwhile."""
    if plan.to_stdout:
        yield
        return
    from whisper_cli.inputs import claim, outputs_exist

    with claim(job) as claimed:
        if not claimed:
            raise _Skipped("another whisper-cli process is working on it")
        if plan.skip_existing and outputs_exist(job, plan.formats):  # done while we waited
            raise _Skipped("outputs exist")
        yield


def _write_stdout(
    job: Job,
    whisper: Model,
    info: TranscriptionInfo,
    segments: Iterator[Segment],
    plan: OutputPlan,
    json_lines: bool,
) -> None:
    """Write the one format to standard output: subtitles and text as they are decoded."""
    from whisper_cli.writers import SegmentWriter, get_writer

    writer = get_writer(plan.formats[0], plan.writer_options)
    out = _Utf8Stdout()
    sys.stdout.flush()
    if isinstance(writer, SegmentWriter):
        writer.write_segments(segments, out)
    else:
        text = io.StringIO()
        writer.write(whisper.collect(info, segments), text)
        out.write(_json_line(job, text.getvalue()) if json_lines else text.getvalue())
    out.flush()


def _json_line(job: Job, text: str) -> str:
    """A JSON output as one JSON Lines record, with the input's path as its first key."""
    return json.dumps({"path": job.display, **json.loads(text)}, ensure_ascii=False) + "\n"


def _decode(job: Job, ui: Ui) -> DecodedAudio:
    from whisper_cli.audio import decode_audio

    decoded = decode_audio("-" if job.source is None else job.source)
    for warning in decoded.warnings:
        ui.warning(warning)
    return decoded


def _start(
    job: Job,
    whisper: Model,
    options: TranscribeOptions,
    ui: Ui,
    progress: FileProgress,
) -> tuple[TranscriptionInfo, Iterator[Segment]]:
    """Start transcribing one input; its segments, echoed with --verbose, as they come.

    The audio streams into the features block by block, so a long recording is never held
    in memory whole; decoding warnings are known once the features are.
    """
    from whisper_cli.audio import iter_audio
    from whisper_cli.tokenizer import LANGUAGES

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


class _Utf8Stdout(io.TextIOBase):
    """Standard output as UTF-8 with `\\n` line ends whatever the locale: what files get."""

    def write(self, text: str) -> int:
        sys.stdout.buffer.write(text.encode("utf-8"))
        return len(text)

    def flush(self) -> None:
        sys.stdout.buffer.flush()


def _discover(
    inputs: Sequence[str],
    output_dir: Path,
    include: Sequence[str] | None,
    exclude: Sequence[str] | None,
    ui: Ui,
) -> list[Job]:
    """The jobs for the arguments; inputs that are errors are reported and counted as failed."""
    from whisper_cli.inputs import STDIN, discover

    if STDIN in inputs and sys.stdin is not None and sys.stdin.isatty():
        raise typer.BadParameter(
            "- reads audio from standard input, which is a terminal", param_hint="INPUT"
        )
    jobs, errors = discover(inputs, output_dir, include or (), exclude or ())
    for name, message in errors:
        ui.input_error(name, message)
    return jobs


# ---------------------------------------------------------------------------------------------
# standard error: messages, progress, the batch summary


class _Skipped(Exception):
    """Raised inside a job to skip it, with the reason."""


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

        self.console.print(Text.assemble((label, style), f": {message}" if label else message))

    def error(self, message: str) -> None:
        self._print("error", "bold red", message)

    def input_error(self, name: str, message: str) -> None:
        self.failures += 1
        self.error(f"{name}: {message}")

    def warning(self, message: str) -> None:
        self._print("warning", "yellow", message)

    def info(self, message: str) -> None:
        """A line for --verbose."""
        if self.verbose:
            self._print("", "", message)

    def summary(self, message: str) -> None:
        if not self.quiet:
            self._print("", "", message)

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
        """Count the jobs, print the summary, and exit with the batch's status."""
        batch = Batch(self, verb)
        try:
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
    def progress(self, jobs: Sequence[Job]) -> Iterator[FileProgress]:
        if not self.interactive:
            yield FileProgress()
            return
        from whisper_cli.audio import audio_duration

        estimates = {job: (job.source and audio_duration(job.source)) or 0.0 for job in jobs}
        with _rich_progress(self.console) as bars:
            yield FileProgress(bars, estimates)


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
        except _Skipped as skipped:
            self.skip(name, str(skipped))
            return
        except BrokenPipeError:  # standard output was closed (`| head`): stop, as Typer does
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
        message = error.strerror.lower() + (f": {error.filename}" if error.filename else "")
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
        self.file = self.bars.add_task(job.display, total=duration)
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

    return Progress(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        TextColumn("{task.completed:>6.1f}/{task.total:.1f} s"),
        RealTimeFactor(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )


# ---------------------------------------------------------------------------------------------
# entry point


def _terminate(signum: int, frame: Any) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends the process at once
    raise Terminated()


def main() -> None:
    """The `whisper-cli` program: exit 143 on SIGTERM, with outputs left whole."""
    if hasattr(signal, "SIGTERM"):
        signal.signal(signal.SIGTERM, _terminate)
    try:
        app(prog_name=PROG)
    except Terminated:
        sys.exit(EXIT_TERMINATED)


_TRANSCRIBE_PARAMETERS = tuple(
    name for name in transcribe.__annotations__ if name not in ("return", "inputs")
)
