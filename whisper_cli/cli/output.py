"""Where a job's transcript goes: the output plan, the job's claim (its lock file) while its
files are written, and standard output as UTF-8 (JSON Lines for several inputs)."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from whisper_cli.cli.ui import Skipped

if TYPE_CHECKING:
    from whisper_cli.inputs import Job
    from whisper_cli.writers import WriterOptions


@dataclasses.dataclass(frozen=True)
class OutputPlan:
    """Where transcripts go: files in `formats` under `output_dir`, or standard output."""

    formats: tuple[str, ...]
    output_dir: Path
    to_stdout: bool
    skip_existing: bool
    writer_options: WriterOptions


@contextlib.contextmanager
def claim_for_writing(job: Job, plan: OutputPlan) -> Iterator[None]:
    """Hold the job's lock file while writing files; skip a job taken or done meanwhile."""
    if plan.to_stdout:
        yield
        return
    from whisper_cli.inputs import claim, outputs_exist

    with claim(job) as claimed:
        if not claimed:
            raise Skipped("another whisper-cli process is working on it")
        if plan.skip_existing and outputs_exist(job, plan.formats):  # done while we waited
            raise Skipped("outputs exist")
        yield


def json_line(job: Job, text: str) -> str:
    """A JSON output as one JSON Lines record, with the input's path as its first key."""
    return json.dumps({"path": job.display, **json.loads(text)}, ensure_ascii=False) + "\n"


class Utf8Stdout(io.TextIOBase):
    """Standard output as UTF-8 with `\\n` line ends whatever the locale: what files get."""

    def write(self, text: str) -> int:
        sys.stdout.buffer.write(text.encode("utf-8"))
        return len(text)

    def flush(self) -> None:
        sys.stdout.buffer.flush()
