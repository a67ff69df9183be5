"""`--ray local` end to end: a Ray instance on this machine (2 CPUs, two workers), the real
base weights, real recordings. Each run checks several things, because starting Ray and
loading the model in two workers costs seconds:

- a folder through two Ray workers gives the same files, byte for byte, as a local run; a
  worker killed (SIGKILL, by the test) in the middle of a file does not change that, nor the
  exit status 0, and the run says once which worker died;
- Ray talks over loopback only: the first test runs in a network namespace of their own with
  only `lo` up (`unshare --net`, where the machine allows it), the second outside one, where
  only the local mode's own setup keeps Ray off the network; in both, every TCP and UDP socket
  of every process of the run is read from /proc and must be on 127.0.0.1. The home folder
  and the temporary folder stay empty, and standard output too;
- --ray-collect (transcripts written by the driver) with a corrupt file, the driver killed
  (SIGKILL) after its first output: no partial file; the same command with --skip-existing
  finishes the rest, with exit status 1 and one error line, for the corrupt file only;
- SIGTERM stops a run as it stops a local one: exit status 143, the summary, no lock left,
  and Ray stopped; a model that no worker can load is one error line, as without Ray.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, require
from tests.test_cli import errors

pytestmark = [
    pytest.mark.real_model,
    pytest.mark.skipif(sys.platform != "linux", reason="watches the runs' processes in /proc"),
]

FILES = (  # short English recordings of four formats, 1.5 to 5 s
    "en_ls_61-70968-0000.flac",
    "en_ls_251-137823-0002.wav",
    "en_lj_LJ002-0020.wav",
    "en_lj_LJ002-0035.ogg",
    "en_pv_today_only_platforms.mp3",
)
CORRUPT = "corrupt_random_bytes.wav"
WORKER = "ray::Transcriber.transcribe"  # the title of a worker's process while it transcribes
DIED = re.compile(r"^a Ray worker died \(pid (\d+) on .+\) with 1 file in work: handed to another")


@pytest.fixture(scope="module")
def ray_installed() -> None:
    found = importlib.util.find_spec("ray")
    require(Path(found.origin) if found and found.origin else None, "ray (pip install '.[ray]')")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, audio_dir) -> Path:
    folder = tmp_path_factory.mktemp("corpus")
    for name in FILES:
        shutil.copy(audio_dir / name, folder / name)
    return folder


@pytest.fixture(scope="module")
def options(real_model_path) -> list[str]:
    return ["-m", str(real_model_path), "--threads", "1", "-f", "all"]


@pytest.fixture(scope="module")
def local_run(tmp_path_factory, corpus, options) -> Path:
    """The reference: the same folder and options, without Ray."""
    out = tmp_path_factory.mktemp("local")
    result = subprocess.run(
        [sys.executable, "-m", "whisper_cli", "transcribe", *options, "-o", out, corpus],
        capture_output=True,
        text=True,
        env=_environment(tmp_path_factory.mktemp("home")),
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return out


def _environment(home: Path, tmp: Path | None = None) -> dict[str, str]:
    env = {**os.environ, "HOME": str(home), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    if tmp is not None:
        env["TMPDIR"] = str(tmp)
    return env


def _isolated() -> list[str]:
    """A network namespace with only loopback up, where this machine lets us make one."""
    try:
        made = subprocess.run(
            ["unshare", "--net", "sh", "-c", "ip link set lo up"], capture_output=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    if made.returncode != 0:
        return []
    return ["unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$@"', "sh"]


class Run:
    """`whisper-cli transcribe ... --ray local` in a session of its own, watched from /proc."""

    def __init__(self, tmp_path: Path, args: list, name: str, isolate: bool = True):
        self.home = tmp_path / f"{name}-home"
        self.home.mkdir()
        # short enough that Ray's socket paths under it stay within 107 bytes
        self.tmp = Path(tempfile.mkdtemp(prefix="wct-", dir="/tmp"))
        command = [sys.executable, "-m", "whisper_cli", "transcribe", *map(str, args)]
        command += ["--ray", "local", "--ray-workers", "2"]
        self.process = subprocess.Popen(
            (_isolated() if isolate else []) + command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_environment(self.home, self.tmp),
            start_new_session=True,  # Ray's processes stay in it: found, and ended, by it
        )
        self.sockets: dict[int, str] = {}  # inode → local address, of every process of the run
        self.listening: set[int] = set()  # the inodes of listening TCP sockets among them

    def processes(self) -> list[int]:
        """The processes of the run's session (the driver, Ray's servers and workers)."""
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if int(fields[3]) == self.process.pid and fields[0] != "Z":  # session id
                    found.append(int(entry.name))
        return found

    def busy_worker(self) -> int | None:
        for pid in self.processes():
            try:
                title = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
            except OSError:
                continue
            if title.startswith(WORKER):
                return pid
        return None

    def look_at_sockets(self) -> None:
        """Note the local address of every TCP and UDP socket the run's processes hold."""
        for pid in self.processes():
            try:
                inodes = {
                    link[8:-1]
                    for fd in Path(f"/proc/{pid}/fd").iterdir()
                    if (link := os.readlink(fd)).startswith("socket:[")
                }
                tables = [Path(f"/proc/{pid}/net/{kind}").read_text() for kind in _TABLES]
            except OSError:
                continue
            for table, kind in zip(tables, _TABLES, strict=True):
                for line in table.splitlines()[1:]:
                    fields = line.split()
                    if fields[9] in inodes:
                        self.sockets[int(fields[9])] = _address(fields[1])
                        if kind.startswith("tcp") and fields[3] == "0A":
                            self.listening.add(int(fields[9]))

    def wait(self, timeout: float = 400) -> tuple[int, str, str]:
        stdout, stderr = self.process.communicate(timeout=timeout)
        return self.process.returncode, stdout, stderr

    def left_behind(self, grace: float = 20) -> list[int]:
        deadline = time.monotonic() + grace
        while (left := self.processes()) and time.monotonic() < deadline:
            time.sleep(0.5)
        return left

    def __enter__(self) -> Run:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.process.poll() is None or self.processes():
            self.end()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def end(self) -> None:
        """Whatever of the run is still there (after a killed driver), ended."""
        for pid in self.processes():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process.wait(timeout=60)


