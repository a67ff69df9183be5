"""Peak memory of the whisper-cli command: a long recording's streamed features against the
reference's whole-file ones, or one file as it is under one or more Pythons (PyTorch builds).

    python bench/memory.py [--hours 3] [--model DIR] [--peers-python PATH]
    python bench/memory.py --audio FILE [--python PATH ...] [--repeats N]

Builds a recording of `--hours` by repeating ../shared/audio/en_longform_dev.flac (written once
to the system's temporary folder), then measures, each in a fresh process:

- whisper-cli: `whisper-cli transcribe` of the whole file with the given model on the CPU. The
  features, the voice detector and every window's bookkeeping cover all of it; with
  `--clip-timestamps 0,30` (the default `--decode-seconds 30`) only the first 30 s are decoded,
  so the run takes minutes instead of hours. Decoding more does not grow memory: segments are
  written as they come.
- openai-whisper (with `--peers-python`): its `log_mel_spectrogram` over the decoded recording,
  which is what its `transcribe` computes before decoding anything; its model is loaded too.

and prints each one's peak resident memory (ru_maxrss of the child).

With `--audio FILE` it transcribes that file whole instead (no long recording, no clip), in
float32 on the CPU, with `python -m whisper_cli` under each `--python` (default: this one;
give it several times to compare virtualenvs, e.g. the pinned CPU build of PyTorch against
the CUDA build that `pip install .` brings), `--repeats` fresh processes each, and prints a
row per Python with its PyTorch version and the peak RSS of every run. The Pythons run the
whisper-cli they import: set PYTHONPATH to a checkout to run that one.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared"

OPENAI_FEATURES = """
import sys, soundfile, torch, whisper
torch.set_num_threads(int(sys.argv[3]))
model = whisper.load_model(sys.argv[2], device="cpu")
audio, _ = soundfile.read(sys.argv[1], dtype="float32")
mel = whisper.log_mel_spectrogram(torch.from_numpy(audio), model.dims.n_mels, padding=480000)
print(tuple(mel.shape))
"""


def long_recording(hours: float) -> Path:
    import numpy as np
    import soundfile as sf

    path = Path(tempfile.gettempdir()) / f"whisper-cli-bench-{hours:g}h.flac"
    if path.exists():
        return path
    source, rate = sf.read(SHARED / "audio" / "en_longform_dev.flac", dtype="int16")
    repeats = int(np.ceil(hours * 3600 * rate / len(source)))
    partial = path.with_suffix(".partial.flac")
    with sf.SoundFile(partial, "w", rate, 1, "PCM_16", format="FLAC") as out:
        for _ in range(repeats):
            out.write(source)
    partial.rename(path)
    return path


def peak_rss_mb(command: list[str]) -> tuple[float, float]:
    """Run a command to completion: (its peak RSS in MB, wall seconds)."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(command)}")
    return usage.ru_maxrss / 1024, time.perf_counter() - start


def torch_version(python: str) -> str:
    """The PyTorch version a Python imports, with its CUDA version where it is a CUDA build."""
    code = "import torch; print(torch.__version__, torch.version.cuda or '')"
    return subprocess.run(
        [python, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()


def one_file(args: argparse.Namespace) -> None:
    """Peak RSS of `whisper-cli transcribe FILE` (whole, float32, CPU) under each Python."""
    pythons = args.python or [sys.executable]
    print(f"- file: {args.audio}; model {args.model}; float32, CPU", file=sys.stderr)
    print("| Python | torch | peak RSS MiB | wall s |\n| --- | --- | ---: | ---: |")
    for python in pythons:
        runs = []
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as out:
                command = [python, "-m", "whisper_cli", "transcribe", str(args.audio)]
                command += ["-m", args.model, "--device", "cpu", "--compute-type", "float32"]
                command += ["--threads", str(args.threads), "-q", "-f", "txt", "-o", out]
                runs.append(peak_rss_mb(command))
        rss = " / ".join(f"{mb:.0f}" for mb, _ in runs)
        wall = " / ".join(f"{seconds:.1f}" for _, seconds in runs)
        print(f"| {python} | {torch_version(python)} | {rss} | {wall} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=3.0)
    parser.add_argument("--model", default=str(SHARED / "models" / "whisper-base"))
    parser.add_argument("--openai-pt", help="openai-whisper .pt of the same weights")
    parser.add_argument("--peers-python", help="a Python with openai-whisper installed")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--decode-seconds", type=float, default=30.0)
    parser.add_argument("--audio", type=Path, help="measure this file, whole, instead")
    parser.add_argument(
        "--python", action="append", help="with --audio: a Python to run it under (repeatable)"
    )
    parser.add_argument("--repeats", type=int, default=1, help="with --audio: runs per Python")
    args = parser.parse_args()
    if args.audio is not None:
        one_file(args)
        return

    recording = long_recording(args.hours)
    print(f"- recording: {recording} ({args.hours:g} h); model {args.model}; CPU", file=sys.stderr)
    rows = []
    with tempfile.TemporaryDirectory() as out:
        ours = [sys.executable, "-m", "whisper_cli", "transcribe", str(recording)]
        ours += ["-m", args.model, "--device", "cpu", "--threads", str(args.threads), "-q"]
        ours += ["--clip-timestamps", f"0,{args.decode_seconds:g}", "-f", "txt", "-o", out]
        rows.append(("whisper-cli (streamed features)", *peak_rss_mb(ours)))
    if args.peers_python and args.openai_pt:
        theirs = [args.peers_python, "-c", OPENAI_FEATURES, str(recording), args.openai_pt]
        rows.append(("openai-whisper (features only)", *peak_rss_mb([*theirs, str(args.threads)])))
    print("| run | peak RSS MB | wall s |\n| --- | ---: | ---: |")
    for name, rss, wall in rows:
        print(f"| {name} | {rss:.0f} | {wall:.0f} |")


if __name__ == "__main__":
    main()
