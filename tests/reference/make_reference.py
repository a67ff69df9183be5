"""Record openai-whisper's outputs on the dev audio set as test fixtures.

The fixtures in this folder are what the *reference* implementation (openai-whisper) produces
for the real `base` weights, so that whisper-cli's tests can compare against them without
openai-whisper installed. Every number in them comes from running openai-whisper here; this
script is the only thing that writes them.

How to run it (once; the outputs are committed, the venv is not):

    # a scratch venv that holds the reference (never the project's .venv)
    python3 -m venv /work/scratch/ref
    /work/scratch/ref/bin/pip install torch==2.13.0 openai-whisper==20250625 \
        soundfile soxr jiwer whisper-normalizer      # torch: the CPU build

    # the real base checkpoint, rebuilt offline; gives /work/scratch/models/openai-base.pt
    PYTHON=/work/scratch/ref/bin/python /work/shared/tools/get-model base /work/scratch/models

    # 15 to 30 minutes on 2 CPU cores (beam search and temperature fallback dominate)
    /work/scratch/ref/bin/python tests/reference/make_reference.py \
        --model-pt /work/scratch/models/openai-base.pt \
        --audio-dir /work/shared/audio --out tests/reference

Conventions:

* Audio is decoded with soundfile + soxr exactly as whisper-cli decodes it (`load_audio`
  below), NOT with openai-whisper's ffmpeg loader, so the fixtures compare models, not
  resamplers. The decoded numpy array is passed to openai-whisper's functions.
* Everything runs on CPU in float32 (`fp16=False`), with 2 threads.
* `whisper.load_model(path)` does not know which model a bare checkpoint file is, so it falls
  back to "all heads of the last half of the decoder" as word-alignment heads. We set the
  official `base` heads (`whisper._ALIGNMENT_HEADS["base"]`), which is what
  `whisper.load_model("base")` does and what the Hugging Face generation_config.json holds.
* Each JSON fixture is `{"meta": {...}, ...}`; `meta` holds the versions and the exact
  options used. Each npz holds the same as a JSON string under the key `__meta__`.
"""

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import soundfile
import soxr
import torch
import whisper
from whisper.audio import N_FRAMES, N_SAMPLES, SAMPLE_RATE, log_mel_spectrogram, pad_or_trim
from whisper.tokenizer import get_tokenizer

# the whisper CLI's default decoding: temperature fallback, beam search, the three thresholds
CLI_DEFAULTS = dict(
    temperature=(0.0, 0.2, 0.4, 0.6, 0.8, 1.0),
    beam_size=5,
    best_of=5,
    fp16=False,
    compression_ratio_threshold=2.4,
    logprob_threshold=-1.0,
    no_speech_threshold=0.6,
    condition_on_previous_text=True,
)
# plain greedy decoding, one pass per window
GREEDY = dict(temperature=0.0, fp16=False, condition_on_previous_text=True)

MAX_MEL_FRAMES = 120  # frames kept per file and n_mels in mel.npz (118 content + 2 padding)
LOGITS_FILE = "en_ls_1995-1837-0001.wav"
LONGFORM_FILE = "en_longform_dev.flac"
UNREADABLE = {"zero_length.wav", "corrupt_random_bytes.wav", "truncated_2412-153948-0000.flac"}


# ---------------------------------------------------------------------------------------------
# helpers


def load_audio(path: Path) -> np.ndarray:
    """Decode a file to 16 kHz mono float32, the way whisper-cli does (soundfile + soxr HQ)."""
    x, sr = soundfile.read(str(path), dtype="float32", always_2d=True)
    x = x.mean(axis=1, dtype=np.float32)  # downmix
    if sr != SAMPLE_RATE:
        x = soxr.resample(x, sr, SAMPLE_RATE, quality="HQ")
    return np.ascontiguousarray(x, dtype=np.float32)


def plain(obj):
    """Turn numpy / torch scalars and arrays into plain Python values for JSON."""
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return plain(obj.tolist())
    if isinstance(obj, np.ndarray):
        return plain(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(plain(obj), indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB)", flush=True)


def write_npz(path: Path, arrays: dict, meta: dict) -> None:
    np.savez_compressed(path, __meta__=np.array(json.dumps(plain(meta))), **arrays)
    print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB)", flush=True)


