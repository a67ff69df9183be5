"""Generate the man page and the shell completion scripts from the command-line app.

    python -m whisper_cli._docs            # rewrite man/whisper-cli.1 and completions/*
    python -m whisper_cli._docs --check    # exit 1 if any of them is out of date

Run it after changing a command or an option; a test fails while the committed files differ
from what this writes. The man page is reproducible: its date comes from SOURCE_DATE_EPOCH,
else from `MANUAL_DATE` below, never from today.

This is development tooling, not used at run time: it reads Typer's command tree
(`typer.main.get_command`) and its private completion templates
(`typer._completion_shared.get_completion_script`), which is why pyproject pins Typer to one
minor version and why the tests lint and diff the results.
"""

from __future__ import annotations

import datetime
import inspect
import os
import re
import sys
from pathlib import Path

import typer

from whisper_cli import __version__
from whisper_cli.cli.app import EXAMPLES, app
from whisper_cli.cli.params import PROG
from whisper_cli.cli.ui import EXIT_INTERRUPTED, EXIT_TERMINATED

MANUAL_DATE = "2026-11-21"  # the man page's date when SOURCE_DATE_EPOCH is not set
COMPLETE_VAR = "_WHISPER_CLI_COMPLETE"
# shell → file name under completions/ (the names pyproject ships)
COMPLETION_FILES = {"bash": "whisper-cli", "zsh": "_whisper-cli", "fish": "whisper-cli.fish"}
MAN_FILE = "whisper-cli.1"

ENVIRONMENT = (
    ("WHISPER_CLI_MODEL", "The model to use when --model is not given."),
    (
        "HF_HOME",
        "The root of the Hugging Face folders (default: ~/.cache/huggingface); models are "
        "cached in $HF_HOME/hub.",
    ),
    ("HF_HUB_CACHE", "The Hugging Face model cache (default: $HF_HOME/hub); see --cache-dir."),
    (
        "HF_HUB_OFFLINE",
        "When 1, never use the network: models must be in the cache (as with --offline).",
    ),
    (
        "HF_ENDPOINT",
        "The Hugging Face Hub to download from (default: https://huggingface.co), e.g. a mirror.",
    ),
    ("NO_COLOR", "When set and not empty, messages and help are printed without colour."),
)
EXIT_STATUS = (
    ("0", "Every input was processed."),
    (
        "1",
        "An input failed (the others were still processed; each failure is one line on "
        "standard error), or the model could not be loaded.",
    ),
    ("2", "The command line is wrong (unknown option, bad value, missing input)."),
    (str(EXIT_INTERRUPTED), "Interrupted (Ctrl-C); the outputs already written are complete."),
    (str(EXIT_TERMINATED), "Terminated (SIGTERM); the outputs already written are complete."),
)
FILES = (
    (
        "$HF_HUB_CACHE/models\\-\\-openai\\-\\-whisper\\-*/",
        "Downloaded models, in the Hugging Face cache layout.",
    ),
    (
        "OUTPUT_DIR/NAME.{txt,srt,vtt,tsv,json}",
        "The outputs of an input NAME; files found in folders keep their relative place. "
        "Inputs whose names clash keep their extension (NAME.wav.txt), then get a number "
        "(NAME\\-2.wav.txt); a leading \\- or . becomes _; each input renamed so is told on "
        "standard error.",
    ),
    (
        "OUTPUT_DIR/NAME.lock",
        "Present while a whisper\\-cli process works on NAME, so that two processes share a "
        "folder without doing the same work. A process that finds NAME locked does its other "
        "inputs first, then waits until the lock is gone (or its process has ended) and does "
        "NAME, unless \\-\\-skip\\-existing finds its outputs there by then. Its holder sets "
        "its modification time every minute; a lock from another host (a shared NFS folder) "
        "that is 10 minutes old was left by a process that is gone, and is taken over, as is "
        "one of this host whose process has ended.",
    ),
)


# ---------------------------------------------------------------------------------------------
# roff


def escape(text: str) -> str:
    """Text safe inside a roff line: backslashes and hyphens escaped, markdown code unquoted."""
    text = text.replace("\\", "\\e").replace("-", "\\-").replace("`", "").replace("…", "...")
    return "".join(char if ord(char) < 128 else f"\\[u{ord(char):04X}]" for char in text)


