"""openai-whisper's command line, understood: its option spellings, so that a script written
for `whisper` runs under `whisper-cli transcribe` unchanged, without being shown anywhere.

openai-whisper spells options with underscores (`--output_format`) and gives its switches a
value (`--word_timestamps True`). Here each such spelling is one more name, known only to the
parser, of the option it means (`--output-format`), so its value is checked as that option's
is; `--model_dir` (where openai-whisper keeps its downloads) names the model cache folder. The
few that have no counterpart are hidden parameters, turned into ours before the command runs:
`--task transcribe|translate` runs that command, `--fp16 False` is `--compute-type float32`
(`--fp16 True` is what `auto` does already). `--verbose True|False`, which would read `True`
as an input, is rewritten before parsing: `True` is `--verbose`, `False` the default.

Nothing of this reaches --help, the man page or shell completion, which list `self.params`
and skip hidden parameters.
"""

from __future__ import annotations

from typing import Any

import typer
from typer import _click as click  # Typer's own copy of click, whose classes it uses
from typer.core import TyperCommand, TyperGroup, TyperOption

from whisper_cli.cli.help import HelpCommand

# openai-whisper's spelling → the name of the parameter it sets
ALIASES: dict[str, str] = {
    "--model_dir": "cache_dir",
    **{
        f"--{name}": name
        for name in (
            "output_dir",
            "output_format",
            "best_of",
            "beam_size",
            "length_penalty",
            "suppress_tokens",
            "initial_prompt",
            "carry_initial_prompt",
            "condition_on_previous_text",
            "temperature_increment_on_fallback",
            "compression_ratio_threshold",
            "logprob_threshold",
            "no_speech_threshold",
            "word_timestamps",
            "prepend_punctuations",
            "append_punctuations",
            "highlight_words",
            "max_line_width",
            "max_line_count",
            "max_words_per_line",
            "clip_timestamps",
            "hallucination_silence_threshold",
        )
    },
}
BOOLEANS = {"True": True, "False": False}  # openai-whisper's str2bool


def _check_task(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value not in (None, "transcribe", "translate"):
        raise typer.BadParameter(f"{value!r} is not transcribe or translate")
    return value


def _hidden() -> list[click.Parameter]:
    """openai-whisper's options that have no counterpart of the same meaning here."""
    return [
        TyperOption(param_decls=["--task"], type=str, callback=_check_task, hidden=True),
        TyperOption(param_decls=["--fp16"], type=bool, is_flag=False, hidden=True),
    ]


class TranscriptionCommand(HelpCommand):
    """`transcribe` and `translate`, which also take openai-whisper's spellings."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.openai_params = _hidden()

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        return [*super().get_params(ctx), *self.openai_params]

    def make_parser(self, ctx: click.Context) -> Any:
        parser = super().make_parser(ctx)
        params = {param.name: param for param in self.params}
        for alias, name in ALIASES.items():
            parser.add_option(obj=params[name], opts=[alias], dest=name, action="store", nargs=1)
        return parser

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, openai_verbose(args))

    def invoke(self, ctx: click.Context) -> Any:
        task = ctx.params.pop("task", None)
        fp16 = ctx.params.pop("fp16", None)
        given = ctx.get_parameter_source("compute_type") == click.core.ParameterSource.COMMANDLINE
        if fp16 is False and not given:  # --compute-type, when given, decides
            ctx.params["compute_type"] = "float32"
        if task is not None and task != ctx.info_name and ctx.parent is not None:
            group = ctx.parent.command
            assert isinstance(group, TyperGroup)
            other = group.get_command(ctx.parent, task)
            assert isinstance(other, TyperCommand) and other.callback is not None
            return ctx.invoke(other.callback, **ctx.params)
        return super().invoke(ctx)


def openai_verbose(args: list[str]) -> list[str]:
    """`--verbose True` → `--verbose`; `--verbose False` → nothing (our default); the
    arguments after `--` are inputs and left alone."""
    rewritten: list[str] = []
    index = 0
    while index < len(args):
        arg = args[index]
        if arg == "--":
            return rewritten + args[index:]
        if arg.startswith("--verbose=") and arg.partition("=")[2] in BOOLEANS:
            value = arg.partition("=")[2]
        elif arg == "--verbose" and index + 1 < len(args) and args[index + 1] in BOOLEANS:
            index += 1
            value = args[index]
        else:
            rewritten.append(arg)
            index += 1
            continue
        if BOOLEANS[value]:
            rewritten.append("--verbose")
        index += 1
    return rewritten
