"""Benchmark a folder of short files: whisper-cli's `transcribe_many` against faster-whisper and
openai-whisper, each transcribing the whole folder in one process with the model loaded once.

    python bench/folder.py [--engines LIST] [--threads 2] [--repeats 1] [--json FILE]

The folder (16 kHz WAV, written into a temporary directory): the long-form dev recording cut at
its segments file's offsets (the 8 utterances of at most 30 s as files of their own, the two
~53-s sonnets whole, as the folder's two long files: where to cut those further is not in the
segments file, so their pieces would have no exact reference text), plus every short English
speech file of the manifest (language "en", expect "speech", category not "longform"). Each
file's reference text is its segment's or its manifest entry's.

Every engine runs in a fresh process (this same file, `worker ENGINE`), the engines
interleaved in rounds, and the table (Markdown, on standard output) gives per engine: wall
seconds for the whole folder (model load excluded, reported apart), files and audio seconds
per wall second, the ratio to faster-whisper int8 one file at a time, the WER over the folder
(the references and the transcripts each concatenated in file order, normalised with
whisper_normalizer's EnglishTextNormalizer, jiwer), the largest per-file WER rise against
whisper-cli one file at a time, peak RSS, and the 1-minute load average when the run began.
See bench/README.md.

Run it with the project's Python; the peers run from bench.py's venv
(${XDG_CACHE_HOME:-~/.cache}/whisper-cli/bench-venv, created on first use) or --peers-python.
In `worker` and `score` mode this file runs under either interpreter, so it imports only the
standard library at the top.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# engines.py beside this file (the script's folder is on sys.path)
from engines import Engine, add_model_options, engine_names, log

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared"
DEFAULT_AUDIO_DIR = SHARED / "audio"
SEGMENTS_FILE = "en_longform_dev.segments.json"

SAMPLE_RATE = 16_000
MAX_SHORT_S = 30.0  # segments longer than this go in whole, as long files
BEAM_SIZE = 5
BEST_OF = 5
TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)  # the fallback schedule every engine uses
BATCH_SIZE = 8
BASELINE = "faster-whisper-int8"  # the ratio column divides by this engine's wall time
REFERENCE = "whisper-cli-seq"  # per-file WER changes are measured against this engine


ENGINES = (
    Engine("whisper-cli-seq", False, "float32, `transcribe_many` batch 1 (one file at a time), en"),
    Engine("whisper-cli-seq-detect", False, "the same, language detected per file"),
    Engine("whisper-cli-b8", False, "float32, `transcribe_many` batch 8, en"),
    Engine("whisper-cli-b8-detect", False, "the same, language detected per file"),
    Engine("whisper-cli-b8-int8", False, "int8, `transcribe_many` batch 8, en"),
    Engine("whisper-cli-b8-bf16", False, "bfloat16, `transcribe_many` batch 8, en"),
    Engine("faster-whisper-int8", True, "WhisperModel int8, files one after another, en"),
    Engine("faster-whisper-int8-detect", True, "the same, language detected per file"),
    Engine("faster-whisper-fp32", True, "WhisperModel float32, files one after another, en"),
    Engine(
        "faster-whisper-batched-int8",
        True,
        "BatchedInferencePipeline int8, batch 8, per file, en",
    ),
    Engine("openai-whisper", True, "the `whisper` command, all files, fp16 False, en"),
)
ENGINES_BY_NAME = {engine.name: engine for engine in ENGINES}


# -- worker mode: one engine, the whole folder, in this process ----------------------------------

Transcriber = Callable[[list[Path]], dict[str, str]]  # files → {file name: text}


def whisper_cli_engine(
    models: Path, model: str, compute_type: str, batch_size: int, language: str | None
) -> Transcriber:
    import whisper_cli

    loaded = whisper_cli.load_model(models / f"whisper-{model}", "cpu", compute_type)
    options: dict[str, Any] = {"beam_size": BEAM_SIZE, "best_of": BEST_OF}
    options |= {"batch_size": batch_size} | ({"language": language} if language else {})

    def transcribe(files: list[Path]) -> dict[str, str]:
        texts = {}
        for audio, outcome in loaded.transcribe_many([str(f) for f in files], **options):
            if isinstance(outcome, Exception):
                raise RuntimeError(f"{audio}: {outcome}") from outcome
            texts[Path(audio).name] = outcome.text.strip()
        return texts

    return transcribe


def faster_whisper_engine(
    models: Path, model: str, compute_type: str, batched: bool, language: str | None, threads: int
) -> Transcriber:
    from faster_whisper import BatchedInferencePipeline, WhisperModel

    loaded = WhisperModel(
        str(models / f"ct2-{model}"), device="cpu", compute_type=compute_type, cpu_threads=threads
    )
    pipeline = BatchedInferencePipeline(loaded) if batched else None

    def transcribe(files: list[Path]) -> dict[str, str]:
        texts = {}
        for audio in files:  # as a user scripts it: one file after another
            if pipeline is not None:
                segments, _ = pipeline.transcribe(
                    str(audio),
                    language=language,
                    beam_size=BEAM_SIZE,
                    best_of=BEST_OF,
                    batch_size=BATCH_SIZE,
                )
            else:
                segments, _ = loaded.transcribe(
                    str(audio),
                    language=language,
                    beam_size=BEAM_SIZE,
                    best_of=BEST_OF,
                    temperature=list(TEMPERATURES),
                )
            texts[audio.name] = "".join(s.text for s in segments).strip()  # a lazy generator
        return texts

    return transcribe


def run_openai_whisper(
    files: list[Path],
    models: Path,
    model: str,
    language: str | None,
    threads: int,
    out: Path,
    cpu_used: list[float],
) -> tuple[float, float, dict[str, str]]:
    """The `whisper` command itself (its entry point, `whisper.transcribe.cli`, called in this
    process with its own `--threads`), every file in one run; load_model is wrapped to time the
    load apart. Returns (load_s, wall_s, texts read back from its .txt outputs)."""
    import importlib

    import whisper

    command = importlib.import_module("whisper.transcribe")  # the module, not the function

    marks: dict[str, float] = {}
    real_load = whisper.load_model

    def timed_load(*args: Any, **kwargs: Any) -> Any:
        marks["load_start"] = time.perf_counter()
        loaded = real_load(*args, **kwargs)
        marks["load_end"] = time.perf_counter()
        marks["load_end_cpu"] = time.process_time()
        return loaded

    whisper.load_model = timed_load  # cli() does `from . import load_model` when it runs
    if shutil.which("ffmpeg") is None:
        # the command decodes with ffmpeg; without it, read the folder's 16 kHz mono WAVs as
        # ffmpeg would give them (int16 / 32768)
        import numpy as np
        import soundfile
        import whisper.audio

        def read_wav(path: str, sr: int = 16_000) -> Any:
            samples, rate = soundfile.read(path, dtype="int16")
            assert rate == sr and samples.ndim == 1, path
            return samples.astype(np.float32) / 32768.0

        whisper.audio.load_audio = read_wav
    if hasattr(command, "load_model"):
        command.load_model = timed_load
    argv = [str(f) for f in files]
    argv += ["--model", str(models / f"openai-{model}.pt"), "--device", "cpu", "--fp16", "False"]
    argv += ["--beam_size", str(BEAM_SIZE), "--best_of", str(BEST_OF)]
    argv += (["--language", language] if language else []) + ["--threads", str(threads)]
    argv += ["--output_format", "txt", "--output_dir", str(out), "--verbose", "False"]
    sys.argv = ["whisper", *argv]
    command.cli()
    end = time.perf_counter()
    marks["cpu_s"] = time.process_time() - marks["load_end_cpu"]
    texts = {}
    for audio in files:
        written = out / f"{audio.stem}.txt"
        if not written.is_file():
            raise RuntimeError(f"the whisper command wrote no {written.name}")
        lines = written.read_text(encoding="utf-8").splitlines()
        texts[audio.name] = " ".join(line.strip() for line in lines if line.strip())
    cpu_used.append(marks["cpu_s"])
    return marks["load_end"] - marks["load_start"], end - marks["load_end"], texts


def load_engine(engine: str, models: Path, model: str, threads: int) -> Transcriber:
    """Set the thread count and load `engine`'s model; ENGINES describes each."""
    if engine.startswith("whisper-cli"):
        import torch

        torch.set_num_threads(threads)
    language = None if engine.endswith("-detect") else "en"
    match engine:
        case "whisper-cli-seq" | "whisper-cli-seq-detect":
            return whisper_cli_engine(models, model, "float32", 1, language)
        case "whisper-cli-b8" | "whisper-cli-b8-detect":
            return whisper_cli_engine(models, model, "float32", BATCH_SIZE, language)
        case "whisper-cli-b8-int8":
            return whisper_cli_engine(models, model, "int8", BATCH_SIZE, language)
        case "whisper-cli-b8-bf16":
            return whisper_cli_engine(models, model, "bfloat16", BATCH_SIZE, language)
        case "faster-whisper-int8" | "faster-whisper-int8-detect":
            return faster_whisper_engine(models, model, "int8", False, language, threads)
        case "faster-whisper-fp32":
            return faster_whisper_engine(models, model, "float32", False, language, threads)
        case "faster-whisper-batched-int8":
            return faster_whisper_engine(models, model, "int8", True, language, threads)
    raise SystemExit(f"folder worker: unknown engine {engine!r}")


