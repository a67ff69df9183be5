"""What the benchmark scripts share that must import under either interpreter (the project's
or the peers'): the standard library only."""

from __future__ import annotations

import argparse
from collections.abc import Collection
from dataclasses import dataclass


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