_TABLES = ("tcp", "tcp6", "udp", "udp6")


def _address(field: str) -> str:
    """`0100007F:1F90` (/proc/net/tcp) → `127.0.0.1`; IPv6 (and IPv4-mapped) likewise."""
    host = field.split(":")[0]
    words = [bytes.fromhex(host[i : i + 8])[::-1] for i in range(0, len(host), 8)]
    raw = b"".join(words)
    if len(raw) == 4:
        return ".".join(str(b) for b in raw)
    if raw[:12] == b"\0" * 10 + b"\xff\xff":
        return ".".join(str(b) for b in raw[12:])
    return ":".join(raw[i : i + 2].hex() for i in range(0, 16, 2))


def _loopback(address: str) -> bool:
    return address.startswith("127.") or address == "0000:0000:0000:0000:0000:0000:0000:0001"


def _wait_for(condition, run: Run, timeout: float = 300):
    """The condition's first true value while the run goes on (None if it never is)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and run.process.poll() is None:
        run.look_at_sockets()
        if value := condition():
            return value
        time.sleep(0.05)
    return None


def _on_loopback_only(run: Run) -> None:
    """Ray's servers (GCS, raylet, object manager, agents, workers) were seen listening, and
    every socket of the run was on a loopback address."""
    assert len(run.listening) >= 3, run.sockets
    assert {a for a in run.sockets.values() if not _loopback(a)} == set(), run.sockets


def _same_files(ours: Path, reference: Path, names=FILES) -> None:
    stems = {Path(name).stem for name in names}
    expected = sorted(p.name for p in reference.iterdir() if p.name.split(".")[0] in stems)
    assert sorted(p.name for p in ours.iterdir()) == expected
    for name in expected:
        assert (ours / name).read_bytes() == (reference / name).read_bytes(), name


def test_two_workers_match_a_local_run_even_with_one_killed_and_talk_over_loopback_only(
    ray_installed, tmp_path, corpus, options, local_run
):
    out = tmp_path / "out"
    with Run(tmp_path, [*options, "-o", out, corpus], "workers") as run:
        # the first file done: the workers are up; kill one in the middle of its next file
        killed = _wait_for(lambda: any(out.glob("*.json")) and run.busy_worker(), run)
        assert killed, "no worker was transcribing after the first file"
        os.kill(killed, signal.SIGKILL)
        run.look_at_sockets()
        status, stdout, stderr = run.wait()
        left = run.left_behind()
        home, tmp = list(run.home.iterdir()), list(run.tmp.iterdir())
    assert status == 0, stderr
    assert [int(m.group(1)) for line in stderr.splitlines() if (m := DIED.match(line))] == [killed]
    assert stderr.splitlines()[-1] == f"{len(FILES)} transcribed, 0 failed"
    assert stdout == ""  # Ray's own messages never reach the data
    _same_files(out, local_run)
    # loopback only, and nothing left: no process, no file in the home or temporary folder
    _on_loopback_only(run)
    assert left == [] and home == [] and tmp == []


def test_collected_outputs_survive_a_killed_driver_and_a_rerun_finishes_with_one_error(
    ray_installed, tmp_path, corpus, audio_dir, options, local_run
):
    folder = tmp_path / "corpus"
    shutil.copytree(corpus, folder)
    shutil.copy(audio_dir / CORRUPT, folder / CORRUPT)
    out = tmp_path / "out"
    args = [*options, "-o", out, "--ray-collect", "--skip-existing", folder]
    # outside a network namespace: what keeps Ray on loopback is the local mode's own setup
    with Run(
        tmp_path, args, "killed", isolate=False
    ) as first:  # the driver killed once it has written a file
        assert _wait_for(lambda: any(out.glob("*.json")), first)
        os.kill(first.process.pid, signal.SIGKILL)
        first.process.wait()
    assert not list(out.glob(".*.tmp")), "a partial output file"
    done = {path.stem for path in out.glob("*.json")}
    assert 1 <= len(done) < len(FILES)
    _on_loopback_only(first)
    with Run(tmp_path, args, "again", isolate=False) as again:
        _wait_for(lambda: False, again)  # look at its sockets until it ends
        status, stdout, stderr = again.wait()
        left_behind = again.left_behind()
    assert status == 1, stderr
    assert [name for name, _ in errors(stderr)] == [str(folder / CORRUPT)]
    left = len(FILES) - len(done)
    assert stderr.splitlines()[-1] == f"{left} transcribed, 1 failed, {len(done)} skipped"
    _same_files(out, local_run)  # the stale locks of the killed driver taken over, and gone
    assert stdout == "" and left_behind == []
    _on_loopback_only(again)


def test_sigterm_stops_a_ray_run_with_its_summary_and_nothing_left(
    ray_installed, tmp_path, corpus, options
):
    out = tmp_path / "out"
    with Run(tmp_path, [*options, "-o", out, corpus], "terminated") as run:
        assert _wait_for(lambda: any(out.glob("*.json")), run)
        run.process.send_signal(signal.SIGTERM)  # Ray's own waits run the handler
        status, stdout, stderr = run.wait()
        left, tmp = run.left_behind(), list(run.tmp.iterdir())
    assert status == 143, stderr
    assert re.fullmatch(r"terminated; [1-4] transcribed, 0 failed", stderr.splitlines()[-1])
    assert left == [] and tmp == []
    assert not [path.name for path in out.iterdir() if path.suffix in (".lock", ".tmp")]


def test_a_model_no_worker_can_load_is_one_error_line_as_in_a_local_run(
    ray_installed, tmp_path, corpus, real_model_path
):
    broken = tmp_path / "model"
    broken.mkdir()
    shutil.copy(real_model_path / "config.json", broken / "config.json")  # no weights
    args = ["-m", broken, "--threads", "1", "-o", tmp_path / "out", corpus]
    with Run(tmp_path, args, "refused") as run:
        status, stdout, stderr = run.wait()
        left = run.left_behind()
    assert status == 1, stderr
    assert stderr.splitlines() == [f"error: {broken}: no tokenizer.json beside the weights"]
    assert left == [] and list((tmp_path / "out").glob("*")) == []
