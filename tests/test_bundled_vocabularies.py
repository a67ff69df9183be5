"""The two vocabularies the package ships, for openai-whisper `.pt` files that come alone (as
openai-whisper keeps them in ~/.cache/whisper): checked against openai-whisper's own tokenizer
(tests/reference/tokenizer.json), chosen by the model's dimensions, and used offline without
the Hugging Face Hub; a tokenizer.json beside the `.pt` still wins."""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest
import torch

from tests.conftest import load_reference, require
from whisper_cli.errors import ModelError
from whisper_cli.loading import load_model
from whisper_cli.whisper.languages import LANGUAGES
from whisper_cli.whisper.model import (
    ENGLISH_VOCAB,
    MULTILINGUAL_VOCAB,
    ModelDimensions,
    Whisper,
)
from whisper_cli.whisper.tokenizer import (
    N_TIMESTAMPS,
    Tokenizer,
    bundled_tokenizer,
    with_languages,
)

SPECIALS = ("eot", "sot", "sot_prev", "sot_lm", "no_speech", "no_timestamps", "timestamp_begin")


def _reference(name: str) -> dict:
    return load_reference("tokenizer.json")["vocabularies"][name]


@pytest.mark.parametrize(
    ("name", "multilingual", "n_vocab"),
    [("english", False, ENGLISH_VOCAB), ("multilingual", True, MULTILINGUAL_VOCAB)],
)
def test_the_bundled_vocabularies_are_openai_whispers(name, multilingual, n_vocab):
    tokenizer = bundled_tokenizer(multilingual, 99)
    assert tokenizer is not None and tokenizer.multilingual == multilingual
    expected = _reference(name)
    for special in (*SPECIALS, "transcribe", "translate"):
        assert getattr(tokenizer, special) == expected[special], special
    assert tokenizer.timestamp_begin + N_TIMESTAMPS == n_vocab  # what the model's dims say
    assert list(tokenizer.sot_sequence("en")) == expected["sot_sequence"]
    assert tokenizer.encode(" ") == expected["blank"]
    assert list(tokenizer.non_speech_tokens) == expected["non_speech_tokens"]
    for language, sample in expected["samples"].items():
        tokens = tokenizer.encode(sample["text"])
        assert tokens == sample["tokens"], language
        assert tokenizer.decode(tokens) == sample["decoded"]
        words, word_tokens = tokenizer.split_to_word_tokens([*tokens, tokenizer.eot], language)
        assert (words, word_tokens) == (sample["words"], sample["word_tokens"]), language
    if multilingual:
        languages = dict(zip(tokenizer.language_codes, tokenizer.language_tokens, strict=True))
        assert languages == expected["language_tokens"]


def _bundled_data(name: str) -> dict:
    packed = resources.files("whisper_cli.whisper").joinpath(
        "vocabularies", f"{name}.tokenizer.json.gz"
    )
    return json.loads(gzip.decompress(packed.read_bytes()))


def test_large_v3s_vocabulary_is_the_multilingual_one_with_cantonese():
    """openai-whisper lays the special tokens out after the languages the model has; with 99
    that is the bundled file exactly, with 100 (large-v3, turbo) `<|yue|>` comes after
    `<|su|>` and every later special token moves up one."""
    data = _bundled_data("multilingual")
    rebuilt = with_languages(json.loads(json.dumps(data)), 99)
    assert rebuilt == data
    tokenizer = bundled_tokenizer(True, 100)
    assert tokenizer is not None
    assert tokenizer.language_codes[-1] == "yue" and tokenizer.language_token("yue") == 50358
    assert (tokenizer.translate, tokenizer.transcribe, tokenizer.sot_lm) == (50359, 50360, 50361)
    assert (tokenizer.sot_prev, tokenizer.no_speech, tokenizer.no_timestamps) == (
        50362,
        50363,
        50364,
    )
    assert tokenizer.timestamp_begin + N_TIMESTAMPS == MULTILINGUAL_VOCAB + 1  # large-v3's
    assert tokenizer.encoding.token_to_id("<|30.00|>") == MULTILINGUAL_VOCAB
    assert tokenizer.sot_sequence("yue") == (50258, 50358, 50360)
    sample = _reference("multilingual")["samples"]["de"]
    assert tokenizer.encode(sample["text"]) == sample["tokens"]  # the text tokens as they were


def test_no_vocabulary_for_more_languages_than_whisper_knows():
    assert bundled_tokenizer(True, len(LANGUAGES) + 1) is None


# ---------------------------------------------------------------------------------------------
# a .pt alone


def _random_pt(path: Path, n_vocab: int) -> Path:
    """A random-weight openai-whisper checkpoint with Whisper's vocabulary size `n_vocab`."""
    dims = ModelDimensions(
        n_mels=80,
        n_audio_ctx=1500,
        n_audio_state=16,
        n_audio_head=2,
        n_audio_layer=1,
        n_vocab=n_vocab,
        n_text_ctx=448,
        n_text_state=16,
        n_text_head=2,
        n_text_layer=1,
    )
    torch.manual_seed(0)
    model = Whisper(dims)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0, 0.2)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"dims": dataclasses.asdict(dims), "model_state_dict": model.state_dict()}, path)
    return path


@pytest.fixture
def no_hub(monkeypatch):
    """Any use of the Hub fails the test."""
    import huggingface_hub

    def refuse(*args, **kwargs):
        raise AssertionError("the Hub was asked")

    for name in ("hf_hub_download", "snapshot_download", "model_info"):
        monkeypatch.setattr(huggingface_hub, name, refuse)
    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", refuse)


