"""A model that is not cached, on a machine that cannot reach the Hugging Face Hub: one line
that says so and what to do, exit 1, and no retries (huggingface_hub's backoff took about
25 s and printed a line per try).

The Hub is played by a socket on 127.0.0.1 that accepts each connection and closes it at once
(counting them), or by a port that nothing listens on: no test reaches any other address.
huggingface_hub reads HF_HOME, HF_ENDPOINT and HF_HUB_OFFLINE at import, so the command line
runs in subprocesses.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

CLI = [sys.executable, "-m", "whisper_cli"]
REMEDIES = ("--model PATH", "whisper-cli models download base", "HF_ENDPOINT", "HF_HUB_OFFLINE=1")


class HangUp:
    """A server on 127.0.0.1 that reads each request's first line, then hangs up (no answer),
    noting the paths asked for."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.2)
        self.endpoint = f"http://127.0.0.1:{self.server.getsockname()[1]}"
        self.paths: list[str] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopping.is_set():
            try:
                client, _ = self.server.accept()
            except TimeoutError:
                continue
            with client, client.makefile("rb") as request:
                client.settimeout(5)
                line = request.readline().decode("latin-1").split()
                self.paths.append(line[1] if len(line) > 1 else "")

    def asked(self, prefix: str) -> int:
        """How many requests went to paths that start with `prefix` (huggingface_hub also
        asks, once, for /api/agent-harnesses, for its user-agent header)."""
        return sum(path.startswith(prefix) for path in self.paths)

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join()
        self.server.close()


@pytest.fixture
def hang_up() -> Iterator[HangUp]:
    server = HangUp()
    yield server
    server.stop()


@pytest.fixture
def closed_port() -> str:
    """The address of a port on 127.0.0.1 that was bound, then closed: connections are refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def hub_env(tmp_path: Path, endpoint: str, offline: bool = False) -> dict[str, str]:
    """An empty HF_HOME, the Hub at `endpoint`, and no proxy to go through."""
    proxies = {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("HF_") and key.lower() not in proxies
    }
    env |= {"HF_HOME": str(tmp_path / "hf"), "HF_ENDPOINT": endpoint}
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    return env


def run_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    # the timeout only ends a hung run; before the fix a run took about 25 s
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env=env, timeout=180)


def the_one_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 1, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "Retrying" not in result.stderr and "Traceback" not in result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def audio_file(tmp_path: Path) -> Path:
    path = tmp_path / "talk.wav"  # the model fails first: the audio is never read
    path.write_bytes(b"RIFF")
    return path


def test_transcribe_without_the_hub_says_so_in_one_line_without_retrying(tmp_path, hang_up):
    env = hub_env(tmp_path, hang_up.endpoint)
    args = ["transcribe", "-m", "base", str(audio_file(tmp_path)), "-o", str(tmp_path / "out")]
    line = the_one_line(run_cli(args, env))
    assert "model 'base' (openai/whisper-base) is not in the Hugging Face cache" in line
    assert f"the Hugging Face Hub at {hang_up.endpoint} cannot be reached" in line
    assert all(remedy in line for remedy in REMEDIES), line
    assert hang_up.asked("/api/models/") == 1, hang_up.paths  # one try, not six
    assert not (tmp_path / "out").exists()


def test_a_refused_connection_is_the_same_one_line(tmp_path, closed_port):
    env = hub_env(tmp_path, closed_port)
    args = ["transcribe", "-m", "base", str(audio_file(tmp_path)), "-o", str(tmp_path / "out")]
    line = the_one_line(run_cli(args, env))
    assert "is not in the Hugging Face cache" in line and "cannot be reached" in line


def test_models_download_without_the_hub_is_one_line(tmp_path, hang_up):
    result = run_cli(["models", "download", "base", "small"], hub_env(tmp_path, hang_up.endpoint))
    line = the_one_line(result)  # no "0 ready, 1 failed" after it: the run stops
    assert "model 'base'" in line and "cannot be reached" in line
    assert result.stdout == ""
    assert hang_up.asked("/api/models/") == 1, hang_up.paths  # and not for `small`


def test_offline_mode_never_connects(tmp_path, hang_up):
    env = hub_env(tmp_path, hang_up.endpoint, offline=True)
    args = ["transcribe", "-m", "base", str(audio_file(tmp_path)), "-o", str(tmp_path / "out")]
    line = the_one_line(run_cli(args, env))
    assert "is not in the Hugging Face cache" in line and "HF_HUB_OFFLINE is set" in line
    assert "--model PATH" in line and "whisper-cli models download base" in line
    result = run_cli(["models", "download", "base", "small"], env)
    assert "model 'base'" in the_one_line(result) and result.stdout == ""
    assert hang_up.paths == []


def test_a_pt_alone_never_asks_the_hub(tmp_path, hang_up):
    """An openai-whisper .pt with no tokenizer.json beside it uses the vocabulary the package
    ships: it transcribes without a request to the Hub (before: one try for
    openai/whisper-tiny's tokenizer.json, and an error)."""
    from tests.test_bundled_vocabularies import _random_pt
    from tests.test_cli import tone

    model = _random_pt(tmp_path / "models" / "tiny.pt", 51865)
    args = ["transcribe", "-m", str(model), "-l", "en", "--threads", "1", "--beam-size", "1"]
    args += ["--no-skip-silent-windows", str(tone(tmp_path / "a.wav")), "--stdout", "-f", "txt"]
    result = run_cli(args, hub_env(tmp_path, hang_up.endpoint))
    assert result.returncode == 0, result.stderr
    assert hang_up.paths == []
    assert os.listdir(model.parent) == ["tiny.pt"]


def test_a_download_asks_the_hub_once_then_downloads_with_progress(monkeypatch, tmp_path):
    """On a connected machine: one listing (not retried), then the real download, with the
    progress class, without pytorch_model.bin when the repo has safetensors."""
    import huggingface_hub
    from huggingface_hub import constants

    from whisper_cli.hub import resolve_model

    calls = []

    class Sibling:
        def __init__(self, name: str) -> None:
            self.rfilename = name

    class Info:
        siblings = [Sibling("config.json"), Sibling("model.safetensors")]
        siblings.append(Sibling("pytorch_model.bin"))

    def model_info(self, repo_id, revision=None, timeout=None):
        calls.append(("model_info", repo_id, timeout))
        return Info()

    def snapshot_download(repo_id, **kwargs):
        if kwargs.get("local_files_only"):
            raise huggingface_hub.errors.LocalEntryNotFoundError("not cached")
        calls.append(("snapshot_download", repo_id, kwargs))
        return str(tmp_path / "snapshot")

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", model_info)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    progress = type("Bars", (), {})
    checkpoint = resolve_model("base", cache_dir=tmp_path / "hub", download_progress=progress)
    assert checkpoint.path == tmp_path / "snapshot"
    assert [call[:2] for call in calls] == [
        ("model_info", "openai/whisper-base"),
        ("snapshot_download", "openai/whisper-base"),
    ]
    assert calls[0][2] is not None  # a timeout: a silent network does not hang it
    kwargs = calls[1][2]
    assert kwargs["tqdm_class"] is progress
    assert "model.safetensors" in kwargs["allow_patterns"]
    assert "pytorch_model.bin" not in kwargs["allow_patterns"]
