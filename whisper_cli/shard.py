"""Splitting a corpus between jobs that do not talk to each other (a Slurm array, a Kubernetes
Indexed Job, GNU parallel over ssh): `--shard K/N` keeps the inputs whose stable hash falls in
part K of N. The hash is of the input's path relative to the argument it came from, so the same
file lands in the same part on every machine and every run, and adding files moves no other."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping

from whisper_cli.errors import OptionsError

# where array runners put the task's index (and, for Slurm, the count and the first index)
SLURM_ID, SLURM_COUNT, SLURM_MIN = (
    "SLURM_ARRAY_TASK_ID",
    "SLURM_ARRAY_TASK_COUNT",
    "SLURM_ARRAY_TASK_MIN",
)
K8S_INDEX = "JOB_COMPLETION_INDEX"


def shard_of(key: str, count: int) -> int:
    """Which of `count` parts an input with shard key `key` belongs to."""
    digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()
    return int.from_bytes(digest[:8], "big") % count


def parse_shard(text: str, environ: Mapping[str, str] = os.environ) -> tuple[int, int]:
    """'K/N' → (K, N); 'auto' takes both from a Slurm array's variables; 'auto/N' takes K from
    Slurm's or a Kubernetes Indexed Job's index. OptionsError for anything else."""
    part, _, count_text = text.strip().partition("/")
    if part == "auto":
        index = _environment_index(environ)
        if count_text:
            count = _integer(count_text, text)
        elif SLURM_COUNT in environ:
            count = _integer(environ[SLURM_COUNT], f"{SLURM_COUNT}={environ[SLURM_COUNT]}")
        else:
            raise OptionsError(
                f"--shard auto needs {SLURM_COUNT} (a Slurm array); elsewhere give the count: "
                "--shard auto/N"
            )
    elif count_text:
        index, count = _integer(part, text), _integer(count_text, text)
    else:
        raise OptionsError(f"--shard {text!r}: expected K/N (such as 0/4), auto or auto/N")
    if count < 1 or not 0 <= index < count:
        raise OptionsError(f"--shard {index}/{count}: K must be in 0 … N-1 and N at least 1")
    return index, count


def _environment_index(environ: Mapping[str, str]) -> int:
    if SLURM_ID in environ:
        first = _integer(environ.get(SLURM_MIN, "0"), f"{SLURM_MIN}={environ.get(SLURM_MIN)}")
        return _integer(environ[SLURM_ID], f"{SLURM_ID}={environ[SLURM_ID]}") - first
    if K8S_INDEX in environ:
        return _integer(environ[K8S_INDEX], f"{K8S_INDEX}={environ[K8S_INDEX]}")
    raise OptionsError(
        f"--shard auto found neither {SLURM_ID} (Slurm array) nor {K8S_INDEX} (Kubernetes "
        "Indexed Job) in the environment"
    )


def _integer(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise OptionsError(f"--shard: {what!r} is not a whole number") from None
