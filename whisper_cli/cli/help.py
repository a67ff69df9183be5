"""How help and usage errors look: option names always whole, and plain errors off a terminal.

Typer's rich help puts each option's long names, short names, negative names, type and help in
five table columns, which at 80 columns squeezes `--temperature-increment-on-fallback` into
`--temperature-incr…`. Here every option is one names cell (`-m, --model NAME`,
`--vad / --no-vad`, as in the man page) beside its help when the widest fits next to a
readable help column, else on a line of its own with the help indented below it.

Typer frames every usage error in a rich box, which a log or a pipe gets as five lines of
box drawing; when standard error is not a terminal, click's plain form is printed instead
(`Usage: …`, `Try '… -h' for help.`, `Error: …`).

This replaces one private function of `typer.rich_utils` (`_print_options_panel`, given the
same keywords) while a help page is printed, and catches the exceptions of the click that Typer
vendors (`typer._click`), which is why pyproject pins Typer to one minor version; the tests
render the help at 80 columns and check the error forms.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import typer
from typer import _click as click  # Typer's own copy of click, whose classes it uses
from typer.core import TyperArgument, TyperOption

if TYPE_CHECKING:
    from rich.console import Console

Param = TyperArgument | TyperOption

MIN_HELP_WIDTH = 36  # below this, the help goes under the names instead of beside them
HELP_INDENT = 4


class HelpCommand(typer.core.TyperCommand):
    """A command whose help shows every option name whole."""

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with _whole_names():
            super().format_help(ctx, formatter)


class Group(typer.core.TyperGroup):
    """The root group: help as `HelpCommand`'s, and plain usage errors off a terminal."""

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with _whole_names():
            super().format_help(ctx, formatter)

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        with plain_usage_errors():
            return super().make_context(info_name, args, parent, **extra)

    def invoke(self, ctx: click.Context) -> Any:
        with plain_usage_errors():
            return super().invoke(ctx)


@contextlib.contextmanager
def plain_usage_errors() -> Iterator[None]:
    """Usage errors in click's plain form when standard error is not a terminal (Typer's
    rich box otherwise, printed by Typer as the error leaves)."""
    try:
        yield
    except click.exceptions.NoArgsIsHelpError:  # the help, already printed
        raise
    except click.ClickException as error:
        stderr = sys.stderr
        if stderr is not None and stderr.isatty():
            raise
        error.show()
        raise typer.Exit(error.exit_code) from None


@contextlib.contextmanager
def _whole_names() -> Iterator[None]:
    from typer import rich_utils

    original = rich_utils._print_options_panel
    rich_utils._print_options_panel = options_panel
    try:
        yield
    finally:
        rich_utils._print_options_panel = original


def names_cell(param: Param, ctx: click.Context) -> str:
    """`-m, --model NAME`, `--vad / --no-vad`, `INPUT...`: what to type."""
    if isinstance(param, TyperArgument):
        return param.metavar or (param.name or "").upper()
    record = param.get_help_record(ctx)
    return record[0] if record else ""


def help_cell(param: Param, ctx: click.Context) -> str:
    """The help text with click's `[env var: …; default: …; required]` after it."""
    if isinstance(param, TyperArgument):
        required = " [required]" if param.required else ""
        return (getattr(param, "help", None) or "") + required
    record = param.get_help_record(ctx)
    return record[1] if record else ""


def side_by_side(params: Sequence[Param], ctx: click.Context, width: int) -> bool:
    """Whether the widest names cell leaves room for the help beside it in a panel of
    `width` columns (the layout is the same in every panel of a page)."""
    widest = max((len(names_cell(p, ctx)) for p in params), default=0)
    return widest + 2 + MIN_HELP_WIDTH <= width - 4  # the panel's border and padding


def options_panel(
    *,
    name: str,
    params: Sequence[Param],
    ctx: click.Context,
    markup_mode: Any,
    console: Console,
) -> None:
    """One help panel (Typer's `_print_options_panel` keywords): names and help per option."""
    from rich.padding import Padding
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text
    from typer import rich_utils

    if not params:
        return
    shown = [p for p in ctx.command.get_params(ctx) if not getattr(p, "hidden", False)]
    rows = [(names_cell(p, ctx), help_cell(p, ctx)) for p in params]
    table = Table.grid(expand=True)
    if side_by_side(shown, ctx, console.width):
        widest = max(len(names_cell(p, ctx)) for p in shown)
        table.padding = (0, 2, 0, 0)
        table.add_column(no_wrap=True, width=widest)
        table.add_column(ratio=1)
    else:
        table.add_column(ratio=1, overflow="fold")
    for names, help_text in rows:
        names_text = rich_utils.highlighter(Text(names, overflow="fold"))
        help_renderable = Text(help_text, style=rich_utils.STYLE_OPTION_HELP)
        help_renderable.highlight_regex(
            r"\[(?:env var|default|required).*\]$", rich_utils.STYLE_OPTION_DEFAULT
        )
        if len(table.columns) == 2:
            table.add_row(names_text, help_renderable)
        else:
            table.add_row(names_text)
            if help_text:
                table.add_row(Padding(help_renderable, (0, 0, 0, HELP_INDENT)))
    console.print(
        Panel(
            table,
            border_style=rich_utils.STYLE_OPTIONS_PANEL_BORDER,
            title=name,
            title_align=rich_utils.ALIGN_OPTIONS_PANEL,
        )
    )
