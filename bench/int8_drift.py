"""How far int8 moves whisper-cli and faster-whisper from their own float32 transcripts.

    python bench/int8_drift.py [--audio-dir ../shared/audio] [--models DIR] [--model base]

Transcribes every speech recording of the manifest but the long-form one (20 files, 9
languages, ~150 s) with each engine in float32 and in int8 (beam 5, best of 5, the manifest's
language given), each engine in its own interpreter (faster-whisper in the peers' venv that
bench.py keeps), and prints per engine the word edit rate between its int8 and its float32
transcripts, and each transcript set's word error rate against the references. Words are
compared after lower-casing and dropping punctuation; Chinese and Japanese by character. One
file's WER moves by a point with any change of rounding; the edit rate to float32 over many
files is the steadier measure of what int8 costs.

    python bench/int8_drift.py texts ENGINE COMPUTE_TYPE --audio-dir D --models M --model base

is the inner step: one engine, one compute type, a JSON object {file: text} on standard output.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import unicodedata
from pathlib import Path

from engines import edits

HERE = Path(__file__).resolve().parent
BY_CHARACTER = ("ja", "zh")
ENGINES = ("whisper-cli", "faster-whisper")


def speech_files(audio_dir: Path) -> list[dict]:
    lines = (audio_dir / "manifest.jsonl").read_text(encoding="utf-8").splitlines()
    entries = [json.loads(line) for line in lines if line.strip()]
    return [e for e in entries if e["expect"] == "speech" and e["category"] != "longform"]


def texts(engine: str, compute_type: str, audio_dir: Path, models: Path, model: str) -> dict:
    files = speech_files(audio_dir)
    if engine == "whisper-cli":
        import torch

        import whisper_cli

        torch.set_num_threads(2)
        loaded = whisper_cli.load_model(models / f"whisper-{model}", "cpu", compute_type)

        def transcribe(path: Path, language: str) -> str:
            return loaded.transcribe(str(path), language=language, beam_size=5, best_of=5).text
    else:
        from faster_whisper import WhisperModel

        fw = WhisperModel(
            str(models / f"ct2-{model}"), device="cpu", compute_type=compute_type, cpu_threads=2
        )

        def transcribe(path: Path, language: str) -> str:
            segments, _ = fw.transcribe(str(path), language=language, beam_size=5, best_of=5)
            return "".join(segment.text for segment in segments)

    return {e["file"]: transcribe(audio_dir / e["file"], e["language"]) for e in files}


def words(text: str, language: str) -> list[str]:
    text = re.sub(r"[^\w' ]", " ", unicodedata.normalize("NFKC", text).lower())
    return list(text.replace(" ", "")) if language in BY_CHARACTER else text.split()


def rate(pairs: list[tuple[list[str], list[str]]]) -> float:
    """Edits over the first sides' length, in per cent."""
    return 100 * sum(edits(a, b) for a, b in pairs) / max(1, sum(len(a) for a, _ in pairs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("step", nargs="*", help="texts ENGINE COMPUTE_TYPE (inner step)")
    parser.add_argument("--audio-dir", type=Path, default=HERE.parent.parent / "shared" / "audio")
    default_models = Path.home() / ".cache" / "whisper-test-models"
    parser.add_argument("--models", type=Path, default=default_models)
    parser.add_argument("--model", default="base")
    args = parser.parse_args()
    if args.step:
        _, engine, compute_type = args.step
        result = texts(engine, compute_type, args.audio_dir, args.models, args.model)
        print(json.dumps(result, ensure_ascii=False))
        return

    sys.path.insert(0, str(HERE))
    from bench import ensure_peers_python

    pythons = {"whisper-cli": Path(sys.executable), "faster-whisper": ensure_peers_python()}
    common = ["--audio-dir", str(args.audio_dir), "--models", str(args.models)]
    common += ["--model", args.model]
    files = speech_files(args.audio_dir)
    languages = {e["file"]: e["language"] for e in files}
    references = {e["file"]: e["text"] for e in files}
    print("| engine | int8 words changed from its float32 | WER float32 | WER int8 |")
    print("| --- | ---: | ---: | ---: |")
    for engine in ENGINES:
        got = {}
        for compute_type in ("float32", "int8"):
            command = [str(pythons[engine]), __file__, "texts", engine, compute_type, *common]
            print(f"{engine} {compute_type} ...", file=sys.stderr)
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            texts_ = json.loads(done.stdout.strip().splitlines()[-1])
            got[compute_type] = {f: words(t, languages[f]) for f, t in texts_.items()}
        truth = {f: words(t, languages[f]) for f, t in references.items()}
        drift = rate([(got["float32"][f], got["int8"][f]) for f in truth])
        wer = {c: rate([(truth[f], got[c][f]) for f in truth]) for c in got}
        print(f"| {engine} | {drift:.1f} % | {wer['float32']:.1f} | {wer['int8']:.1f} |")


if __name__ == "__main__":
    main()