def _fallbacks(page: str) -> list[str]:
    """A `.fchar` for every non-ASCII character of a page: what a device without its glyph shows.

    `man` in a non-UTF-8 locale renders with `-Tascii` or `-Tlatin1`, which lack the CJK
    punctuation of the punctuation defaults (and `-Tascii` even "¿"); there groff would warn and
    drop them. A fallback is only used where the device has no glyph: UTF-8 shows the character.
    """
    codes = sorted(set(re.findall(r"\\\[u([0-9A-F]{4,6})\]", page)))
    return [f".fchar \\[u{code}] <U+{code}>" for code in codes]


def _line(text: str) -> str:
    """A text line that cannot be mistaken for a roff request."""
    return "\\&" + text if text.startswith((".", "'")) else text


def _paragraphs(help_text: str | None) -> list[str]:
    """A docstring's paragraphs, each on one line."""
    text = inspect.cleandoc(help_text or "").partition("\f")[0]
    return [" ".join(p.split()) for p in text.split("\n\n") if p.strip()]


def _bold(text: str) -> str:
    return f"\\fB{escape(text)}\\fR"


def _italic(text: str) -> str:
    return f"\\fI{escape(text)}\\fR"


def _metavar(param: typer.core.TyperOption | typer.core.TyperArgument, ctx: typer.Context) -> str:
    if param.metavar:
        return param.metavar
    return param.make_metavar(ctx).strip("<>")  # a choice: "<auto|cpu|cuda>"


def _argument(metavar: str, nargs: int) -> str:
    """An argument's metavar in italics, followed by "..." when it takes several values."""
    return _italic(metavar.removesuffix("...")) + ("..." if nargs != 1 else "")


def _option_lines(param: typer.core.TyperOption, ctx: typer.Context) -> list[str]:
    names = sorted(param.opts, key=lambda o: (o.startswith("--"), o))
    label = ", ".join(_bold(name) for name in names)
    if param.secondary_opts:
        label += " / " + ", ".join(_bold(name) for name in param.secondary_opts)
    if not param.is_flag:
        label += " " + _italic(_metavar(param, ctx))
    record = param.get_help_record(ctx)
    help_text = record[1] if record else ""
    return [".TP", label, _line(escape(help_text))]


def _command_section(
    command: typer.core.TyperCommand,
    path: list[str],
    ctx: typer.Context,
    seen: dict[tuple[str, ...], str],
) -> list[str]:
    """A command's usage, description and options, grouped as in --help.

    A command with the same parameters as one before it refers to that one's list.
    """
    ctx = typer.Context(command, info_name=path[-1], parent=ctx)
    usage = " ".join([*path, *command.collect_usage_pieces(ctx)]).replace("{", "").replace("}", "")
    lines = [f'.SS "{escape(usage)}"']
    for index, paragraph in enumerate(_paragraphs(command.help)):
        lines += [".PP"] if index else []
        lines.append(_line(escape(paragraph)))
    visible = [p for p in command.params if not getattr(p, "hidden", False)]
    signature = tuple(name for p in visible for name in (*p.opts, *p.secondary_opts))
    if signature in seen:
        return [
            *lines,
            ".PP",
            f"It takes the same arguments and options as {_bold(seen[signature])}.",
        ]
    seen[signature] = " ".join(path)
    panels: dict[str, list[str]] = {}
    for param in visible:
        if param.param_type_name == "argument":
            panel = param.rich_help_panel or "Arguments"
            entry = [".TP", _argument(_metavar(param, ctx), param.nargs)]
            entry.append(_line(escape(param.help or "")))
        else:
            panel = param.rich_help_panel or "Options"
            entry = _option_lines(param, ctx)
        panels.setdefault(panel, []).extend(entry)
    for panel, entries in panels.items():
        lines += [".PP", _bold(panel), *entries]
    return lines


def _walk(
    group: typer.core.TyperGroup,
    path: list[str],
    ctx: typer.Context,
    seen: dict[tuple[str, ...], str],
) -> list[str]:
    lines: list[str] = []
    for name, command in group.commands.items():
        if command.hidden:
            continue
        if isinstance(command, typer.core.TyperGroup):
            sub_ctx = typer.Context(command, info_name=name, parent=ctx)
            if command.invoke_without_command:
                lines += [f'.SS "{escape(" ".join([*path, name]))}"']
                lines += [_line(escape(p)) for p in _paragraphs(command.help)]
            lines += _walk(command, [*path, name], sub_ctx, seen)
        else:
            lines += _command_section(command, [*path, name], ctx, seen)
    return lines