@pytest.mark.parametrize(
    ("n_vocab", "multilingual", "languages"),
    [
        (ENGLISH_VOCAB, False, 99),
        (MULTILINGUAL_VOCAB, True, 99),
        (MULTILINGUAL_VOCAB + 1, True, 100),
    ],
    ids=["tiny.en", "tiny", "large-v3"],
)
def test_a_pt_alone_gets_the_vocabulary_its_dimensions_say(
    tmp_path, no_hub, n_vocab, multilingual, languages
):
    model = load_model(_random_pt(tmp_path / "model.pt", n_vocab), device="cpu")
    tokenizer = model.tokenizer
    assert tokenizer.multilingual == multilingual
    assert tokenizer.timestamp_begin + N_TIMESTAMPS == n_vocab
    assert len(tokenizer.language_codes) == languages
    assert tokenizer.eot == (50257 if multilingual else 50256)
    assert tokenizer.decode(tokenizer.encode(" Hello world.")) == " Hello world."


def test_a_pt_of_an_unknown_vocabulary_asks_for_its_tokenizer_json(tmp_path, no_hub):
    path = _random_pt(tmp_path / "odd.pt", MULTILINGUAL_VOCAB + 2)  # 101 languages
    with pytest.raises(ModelError, match="put the model's tokenizer.json beside it"):
        load_model(path, device="cpu")


def test_a_tokenizer_json_beside_the_pt_wins(tmp_path, tiny_checkpoint, no_hub):
    path = _random_pt(tmp_path / "model.pt", MULTILINGUAL_VOCAB)
    shutil.copy(tiny_checkpoint / "tokenizer.json", tmp_path / "tokenizer.json")
    beside = Tokenizer.from_file(tmp_path / "tokenizer.json", True, 99)
    bundled = bundled_tokenizer(True, 99)
    assert bundled is not None and beside.encode(" hello") != bundled.encode(" hello")
    model = load_model(path, device="cpu")
    assert model.tokenizer.encode(" hello") == beside.encode(" hello")


# ---------------------------------------------------------------------------------------------
# the real base weights as openai-whisper keeps them, alone and offline


def _openai_pt(name: str = "base") -> Path | None:
    """get-model's openai-NAME.pt (WHISPER_CLI_TEST_OPENAI_PT for base; the tiny.en one
    beside it, or in ~/.cache/whisper-test-models)."""
    value = os.environ.get("WHISPER_CLI_TEST_OPENAI_PT")
    folder = Path(value).parent if value else Path.home() / ".cache" / "whisper-test-models"
    path = Path(value) if value and name == "base" else folder / f"openai-{name}.pt"
    return path if path.is_file() else None


def _texts(model: str, files: list[Path], env: dict[str, str], out: Path) -> dict[str, str]:
    command = [sys.executable, "-m", "whisper_cli", "transcribe", "-m", model, "--threads", "2"]
    command += ["-f", "txt", "-o", str(out), *map(str, files)]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr
    return {path.stem: path.read_text(encoding="utf-8") for path in sorted(out.glob("*.txt"))}


def _alone_offline(pt: Path, name: str, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A copy of `pt` alone in an empty folder, and an environment with an empty Hugging Face
    home, offline."""
    alone = tmp_path / "models" / name
    alone.parent.mkdir()
    shutil.copy(pt, alone)
    env = {key: value for key, value in os.environ.items() if not key.startswith("HF_")}
    env |= {"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    return alone, env


@pytest.mark.real_model
def test_an_openai_pt_alone_transcribes_offline_as_the_hf_folder_does(
    real_model_path, audio_dir, tmp_path
):
    """openai-base.pt copied alone into an empty folder, an empty HF_HOME and
    HF_HUB_OFFLINE=1: it transcribes, English and German, as the same weights in Hugging
    Face layout do (before: "no tokenizer.json beside it and none cached")."""
    pt = require(
        _openai_pt(),
        "openai-base.pt from ../shared/tools/get-model base (set WHISPER_CLI_TEST_OPENAI_PT)",
    )
    alone, env = _alone_offline(pt, "base.pt", tmp_path)
    files = [audio_dir / "en_ls_61-70968-0000.flac", audio_dir / "de_pv_A.wav"]
    from_pt = _texts(str(alone), files, env, tmp_path / "pt")
    from_folder = _texts(str(real_model_path), files, env, tmp_path / "folder")
    assert sorted(from_pt) == ["de_pv_A", "en_ls_61-70968-0000"]
    assert from_pt == from_folder
    assert "wizard" in from_pt["en_ls_61-70968-0000"]
    assert os.listdir(alone.parent) == ["base.pt"]


@pytest.mark.real_model
def test_an_openai_tiny_en_pt_alone_transcribes_as_its_hf_folder_does(audio_dir, tmp_path):
    """The English-only vocabulary: tiny.en's .pt alone, offline, gives the text of the same
    weights in Hugging Face layout with tiny.en's own tokenizer.json, whose vocabulary the
    bundled one is."""
    pt = require(
        _openai_pt("tiny.en"),
        "openai-tiny.en.pt from ../shared/tools/get-model tiny.en, beside openai-base.pt",
    )
    folder = pt.parent / "whisper-tiny.en"
    bundled = bundled_tokenizer(False, 99)
    own = Tokenizer.from_file(folder / "tokenizer.json", False, 99)
    assert bundled is not None
    assert bundled.encoding.get_vocab(True) == own.encoding.get_vocab(True)
    alone, env = _alone_offline(pt, "tiny.en.pt", tmp_path)
    files = [audio_dir / "en_ls_61-70968-0000.flac", audio_dir / "en_pv_today_only_platforms.mp3"]
    from_pt = _texts(str(alone), files, env, tmp_path / "pt")
    assert from_pt == _texts(str(folder), files, env, tmp_path / "folder")
    assert "wizard" in from_pt["en_ls_61-70968-0000"]