def segments_of(result: dict, words: bool = False) -> list:
    """The per-segment fields of a `whisper.transcribe` result that the fixtures keep."""
    keys = [
        "id",
        "seek",
        "start",
        "end",
        "text",
        "tokens",
        "temperature",
        "avg_logprob",
        "compression_ratio",
        "no_speech_prob",
    ]
    out = []
    for seg in result["segments"]:
        s = {k: seg[k] for k in keys}
        if words:
            s["words"] = [
                {k: w[k] for k in ("word", "start", "end", "probability")}
                for w in seg.get("words", [])
            ]
        out.append(s)
    return out


def run_transcribe(
    model, audio: np.ndarray, words: bool = False, seed: int | None = None, **options
):
    """`whisper.transcribe` with the given options -> (text, language, segments, wall seconds)."""
    if seed is not None:
        torch.manual_seed(seed)
    t0 = time.perf_counter()
    result = whisper.transcribe(model, audio, verbose=None, word_timestamps=words, **options)
    wall = time.perf_counter() - t0
    return {
        "text": result["text"],
        "language": result["language"],
        "segments": segments_of(result, words=words),
        "wall_s": round(wall, 2),
    }


def first_window(model, audio: np.ndarray) -> torch.Tensor:
    """The mel of the first 30 s, as `transcribe` builds it: whole-file mel + 30 s padding."""
    mel = log_mel_spectrogram(audio, model.dims.n_mels, padding=N_SAMPLES)
    return pad_or_trim(mel, N_FRAMES)


def mel_frame_indices(content_frames: int, n_frames: int) -> np.ndarray:
    """First 3 and last 3 content frames, evenly spaced ones between, and 2 padding frames."""
    n_content = MAX_MEL_FRAMES - 2
    spread = np.linspace(0, content_frames - 1, n_content - 6).round().astype(np.int64)
    edges = np.r_[0:3, content_frames - 3 : content_frames]
    content = np.unique(np.r_[edges, spread])
    content = content[(content >= 0) & (content < content_frames)]
    # content_frames + 1: just past the end, its STFT window still sees the last samples;
    # n_frames - 1: the last frame kept, deep in the zero padding
    padding = np.array([content_frames + 1, n_frames - 1], dtype=np.int64)
    return np.r_[content, padding].astype(np.int64)


# ---------------------------------------------------------------------------------------------
# fixtures


def make_mel_filters(out: Path, meta: dict) -> None:
    """openai-whisper's own mel filter banks (librosa slaney, as shipped in its assets)."""
    path = Path(whisper.__file__).parent / "assets" / "mel_filters.npz"
    with np.load(path) as f:
        arrays = {k: f[k].astype(np.float32) for k in ("mel_80", "mel_128")}
    write_npz(out / "mel_filters.npz", arrays, meta)


def make_mel(out: Path, meta: dict, readable: list, audio_dir: Path) -> None:
    """A subset of frames of the reference log-mel for every readable file, 80 and 128 bins."""
    arrays = {}
    for entry in readable:
        name = entry["file"]
        audio = load_audio(audio_dir / name)
        arrays[f"{name}|samples"] = np.int64(len(audio))
        arrays[f"{name}|audio_head"] = audio[:1000].copy()
        for n_mels in (80, 128):
            mel = log_mel_spectrogram(audio, n_mels=n_mels, padding=N_SAMPLES).numpy()
            n_frames = mel.shape[-1]
            idx = mel_frame_indices(n_frames - N_FRAMES, n_frames)
            arrays[f"{name}|{n_mels}|mel"] = mel[:, idx].astype(np.float32)
            arrays[f"{name}|{n_mels}|idx"] = idx
            arrays[f"{name}|{n_mels}|n_frames"] = np.int64(n_frames)
    write_npz(out / "mel.npz", arrays, meta)


