"""What the benchmark scripts share that must import under either interpreter (the project's
or the peers'): the standard library only."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Engine:
    name: str
    peer: bool  # runs in the peers' interpreter, not the project's
    setup: str  # one line for the table


def engine_names(parser: argparse.ArgumentParser, value: str, known: Collection[str]) -> list[str]:
    """`--engines`: the comma-separated names, each one of `known`, else a usage error."""
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in known]
    if unknown:
        parser.error(f"unknown engine(s) {', '.join(unknown)}: use {', '.join(known)}")
    return names


def add_model_options(
    parser: argparse.ArgumentParser, engines: Sequence[Engine], models_layout: str
) -> None:
    """`--models` (get-model's DEST, holding `models_layout`), `--model`, `--engines` (all of
    `engines` by default; check the value with `engine_names`) and `--threads`."""
    parser.add_argument(
        "--models",
        type=Path,
        default=Path(
            os.environ.get("WHISPER_TEST_MODELS") or Path.home() / ".cache/whisper-test-models"
        ),
        help=f"get-model's DEST ({models_layout}); default: %(default)s",
    )
    parser.add_argument("--model", default="base", help="model name; default: %(default)s")
    parser.add_argument(
        "--engines",
        default=",".join(engine.name for engine in engines),
        help="comma-separated list; default: all of %(default)s",
    )
    parser.add_argument("--threads", type=int, default=2, help="CPU threads; default: 2")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def edits(reference: Sequence[str], hypothesis: Sequence[str]) -> int:
    """Words inserted, deleted or replaced to turn `reference` into `hypothesis`."""
    row = list(range(len(hypothesis) + 1))
    for i, word in enumerate(reference, 1):
        diagonal, row[0] = row[0], i
        for j, other in enumerate(hypothesis, 1):
            diagonal, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, diagonal + (word != other))
    return row[-1]