def _synopsis(group: typer.core.TyperGroup, path: list[str]) -> list[str]:
    lines: list[str] = []
    for name, command in group.commands.items():
        if isinstance(command, typer.core.TyperGroup):
            lines += _synopsis(command, [*path, name])
            continue
        arguments = [p for p in command.params if p.param_type_name == "argument"]
        usage = [_bold(" ".join([*path, name])), "[\\fIOPTIONS\\fR]"]
        usage += [_argument(a.metavar or a.name.upper(), a.nargs) for a in arguments]
        lines += [" ".join(usage), ".br"]
    return lines


def manual_date() -> str:
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch:
        return datetime.datetime.fromtimestamp(int(epoch), datetime.UTC).strftime("%Y-%m-%d")
    return MANUAL_DATE


def man_page() -> str:
    """The whole of man/whisper-cli.1."""
    root = typer.main.get_command(app)
    assert isinstance(root, typer.core.TyperGroup)
    ctx = typer.Context(root, info_name=PROG)
    summary, *description = _paragraphs(root.help)
    lines = [
        '.\\" Generated by python -m whisper_cli._docs from whisper_cli/cli/; do not edit.',
        f'.TH {escape(PROG.upper())} 1 "{manual_date()}" "{escape(PROG)} {escape(__version__)}" '
        '"User Commands"',
        ".nh",
        ".ad l",
        ".SH NAME",
        f"{escape(PROG)} \\- {escape(summary[0].lower() + summary[1:].rstrip('.'))}",
        ".SH SYNOPSIS",
        f"{_bold(PROG)} [\\fIOPTIONS\\fR] \\fICOMMAND\\fR [\\fIARGS\\fR]...",
        ".br",
        *_synopsis(root, [PROG]),
        ".SH DESCRIPTION",
    ]
    for index, paragraph in enumerate(description):
        lines += [".PP"] if index else []
        lines.append(_line(escape(paragraph)))
    lines.append(".SH OPTIONS")
    for param in root.params:
        if not getattr(param, "hidden", False):
            lines += _option_lines(param, ctx)
    lines += [".SH COMMANDS", *_walk(root, [PROG], ctx, {})]
    lines.append(".SH EXIT STATUS")
    for status, meaning in EXIT_STATUS:
        lines += [".TP", _bold(status), escape(meaning)]
    lines.append(".SH ENVIRONMENT")
    for name, meaning in ENVIRONMENT:
        lines += [".TP", _bold(name), escape(meaning)]
    lines.append(".SH FILES")
    for name, meaning in FILES:
        lines += [".TP", f"\\fI{name}\\fR", meaning]
    lines.append(".SH EXAMPLES")
    for what, command in EXAMPLES:
        lines += [".PP", escape(what) + ":", ".PP", ".RS 4", ".nf", escape(command), ".fi", ".RE"]
    lines += [".SH SEE ALSO", "Shell completion: \\fBwhisper\\-cli \\-\\-install\\-completion\\fR."]
    lines[2:2] = _fallbacks("\n".join(lines))  # after the comment and .TH
    return "\n".join(lines) + "\n"


def completion_script(shell: str) -> str:
    """The completion script Typer gives for a shell (a shim that calls the program back)."""
    from typer._completion_shared import get_completion_script

    return get_completion_script(prog_name=PROG, complete_var=COMPLETE_VAR, shell=shell) + "\n"


def generated_files() -> dict[str, str]:
    """Every generated file: its path relative to the repository root → its content."""
    files = {f"man/{MAN_FILE}": man_page()}
    for shell, name in COMPLETION_FILES.items():
        files[f"completions/{name}"] = completion_script(shell)
    return files


def update(root: Path, check: bool = False) -> list[str]:
    """Bring the generated files under `root` up to date (only compare with `check`).

    Returns the paths, relative to `root`, that were (or, with `check`, would be) rewritten.
    """
    stale = []
    for relative, content in generated_files().items():
        path = root / relative
        if path.exists() and path.read_text(encoding="utf-8") == content:
            continue
        stale.append(relative)
        if not check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content, encoding="utf-8")
    return stale


def main(argv: list[str] | None = None) -> int:
    check = "--check" in (sys.argv[1:] if argv is None else argv)
    stale = update(Path(__file__).resolve().parent.parent, check)
    for relative in stale:
        print(f"{relative}: {'out of date' if check else 'written'}", file=sys.stderr)
    return 1 if stale and check else 0


if __name__ == "__main__":
    sys.exit(main())
