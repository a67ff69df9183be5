"""Shared test fixtures: a tiny random-weight checkpoint built here, and the real model.

Real-model tests use the Whisper base weights in Hugging Face layout from
`WHISPER_CLI_TEST_MODEL`, else `../shared/models/whisper-base` beside the checkout, and the
recordings from `WHISPER_CLI_TEST_AUDIO`, else `../shared/audio`. Without them those tests
skip, saying why; with `WHISPER_CLI_REQUIRE_REAL=1` (set by .ci/run) a missing one fails.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
REFERENCE = Path(__file__).resolve().parent / "reference"

TINY_CONFIG = {
    "model_type": "whisper",
    "num_mel_bins": 80,
    "max_source_positions": 1500,
    "d_model": 16,
    "encoder_attention_heads": 2,
    "encoder_layers": 2,
    "decoder_attention_heads": 2,
    "decoder_layers": 2,
    "vocab_size": 51865,
    "max_target_positions": 448,
}


def _path_from(env: str, default: Path) -> Path | None:
    value = os.environ.get(env)
    path = Path(value) if value else default
    return path if path.exists() else None


def require(path: Path | None, what: str) -> Path:
    """The path, or skip (fail under WHISPER_CLI_REQUIRE_REAL=1) saying what is missing."""
    if path is not None:
        return path
    message = f"{what} not found"
    if os.environ.get("WHISPER_CLI_REQUIRE_REAL") == "1":
        pytest.fail(f"{message}, and WHISPER_CLI_REQUIRE_REAL=1 forbids skipping")
    pytest.skip(message)


@pytest.fixture(scope="session")
def real_model_path() -> Path:
    return require(
        _path_from("WHISPER_CLI_TEST_MODEL", SHARED / "models" / "whisper-base"),
        "real Whisper base weights (set WHISPER_CLI_TEST_MODEL or provide ../shared/models)",
    )


@pytest.fixture(scope="session")
def audio_dir() -> Path:
    return require(
        _path_from("WHISPER_CLI_TEST_AUDIO", SHARED / "audio"),
        "test recordings (set WHISPER_CLI_TEST_AUDIO or provide ../shared/audio)",
    )


@pytest.fixture(scope="session")
def manifest(audio_dir: Path) -> list[dict]:
    lines = (audio_dir / "manifest.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


@pytest.fixture(scope="session")
def real_model(real_model_path: Path):
    import torch

    from whisper_cli.loading import load_model

    torch.set_num_threads(min(4, os.cpu_count() or 1))
    return load_model(real_model_path, device="cpu")


def load_reference(name: str):
    path = REFERENCE / name
    if path.suffix == ".npz":
        return np.load(path)
    return json.loads(path.read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------------------------
# a tiny checkpoint with Whisper's real vocabulary layout and random weights


def tiny_tokenizer_json() -> str:
    """A byte-level BPE tokenizer.json with Whisper's special tokens at their real ids."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    from whisper_cli.whisper.languages import LANGUAGES

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {char: i for i, char in enumerate(sorted(alphabet))}
    for word in ("Ġthe", "Ġa", "Ġhello", "Ġworld", "Ġ-", "Ġ'"):
        vocab[word] = len(vocab)
    while len(vocab) < 50257:  # fill up to the real id of <|endoftext|>
        vocab[f"<unused{len(vocab)}>"] = len(vocab)
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|startoftranscript|>"]
    specials += [f"<|{code}|>" for code in list(LANGUAGES)[:99]]
    specials += ["<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>"]
    specials += ["<|nospeech|>", "<|notimestamps|>"]
    tokenizer.add_special_tokens(specials)
    tokenizer.add_tokens([f"<|{i * 0.02:.2f}|>" for i in range(1501)])
    assert tokenizer.get_vocab_size() == TINY_CONFIG["vocab_size"]
    return tokenizer.to_str()


_TOKENIZER_CACHE: dict[str, str] = {}