def worker(args: argparse.Namespace) -> dict[str, Any]:
    import worker as worker_module  # bench/worker.py: runs under either interpreter

    files = [Path(name) for name in json.loads(args.files.read_text(encoding="utf-8"))]
    if args.engine.startswith("whisper-cli"):  # as the command sets it, before torch starts
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    load_before = os.getloadavg()[0]
    with contextlib.redirect_stdout(sys.stderr):  # keep stdout for the one JSON line
        if args.engine == "openai-whisper":
            with tempfile.TemporaryDirectory(prefix="whisper-cli-folder-openai-") as out:
                cpu_used: list[float] = []
                load_s, wall_s, texts = run_openai_whisper(
                    files, args.models, args.model, "en", args.threads, Path(out), cpu_used
                )
                cpu_s = cpu_used[0]
        else:
            start = time.perf_counter()
            transcribe = load_engine(args.engine, args.models, args.model, args.threads)
            load_s = time.perf_counter() - start
            start, start_cpu = time.perf_counter(), time.process_time()
            texts = transcribe(files)
            wall_s = time.perf_counter() - start
            cpu_s = time.process_time() - start_cpu
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {
        "engine": args.engine,
        "wall_s": wall_s,
        "load_s": load_s,
        "cpu_s": cpu_s,  # CPU time of the transcription, all threads (user + system)
        "peak_rss_mb": peak_kib / 1024,
        "load_avg_before": load_before,
        "load_avg_after": os.getloadavg()[0],
        "texts": texts,
        "ffmpeg": shutil.which("ffmpeg") is not None,
        "versions": worker_module.package_versions(args.engine),
    }


