"""Where a job's transcript goes: the output plan, the job's claim (its lock file) while its
files are written, and standard output as UTF-8 (JSON Lines for several inputs)."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from whisper_cli.cli.ui import Busy, Skipped

if TYPE_CHECKING:
    from whisper_cli.cli.ui import Ui
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
def claim_for_writing(job: Job, plan: OutputPlan, ui: Ui, wait: bool = False) -> Iterator[None]:
    """Hold the job's lock file while writing files: raise `Busy` when another process holds
    it (the caller comes back to the job later), or with `wait` wait for it, saying so; skip a
    job that --skip-existing finds done meanwhile."""
    if plan.to_stdout:
        yield
        return
    from whisper_cli.inputs import claim, lock_holder, lock_path, outputs_exist

    def holder() -> str:
        return lock_holder(job) or "another whisper-cli process"

    def tell_wait() -> None:
        ui.notice(
            f"{job.display}: waiting for {holder()}, which is writing its outputs "
            f"(its lock: {lock_path(job)})"
        )

    def tell_takeover(holder: str) -> None:
        ui.notice(f"{job.display}: took over the stale lock {lock_path(job)} of {holder}")

    with claim(job, wait=wait, on_wait=tell_wait, on_takeover=tell_takeover) as claimed:
        if not claimed:
            ui.info(f"{job.display}: {holder()} is writing its outputs; coming back to it last")
            raise Busy
        if plan.skip_existing and outputs_exist(job, plan.formats):  # done while we waited
            raise Skipped("outputs exist")
        yield


def json_line(job: Job, text: str) -> str:
    """A JSON output as one JSON Lines record, with the input's path as its first key."""
    return json_text({"path": job.display, **json.loads(text)}) + "\n"


def json_text(record: dict[str, Any]) -> str:
    """A record as one line of JSON, non-ASCII text as it is, except the bytes of a file name
    that is not UTF-8 (lone surrogates): `\\udce9`, which `json.loads` in Python turns back
    into the name (`os.fsencode` gives its bytes)."""
    text = json.dumps(record, ensure_ascii=False)
    return re.sub(r"[\ud800-\udfff]", lambda match: f"\\u{ord(match.group()):04x}", text)


class Utf8Stdout(io.TextIOBase):
    """Standard output as UTF-8 with `\\n` line ends whatever the locale: what files get."""

    def write(self, text: str) -> int:
        sys.stdout.buffer.write(text.encode("utf-8"))
        return len(text)

    def flush(self) -> None:
        sys.stdout.buffer.flush()