def make_tiny_checkpoint(folder: Path, seed: int = 0, config: dict | None = None) -> Path:
    """Write a random-weight Whisper checkpoint in Hugging Face layout into `folder`."""
    import torch
    from safetensors.torch import save_file

    from whisper_cli.whisper.loading import dims_from_config, hf_to_openai_key
    from whisper_cli.whisper.model import ModelDimensions, Whisper

    config = {**TINY_CONFIG, **(config or {})}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "generation_config.json").write_text(json.dumps({"alignment_heads": [[1, 0]]}))
    if "tokenizer" not in _TOKENIZER_CACHE:
        _TOKENIZER_CACHE["tokenizer"] = tiny_tokenizer_json()
    (folder / "tokenizer.json").write_text(_TOKENIZER_CACHE["tokenizer"])

    dims: ModelDimensions = dims_from_config(config, folder / "config.json")
    torch.manual_seed(seed)
    model = Whisper(dims)
    for name, parameter in model.named_parameters():
        with torch.no_grad():
            parameter.normal_(0, 0.5 if "embedding" in name else 0.2)
    own = model.state_dict()
    hf_names = {hf_to_openai_key(k): k for k in _hf_keys(dims)}
    assert set(hf_names) == set(own), "hf_to_openai_key must cover every tensor"
    save_file({hf: own[k].contiguous() for k, hf in hf_names.items()}, folder / "model.safetensors")
    return folder


def _hf_keys(dims) -> list[str]:
    """Every tensor name of a Hugging Face Whisper checkpoint with these dimensions."""
    keys = [
        "model.encoder.conv1.weight",
        "model.encoder.conv1.bias",
        "model.encoder.conv2.weight",
        "model.encoder.conv2.bias",
        "model.encoder.embed_positions.weight",
        "model.encoder.layer_norm.weight",
        "model.encoder.layer_norm.bias",
        "model.decoder.embed_tokens.weight",
        "model.decoder.embed_positions.weight",
        "model.decoder.layer_norm.weight",
        "model.decoder.layer_norm.bias",
    ]
    attention = ["q_proj.weight", "q_proj.bias", "k_proj.weight", "v_proj.weight"]
    attention += ["v_proj.bias", "out_proj.weight", "out_proj.bias"]
    block = [f"self_attn.{a}" for a in attention] + ["self_attn_layer_norm.weight"]
    block += ["self_attn_layer_norm.bias", "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
    block += ["final_layer_norm.weight", "final_layer_norm.bias"]
    cross = [f"encoder_attn.{a}" for a in attention]
    cross += ["encoder_attn_layer_norm.weight", "encoder_attn_layer_norm.bias"]
    for i in range(dims.n_audio_layer):
        keys += [f"model.encoder.layers.{i}.{name}" for name in block]
    for i in range(dims.n_text_layer):
        keys += [f"model.decoder.layers.{i}.{name}" for name in block + cross]
    return keys


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    return make_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "whisper-tiny-random")


@pytest.fixture(scope="session")
def tiny_model(tiny_checkpoint: Path):
    from whisper_cli.loading import load_model

    return load_model(tiny_checkpoint, device="cpu")


def whole_recording(detector, duration: float, max_seconds: float = 30.0) -> list[tuple[int, int]]:
    """Speech chunks (`speech_chunks`'s signature): the whole recording, whatever voice
    activity detection hears (a tone holds no speech for it)."""
    from whisper_cli.constants import FRAMES_PER_SECOND

    return [(0, round(duration * FRAMES_PER_SECOND))]


@pytest.fixture()
def packed_windows(monkeypatch) -> list[int]:
    """The number of files in each window the many-files engine packs, as it packs them."""
    from whisper_cli.whisper import engine

    sizes: list[int] = []
    pack = engine._Engine._pack
    monkeypatch.setattr(
        engine._Engine,
        "_pack",
        lambda self, files: (sizes.append(len(files)), pack(self, files))[1],
    )
    return sizes


SNAPSHOT = "0123456789abcdef0123456789abcdef01234567"


def lay_out_hub_cache(checkpoint: Path, cache: Path, repo_id: str = "openai/whisper-base") -> Path:
    """Lay a checkpoint out as huggingface_hub caches a download."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / SNAPSHOT
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(SNAPSHOT)
    for file in checkpoint.iterdir():
        shutil.copy(file, snapshot / file.name)
    return snapshot
