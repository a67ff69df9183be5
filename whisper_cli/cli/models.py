"""The `models` commands: list the known models and which are cached, download models."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from whisper_cli.cli.params import (
    OUTPUT,
    CacheDirOpt,
    DebugOpt,
    QuietOpt,
    RevisionOpt,
    complete_models,
)
from whisper_cli.cli.run import download_progress
from whisper_cli.cli.ui import Ui
from whisper_cli.hub import MODELS


def models_default(ctx: typer.Context) -> None:
    """List the known models and which are cached (`models list`); download models."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(list_models)


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
    from whisper_cli.hub import cached_repo_sizes, is_hub_cached

    cache = str(cache_dir) if cache_dir is not None else None
    sizes = cached_repo_sizes(cache)
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


def format_size(size: int) -> str:
    """Bytes for people: 151.1 MB, 1.6 GB."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


def download_models(
    names: Annotated[
        list[str],
        typer.Argument(
            metavar="NAME...",
            help="Short names (base, small, …) or Hugging Face repo ids.",
            autocompletion=complete_models,
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
    that is cached already is not downloaded again. When the Hub cannot be reached (or offline
    mode is on), the first model that needs it ends the run, in one line.
    """
    from whisper_cli.errors import HubUnavailableError
    from whisper_cli.hub import resolve_model

    ui = Ui(quiet=quiet, debug=debug)
    try:
        with ui.batch(verb="ready") as batch:
            for name in names:
                with batch.job(name):
                    checkpoint = resolve_model(
                        name,
                        revision=revision,
                        offline=False,
                        cache_dir=cache_dir,
                        download_progress=download_progress(ui.interactive),
                    )
                    typer.echo(f"{name}\t{checkpoint.path}")
    except HubUnavailableError as error:
        ui.fatal(str(error))
