"""Benchmark whisper-cli against faster-whisper and openai-whisper on one long-form file.

    python bench/bench.py [AUDIO] [--models DIR] [--threads 2] [--repeats 3] [--json FILE]

Every engine transcribes the same decoded samples with the same weights and thread count, each
measurement in a fresh process (worker.py), and the results are printed as a Markdown table:
median wall time, real-time factor, ratio to faster-whisper float32 beam 5, model load time,
peak RSS and WER against the manifest's reference text. See bench/README.md.

Run it with the project's Python (the one with whisper-cli installed); the peers run from a
venv this script creates under ${XDG_CACHE_HOME:-~/.cache}/whisper-cli/bench-venv, or from
--peers-python.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# engines.py beside this file (the script's folder is on sys.path)
from engines import Engine, add_model_options, engine_names, log

from whisper_cli.audio import load_audio

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
WORKER = HERE / "worker.py"
SHARED = REPO.parent / "shared"
DEFAULT_AUDIO = SHARED / "audio" / "en_longform_dev.flac"
GET_MODEL = SHARED / "tools" / "get-model"

SAMPLE_RATE = 16_000
HELP_RUNS = 5
BASELINE = "faster-whisper-fp32"  # the ratio column divides by this engine's wall time
BUSY_LOAD = 1.0  # a load average this high before starting: something else uses a core
BUSY_WARNING = (
    " — WARNING: the machine was busy, so these timings are not trustworthy (threads that"
    " lose their core make OpenMP spin-waits dominate)"
)

PEERS_TORCH = "torch==2.13.0"
PEERS_PACKAGES = (
    PEERS_TORCH,
    "openai-whisper",
    "faster-whisper",
    "jiwer",
    "whisper-normalizer",
    "soundfile",
    "soxr",
)
VENV_MARKER = "bench-packages.txt"  # written once every package is installed


ENGINES = (
    Engine("whisper-cli", False, "float32, beam 5, best of 5"),
    Engine("whisper-cli-int8", False, "int8 dynamic, beam 5, best of 5"),
    Engine("whisper-cli-batched", False, "float32, beam 5, batch 8"),
    Engine("whisper-cli-batched-int8", False, "int8 dynamic, beam 5, batch 8"),
    Engine("faster-whisper-fp32", True, "float32, beam 5, best of 5"),
    Engine("faster-whisper-int8", True, "int8, beam 5, best of 5"),
    Engine("faster-whisper-batched-int8", True, "BatchedInferencePipeline, int8, batch 8"),
    Engine("openai-whisper", True, "fp16=False, beam 5, best of 5"),
)
ENGINES_BY_NAME = {engine.name: engine for engine in ENGINES}


@dataclass
class Result:
    """What the runs of one engine gave: raw worker outputs, or why it did not run."""

    engine: Engine
    runs: list[dict[str, Any]] = field(default_factory=list)
    skipped: str | None = None
    error: str | None = None
    wer: float | None = None

    @property
    def ok(self) -> bool:
        return bool(self.runs) and self.error is None and self.skipped is None

    def median(self, key: str) -> float:
        return statistics.median(run[key] for run in self.runs)

    @property
    def peak_rss_mb(self) -> float:
        return max(run["peak_rss_mb"] for run in self.runs)

    @property
    def text(self) -> str:
        return str(self.runs[0]["text"])

    def to_json(self) -> dict[str, Any]:
        summary: dict[str, Any] = {"setup": self.engine.setup, "peer": self.engine.peer}
        if self.ok:
            summary |= {
                "wall_s": self.median("wall_s"),
                "load_s": self.median("load_s"),
                "peak_rss_mb": self.peak_rss_mb,
                "wer": self.wer,
                "texts_agree": len({run["text"] for run in self.runs}) == 1,
            }
        return summary | {"skipped": self.skipped, "error": self.error, "runs": self.runs}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Time whisper-cli, faster-whisper and openai-whisper on one audio file.",
    )
    parser.add_argument(
        "audio", nargs="?", type=Path, default=DEFAULT_AUDIO, help="default: %(default)s"
    )
    add_model_options(
        parser,
        ENGINES,
        "whisper-NAME/, openai-NAME.pt and ct2-NAME/, built there with ../shared/tools/get-model "
        "when missing",
    )
    parser.add_argument("--repeats", type=int, default=3, help="runs per engine; default: 3")
    parser.add_argument(
        "--manifest",
        type=Path,
        help="manifest.jsonl holding the reference text; default: the one beside the audio",
    )
    parser.add_argument(
        "--peers-python",
        type=Path,
        help="an interpreter with faster-whisper, openai-whisper, jiwer and whisper-normalizer, "
        "instead of the venv this script creates",
    )
    parser.add_argument("--json", type=Path, help="also save every raw result here")
    args = parser.parse_args(argv)
    args.engines = engine_names(parser, args.engines, ENGINES_BY_NAME)
    if args.threads < 1 or args.repeats < 1:
        parser.error("--threads and --repeats must be at least 1")
    if not args.audio.is_file():
        parser.error(f"{args.audio}: no such file")
    return args


# -- the peers' interpreter ---------------------------------------------------------------------


def peers_venv() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "whisper-cli" / "bench-venv"


def ensure_peers_python() -> Path:
    """The venv's python, created or completed with PEERS_PACKAGES when its marker differs."""
    venv = peers_venv()
    python = venv / "bin" / "python"
    marker = venv / VENV_MARKER
    wanted = "\n".join(PEERS_PACKAGES) + "\n"
    if python.is_file() and marker.is_file() and marker.read_text() == wanted:
        return python
    if not python.is_file():
        log(f"creating the peers' venv in {venv}")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, stdout=sys.stderr)
    log(f"installing {' '.join(PEERS_PACKAGES)} into {venv}")
    pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check"]
    # torch first, on its own, so that openai-whisper's dependency finds it already there
    subprocess.run([*pip, PEERS_TORCH], check=True, stdout=sys.stderr)
    subprocess.run([*pip, *PEERS_PACKAGES], check=True, stdout=sys.stderr)
    marker.write_text(wanted)
    return python


