"""Benchmark one short file per process: `whisper-cli transcribe FILE` against faster-whisper as a
one-file script, the whole process timed (start-up, imports, model load, decoding, output).

    python bench/process.py [AUDIO] [--rounds 5] [--threads 2] [--engines LIST] [--json FILE]

This is how shell scripts use the tool (`for f in *.wav; do whisper-cli transcribe "$f" …;
done`): every file pays for a fresh interpreter, `import torch` and the model load. Every run is
a fresh process, the engines alternating in rounds (each engine once per round), so that a
machine whose speed drifts weighs on every engine alike. Per run: wall seconds from start to
exit, CPU seconds (user + system, all threads) and peak RSS (`os.wait4`'s rusage of that child),
and the 1-minute load average when it started. whisper-cli's package is compiled to bytecode
first, as an installed one is. The table (Markdown, on standard output) gives
the medians and each engine's ratio to faster-whisper with the same compute type and language
setting. See bench/README.md.

Run it with the project's Python; faster-whisper runs from bench.py's venv
(${XDG_CACHE_HOME:-~/.cache}/whisper-cli/bench-venv, created on first use) or --peers-python.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engines import add_model_options, engine_names, log

from bench import (  # bench.py beside this file (the script's folder is on sys.path)
    SHARED,
    ensure_models,
    ensure_peers_python,
    machine,
    thread_env,
    whisper_cli_command,
)

DEFAULT_AUDIO = SHARED / "audio" / "en_ls_2412-153948-0000.flac"
BEAM_SIZE = 5

# faster-whisper as a user scripts one file: its defaults but for the thread count and beam 5
FASTER_WHISPER_SCRIPT = """
import sys
from faster_whisper import WhisperModel

folder, audio, compute_type, threads, language = sys.argv[1:]
model = WhisperModel(folder, device="cpu", compute_type=compute_type, cpu_threads=int(threads))
segments, _ = model.transcribe(audio, beam_size=5, language=language or None)
print("".join(segment.text for segment in segments).strip())
"""


@dataclass(frozen=True)
class Engine:
    name: str
    family: str  # "whisper-cli", "faster-whisper", or "floor" (an import alone)
    compute_type: str
    language: str | None
    setup: str

    @property
    def baseline(self) -> str | None:
        """The faster-whisper engine this one's wall time is divided by."""
        if self.family != "whisper-cli":
            return None
        return f"fw-{self.compute_type}" + ("-en" if self.language else "")


def _engines() -> tuple[Engine, ...]:
    engines = []
    for compute_type in ("float32", "int8"):
        for language in (None, "en"):
            suffix = f"{compute_type}" + ("-en" if language else "")
            what = f"{compute_type}, beam 5" + (", language en" if language else ", detected")
            engines.append(Engine(f"cli-{suffix}", "whisper-cli", compute_type, language, what))
            engines.append(Engine(f"fw-{suffix}", "faster-whisper", compute_type, language, what))
    engines.append(Engine("import-torch", "floor", "", None, "`python -c 'import torch'`"))
    engines.append(
        Engine("import-fw", "floor", "", None, "peers' `python -c 'import faster_whisper'`")
    )
    return tuple(engines)


ENGINES = _engines()
ENGINES_BY_NAME = {engine.name: engine for engine in ENGINES}


@dataclass
class Result:
    engine: Engine
    runs: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return bool(self.runs) and self.error is None

    def median(self, key: str) -> float:
        return statistics.median(run[key] for run in self.runs)

    @property
    def texts(self) -> set[str]:
        return {run["text"] for run in self.runs}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Time whole processes transcribing one short file: whisper-cli against "
        "faster-whisper."
    )
    parser.add_argument(
        "audio", nargs="?", type=Path, default=DEFAULT_AUDIO, help="default: %(default)s"
    )
    add_model_options(parser, ENGINES, "whisper-NAME/, ct2-NAME/")
    parser.add_argument("--rounds", type=int, default=5, help="runs per engine; default: 5")
    parser.add_argument("--peers-python", type=Path, help="an interpreter with faster-whisper")
    parser.add_argument("--json", type=Path, help="also save every run here")
    args = parser.parse_args(argv)
    args.engines = engine_names(parser, args.engines, ENGINES_BY_NAME)
    if args.threads < 1 or args.rounds < 1:
        parser.error("--threads and --rounds must be at least 1")
    if not args.audio.is_file():
        parser.error(f"{args.audio}: no such file")
    return args


def command(engine: Engine, args: argparse.Namespace, peers: Path | None, out: Path) -> list[str]:
    if engine.family == "whisper-cli":
        line = [*whisper_cli_command(), "transcribe", str(args.audio)]
        line += ["--model", str(args.models / f"whisper-{args.model}")]
        line += ["--threads", str(args.threads), "-f", "txt", "-o", str(out)]
        line += ["--compute-type", engine.compute_type]
        return line + (["--language", engine.language] if engine.language else [])
    if engine.name == "import-torch":
        return [sys.executable, "-c", "import torch"]
    assert peers is not None
    if engine.name == "import-fw":
        return [str(peers), "-c", "import faster_whisper"]
    folder = str(args.models / f"ct2-{args.model}")
    language = engine.language or ""
    return [str(peers), "-c", FASTER_WHISPER_SCRIPT, folder, str(args.audio)] + [
        engine.compute_type,
        str(args.threads),
        language,
    ]


