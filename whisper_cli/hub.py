"""Model names, the Hugging Face Hub and its local cache.

A model is named by a short name (`base`, `turbo`, …), a Hugging Face repo id (`owner/name`),
a local folder in Hugging Face layout, or an openai-whisper `.pt` file. Hub models come from the
local Hugging Face cache first and are downloaded only when missing (never with
`HF_HUB_OFFLINE=1` or `offline=True`).

Light on purpose: the command line imports it at start-up (names for completion); the Hub
client is imported only when a function needs it.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

from whisper_cli.errors import HubUnavailableError, ModelError, first_line

# short name → Hugging Face repo
MODELS = {
    "tiny.en": "openai/whisper-tiny.en",
    "tiny": "openai/whisper-tiny",
    "base.en": "openai/whisper-base.en",
    "base": "openai/whisper-base",
    "small.en": "openai/whisper-small.en",
    "small": "openai/whisper-small",
    "medium.en": "openai/whisper-medium.en",
    "medium": "openai/whisper-medium",
    "large-v1": "openai/whisper-large",
    "large-v2": "openai/whisper-large-v2",
    "large-v3": "openai/whisper-large-v3",
    "large-v3-turbo": "openai/whisper-large-v3-turbo",
    "turbo": "openai/whisper-large-v3-turbo",
    "distil-small.en": "distil-whisper/distil-small.en",
    "distil-medium.en": "distil-whisper/distil-medium.en",
    "distil-large-v2": "distil-whisper/distil-large-v2",
    "distil-large-v3": "distil-whisper/distil-large-v3",
    "distil-large-v3.5": "distil-whisper/distil-large-v3.5",
}

# the files the loader reads; nothing else is downloaded
HUB_FILES = (
    "config.json",
    "generation_config.json",
    "preprocessor_config.json",
    "tokenizer.json",
    "model.safetensors",
    "model.safetensors.index.json",
    "model-*.safetensors",
    "pytorch_model.bin",  # Speech2Text checkpoints; fetched only when there is no safetensors
    "vocab.json",  # Speech2Text vocabularies
    "tokenizer_config.json",  # how Speech2Text pieces join into text (case, clean-up)
)


@dataclass(frozen=True)
class Checkpoint:
    """Where a model's files are: a folder in Hugging Face layout, or an openai `.pt`."""

    name: str  # what the user asked for
    path: Path  # folder, or .pt file
    repo_id: str | None = None  # the Hub repo it came from, if any

    @property
    def is_openai_pt(self) -> bool:
        return self.path.is_file()


def is_hub_cached(name: str, revision: str | None = None, cache_dir: str | None = None) -> bool:
    """Whether a short name or repo id is complete in the local Hub cache (no network)."""
    try:
        return _cached_snapshot(MODELS.get(name, name), revision, cache_dir) is not None
    except (OSError, ValueError):
        return False


def _cached_snapshot(
    repo_id: str, revision: str | None, cache_dir: str | os.PathLike[str] | None
) -> Path | None:
    """The snapshot folder of a repo in the local Hub cache, or None: no network."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        folder = snapshot_download(
            repo_id,
            revision=revision,
            cache_dir=None if cache_dir is None else str(cache_dir),
            allow_patterns=list(HUB_FILES),
            local_files_only=True,
        )
    except LocalEntryNotFoundError:
        return None
    return Path(folder)


def resolve_model(
    name_or_path: str | os.PathLike[str],
    revision: str | None = None,
    offline: bool = False,
    cache_dir: str | os.PathLike[str] | None = None,
    download_progress: type | None = None,
) -> Checkpoint:
    """Find a model's files, downloading them from the Hub when they are not cached."""
    name = str(name_or_path)
    path = Path(name).expanduser()
    if path.exists():
        if path.is_dir() or path.suffix == ".pt":
            return Checkpoint(name, path)
        raise ModelError(f"{name}: not a model folder or an openai-whisper .pt file")
    if name in MODELS:
        repo_id = MODELS[name]
    elif _is_repo_id(name):
        repo_id = name
    elif path.suffix == ".pt" or "/" in name or os.sep in name or name.startswith((".", "~")):
        raise ModelError(f"{name}: no such model folder or file")
    else:
        known = ", ".join(MODELS)
        raise ModelError(f"unknown model {name!r}: use one of {known}, a Hub repo id or a path")
    folder = _hub_snapshot(repo_id, name, revision, offline, cache_dir, download_progress)
    return Checkpoint(name, folder, repo_id)


def _is_repo_id(name: str) -> bool:
    """'owner/name': one slash, no path-like start, no file suffix."""
    owner, _, repo = name.partition("/")
    plain = owner and repo and "/" not in repo and not name.startswith((".", "~"))
    return bool(plain) and not name.endswith(".pt")