def make_logits(out: Path, meta: dict, model, audio_dir: Path) -> None:
    """Encoder output and first decoder logits for one English utterance (first 30-s window)."""
    tokenizer = get_tokenizer(
        True, num_languages=model.num_languages, language="en", task="transcribe"
    )
    mel = first_window(model, load_audio(audio_dir / LOGITS_FILE))
    audio_features = model.embed_audio(mel[None])  # (1, 1500, 512)
    sot3 = list(tokenizer.sot_sequence)  # [sot, <|en|>, <|transcribe|>]
    sot4 = sot3 + [tokenizer.no_timestamps]
    logits3 = model.logits(torch.tensor([sot3]), audio_features)[0, -1]
    logits4 = model.logits(torch.tensor([sot4]), audio_features)[0, -1]
    arrays = {
        "encoder_out_every50": audio_features[0, ::50, :].numpy().astype(np.float32),
        "encoder_out_shape": np.array(audio_features.shape, dtype=np.int64),
        "tokens_sot": np.array(sot3, dtype=np.int64),
        "logits_sot": logits3.numpy().astype(np.float32),
        "tokens_sot_notimestamps": np.array(sot4, dtype=np.int64),
        "logits_sot_notimestamps": logits4.numpy().astype(np.float32),
    }
    write_npz(out / "logits.npz", arrays, dict(meta, file=LOGITS_FILE))


def make_language(out: Path, meta: dict, model, speech: list, audio_dir: Path) -> None:
    """`model.detect_language` on the first window, as transcribe calls it."""
    files = {}
    for entry in speech:
        mel = first_window(model, load_audio(audio_dir / entry["file"]))
        _, probs = model.detect_language(mel)
        top5 = sorted(probs.items(), key=lambda kv: kv[1], reverse=True)[:5]
        files[entry["file"]] = {
            "manifest_language": entry["language"],
            "detected": top5[0][0],
            "top5": [[code, float(p)] for code, p in top5],
        }
    write_json(out / "language.json", {"meta": meta, "files": files})


def decode_window(model, mel: torch.Tensor, **options) -> dict:
    """`whisper.decode` on one 30-s window."""
    r = whisper.decode(model, mel, whisper.DecodingOptions(fp16=False, **options))
    return {
        "tokens": r.tokens,
        "text": r.text,
        "avg_logprob": r.avg_logprob,
        "no_speech_prob": r.no_speech_prob,
    }


def make_short_greedy(out: Path, meta: dict, model, short: list, audio_dir: Path) -> None:
    """Greedy transcribe, and single-window decode (greedy, with timestamps, beam 5)."""
    files = {}
    for entry in short:
        audio = load_audio(audio_dir / entry["file"])
        rec = {"manifest_language": entry["language"], "manifest_text": entry["text"]}
        rec["transcribe"] = run_transcribe(model, audio, **GREEDY)
        language = rec["transcribe"]["language"]  # the auto-detected one
        mel = first_window(model, audio)
        # transcribe's own first window differs from `mel`: it slices the content frames,
        # then pads the *log-mel* with zeros (pad_or_trim(mel[:, :content_frames], 3000)),
        # where `mel` holds the log-mel of zero *audio* there. Recorded so tests can tell apart.
        full = log_mel_spectrogram(audio, model.dims.n_mels, padding=N_SAMPLES)
        content_frames = full.shape[-1] - N_FRAMES
        seek_window = pad_or_trim(full[:, : min(N_FRAMES, content_frames)], N_FRAMES)
        rec["decode_transcribe_window"] = decode_window(
            model, seek_window, language=language, without_timestamps=False
        )
        rec["decode_notimestamps"] = decode_window(
            model, mel, language=language, without_timestamps=True
        )
        rec["decode_timestamps"] = decode_window(
            model, mel, language=language, without_timestamps=False
        )
        beam = decode_window(model, mel, language=language, beam_size=5)
        # DecodingResult has no sum_logprob; decoding.py defines
        # avg_logprob = sum_logprob / (len(tokens) + 1), so this inverts that formula
        beam["sum_logprob_derived"] = beam["avg_logprob"] * (len(beam["tokens"]) + 1)
        rec["decode_beam5"] = beam
        files[entry["file"]] = rec
        print(f"  short_greedy {entry['file']}: {rec['transcribe']['text']!r}", flush=True)
    opts = {
        "transcribe": dict(GREEDY, verbose=None),
        "decode_notimestamps": "DecodingOptions(language=<detected>, without_timestamps=True, "
        "fp16=False)",
        "decode_timestamps": "DecodingOptions(language=<detected>, without_timestamps=False, "
        "fp16=False)",
        "decode_beam5": "DecodingOptions(language=<detected>, beam_size=5, fp16=False)",
        "window": "pad_or_trim(log_mel_spectrogram(audio, 80, padding=480000), 3000) "
        "(the language-detection window)",
        "decode_transcribe_window": "DecodingOptions(language=<detected>, "
        "without_timestamps=False, fp16=False) on "
        "pad_or_trim(mel[:, :content_frames], 3000)",
    }
    write_json(out / "short_greedy.json", {"meta": dict(meta, options=opts), "files": files})