# -- inputs ---------------------------------------------------------------------------------------


def model_paths(models: Path, name: str) -> list[Path]:
    return [models / f"whisper-{name}", models / f"openai-{name}.pt", models / f"ct2-{name}"]


def ensure_models(models: Path, name: str, python: Path | None) -> None:
    """Build the three formats with get-model when one is missing (it needs torch: `python`)."""
    missing = [path for path in model_paths(models, name) if not path.exists()]
    if not missing:
        return
    if not GET_MODEL.is_file():
        raise SystemExit(f"bench: {missing[0]} is missing; build it with get-model {name} DEST")
    log(f"building {name} in {models} with {GET_MODEL}")
    env = os.environ | ({"PYTHON": str(python)} if python else {})
    subprocess.run([str(GET_MODEL), name, str(models)], check=True, env=env, stdout=sys.stderr)
    still = [path for path in model_paths(models, name) if not path.exists()]
    if still:
        raise SystemExit(f"bench: get-model did not write {still[0]}")


def reference_for(audio: Path, manifest: Path | None) -> tuple[str | None, str | None]:
    """The reference text and language of `audio` in the manifest, or (None, None)."""
    manifest = manifest or audio.parent / "manifest.jsonl"
    if not manifest.is_file():
        return None, None
    with manifest.open(encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                entry = json.loads(line)
                if entry.get("file") == audio.name:
                    return entry.get("text") or None, entry.get("language")
    return None, None


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "torch": version("torch"),
        "whisper-cli": version("whisper-cli"),
        "load_before": os.getloadavg()[0],
    }


def version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "?"


# -- measurements ---------------------------------------------------------------------------------


def thread_env(threads: int) -> dict[str, str]:
    limits = dict.fromkeys(("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"))
    return os.environ | {name: str(threads) for name in limits}