def measure(line: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Run `line` to its end: wall and CPU seconds, peak RSS (MiB), its standard output; raises
    RuntimeError with the end of its standard error when it fails."""
    load = os.getloadavg()[0]
    with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
        start = time.perf_counter()
        process = subprocess.Popen(line, stdout=stdout, stderr=stderr, env=env)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        stdout.seek(0)
        stderr.seek(0)
        output, errors = stdout.read().decode(), stderr.read().decode()
    if process.returncode != 0:
        tail = "\n".join(errors.strip().splitlines()[-6:])
        raise RuntimeError(f"exit status {process.returncode}\n{tail}")
    return {
        "wall_s": wall,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "peak_rss_mb": usage.ru_maxrss / 1024,
        "load": load,
        "text": output.strip(),
    }


def run_rounds(
    engines: list[Engine], peers: Path | None, args: argparse.Namespace, scratch: Path
) -> list[Result]:
    results = [Result(engine) for engine in engines]
    env = thread_env(args.threads)
    for round_ in range(1, args.rounds + 1):
        for result in results:
            if result.error is not None:
                continue
            out = scratch / f"{result.engine.name}-{round_}"
            out.mkdir()
            try:
                run = measure(command(result.engine, args, peers, out), env)
            except RuntimeError as error:
                log(f"{result.engine.name} failed: {error}")
                result.error = str(error)
                continue
            if result.engine.family == "whisper-cli":
                written = sorted(out.glob("*.txt"))
                run["text"] = written[0].read_text(encoding="utf-8").strip() if written else ""
            run["text"] = " ".join(run["text"].split())
            result.runs.append(run)
            log(
                f"round {round_}/{args.rounds} {result.engine.name}: {run['wall_s']:.2f} s, "
                f"CPU {run['cpu_s']:.2f} s, {run['peak_rss_mb']:.0f} MiB, load {run['load']:.2f}"
            )
    return results


def table(results: list[Result]) -> str:
    by_name = {result.engine.name: result for result in results if result.ok}
    rows = [
        "| engine | setup | wall s (median) | min–max | vs faster-whisper | CPU s | peak RSS MiB "
        "| vs fw RSS |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for result in results:
        engine = result.engine
        if not result.ok:
            rows.append(f"| `{engine.name}` | failed: {(result.error or '').splitlines()[0]} |")
            continue
        walls = [run["wall_s"] for run in result.runs]
        baseline = by_name.get(engine.baseline or "")
        ratio = rss_delta = ""
        rss = max(run["peak_rss_mb"] for run in result.runs)
        if baseline is not None:
            ratio = f"{result.median('wall_s') / baseline.median('wall_s'):.2f}×"
            fw_rss = max(run["peak_rss_mb"] for run in baseline.runs)
            rss_delta = f"{rss - fw_rss:+.0f}"
        rows.append(
            f"| `{engine.name}` | {engine.setup} | {result.median('wall_s'):.2f} "
            f"| {min(walls):.2f}–{max(walls):.2f} | {ratio} | {result.median('cpu_s'):.2f} "
            f"| {rss:.0f} | {rss_delta} |"
        )
    return "\n".join(rows)


def header(info: dict[str, Any], args: argparse.Namespace, results: list[Result]) -> str:
    loads = [run["load"] for result in results for run in result.runs]
    load_range = f"{min(loads):.2f}–{max(loads):.2f}" if loads else "n/a"
    return "\n".join(
        [
            f"- machine: {info['cpu']}, {info['cores']} cores ({info['usable_cores']} usable), "
            f"Python {info['python']}, torch {info['torch']}, whisper-cli {info['whisper-cli']}, "
            f"faster-whisper {info.get('faster-whisper', 'not run')}",
            f"- file: {args.audio} ; model {args.model} from {args.models} ; threads "
            f"{args.threads} ; {args.rounds} rounds, engines alternating",
            f"- 1-min load average at each run's start: {load_range} "
            f"(before {info['load_before']:.2f}, after {info['load_after']:.2f})",
        ]
    )


def agreement(results: list[Result]) -> list[str]:
    """Notes on runs whose texts differ from one another."""
    notes = []
    for result in results:
        if result.ok and result.engine.family != "floor" and len(result.texts) > 1:
            notes.append(f"- `{result.engine.name}`: the runs' texts differ")
    return notes


def peers_version(peers: Path) -> str:
    done = subprocess.run(
        [str(peers), "-c", "import faster_whisper; print(faster_whisper.__version__)"],
        capture_output=True,
        text=True,
    )
    return done.stdout.strip() or "?"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    engines = [ENGINES_BY_NAME[name] for name in args.engines]
    peers = None
    if any(engine.family == "faster-whisper" or engine.name == "import-fw" for engine in engines):
        peers = args.peers_python or ensure_peers_python()
    ensure_models(args.models, args.model, peers)
    info = machine()
    import whisper_cli  # the package the command will run (PYTHONPATH included)

    # bytecode, as an installed package has it: without it (an editable install under
    # PYTHONDONTWRITEBYTECODE) every run compiles the package's modules again, ~0.2 s
    compileall.compile_dir(Path(whisper_cli.__file__).parent, quiet=1)
    with tempfile.TemporaryDirectory(prefix="whisper-cli-process-") as scratch:
        results = run_rounds(engines, peers, args, Path(scratch))
    info["load_after"] = os.getloadavg()[0]
    if peers is not None:
        info["faster-whisper"] = peers_version(peers)
    print(header(info, args, results))
    print()
    print(table(results))
    for note in agreement(results):
        print(note)
    if args.json:
        report = {
            "machine": info,
            "settings": {
                "audio": str(args.audio),
                "model": args.model,
                "threads": args.threads,
                "rounds": args.rounds,
            },
            "engines": {
                result.engine.name: {"error": result.error, "runs": result.runs}
                for result in results
            },
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        log(f"raw results: {args.json}")


if __name__ == "__main__":
    main()