def make_short_words(out: Path, meta: dict, model, english: list, audio_dir: Path) -> None:
    """Greedy transcribe with word timestamps, English files."""
    files = {}
    for entry in english:
        audio = load_audio(audio_dir / entry["file"])
        files[entry["file"]] = run_transcribe(model, audio, words=True, **GREEDY)
    opts = dict(GREEDY, word_timestamps=True, verbose=None)
    write_json(out / "short_words.json", {"meta": dict(meta, options=opts), "files": files})


def make_short_beam(out: Path, meta: dict, model, english: list, audio_dir: Path) -> None:
    """The whisper CLI's defaults (beam 5, best_of 5, temperature fallback), English files."""
    files = {}
    for entry in english:
        audio = load_audio(audio_dir / entry["file"])
        files[entry["file"]] = run_transcribe(model, audio, seed=0, **CLI_DEFAULTS)
    opts = dict(CLI_DEFAULTS, verbose=None, torch_manual_seed=0)
    write_json(out / "short_beam.json", {"meta": dict(meta, options=opts), "files": files})


def make_longform(out: Path, meta: dict, model, entry: dict, audio_dir: Path) -> None:
    """The 157-s file three ways, with the normalised WER of each against the manifest text."""
    import jiwer
    from whisper_normalizer.english import EnglishTextNormalizer

    audio = load_audio(audio_dir / entry["file"])
    runs = {
        "greedy": run_transcribe(model, audio, **GREEDY),
        "greedy_words": run_transcribe(model, audio, words=True, **GREEDY),
        "cli_defaults": run_transcribe(model, audio, seed=0, **CLI_DEFAULTS),
    }
    normalize = EnglishTextNormalizer()
    reference = normalize(entry["text"])
    wer = {name: jiwer.wer(reference, normalize(r["text"])) for name, r in runs.items()}
    print(f"  longform WER: {wer}", flush=True)
    opts = {
        "greedy": dict(GREEDY, verbose=None),
        "greedy_words": dict(GREEDY, word_timestamps=True, verbose=None),
        "cli_defaults": dict(CLI_DEFAULTS, verbose=None, torch_manual_seed=0),
        "wer": "jiwer.wer(norm(manifest text), norm(text)), "
        "norm = whisper_normalizer.english.EnglishTextNormalizer()",
    }
    meta = dict(meta, options=opts, file=entry["file"], jiwer=jiwer_version())
    write_json(out / "longform.json", {"meta": meta, **runs, "wer": wer})


def make_no_speech(out: Path, meta: dict, model, entries: list, audio_dir: Path) -> None:
    """What the reference outputs on silence, noise and music (CLI defaults and greedy)."""
    files = {}
    for entry in entries:
        audio = load_audio(audio_dir / entry["file"])
        files[entry["file"]] = {
            "cli_defaults": run_transcribe(model, audio, seed=0, **CLI_DEFAULTS),
            "greedy": run_transcribe(model, audio, **GREEDY),
        }
        print(
            f"  no_speech {entry['file']}: {files[entry['file']]['cli_defaults']['text']!r}",
            flush=True,
        )
    opts = {
        "cli_defaults": dict(CLI_DEFAULTS, verbose=None, torch_manual_seed=0),
        "greedy": dict(GREEDY, verbose=None),
    }
    write_json(out / "no_speech.json", {"meta": dict(meta, options=opts), "files": files})