def whisper_cli_command() -> list[str]:
    """The `whisper-cli` command of this interpreter's environment (else the one on PATH, else
    `python -m whisper_cli`)."""
    executable = Path(sys.executable).parent / "whisper-cli"
    if executable.is_file():
        return [str(executable)]
    if shutil.which("whisper-cli"):
        return ["whisper-cli"]
    return [sys.executable, "-m", "whisper_cli"]


def help_times(threads: int) -> list[float]:
    """Wall seconds of `whisper-cli --help`, each a fresh process."""
    command = [*whisper_cli_command(), "--help"]
    times = []
    for _ in range(HELP_RUNS):
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env=thread_env(threads))
        times.append(time.perf_counter() - start)
    return times


def measure(python: Path, engine: Engine, audio: Path, args: argparse.Namespace) -> dict[str, Any]:
    """One fresh worker process: its JSON line, or RuntimeError with its last stderr lines."""
    command = [str(python), str(WORKER), "run", engine.name, "--audio", str(audio)]
    command += ["--models", str(args.models), "--model", args.model]
    command += ["--threads", str(args.threads)]
    done = subprocess.run(command, capture_output=True, text=True, env=thread_env(args.threads))
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = "\n".join(done.stderr.strip().splitlines()[-8:])
        raise RuntimeError(f"exit status {done.returncode}\n{tail}")
    return json.loads(lines[-1])


def run_engines(
    engines: list[Engine], peers: Path | None, audio: Path, args: argparse.Namespace
) -> list[Result]:
    """Every engine `args.repeats` times, in rounds (each engine once per round), so that a
    machine that slows down or speeds up during the run weighs on every engine alike."""
    results = [Result(engine) for engine in engines]
    for repeat in range(1, args.repeats + 1):
        for result in results:
            if result.error is not None:
                continue
            engine = result.engine
            python = peers if engine.peer else Path(sys.executable)
            assert python is not None  # set whenever a peer engine is asked for
            log(f"{engine.name}: run {repeat} of {args.repeats}")
            try:
                run = measure(python, engine, audio, args)
            except RuntimeError as error:
                log(f"{engine.name} failed: {error}")
                result.error = str(error)
                continue
            wall, load, rss = run["wall_s"], run["load_s"], run["peak_rss_mb"]
            log(f"  {wall:.2f} s, load {load:.2f} s, {rss:.0f} MiB")
            result.runs.append(run)
    return results


