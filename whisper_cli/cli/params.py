"""The command line's vocabulary: the program's name, help panels, the values' parsers and
checks (Typer callbacks, run at parse time before anything heavy is imported), completions,
and the options every command that loads a model shares.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from whisper_cli import __version__
from whisper_cli.errors import OptionsError
from whisper_cli.hub import MODELS
from whisper_cli.writers import FORMATS

PROG = "whisper-cli"

# defaults that differ from the library's: openai-whisper's command line decodes with beams
DEFAULT_MODEL = "turbo"
DEFAULT_FORMAT = "all"

# help panels
MODEL = "Model"
DECODING = "Decoding"
FALLBACK = "Fallback"
PROMPT = "Prompt"
WORDS = "Word timestamps"
INPUT = "Input"
OUTPUT = "Output"
CLUSTER = "Cluster"
RUN = "Run"


Device = Literal["auto", "cpu", "cuda"]
ComputeType = Literal["auto", "float32", "float16", "bfloat16", "int8"]  # loading.COMPUTE_TYPES


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


def check_formats(value: str) -> str:
    from whisper_cli.writers import parse_formats

    try:
        parse_formats(value)
    except OptionsError as error:
        raise typer.BadParameter(str(error)) from None
    return value


def check_language(value: str | None) -> str | None:
    if value is None:
        return None
    from whisper_cli.whisper.languages import language_code

    try:
        return language_code(value)
    except ValueError:
        raise typer.BadParameter(
            f"unknown language {value!r}: use a code such as en or de (fr-FR is fr), or a "
            "name such as German"
        ) from None


def check_shard(value: str | None) -> str | None:
    """'K/N', 'auto' or 'auto/N' (see `whisper_cli.shard`); a usage error otherwise."""
    if value is not None:
        parse_shard(value)
    return value


def parse_shard(value: str) -> tuple[int, int]:
    from whisper_cli.shard import parse_shard as parse

    try:
        return parse(value)
    except OptionsError as error:
        raise typer.BadParameter(str(error)) from None


def check_clip_timestamps(value: str) -> str:
    parse_clip_timestamps(value)
    return value


def check_ray_address(value: str | None) -> str | None:
    """local, auto, ray://HOST:PORT or HOST:PORT (see `whisper_cli.cluster.session`)."""
    if value is not None:
        from whisper_cli.cluster.session import ClusterError, check_address

        try:
            check_address(value)
        except ClusterError as error:
            raise typer.BadParameter(str(error)) from None
    return value


def parse_clip_timestamps(value: str) -> tuple[float, ...]:
    """'0' or '10,20.5,30' → seconds; a usage error for anything else."""
    from whisper_cli.options import parse_clip_timestamps as parse

    try:
        return parse(value)
    except OptionsError as error:
        raise typer.BadParameter(str(error)) from None


def check_suppress_tokens(value: str) -> str:
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


def check_increment(value: float | None) -> float | None:
    if value is not None and value < 0:
        raise typer.BadParameter("the temperature can only go up: use a number from 0 to 1")
    return value


def check_patience(value: float | None) -> float | None:
    if value is not None and value <= 0:
        raise typer.BadParameter("patience must be above 0")
    return value


def complete_models(incomplete: str) -> list[str]:
    return [name for name in MODELS if name.startswith(incomplete)]


def complete_languages(incomplete: str) -> list[str]:
    from whisper_cli.whisper.languages import LANGUAGES

    return [code for code in LANGUAGES if code.startswith(incomplete.lower())]


def complete_formats(incomplete: str) -> list[str]:
    done, _, last = incomplete.rpartition(",")
    prefix = f"{done}," if done else ""
    return [prefix + name for name in (*FORMATS, "all") if name.startswith(last)]


def show_version(value: bool) -> None:
    if value:
        typer.echo(f"{PROG} {__version__}")
        raise typer.Exit()


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
        autocompletion=complete_models,
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
        help="Weight precision: auto is float16 on CUDA, float32 on the CPU; int8 is CPU only; "
        "bfloat16 pays on a CPU only with AVX512-BF16 or AMX.",
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
    typer.Option(
        "--debug",
        help="Show tracebacks for unexpected errors, and the warnings and log messages of the "
        "libraries underneath (PyTorch, huggingface_hub, …), which are hidden otherwise.",
        rich_help_panel=RUN,
    ),
]
RayOpt = Annotated[
    str | None,
    typer.Option(
        metavar="ADDRESS",
        help="Transcribe on a Ray cluster (the ray extra): local starts Ray on this machine, "
        "over loopback only; auto joins the cluster this machine is in; ray://HOST:PORT a "
        "remote one. Workers read the inputs and write the outputs by the same paths.",
        callback=check_ray_address,
        show_default=False,
        rich_help_panel=CLUSTER,
    ),
]
RayWorkersOpt = Annotated[
    int | None,
    typer.Option(
        min=1,
        metavar="N",
        help="Ray workers to start, each with the model loaded once and --threads CPU threads "
        "(1 for 0); default: one per GPU of the cluster, else as many as its CPUs hold.",
        show_default=False,
        rich_help_panel=CLUSTER,
    ),
]
RayCollectOpt = Annotated[
    bool,
    typer.Option(
        "--ray-collect",
        help="Send each transcript back from the Ray workers and write it here, for workers "
        "that cannot see the output folder.",
        rich_help_panel=CLUSTER,
    ),
]