def _hub_snapshot(
    repo_id: str,
    name: str,
    revision: str | None,
    offline: bool,
    cache_dir: str | os.PathLike[str] | None,
    download_progress: type | None,
) -> Path:
    from huggingface_hub import constants, snapshot_download

    cache_dir = str(cache_dir) if cache_dir is not None else None
    cached = _cached_snapshot(repo_id, revision, cache_dir)  # no round trip when it is here
    if cached is not None:
        return cached
    missing = (
        f"model {name!r} ({repo_id}) is not in the Hugging Face cache at "
        f"{cache_dir or constants.HF_HUB_CACHE}"
    )
    elsewhere = (
        f"pass a local model folder with --model PATH, or run `whisper-cli models download "
        f"{name}` on a machine with network access and copy its Hugging Face cache here"
    )
    if offline or hub_offline():
        why = "--offline" if offline else "HF_HUB_OFFLINE is set"
        raise HubUnavailableError(f"{missing} and downloads are off ({why}); {elsewhere}")
    try:
        files = repo_files(repo_id, revision, missing, elsewhere)
        return Path(
            snapshot_download(
                repo_id,
                revision=revision,
                cache_dir=cache_dir,
                allow_patterns=_download_patterns(files),
                tqdm_class=download_progress,
            )
        )
    except HubUnavailableError:
        raise
    except Exception as error:  # the hub raises many kinds; all mean "could not download"
        raise ModelError(
            f"could not download model {name!r} ({repo_id}) from the Hugging Face Hub: "
            f"{first_line(error)}"
        ) from error


def hub_offline() -> bool:
    """Whether huggingface_hub is in offline mode (HF_HUB_OFFLINE=1, read at its import)."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def repo_files(repo_id: str, revision: str | None, missing: str, remedy: str) -> list[str] | None:
    """The file names of a Hub repo, from ONE request that is not retried: the first thing to
    do before a download, so that a machine without the Hub learns it at once (huggingface_hub
    retries its listings and downloads for about 25 s, saying so at each try).

    Raises HubUnavailableError (`missing`, why, what to do: `remedy`, HF_ENDPOINT,
    HF_HUB_OFFLINE) when there is no connection; the hub's own error when it answers with one
    (no such repo or revision, …). None when the Hub gives no file list.
    """
    from huggingface_hub import HfApi, constants

    timeout = float(getattr(constants, "HF_HUB_ETAG_TIMEOUT", 10))  # the hub's metadata timeout
    try:
        info = HfApi().model_info(repo_id, revision=revision, timeout=timeout)
    except Exception as error:
        if not is_unreachable(error):
            raise
        raise HubUnavailableError(
            f"{missing}, and the Hugging Face Hub at {constants.ENDPOINT} cannot be reached "
            f"({first_line(error)}); {remedy}; set HF_ENDPOINT to use a mirror, or "
            "HF_HUB_OFFLINE=1 to stop trying the Hub"
        ) from error
    if info.siblings is None:
        return None
    return [sibling.rfilename for sibling in info.siblings]


# the HTTP libraries huggingface_hub has used (requests, httpx, httpx2), and their exceptions
# for "no connection": refused, no such host, timed out, a proxy that fails, a dropped line
_HTTP_PACKAGES = ("httpx", "httpx2", "requests", "urllib3")
_NO_CONNECTION = ("TransportError", "ConnectionError", "Timeout", "TimeoutError")


def is_unreachable(error: BaseException) -> bool:
    """Whether an error from the Hub client, or one it was raised from, means no connection."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (ConnectionError, TimeoutError, socket.gaierror)):
            return True
        for cls in type(current).__mro__:
            package = cls.__module__.partition(".")[0]
            if package in _HTTP_PACKAGES and cls.__name__ in _NO_CONNECTION:
                return True
        current = current.__cause__ or current.__context__
    return False


def _download_patterns(files: list[str] | None) -> list[str]:
    """HUB_FILES, less `pytorch_model.bin` when the repo has safetensors (most have both)."""
    if files is not None and any(f.endswith(".safetensors") for f in files):
        return [p for p in HUB_FILES if p != "pytorch_model.bin"]
    return list(HUB_FILES)


def cached_repo_sizes(cache_dir: str | None) -> dict[str, int]:
    """Bytes on disk of every model repo in the Hugging Face cache (empty if there is none)."""
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    try:
        info = scan_cache_dir(cache_dir)
    except (CacheNotFound, OSError):  # no cache folder yet, or an unreadable one
        return {}
    return {repo.repo_id: repo.size_on_disk for repo in info.repos if repo.repo_type == "model"}