def jiwer_version() -> str:
    from importlib.metadata import version

    return version("jiwer")


# ---------------------------------------------------------------------------------------------


def main() -> None:
    here = Path(__file__).resolve().parent
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model-pt",
        type=Path,
        default=Path("/work/scratch/models/openai-base.pt"),
        help="openai-whisper checkpoint of the base model (from get-model)",
    )
    parser.add_argument(
        "--audio-dir",
        type=Path,
        default=Path("/work/shared/audio"),
        help="folder with the dev audio and manifest.jsonl",
    )
    parser.add_argument("--out", type=Path, default=here, help="where the fixtures go")
    parser.add_argument(
        "--only",
        nargs="+",
        metavar="FIXTURE",
        help="regenerate only these fixtures (e.g. mel logits); default: all",
    )
    args = parser.parse_args()

    torch.set_num_threads(2)
    t_start = time.perf_counter()
    model = whisper.load_model(str(args.model_pt), device="cpu")
    model.set_alignment_heads(whisper._ALIGNMENT_HEADS["base"])  # see the module docstring
    model.eval()

    manifest = [
        json.loads(line)
        for line in (args.audio_dir / "manifest.jsonl").read_text().splitlines()
        if line.strip()
    ]
    readable = [e for e in manifest if e["duration_s"] is not None and e["file"] not in UNREADABLE]
    speech = [e for e in manifest if e["expect"] == "speech"]
    short = [e for e in speech if e["duration_s"] <= 30]
    english = [e for e in short if e["language"] == "en"]
    no_speech = [e for e in manifest if e["expect"] == "no_speech"]
    longform = next(e for e in manifest if e["file"] == LONGFORM_FILE)

    meta = {
        "whisper_version": whisper.__version__,
        "torch_version": torch.__version__,
        "numpy_version": np.__version__,
        "soundfile_version": soundfile.__version__,
        "libsndfile_version": soundfile.__libsndfile_version__,
        "soxr_version": soxr.__version__,
        "python_version": platform.python_version(),
        "model": "base (" + args.model_pt.name + ", built by /work/shared/tools/get-model)",
        "alignment_heads": model.alignment_heads.indices().T.tolist(),
        "device": "cpu",
        "torch_threads": torch.get_num_threads(),
        "audio_decoding": "soundfile.read(float32, always_2d) -> mean over channels (float32) "
        "-> soxr.resample(sr, 16000, quality='HQ') if sr != 16000",
        "generated_by": "tests/reference/make_reference.py",
    }

    args.out.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        steps = [
            ("mel_filters", lambda: make_mel_filters(args.out, meta)),
            ("mel", lambda: make_mel(args.out, meta, readable, args.audio_dir)),
            ("logits", lambda: make_logits(args.out, meta, model, args.audio_dir)),
            ("language", lambda: make_language(args.out, meta, model, speech, args.audio_dir)),
            (
                "short_greedy",
                lambda: make_short_greedy(args.out, meta, model, short, args.audio_dir),
            ),
            (
                "short_words",
                lambda: make_short_words(args.out, meta, model, english, args.audio_dir),
            ),
            ("short_beam", lambda: make_short_beam(args.out, meta, model, english, args.audio_dir)),
            ("longform", lambda: make_longform(args.out, meta, model, longform, args.audio_dir)),
            ("no_speech", lambda: make_no_speech(args.out, meta, model, no_speech, args.audio_dir)),
        ]
        for name, step in steps:
            if args.only and name not in args.only:
                continue
            t0 = time.perf_counter()
            step()
            print(f"[{name}] {time.perf_counter() - t0:.1f} s", flush=True)
    print(f"total {time.perf_counter() - t_start:.1f} s", flush=True)


if __name__ == "__main__":
    main()