def score() -> dict[str, Any]:
    """stdin: {"order": [file, ...], "references": {file: text}, "hypotheses": {engine: {file:
    text}}}; stdout: {engine: {"wer": folder WER, "per_file": {file: WER or None}}}."""
    import jiwer
    from whisper_normalizer.english import EnglishTextNormalizer

    normalise = EnglishTextNormalizer()
    data = json.load(sys.stdin)
    order, references = data["order"], data["references"]
    folder_reference = normalise(" ".join(references[name] for name in order)).strip()
    scores = {}
    for engine, texts in data["hypotheses"].items():
        folder_text = normalise(" ".join(texts.get(name, "") for name in order)).strip()
        per_file: dict[str, float | None] = {}
        for name in order:
            reference = normalise(references[name]).strip()
            hypothesis = normalise(texts.get(name, "")).strip()
            per_file[name] = float(jiwer.wer(reference, hypothesis)) if reference else None
        scores[engine] = {
            "wer": float(jiwer.wer(folder_reference, folder_text)),
            "per_file": per_file,
        }
    return scores


# -- the folder ----------------------------------------------------------------------------------


def build_folder(audio_dir: Path, dest: Path) -> list[dict[str, Any]]:
    """Write the folder's 16 kHz WAV files into `dest`; one entry per file (name, path,
    duration_s, reference text, origin), in file-name order."""
    import soundfile

    from whisper_cli.audio import load_audio

    entries = []

    def write(name: str, samples: Any, text: str, origin: str) -> None:
        path = dest / name
        soundfile.write(path, samples, SAMPLE_RATE, subtype="PCM_16")
        duration = len(samples) / SAMPLE_RATE
        entries.append(
            {
                "file": name,
                "path": str(path),
                "duration_s": duration,
                "text": text,
                "origin": origin,
            }
        )

    segments = json.loads((audio_dir / SEGMENTS_FILE).read_text(encoding="utf-8"))
    longform = load_audio(audio_dir / segments["audio"])
    for number, segment in enumerate(segments["segments"], 1):
        start, end = (round(segment[key] * SAMPLE_RATE) for key in ("start", "end"))
        kind = "long" if (end - start) / SAMPLE_RATE > MAX_SHORT_S else "short"
        origin = f"{segments['audio']} {segment['start']}-{segment['end']} s"
        write(f"dev{number:02d}_{kind}.wav", longform[start:end], segment["text"], origin)

    with (audio_dir / "manifest.jsonl").open(encoding="utf-8") as lines:
        manifest = [json.loads(line) for line in lines if line.strip()]
    for entry in manifest:
        if (
            entry.get("language") == "en"
            and entry.get("expect") == "speech"
            and entry.get("category") != "longform"
        ):
            source = audio_dir / entry["file"]
            write(
                f"{Path(entry['file']).stem}.wav", load_audio(source), entry["text"], entry["file"]
            )
    entries.sort(key=lambda entry: entry["file"])
    return entries


