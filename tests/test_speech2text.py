"""Speech2Text and Speech2Text2 checkpoints through the same API and command line as Whisper:
loading, target-language forcing, detokenisation, long input cut into pieces, every format."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from tests.conftest import REFERENCE, lay_out_hub_cache
from whisper_cli.audio import load_audio
from whisper_cli.cli.app import app
from whisper_cli.errors import AudioError, ModelError, OptionsError
from whisper_cli.loading import load_model
from whisper_cli.nn.quantize import Int8Linear
from whisper_cli.speech2text.transcribe import Speech2TextModel, split_pieces
from whisper_cli.speech2text.vocabulary import Vocabulary

S2T = REFERENCE / "speech2text"
S2T2 = REFERENCE / "speech2text2"
SHORT = "en_ls_61-70968-0000.flac"  # the file the fixtures were recorded on
LONG = "en_longform_dev.flac"


def _expected(family: Path) -> dict[str, dict]:
    """What transformers gave, by checkpoint: greedy_tokens, text, beam4_tokens, tgt_lang."""
    data = json.loads((family / "expected.json").read_text(encoding="utf-8"))
    checkpoints = data.get("checkpoints") or {k: v for k, v in data.items() if k != "meta"}
    for record in checkpoints.values():
        record.setdefault("text", record.get("greedy_text"))
        languages = {i: code for code, i in record.get("lang_code_to_id", {}).items()}
        record.setdefault("tgt_lang", languages.get(record.get("forced_bos_token_id")))
    return checkpoints


def _checkpoints():
    for family in (S2T, S2T2):
        for name in _expected(family):
            yield pytest.param(family, name, id=f"{family.name}/{name}")


@pytest.mark.parametrize(("family", "name"), list(_checkpoints()))
def test_transcribes_as_transformers_does(family, name, audio_dir):
    """Greedy and beam search on the recorded file, as one piece: the tokens and the text that
    transformers 4.40 gave (tests/reference/make_speech2text*_reference.py)."""
    expected = _expected(family)[name]
    model = load_model(family / name)
    assert isinstance(model, Speech2TextModel)
    language = {"language": expected["tgt_lang"]} if expected.get("tgt_lang") else {}
    greedy = model.transcribe(audio_dir / SHORT, skip_silent_windows=False, **language)
    start = 2 if language else 1  # the decoder start token, then the forced language
    tokens = expected["greedy_tokens"][start:]
    if tokens and tokens[-1] == model.generation.eos:
        tokens = tokens[:-1]
    assert [t for s in greedy.segments for t in s.tokens] == tokens
    assert greedy.text.strip() == expected["text"].strip()
    if expected.get("beam4_tokens"):
        beam = model.transcribe(
            audio_dir / SHORT, skip_silent_windows=False, beam_size=4, **language
        )
        tokens = expected["beam4_tokens"][start:]
        tokens = tokens[:-1] if tokens[-1] == model.generation.eos else tokens
        assert [t for s in beam.segments for t in s.tokens] == tokens


@pytest.mark.parametrize("family", [S2T, S2T2], ids=lambda family: family.name)
def test_int8_quantises_every_linear_layer_and_transcribes(family, audio_dir):
    name, expected = next(iter(_expected(family).items()))
    model = load_model(family / name, compute_type="int8")
    assert not any(isinstance(m, torch.nn.Linear) for m in model.model.modules())
    assert any(isinstance(m, Int8Linear) for m in model.model.modules())
    language = {"language": expected["tgt_lang"]} if expected.get("tgt_lang") else {}
    result = model.transcribe(audio_dir / SHORT, skip_silent_windows=False, **language)
    assert result.segments and result.segments[0].tokens


def test_vocabulary_joins_pieces_as_the_tokenizers_do():
    pieces = ("<s>", "<pad>", "</s>", "<unk>", "▁he", "llo", "▁world", "▁,", "ens@@", "is", "'s")
    sentencepiece = Vocabulary(pieces, frozenset({0, 1, 2, 3}), "▁")
    assert sentencepiece.decode([2, 4, 5, 6, 7, 2]) == "hello world,"
    upper = Vocabulary(pieces, frozenset({0, 1, 2, 3}), "▁", upper_case=True)
    assert upper.decode([4, 5]) == "HELLO"
    bpe = Vocabulary(pieces, frozenset({0, 1, 2, 3}), "@@")
    assert bpe.decode([2, 8, 9, 10, 2]) == "ensis's"  # "ens@@ is 's": joined, then cleaned up
    assert Vocabulary(pieces, frozenset(), "@@", clean_up_spaces=False).decode([9, 10]) == "is 's"


@pytest.mark.parametrize("name", ["tiny-asr", "tiny-st"])
def test_vocabulary_decodes_random_sequences_as_transformers_did(name):
    model = load_model(S2T / name)
    cases = _expected(S2T)[name]["decode_cases"]
    assert len(cases) > 10
    for case in cases:
        assert model.vocabulary.decode(case["tokens"]) == case["text"], case


def test_a_multilingual_checkpoint_needs_a_known_target_language(audio_dir):
    model = load_model(S2T / "tiny-st")
    languages = model.vocabulary.languages
    assert languages
    if model.generation.forced_language is None:
        with pytest.raises(OptionsError, match="--language"):
            model.transcribe(audio_dir / SHORT)
    with pytest.raises(OptionsError, match="not one of them"):
        model.transcribe(audio_dir / SHORT, language="xx")
    code, token = next(iter(languages.items()))
    assert model._start_tokens(code) == [model.generation.decoder_start, token]


def test_options_these_models_cannot_honour_are_refused():
    model = load_model(S2T / "tiny-asr")
    samples = np.zeros(16000, dtype=np.float32)
    with pytest.raises(OptionsError, match="word timestamps"):
        model.transcribe(samples, word_timestamps=True)
    with pytest.raises(OptionsError, match="initial prompt"):
        model.transcribe(samples, initial_prompt="Hello")
    with pytest.raises(ModelError, match="cannot detect languages"):
        model.detect_language(samples)


@pytest.mark.parametrize("family", [S2T / "tiny-asr", S2T2 / "tiny-group"], ids=["s2t", "s2t2"])
def test_audio_too_short_for_one_frame_is_the_same_audio_error(family):
    """Speech2Text's fbank needs a 25-ms window, Speech2Text2's wav2vec 2.0 convolutions the
    same 400 samples: both say so with the same AudioError, not an internal error."""
    model = load_model(family)
    message = (
        "audio is too short for Speech2Text features: 399 samples, "
        "and one 25 ms frame needs 400 (0.025 s)"
    )
    with pytest.raises(AudioError) as raised:
        model.features(np.zeros(399, dtype=np.float32))
    assert str(raised.value) == message
    assert model.features(np.zeros(400, dtype=np.float32)).shape[0] == 1


def test_transcribe_stream_takes_no_options_as_the_defaults():
    model = load_model(S2T / "tiny-asr")
    assert model.family == "speech2text"
    info, segments = model.transcribe_stream(np.zeros(8000, dtype=np.float32))
    assert info.duration == 0.5
    assert isinstance(list(segments), list)


def test_fixed_windows_cover_everything_and_cut_in_the_quiet():
    rng = np.random.default_rng(0)
    samples = rng.normal(0, 0.1, 16000 * 50).astype(np.float32)
    samples[16000 * 17 : 16000 * 17 + 3200] = 0  # a pause 17.0–17.2 s
    pieces = split_pieces(samples, use_vad=False, max_seconds=20)
    assert pieces[0][0] == 0 and pieces[-1][1] == len(samples)
    assert all(a[1] == b[0] for a, b in zip(pieces, pieces[1:], strict=False))
    assert all(last - first <= 20 * 16000 for first, last in pieces)
    assert 16000 * 17 <= pieces[0][1] <= 16000 * 17 + 3200


def test_speech_pieces_lie_in_the_audio_and_in_order(audio_dir):
    samples = load_audio(audio_dir / LONG)
    pieces = split_pieces(samples, use_vad=True, max_seconds=20)
    assert pieces
    assert all(0 <= first < last <= len(samples) for first, last in pieces)
    assert all(a[1] <= b[0] for a, b in zip(pieces, pieces[1:], strict=False))
    assert all(last - first <= 20 * 16000 for first, last in pieces)


@pytest.mark.parametrize("family", [S2T / "tiny-asr", S2T2 / "tiny-group"], ids=["s2t", "s2t2"])
def test_cli_writes_every_format_for_a_long_recording(family, audio_dir, tmp_path):
    result = CliRunner().invoke(
        app,
        ["transcribe", str(audio_dir / LONG), "--model", str(family), "-o", str(tmp_path)],
    )
    assert result.exit_code == 0, result.output
    stem = Path(LONG).stem
    assert {p.suffix for p in tmp_path.iterdir()} == {".txt", ".srt", ".vtt", ".tsv", ".json"}
    data = json.loads((tmp_path / f"{stem}.json").read_text(encoding="utf-8"))
    times = [(s["start"], s["end"]) for s in data["segments"]]
    assert len(times) > 3  # cut into pieces
    assert all(start < end for start, end in times)
    assert all(a[1] <= b[0] for a, b in zip(times, times[1:], strict=False))
    assert times[-1][1] <= data["duration"]
    assert data["model"] == str(family)
    srt = (tmp_path / f"{stem}.srt").read_text(encoding="utf-8")
    assert srt.count(" --> ") == len(times)


def test_detect_language_says_the_model_cannot(audio_dir, tmp_path):
    result = CliRunner().invoke(
        app, ["detect-language", str(audio_dir / SHORT), "--model", str(S2T / "tiny-asr")]
    )
    assert result.exit_code != 0
    assert "cannot detect languages" in result.output
    assert "Traceback" not in result.output


def test_loads_offline_from_a_hub_cache(tmp_path, monkeypatch):
    cache = tmp_path / "hub"
    lay_out_hub_cache(S2T / "tiny-asr", cache, "facebook/s2t-small-librispeech-asr")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = load_model("facebook/s2t-small-librispeech-asr", cache_dir=cache, offline=True)
    assert isinstance(model, Speech2TextModel)
    assert model.name == "facebook/s2t-small-librispeech-asr"


def test_pytorch_model_bin_and_safetensors_folders_both_load(tmp_path):
    bin_folder = S2T / "tiny-asr"
    assert (bin_folder / "pytorch_model.bin").is_file()
    assert load_model(bin_folder).model is not None
    folder = shutil.copytree(S2T2 / "tiny-group", tmp_path / "no-vocab")
    (folder / "vocab.json").unlink()
    with pytest.raises(ModelError, match="vocab.json"):
        load_model(folder)
