"""One benchmark measurement, run by bench.py in a fresh process.

    python worker.py run ENGINE --audio AUDIO.npy --models DIR --model base --threads 2

loads one engine's model, transcribes the 16 kHz float32 samples in AUDIO.npy once, and prints
one JSON line on standard output:

    {"engine": ..., "wall_s": ..., "load_s": ..., "peak_rss_mb": ..., "text": ...,
     "versions": {...}}

`wall_s` is the transcription alone (the model is already loaded), `load_s` the model load, and
`peak_rss_mb` this process's peak resident set size (ru_maxrss / 1024, so MiB).

    python worker.py score --language en < hypotheses.json

reads {"reference": TEXT, "hypotheses": {NAME: TEXT, ...}} and prints {NAME: WER, ...}, after
normalising both sides with whisper_normalizer (EnglishTextNormalizer for English, the basic
normaliser otherwise).

This file runs under two interpreters, the project's (whisper-cli) and the peers' venv
(faster-whisper, openai-whisper), so it imports only the standard library and numpy at the top,
and each engine's package inside its own function.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

BEAM_SIZE = 5
BEST_OF = 5
TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)  # the fallback schedule every engine uses
BATCH_SIZE = 8

Transcriber = Callable[[np.ndarray], str]  # samples → text, with the model already loaded


def load_whisper_cli(models: Path, model: str, compute_type: str, batched: bool) -> Transcriber:
    import whisper_cli

    loaded = whisper_cli.load_model(models / f"whisper-{model}", "cpu", compute_type)
    extra = {"batch_size": BATCH_SIZE} if batched else {}

    def transcribe(audio: np.ndarray) -> str:
        # beam 5, best of 5 and the temperature fallback: whisper-cli transcribe's defaults
        result = loaded.transcribe(audio, beam_size=BEAM_SIZE, best_of=BEST_OF, **extra)
        return result.text.strip()

    return transcribe


def load_faster_whisper(
    models: Path, model: str, compute_type: str, batched: bool, threads: int
) -> Transcriber:
    from faster_whisper import BatchedInferencePipeline, WhisperModel

    loaded = WhisperModel(
        str(models / f"ct2-{model}"), device="cpu", compute_type=compute_type, cpu_threads=threads
    )
    pipeline = BatchedInferencePipeline(loaded) if batched else None

    def transcribe(audio: np.ndarray) -> str:
        if pipeline is not None:
            segments, _ = pipeline.transcribe(
                audio, beam_size=BEAM_SIZE, best_of=BEST_OF, batch_size=BATCH_SIZE
            )
        else:
            segments, _ = loaded.transcribe(
                audio, beam_size=BEAM_SIZE, best_of=BEST_OF, temperature=list(TEMPERATURES)
            )
        return "".join(segment.text for segment in segments).strip()  # a lazy generator

    return transcribe


def load_openai_whisper(models: Path, model: str) -> Transcriber:
    import whisper

    loaded = whisper.load_model(str(models / f"openai-{model}.pt"), device="cpu")

    def transcribe(audio: np.ndarray) -> str:
        # the openai-whisper command's defaults, on the CPU
        result = loaded.transcribe(
            audio, beam_size=BEAM_SIZE, best_of=BEST_OF, temperature=TEMPERATURES, fp16=False
        )
        return str(result["text"]).strip()

    return transcribe


def load_engine(engine: str, models: Path, model: str, threads: int) -> Transcriber:
    """Set the thread count and load `engine`'s model; bench.ENGINES describes each."""
    if engine.startswith("whisper-cli") or engine == "openai-whisper":
        import torch

        torch.set_num_threads(threads)
    match engine:
        case "whisper-cli":
            return load_whisper_cli(models, model, "float32", batched=False)
        case "whisper-cli-int8":
            return load_whisper_cli(models, model, "int8", batched=False)
        case "whisper-cli-batched":
            return load_whisper_cli(models, model, "float32", batched=True)
        case "whisper-cli-batched-int8":
            return load_whisper_cli(models, model, "int8", batched=True)
        case "faster-whisper-fp32":
            return load_faster_whisper(models, model, "float32", batched=False, threads=threads)
        case "faster-whisper-int8":
            return load_faster_whisper(models, model, "int8", batched=False, threads=threads)
        case "faster-whisper-batched-int8":
            return load_faster_whisper(models, model, "int8", batched=True, threads=threads)
        case "openai-whisper":
            return load_openai_whisper(models, model)
    raise SystemExit(f"worker: unknown engine {engine!r}")


ENGINE_PACKAGES = {
    "whisper-cli": ("whisper-cli", "torch"),
    "faster-whisper": ("faster-whisper", "ctranslate2"),
    "openai-whisper": ("openai-whisper", "torch"),
}


def package_versions(engine: str) -> dict[str, str]:
    family = next(name for name in ENGINE_PACKAGES if engine.startswith(name))
    versions = {}
    for package in ENGINE_PACKAGES[family]:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "?"
    return versions


def run(args: argparse.Namespace) -> dict[str, object]:
    audio = np.load(args.audio)
    with contextlib.redirect_stdout(sys.stderr):  # keep stdout for the one JSON line
        start = time.perf_counter()
        transcribe = load_engine(args.engine, args.models, args.model, args.threads)
        load_s = time.perf_counter() - start
        start = time.perf_counter()
        text = transcribe(audio)
        wall_s = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {
        "engine": args.engine,
        "wall_s": wall_s,
        "load_s": load_s,
        "peak_rss_mb": peak_kib / 1024,
        "text": text,
        "versions": package_versions(args.engine),
    }


def score(language: str | None) -> dict[str, float | None]:
    import jiwer

    if language in (None, "en", "english"):
        from whisper_normalizer.english import EnglishTextNormalizer

        normalise: Callable[[str], str] = EnglishTextNormalizer()
    else:
        from whisper_normalizer.basic import BasicTextNormalizer

        normalise = BasicTextNormalizer()
    data = json.load(sys.stdin)
    reference = normalise(data["reference"]).strip()
    if not reference:
        return dict.fromkeys(data["hypotheses"])
    return {
        name: float(jiwer.wer(reference, normalise(text).strip()))
        for name, text in data["hypotheses"].items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="time one engine on one audio array")
    run_parser.add_argument("engine")
    run_parser.add_argument("--audio", type=Path, required=True, help="16 kHz float32 .npy")
    run_parser.add_argument("--models", type=Path, required=True, help="get-model's DEST")
    run_parser.add_argument("--model", default="base", help="model name (base, tiny.en)")
    run_parser.add_argument("--threads", type=int, required=True)
    score_parser = commands.add_parser("score", help="WER of hypotheses read from stdin")
    score_parser.add_argument("--language", default="en")
    args = parser.parse_args()
    result = run(args) if args.command == "run" else score(args.language)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