# -- driver ---------------------------------------------------------------------------------------


@dataclass
class Result:
    engine: Engine
    runs: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    wer: float | None = None
    per_file: dict[str, float | None] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return bool(self.runs) and self.error is None

    def median(self, key: str) -> float:
        return statistics.median(run[key] for run in self.runs)

    def to_json(self) -> dict[str, Any]:
        summary: dict[str, Any] = {"setup": self.engine.setup, "peer": self.engine.peer}
        if self.ok:
            summary |= {
                "wall_s": self.median("wall_s"),
                "load_s": self.median("load_s"),
                "peak_rss_mb": max(run["peak_rss_mb"] for run in self.runs),
                "wer": self.wer,
                "per_file_wer": self.per_file,
                "texts_agree": len({json.dumps(run["texts"]) for run in self.runs}) == 1,
            }
        return summary | {"error": self.error, "runs": self.runs}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command")
    work = commands.add_parser("worker", help="(internal) one engine on the whole folder")
    work.add_argument("engine")
    work.add_argument("--files", type=Path, required=True, help="JSON list of file paths")
    work.add_argument("--models", type=Path, required=True)
    work.add_argument("--model", default="base")
    work.add_argument("--threads", type=int, required=True)
    commands.add_parser("score", help="(internal) WERs of the hypotheses on stdin")
    table_parser = commands.add_parser("table", help="print the table of a --json file again")
    table_parser.add_argument("saved", type=Path)

    parser.add_argument(
        "--audio-dir", type=Path, default=DEFAULT_AUDIO_DIR, help="default: %(default)s"
    )
    add_model_options(parser, ENGINES, "whisper-NAME/, openai-NAME.pt, ct2-NAME/")
    parser.add_argument("--repeats", type=int, default=1, help="rounds; default: 1")
    parser.add_argument("--peers-python", type=Path, help="instead of the bench venv")
    parser.add_argument(
        "--max-minutes",
        type=float,
        help="start no run after this many minutes; the table shows what was done",
    )
    parser.add_argument("--keep-folder", type=Path, help="write the folder here and keep it")
    parser.add_argument("--json", type=Path, help="also save every raw result here")
    args = parser.parse_args(argv)
    if args.command is None:
        args.engines = engine_names(parser, args.engines, ENGINES_BY_NAME)
        if args.threads < 1 or args.repeats < 1:
            parser.error("--threads and --repeats must be at least 1")
    return args


def measure(python: Path, engine: Engine, files: Path, args: argparse.Namespace) -> dict[str, Any]:
    import bench

    command = [str(python), str(Path(__file__).resolve()), "worker", engine.name]
    command += ["--files", str(files), "--models", str(args.models), "--model", args.model]
    command += ["--threads", str(args.threads)]
    done = subprocess.run(
        command, capture_output=True, text=True, env=bench.thread_env(args.threads)
    )
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = "\n".join(done.stderr.strip().splitlines()[-8:])
        raise RuntimeError(f"exit status {done.returncode}\n{tail}")
    return json.loads(lines[-1])


