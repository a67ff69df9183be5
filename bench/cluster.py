"""Benchmark `--ray`: the folder of `folder.py` through the `whisper-cli transcribe` command on
this machine, locally and through a local Ray instance with 1 and 2 workers.

    python bench/cluster.py [--modes LIST] [--repeats 1] [--batch-size 1] [--json FILE]
    python bench/cluster.py --overhead [--calls 2000]

(Named cluster.py, not ray.py: a script's folder comes first on sys.path, where a ray.py would
stand in for the ray package.)

Every run is a fresh `python -m whisper_cli transcribe FOLDER -m MODEL -l en -f json -v` into
a new output folder, the modes interleaved in rounds. The command's standard error is read
line by line as it comes and each line stamped, which gives, besides the whole command's wall
time: when Ray was up (`Ray on this machine` line), when the first worker had loaded the model
(`the first Ray worker is ready`), the first and the last file written. Modes:

- `local-1`: the command without Ray, `--threads 1` (one process, one thread: the cost per
  file that the Ray workers' should be compared with);
- `local`: the command without Ray, `--threads 2` (one process, two threads);
- `ray-1`: `--ray local --ray-workers 1 --threads 2` (one worker with two threads);
- `ray-2`: `--ray local --ray-workers 2 --threads 1` (two workers with one thread each).

The table (Markdown, on standard output) gives per mode: the command's wall seconds, Ray's
start, the first worker ready, the span from the first to the last file written, the time from
the last file written to the command's end (Ray stopped), audio seconds per wall second, the
ratio to `local`, the CPU seconds of every process of the run (the command is started in a
session of its own, which Ray's processes stay in, and /proc is read every 0.1 s): all of
them, the Ray workers', and Ray's own servers' and agents' (the command's are the rest), and
the 1-minute load average when the run began (the machine is shared: wall times are noisy,
CPU seconds less so). Medians over the rounds. See bench/README.md.

`--overhead` measures what Ray adds per file handed out, apart from transcribing: a local Ray
instance as `--ray local` starts it (`whisper_cli.cluster.session.connect`), two actors whose
method returns at once, and `--calls` calls through a `ray.util.ActorPool` as `pool.Cluster`
makes them (a small payload each way): milliseconds per call, and the instance's start.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SHARED = REPO.parent / "shared"

MODES = {
    "local-1": ["--threads", "1"],
    "local": ["--threads", "2"],
    "ray-1": ["--threads", "2", "--ray", "local", "--ray-workers", "1"],
    "ray-2": ["--threads", "1", "--ray", "local", "--ray-workers", "2"],
}
MARKS = {"ray_up": "Ray on this machine", "ready": "the first Ray worker is ready"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", default=",".join(MODES), type=lambda s: s.split(","))
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=1)
    model = os.environ.get("WHISPER_CLI_TEST_MODEL") or SHARED / "models" / "whisper-base"
    audio = os.environ.get("WHISPER_CLI_TEST_AUDIO") or SHARED / "audio"
    parser.add_argument("--model", type=Path, default=Path(model))
    parser.add_argument("--audio-dir", type=Path, default=Path(audio))
    parser.add_argument("--json", type=Path)
    parser.add_argument("--overhead", action="store_true")
    parser.add_argument("--calls", type=int, default=2000)
    return parser.parse_args(argv)


def run(mode: str, folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    """One command; the times (seconds from its start) of the lines that mark its stages."""
    out = Path(tempfile.mkdtemp(prefix="wcli-bench-out-"))
    command = [sys.executable, "-m", "whisper_cli", "transcribe", str(folder), "-m"]
    command += [str(args.model), "-l", "en", "-f", "json", "-v", "-o", str(out)]
    command += ["--batch-size", str(args.batch_size), *MODES[mode]]
    load = os.getloadavg()[0]
    start = time.perf_counter()
    process = subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env=os.environ | {"HF_HUB_OFFLINE": "1"},
        start_new_session=True,  # Ray's processes stay in the command's session: counted
    )
    marks: dict[str, float] = {}
    written: list[float] = []
    cpu = _CpuWatch(process.pid)
    cpu.start()
    assert process.stderr is not None
    for line in process.stderr:
        now = time.perf_counter() - start
        for name, text in MARKS.items():
            if line.startswith(text):
                marks[name] = now
        if ": wrote " in line:
            written.append(now)
    status = process.wait()
    wall = time.perf_counter() - start
    cpu.stop()
    files = len(list(out.glob("*.json")))
    shutil.rmtree(out, ignore_errors=True)
    if status != 0:
        raise SystemExit(f"{mode}: exit status {status}")
    return {
        "wall_s": wall,
        "files": files,
        "first_file_s": written[0] if written else None,
        "last_file_s": written[-1] if written else None,
        "load_avg": load,
        "cpu_s": sum(cpu.seconds.values()),
        "worker_cpu_s": sum(t for pid, t in cpu.seconds.items() if cpu.titles[pid] == "worker"),
        "ray_cpu_s": sum(t for pid, t in cpu.seconds.items() if cpu.titles[pid] == "ray"),
        **{f"{name}_s": value for name, value in marks.items()},
    }


class _CpuWatch(threading.Thread):
    """The CPU seconds (user + system) of every process of a run's session, looked at every
    0.1 s until it ends: the command, and with Ray its servers and workers (a process that
    ends between two looks loses up to 0.1 s)."""

    def __init__(self, session: int):
        super().__init__(daemon=True)
        self.session = session
        self.seconds: dict[int, float] = {}
        self.titles: dict[int, str] = {}  # "command", "worker" (a Ray actor) or "ray"
        self.done = threading.Event()
        self.tick = os.sysconf("SC_CLK_TCK")

    def run(self) -> None:
        while not self.done.wait(0.1):
            for entry in Path("/proc").iterdir():
                if entry.name.isdigit():
                    self._look(int(entry.name))

    def _look(self, pid: int) -> None:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[3]) != self.session:
                return
            title = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
        except (OSError, IndexError, ValueError):
            return
        self.seconds[pid] = (int(fields[11]) + int(fields[12])) / self.tick
        if pid == self.session:
            self.titles[pid] = "command"
        elif title.startswith("ray::Transcriber") or self.titles.get(pid) == "worker":
            self.titles[pid] = "worker"  # once an actor, a worker, whatever its last title
        else:
            self.titles[pid] = "ray"

    def stop(self) -> None:
        self.done.set()
        self.join()


def median(runs: list[dict[str, Any]], key: str) -> float | None:
    values = [run[key] for run in runs if run.get(key) is not None]
    return statistics.median(values) if values else None


def table(results: dict[str, list[dict[str, Any]]], audio_s: float) -> str:
    def cell(value: float | None, digits: int = 1) -> str:
        return "—" if value is None else f"{value:.{digits}f}"

    local = median(results.get("local", []), "wall_s")
    lines = [
        "| mode | wall s | Ray up s | first worker ready s | first → last file s "
        "| last file → end s | audio s/s | vs local | CPU s: all | workers | Ray's own "
        "| load avg |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for mode, runs in results.items():
        wall = median(runs, "wall_s")
        first, last = median(runs, "first_file_s"), median(runs, "last_file_s")
        span = None if first is None or last is None else last - first
        after = None if wall is None or last is None else wall - last
        ratio = None if wall is None or not local else wall / local
        lines.append(
            f"| `{mode}` | {cell(wall)} | {cell(median(runs, 'ray_up_s'))} "
            f"| {cell(median(runs, 'ready_s'))} | {cell(span)} | {cell(after)} "
            f"| {cell(None if not wall else audio_s / wall, 2)} | {cell(ratio, 2)}× "
            f"| {cell(median(runs, 'cpu_s'))} | {cell(median(runs, 'worker_cpu_s'))} "
            f"| {cell(median(runs, 'ray_cpu_s'))} | {cell(median(runs, 'load_avg'), 2)} |"
        )
    return "\n".join(lines)


class _Echo:
    """An actor that hands back what it is given, as a worker hands back its results."""

    def call(self, tag: int, payload: bytes) -> tuple[int, bytes]:
        return tag, payload


def overhead(calls: int) -> None:
    from whisper_cli.cluster.session import connect

    start = time.perf_counter()
    with connect("local", num_cpus=2) as info:
        up = time.perf_counter() - start
        import ray
        from ray.util import ActorPool

        actors = [ray.remote(num_cpus=1)(_Echo).remote() for _ in range(2)]
        pool = ActorPool(actors)
        payload = b"x" * 2000  # about a transcript summary's size
        list(pool.map_unordered(lambda a, v: a.call.remote(v, payload), range(20)))  # warm
        began = time.perf_counter()
        done = sum(
            1 for _ in pool.map_unordered(lambda a, v: a.call.remote(v, payload), range(calls))
        )
        spent = time.perf_counter() - began
    print(
        f"Ray ({info.cpus:g} CPUs) up in {up:.1f} s; {done} calls through an ActorPool of 2 "
        f"actors in {spent:.2f} s: {1000 * spent / done:.2f} ms a call "
        f"(load average {os.getloadavg()[0]:.2f})"
    )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    sys.path.insert(0, str(REPO))
    if args.overhead:
        overhead(args.calls)
        return
    from folder import build_folder  # bench/folder.py: the same folder

    with tempfile.TemporaryDirectory(prefix="wcli-bench-folder-") as name:
        folder = Path(name)
        entries = build_folder(args.audio_dir, folder)
        audio_s = sum(entry["duration_s"] for entry in entries)
        print(f"folder: {len(entries)} files, {audio_s:.1f} s", file=sys.stderr)
        results: dict[str, list[dict[str, Any]]] = {mode: [] for mode in args.modes}
        for round_ in range(args.repeats):
            for mode in args.modes:
                measured = run(mode, folder, args)
                print(f"round {round_ + 1} {mode}: {json.dumps(measured)}", file=sys.stderr)
                results[mode].append(measured)
    print(
        f"{len(entries)} files, {audio_s:.1f} s of audio; model {args.model.name}, "
        f"--batch-size {args.batch_size}; {os.cpu_count()} cores; load average "
        f"{os.getloadavg()[0]:.2f} at the end"
    )
    print()
    print(table(results, audio_s))
    if args.json:
        report = {"audio_s": audio_s, "files": len(entries), "runs": results}
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
