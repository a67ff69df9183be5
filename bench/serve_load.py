"""Load test of `whisper-cli serve` on loopback: the same requests one at a time and from 32
clients at once, each answer checked against the command line's text, and the server's
resident memory over 200 requests.

    python bench/serve_load.py [--clients 32] [--per-client 3] [--rss-requests 200]
                               [--threads 2] [--language en [--pack]] [--json FILE]

The server runs as `python -m whisper_cli serve` in a child process on 127.0.0.1 (a free port),
with the real base weights (`--model`, default $WHISPER_CLI_TEST_MODEL, else
../shared/models/whisper-base) and its default decoding (batch size 8, beam 5, temperature
fallback), `--threads` torch threads. The files: short English recordings from `--audio-dir`
($WHISPER_CLI_TEST_AUDIO, else ../shared/audio; 1.5 to 8.7 s), cycled over the requests, sent
to `/v1/audio/transcriptions` (json, language detected, as the command line's default).

1. The expected text of each file: `whisper-cli transcribe FILE --batch-size 8 -f txt` (each
   file alone, in its own process), whitespace collapsed.
2. Warm-up: each file once.
3. Sequential: clients × per-client requests, one after another; wall time.
4. Concurrent: `--clients` threads, each sending `--per-client` requests back to back; wall time.
5. Memory: `--rss-requests` requests from `--clients` threads, the server's RSS (/proc/PID/statm)
   read every 0.25 s: the median and largest of each fifth of the run (it swings with the
   windows in work: freed memory goes back to the system between them), and the growth from
   the second fifth's median to the last's.

Every answer of 3–5 must equal its file's expected text; a mismatch is reported (and the exit
status is 1). With `--language`, every request and the command line name it; with `--pack` too,
the server packs short requests into shared windows, and answers that differ from the command
line's text are counted with their words changed, not failed. Prints a Markdown table, with
the 1-minute load average at the start and end of each phase (the machine is shared: timings
are noisy where it is above the core count).
Linux only (/proc). Uses httpx (the test extra).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from engines import edits

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared"
FILES = (
    "en_ls_61-70968-0000.flac",
    "en_ls_251-137823-0002.wav",
    "en_lj_LJ002-0020.wav",
    "en_pv_today_only_platforms.mp3",
    "en_sr_one_two_three_44k_stereo.flac",
    "en_lj_LJ050-0131.wav",
    "en_ls_1995-1837-0001.wav",
    "en_lj_LJ002-0035.ogg",
)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _words(text: str) -> str:
    return " ".join(text.split())


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def _rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / (1 << 20)


def cli_text(model: str, path: Path, threads: int, batch_size: int, language: str | None) -> str:
    command = [sys.executable, "-m", "whisper_cli", "transcribe", "-m", model, "--device", "cpu"]
    command += ["--threads", str(threads), "--batch-size", str(batch_size)]
    command += ["--language", language] if language else []
    command += ["-f", "txt", "--stdout", "-q", str(path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"the command line failed on {path.name}: {done.stderr.strip()}")
    return _words(done.stdout)


class Server:
    """`whisper-cli serve` in a child process on 127.0.0.1."""

    def __init__(self, model: str, threads: int, batch_size: int, queue_size: int, pack: bool):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "whisper_cli", "serve", "-m", model, "--device", "cpu"]
        command += ["--host", "127.0.0.1", "--port", str(self.port), "--threads", str(threads)]
        command += ["--batch-size", str(batch_size), "--queue-size", str(queue_size)]
        command += ["--pack"] if pack else []
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"the server exited with status {self.process.returncode}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.5)
        self.close()
        raise SystemExit("the server did not start in 300 s")

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()


def transcribe(client: httpx.Client, url: str, path: Path, language: str | None) -> str:
    fields = {"model": "whisper-1"} | ({"language": language} if language else {})
    with path.open("rb") as audio:
        answer = client.post(
            f"{url}/v1/audio/transcriptions",
            files={"file": (path.name, audio)},
            data=fields,
            timeout=900,
        )
    answer.raise_for_status()
    return _words(answer.json()["text"])


def run_requests(
    url: str,
    paths: list[Path],
    counts: list[int],
    expected: dict[Path, str],
    language: str | None,
) -> tuple[float, list[tuple[int, str]]]:
    """Wall seconds for one thread per entry of `counts`, each sending that many requests
    back to back (request k of them all: paths[k % len]); the mismatches, each with its
    number of words changed."""
    wrong: list[tuple[int, str]] = []
    firsts = [sum(counts[:index]) for index in range(len(counts))]

    def client_work(index: int) -> None:
        with httpx.Client() as client:
            for k in range(firsts[index], firsts[index] + counts[index]):
                path = paths[k % len(paths)]
                text = transcribe(client, url, path, language)
                if text != expected[path]:
                    changed = edits(expected[path].split(), text.split())
                    wrong.append((changed, f"{path.name}: {text!r} != {expected[path]!r}"))

    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(len(counts)) as pool:
        list(pool.map(client_work, range(len(counts))))
    return time.perf_counter() - start, wrong


def spread(requests: int, clients: int) -> list[int]:
    """`requests` over `clients` as evenly as can be."""
    return [requests // clients + (index < requests % clients) for index in range(clients)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    model = os.environ.get("WHISPER_CLI_TEST_MODEL") or str(SHARED / "models" / "whisper-base")
    audio = os.environ.get("WHISPER_CLI_TEST_AUDIO") or str(SHARED / "audio")
    parser.add_argument("--model", default=model)
    parser.add_argument("--audio-dir", type=Path, default=Path(audio))
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--per-client", type=int, default=3)
    parser.add_argument("--rss-requests", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--language", help="sent with every request (default: detected)")
    parser.add_argument(
        "--pack",
        action="store_true",
        help="serve --pack: short requests share windows (with --language); answers may then "
        "differ from the command line's by a few words, which are counted, not failed",
    )
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args()
    paths = [args.audio_dir / name for name in FILES]
    total = args.clients * args.per_client
    figures: dict[str, Any] = {
        "clients": args.clients,
        "per_client": args.per_client,
        "threads": args.threads,
        "batch_size": args.batch_size,
        "language": args.language,
        "pack": args.pack,
        "cores": os.cpu_count(),
    }

    print(f"expected texts: the command line on {len(paths)} files …", file=sys.stderr)
    figures["load_cli"] = _load()
    language = args.language
    expected = {p: cli_text(args.model, p, args.threads, args.batch_size, language) for p in paths}
    queue_size = max(64, args.clients)
    server = Server(args.model, args.threads, args.batch_size, queue_size, args.pack)
    wrong: list[tuple[int, str]] = []
    try:
        run_requests(server.url, paths, [len(paths)], expected, language)  # warm-up
        figures["rss_after_warmup_mib"] = round(_rss_mib(server.process.pid), 1)

        print(f"sequential: {total} requests …", file=sys.stderr)
        figures["load_sequential"] = [_load()]
        seconds, bad = run_requests(server.url, paths, [total], expected, language)
        figures["load_sequential"].append(_load())
        figures["sequential_s"] = round(seconds, 1)
        wrong += bad

        print(f"concurrent: {args.clients} clients × {args.per_client} …", file=sys.stderr)
        figures["load_concurrent"] = [_load()]
        counts = [args.per_client] * args.clients
        seconds, bad = run_requests(server.url, paths, counts, expected, language)
        figures["load_concurrent"].append(_load())
        figures["concurrent_s"] = round(seconds, 1)
        figures["speedup"] = round(figures["sequential_s"] / figures["concurrent_s"], 2)
        wrong += bad

        print(f"memory: {args.rss_requests} requests …", file=sys.stderr)
        samples: list[tuple[float, float]] = []
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                samples.append((time.perf_counter(), _rss_mib(server.process.pid)))
                time.sleep(0.25)

        sampler = threading.Thread(target=sample, daemon=True)
        figures["load_memory"] = [_load()]
        started = time.perf_counter()
        sampler.start()
        counts = spread(args.rss_requests, args.clients)
        seconds, bad = run_requests(server.url, paths, counts, expected, language)
        stop.set()
        sampler.join()
        figures["load_memory"].append(_load())
        wrong += bad
        # the run in fifths (by time): each fifth's median and largest RSS
        fifths: list[list[float]] = [[] for _ in range(5)]
        for at, mib in samples:
            fifths[min(4, int(5 * (at - started) / seconds))].append(mib)
        figures["rss_requests"] = args.rss_requests
        figures["rss_mib_median_by_fifth"] = [round(statistics.median(f), 1) for f in fifths]
        figures["rss_mib_max_by_fifth"] = [round(max(f), 1) for f in fifths]
        figures["rss_after_memory_mib"] = round(_rss_mib(server.process.pid), 1)
        medians = figures["rss_mib_median_by_fifth"]
        figures["rss_growth_mib"] = round(medians[4] - medians[1], 1)
    finally:
        server.close()
    figures["mismatches"] = len(wrong)
    figures["most_words_changed"] = max((changed for changed, _ in wrong), default=0)
    for changed, line in wrong:
        print(f"MISMATCH ({changed} words)", line, file=sys.stderr)

    seq, con = figures["load_sequential"], figures["load_concurrent"]
    count = figures["rss_requests"]
    medians = ", ".join(str(m) for m in figures["rss_mib_median_by_fifth"])
    largest = ", ".join(str(m) for m in figures["rss_mib_max_by_fifth"])
    warm, after = figures["rss_after_warmup_mib"], figures["rss_after_memory_mib"]
    rows = [
        ("requests, one at a time, then at once", f"{total}, {len(paths)} files cycled"),
        ("one at a time: wall s (load avg start/end)", f"{figures['sequential_s']} {seq}"),
        (
            f"{args.clients} clients: wall s (load avg start/end)",
            f"{figures['concurrent_s']} {con}",
        ),
        ("throughput, at once / one at a time", f"{figures['speedup']}×"),
        ("answers unlike the command line's text", str(figures["mismatches"])),
        ("most words changed in one answer", str(figures["most_words_changed"])),
        (f"server RSS MiB over {count} requests, median by fifth", medians),
        (f"server RSS MiB over {count} requests, largest by fifth", largest),
        ("RSS growth, last fifth's median less the second's", f"{figures['rss_growth_mib']} MiB"),
        (f"RSS after warm-up, after the {count}", f"{warm}, {after} MiB"),
    ]
    print("| measure | value |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 1 if wrong and not args.pack else 0


if __name__ == "__main__":
    sys.exit(main())