def run_engines(
    engines: list[Engine], peers: Path | None, files: Path, args: argparse.Namespace
) -> list[Result]:
    """Every engine once per round, `args.repeats` rounds, each run a fresh process."""
    results = [Result(engine) for engine in engines]
    deadline = time.monotonic() + 60 * args.max_minutes if args.max_minutes else None
    for repeat in range(1, args.repeats + 1):
        for result in results:
            if result.error is not None:
                continue
            if deadline is not None and time.monotonic() > deadline:
                log(f"--max-minutes {args.max_minutes} spent: no more runs")
                return results
            python = peers if result.engine.peer else Path(sys.executable)
            assert python is not None
            load = os.getloadavg()[0]
            log(f"{result.engine.name}: round {repeat} of {args.repeats} (load average {load:.2f})")
            try:
                run = measure(python, result.engine, files, args)
            except KeyboardInterrupt:  # Ctrl-C or SIGTERM: report what is done
                log(f"{result.engine.name}: interrupted; no more runs")
                return results
            except RuntimeError as error:
                log(f"{result.engine.name} failed: {error}")
                result.error = str(error)
                continue
            log(
                f"  {run['wall_s']:.2f} s, load {run['load_s']:.2f} s, {run['peak_rss_mb']:.0f} MiB"
            )
            result.runs.append(run)
    return results