def score(results: list[Result], reference: str, language: str | None, scorer: Path) -> None:
    """Fill in each result's WER, computed by `scorer` (a python with jiwer and the
    normaliser)."""
    hypotheses = {result.engine.name: result.text for result in results if result.ok}
    if not hypotheses:
        return
    done = subprocess.run(
        [str(scorer), str(WORKER), "score", "--language", language or "en"],
        input=json.dumps({"reference": reference, "hypotheses": hypotheses}),
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        log(f"scoring failed: {done.stderr.strip().splitlines()[-1:]}")
        return
    wers = json.loads(done.stdout.strip().splitlines()[-1])
    for result in results:
        result.wer = wers.get(result.engine.name)


def can_score(python: Path) -> bool:
    if python == Path(sys.executable):
        return all(importlib.util.find_spec(name) for name in ("jiwer", "whisper_normalizer"))
    check = "import jiwer, whisper_normalizer"
    return subprocess.run([str(python), "-c", check], capture_output=True).returncode == 0


# -- report ---------------------------------------------------------------------------------------


def table(results: list[Result], duration: float) -> str:
    baseline = next((r for r in results if r.engine.name == BASELINE and r.ok), None)
    rows = [
        "| engine | setup | wall s | RTF | vs faster-whisper fp32 | load s | peak RSS MiB "
        "| WER % |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for result in results:
        name = f"`{result.engine.name}`"
        if not result.ok:
            failure = (result.error or "no runs").splitlines()[-1]
            why = f"skipped: {result.skipped}" if result.skipped else f"failed: {failure}"
            rows.append(f"| {name} | {why} | | | | | | |")
            continue
        wall = result.median("wall_s")
        ratio = f"{wall / baseline.median('wall_s'):.2f}×" if baseline else "n/a"
        wer = f"{100 * result.wer:.1f}" if result.wer is not None else "n/a"
        rows.append(
            f"| {name} | {result.engine.setup} | {wall:.2f} | {wall / duration:.3f} | {ratio} "
            f"| {result.median('load_s'):.2f} | {result.peak_rss_mb:.0f} | {wer} |"
        )
    return "\n".join(rows)


def header(info: dict[str, Any], args: argparse.Namespace, duration: float) -> str:
    peers = ", ".join(f"{name} {v}" for name, v in info["peers_versions"].items()) or "not run"
    return "\n".join(
        [
            f"- machine: {info['cpu']}, {info['cores']} cores ({info['usable_cores']} usable), "
            f"Python {info['python']}",
            f"- threads: {args.threads} (torch.set_num_threads / cpu_threads, OMP_NUM_THREADS)",
            f"- whisper-cli {info['whisper-cli']}, torch {info['torch']}; peers: {peers}",
            f"- file: {args.audio} ({duration:.1f} s), model {args.model} from {args.models}",
            f"- wall: transcription only, median of {args.repeats} fresh processes; "
            "peak RSS: the largest of them",
            f"- load average (1 min): {info['load_before']:.2f} before, "
            f"{info['load_after']:.2f} after"
            + (BUSY_WARNING if info["load_before"] >= BUSY_LOAD else ""),
        ]
    )


def startup_line(help_s: list[float], results: list[Result]) -> str:
    ours = next((r for r in results if r.engine.name == "whisper-cli" and r.ok), None)
    load = f"{ours.median('load_s'):.2f} s" if ours else "n/a"
    return (
        f"Start-up: `whisper-cli --help` {statistics.median(help_s):.2f} s "
        f"(median of {len(help_s)}); whisper-cli model load (float32) {load}"
    )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    engines = [ENGINES_BY_NAME[name] for name in args.engines]
    need_peers = any(engine.peer for engine in engines) or not can_score(Path(sys.executable))
    peers = None
    if need_peers:
        peers = args.peers_python or ensure_peers_python()
    ensure_models(args.models, args.model, peers)
    reference, language = reference_for(args.audio, args.manifest)
    if reference is None:
        log(f"no reference text for {args.audio.name}: no WER")

    samples = load_audio(args.audio)
    duration = len(samples) / SAMPLE_RATE
    info = machine()
    help_s = help_times(args.threads)
    with tempfile.TemporaryDirectory(prefix="whisper-cli-bench-") as scratch:
        audio = Path(scratch) / "audio.npy"
        np.save(audio, samples)
        del samples
        results = run_engines(engines, peers, audio, args)
    if reference is not None:
        scorer = Path(sys.executable) if can_score(Path(sys.executable)) else peers
        if scorer is not None:
            score(results, reference, language, scorer)
    info["load_after"] = os.getloadavg()[0]
    info["peers_versions"] = {}
    for result in results:
        if result.ok and result.engine.peer:
            info["peers_versions"] |= result.runs[0]["versions"]

    print(header(info, args, duration))
    print()
    print(table(results, duration))
    print()
    print(startup_line(help_s, results))
    if args.json:
        report = {
            "machine": info,
            "settings": {
                "audio": str(args.audio),
                "duration_s": duration,
                "model": args.model,
                "models": str(args.models),
                "threads": args.threads,
                "repeats": args.repeats,
                "reference": reference,
            },
            "startup": {"help_s": help_s, "help_median_s": statistics.median(help_s)},
            "engines": {result.engine.name: result.to_json() for result in results},
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        log(f"raw results: {args.json}")


if __name__ == "__main__":
    main()
