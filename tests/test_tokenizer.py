"""The tokenizer against openai-whisper's (recorded in tests/reference/tokenizer.json)."""

import json
import re

import pytest

from tests.conftest import load_reference
from whisper_cli.whisper.languages import LANGUAGES, language_code
from whisper_cli.whisper.tokenizer import Tokenizer


def test_language_code_accepts_codes_names_and_aliases():
    assert language_code("en") == "en"
    assert language_code("English") == "en"
    assert language_code(" CASTILIAN ") == "es"
    assert language_code("yue") == "yue"
    with pytest.raises(ValueError, match="unknown language"):
        language_code("klingon")


def test_tiny_vocabulary_special_tokens_found_by_name(tiny_model):
    tokenizer = tiny_model.tokenizer
    assert tokenizer.eot == 50257 and tokenizer.sot == 50258
    assert tokenizer.timestamp_begin == tokenizer.no_timestamps + 1 == 50364
    assert tokenizer.language_tokens[0] == tokenizer.language_token("en") == 50259
    assert len(tokenizer.language_codes) == 99 and "yue" not in tokenizer.language_codes
    assert tokenizer.sot_sequence("de", "translate") == (50258, 50261, tokenizer.translate)


def test_decode_drops_special_and_timestamp_tokens(tiny_model):
    tokenizer = tiny_model.tokenizer
    text = " hello world"
    tokens = tokenizer.encode(text)
    assert tokenizer.decode(tokens) == text
    wrapped = [tokenizer.timestamp_begin, *tokens, tokenizer.timestamp_begin + 50, tokenizer.eot]
    assert tokenizer.decode(wrapped) == text
    assert tokenizer.decode_with_timestamps(wrapped).startswith("<|0.00|> hello")
    assert "<|1.00|>" in tokenizer.decode_with_timestamps(wrapped)


@pytest.fixture(scope="module")
def real_tokenizer(real_model_path) -> Tokenizer:
    return Tokenizer.from_file(real_model_path / "tokenizer.json", True, 99)


@pytest.mark.real_model
def test_special_tokens_match_openai_whisper(real_tokenizer):
    expected = load_reference("tokenizer.json")["vocabularies"]["multilingual"]
    for name in ("eot", "sot", "sot_prev", "sot_lm", "no_speech", "no_timestamps"):
        assert getattr(real_tokenizer, name) == expected[name], name
    assert real_tokenizer.timestamp_begin == expected["timestamp_begin"]
    assert real_tokenizer.transcribe == expected["transcribe"]
    assert real_tokenizer.translate == expected["translate"]
    assert list(real_tokenizer.sot_sequence("en", "transcribe")) == expected["sot_sequence"]
    assert real_tokenizer.encode(" ") == expected["blank"]


@pytest.mark.real_model
def test_language_tokens_follow_the_language_table(real_tokenizer):
    expected = load_reference("tokenizer.json")["vocabularies"]["multilingual"]["language_tokens"]
    ours = dict(zip(real_tokenizer.language_codes, real_tokenizer.language_tokens, strict=True))
    assert ours == {code: expected[code] for code in list(LANGUAGES)[:99]}


@pytest.mark.real_model
def test_non_speech_tokens_match_openai_whisper(real_tokenizer):
    expected = load_reference("tokenizer.json")["vocabularies"]["multilingual"]
    assert list(real_tokenizer.non_speech_tokens) == expected["non_speech_tokens"]


@pytest.mark.real_model
@pytest.mark.parametrize("language", ["en", "ja", "zh", "de"])
def test_encoding_and_word_splitting_match_openai_whisper(real_tokenizer, language):
    sample = load_reference("tokenizer.json")["vocabularies"]["multilingual"]["samples"][language]
    tokens = real_tokenizer.encode(sample["text"])
    assert tokens == sample["tokens"]
    assert real_tokenizer.decode(tokens) == sample["decoded"]
    words, word_tokens = real_tokenizer.split_to_word_tokens(
        [*tokens, real_tokenizer.eot], language
    )
    assert words == sample["words"]
    assert word_tokens == sample["word_tokens"]


@pytest.mark.parametrize("missing", ["<|startoftranscript|>", "<|notimestamps|>", "<|de|>"])
def test_a_tokenizer_without_a_special_token_is_a_model_error_at_load(
    tiny_checkpoint, tmp_path, missing
):
    """A tokenizer.json that lacks a token decoding needs fails when the model loads, one
    line naming the file and the token, not as a KeyError in the middle of a run."""
    import shutil

    from whisper_cli.errors import ModelError
    from whisper_cli.loading import load_model

    folder = tmp_path / "model"
    shutil.copytree(tiny_checkpoint, folder)
    data = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    renamed = missing.replace("|>", "-gone|>")
    for entry in data["added_tokens"]:
        if entry["content"] == missing:
            entry["content"] = renamed
    (folder / "tokenizer.json").write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ModelError, match=rf"tokenizer\.json: .*{re.escape(missing)}"):
        load_model(folder, device="cpu")