def score_all(results: list[Result], entries: list[dict[str, Any]], scorer: Path) -> None:
    hypotheses = {r.engine.name: r.runs[0]["texts"] for r in results if r.ok}
    if not hypotheses:
        return
    data = {
        "order": [entry["file"] for entry in entries],
        "references": {entry["file"]: entry["text"] for entry in entries},
        "hypotheses": hypotheses,
    }
    done = subprocess.run(
        [str(scorer), str(Path(__file__).resolve()), "score"],
        input=json.dumps(data),
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        log(f"scoring failed: {done.stderr.strip().splitlines()[-1:]}")
        return
    scores = json.loads(done.stdout.strip().splitlines()[-1])
    for result in results:
        if result.engine.name in scores:
            result.wer = scores[result.engine.name]["wer"]
            result.per_file = scores[result.engine.name]["per_file"]


def worst_change(result: Result, reference: Result | None) -> str:
    """The file whose WER rose most against the reference engine's (or fell least)."""
    if reference is None or not reference.per_file or not result.per_file:
        return "n/a"
    if result is reference:
        return "—"
    changes = [
        (wer - reference.per_file[name], name)
        for name, wer in result.per_file.items()
        if wer is not None and reference.per_file.get(name) is not None
    ]
    if not changes:
        return "n/a"
    change, name = max(changes)
    if change == 0:
        return "0 (no file worse)"
    return f"{100 * change:+.1f} ({name})"


def table(results: list[Result], entries: list[dict[str, Any]]) -> str:
    audio_s = sum(entry["duration_s"] for entry in entries)
    baseline = next((r for r in results if r.engine.name == BASELINE and r.ok), None)
    reference = next((r for r in results if r.engine.name == REFERENCE and r.ok), None)
    rows = [
        "| engine | setup | wall s | load s | files/s | audio s/s | vs fw int8 | WER % "
        "| worst file ΔWER pts vs seq | peak RSS MiB | CPU s | load avg |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: |",
    ]
    for result in results:
        name = f"`{result.engine.name}`"
        if not result.ok:
            failure = (result.error or "not run (interrupted or out of time)").splitlines()[-1]
            rows.append(f"| {name} | failed: {failure} | | | | | | | | | | |")
            continue
        wall = result.median("wall_s")
        ratio = f"{wall / baseline.median('wall_s'):.2f}×" if baseline else "n/a"
        wer = f"{100 * result.wer:.1f}" if result.wer is not None else "n/a"
        cpus = [run["cpu_s"] for run in result.runs if "cpu_s" in run]
        cpu = f"{statistics.median(cpus):.0f}" if cpus else "n/a"
        rows.append(
            f"| {name} | {result.engine.setup} | {wall:.2f} | {result.median('load_s'):.2f} "
            f"| {len(entries) / wall:.2f} | {audio_s / wall:.1f} | {ratio} | {wer} "
            f"| {worst_change(result, reference)} "
            f"| {max(run['peak_rss_mb'] for run in result.runs):.0f} | {cpu} "
            f"| {result.median('load_avg_before'):.1f} |"
        )
    return "\n".join(rows)


def header(info: dict[str, Any], args: argparse.Namespace, entries: list[dict[str, Any]]) -> str:
    import bench

    peers = ", ".join(f"{name} {v}" for name, v in info["peers_versions"].items()) or "not run"
    audio_s = sum(entry["duration_s"] for entry in entries)
    long = [e for e in entries if e["duration_s"] > MAX_SHORT_S]
    return "\n".join(
        [
            f"- machine: {info['cpu']}, {info['cores']} cores ({info['usable_cores']} usable), "
            f"Python {info['python']}",
            f"- threads: {args.threads}; whisper-cli {info['whisper-cli']}, torch {info['torch']}; "
            f"peers: {peers}",
            f"- folder: {len(entries)} files, {audio_s:.1f} s of audio ({len(long)} long files, "
            f"{sum(e['duration_s'] for e in long):.1f} s; the rest "
            f"{min(e['duration_s'] for e in entries):.1f}–"
            f"{max(e['duration_s'] for e in entries if e not in long):.1f} s), model {args.model}",
            f"- wall: the whole folder, model load excluded, median of {args.repeats} round(s) of "
            "fresh processes; beam 5, best of 5, temperature fallback",
            f"- load average (1 min): {info['load_before']:.2f} before, "
            f"{info['load_after']:.2f} after"
            + (bench.BUSY_WARNING if info["load_before"] >= bench.BUSY_LOAD else ""),
        ]
    )


def rerender(saved: Path) -> None:
    """Print the table again from a --json file (scores included)."""
    report = json.loads(saved.read_text(encoding="utf-8"))
    entries = report["folder"]
    results = []
    for name, data in report["engines"].items():
        result = Result(ENGINES_BY_NAME[name], runs=data["runs"], error=data["error"])
        result.wer, result.per_file = data.get("wer"), data.get("per_file_wer") or {}
        results.append(result)
    print(table(results, entries))


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.command == "worker":
        print(json.dumps(worker(args)), flush=True)
        return
    if args.command == "score":
        print(json.dumps(score()), flush=True)
        return
    if args.command == "table":
        rerender(args.saved)
        return

    import bench  # the project's side only: it imports whisper_cli

    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop as Ctrl-C does: report

    engines = [ENGINES_BY_NAME[name] for name in args.engines]
    can_score = bench.can_score(Path(sys.executable))
    peers = None
    if any(engine.peer for engine in engines) or not can_score:
        peers = args.peers_python or bench.ensure_peers_python()
    bench.ensure_models(args.models, args.model, peers)
    info = bench.machine()
    with contextlib.ExitStack() as stack:
        if args.keep_folder:
            folder = args.keep_folder
            folder.mkdir(parents=True, exist_ok=True)
        else:
            folder = Path(
                stack.enter_context(tempfile.TemporaryDirectory(prefix="whisper-cli-folder-"))
            )
        entries = build_folder(args.audio_dir, folder)
        files = folder / "files.json"
        files.write_text(json.dumps([entry["path"] for entry in entries]), encoding="utf-8")
        log(f"folder: {len(entries)} files in {folder}")
        results = run_engines(engines, peers, files, args)
    scorer = Path(sys.executable) if can_score else peers
    assert scorer is not None
    score_all(results, entries, scorer)
    info["load_after"] = os.getloadavg()[0]
    info["peers_versions"] = {}
    for result in results:
        if result.ok and result.engine.peer:
            info["peers_versions"] |= result.runs[0]["versions"]

    print(header(info, args, entries))
    print()
    print(table(results, entries))
    if args.json:
        report = {
            "machine": info,
            "settings": {
                "model": args.model,
                "models": str(args.models),
                "threads": args.threads,
                "repeats": args.repeats,
                "baseline": BASELINE,
                "reference": REFERENCE,
            },
            "folder": [{k: v for k, v in e.items() if k != "path"} for e in entries],
            "engines": {result.engine.name: result.to_json() for result in results},
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        log(f"raw results: {args.json}")


if __name__ == "__main__":
    main()
