"""The Typer app: the root command and its options, and the commands, registered here in the
order that `--help`, the man page and the completions list them; `main` is the program.
"""

from __future__ import annotations

import gc
import os
import signal
import sys
from typing import Annotated, Any

import typer

from whisper_cli.cli.compat import TranscriptionCommand
from whisper_cli.cli.detect_language import detect_language
from whisper_cli.cli.help import Group, HelpCommand
from whisper_cli.cli.models import download_models, list_models, models_default
from whisper_cli.cli.params import PROG, show_version
from whisper_cli.cli.serve import serve
from whisper_cli.cli.transcribe import transcribe, translate
from whisper_cli.cli.ui import EXIT_TERMINATED, Terminated

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
    ("Serve the OpenAI and DeepInfra speech APIs on port 8000", "whisper-cli serve -m base"),
)


app = typer.Typer(
    name=PROG,
    cls=Group,
    epilog="**Examples**\n\n"
    + "\n".join(f"* {what}:\\\n  `{command}`" for what, command in EXAMPLES),
    no_args_is_help=True,
    rich_markup_mode="markdown",
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_show_locals=False,
)
models_app = typer.Typer(
    cls=Group,
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
            "--version", callback=show_version, is_eager=True, help="Print the version and exit."
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


# the commands, in the order of --help
app.command(cls=TranscriptionCommand, no_args_is_help=True)(transcribe)
app.command(
    name="translate",
    cls=TranscriptionCommand,
    help="Translate speech in audio and video files into English text, subtitles and JSON.",
    no_args_is_help=True,
)(translate)
app.command("detect-language", cls=HelpCommand, no_args_is_help=True)(detect_language)
models_app.callback()(models_default)
models_app.command("list", cls=HelpCommand)(list_models)
models_app.command("download", cls=HelpCommand, no_args_is_help=True)(download_models)
app.command("serve", cls=HelpCommand)(serve)


def _terminate(signum: int, frame: Any) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends the process at once
    raise Terminated()


def main() -> None:
    """The `whisper-cli` program: exit 143 on SIGTERM, with outputs left whole."""
    # Before PyTorch starts its OpenMP threads: by default a thread that waits for the next
    # parallel region spins on its core, and when another process takes one of the cores the
    # threads spin waiting for a partner that is not running (a batch-8 folder run 6x slower
    # beside one busy process, bench/README.md). Passive waiting sleeps instead. Set
    # OMP_WAIT_POLICY=ACTIVE to spin.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if hasattr(signal, "SIGTERM"):
        signal.signal(signal.SIGTERM, _terminate)
    try:
        app(prog_name=PROG)
    except Terminated:
        sys.exit(EXIT_TERMINATED)
    finally:
        # The program is done: its outputs are written and closed. At exit the interpreter
        # collects cycles over every object left, and with PyTorch loaded they are millions:
        # 0.3-0.8 s of a short file's whole run. Frozen, they are freed as the modules go, as
        # ever, without that pass (outputs never depend on it: Python does not promise to
        # finalise cycles at exit).
        gc.freeze()
