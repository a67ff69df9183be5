"""The Speech2Text network (speech2text/s2t.py) against transformers 4.40, and its loading contract.

The checkpoints and the reference outputs are in tests/reference/speech2text, written by
make_speech2text_reference.py: `tiny-asr` (English, ends with </s>) and `tiny-st`
(multilingual, German forced as the first token, generates <pad> on the way). The model is
loaded the way the loader does it: built on the meta device, `convert_state`, every key and
shape checked against `state_dict()`, `load_state_dict(assign=True)`, and nothing else.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import REFERENCE
from whisper_cli.errors import ModelError
from whisper_cli.speech2text.s2t import Speech2Text, Speech2TextConfig, convert_state

FIXTURES = REFERENCE / "speech2text"
CHECKPOINTS = ["tiny-asr", "tiny-st"]


def _config(folder: Path) -> Speech2TextConfig:
    raw = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    return Speech2TextConfig.from_json(raw, folder / "config.json")


def _read_state(folder: Path) -> dict[str, torch.Tensor]:
    return torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True)


def load_like_the_loader(folder: Path) -> Speech2Text:
    config = _config(folder)
    with torch.device("meta"):
        model = Speech2Text(config)
    state = convert_state(_read_state(folder), config)
    expected = model.state_dict()
    assert set(state) == set(expected)
    for key, tensor in state.items():
        assert tensor.shape == expected[key].shape, key
    model.load_state_dict(state, assign=True)
    return model.eval().requires_grad_(False)


@pytest.fixture(scope="module")
def expected() -> dict:
    return json.loads((FIXTURES / "expected.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def arrays() -> dict[str, np.ndarray]:
    with np.load(FIXTURES / "expected.npz") as data:
        return dict(data)


@pytest.fixture(scope="module", params=CHECKPOINTS)
def checkpoint(request) -> tuple[str, Speech2Text]:
    return request.param, load_like_the_loader(FIXTURES / request.param)


@pytest.fixture(scope="module")
def encoded(checkpoint, arrays) -> torch.Tensor:
    _, model = checkpoint
    features = torch.from_numpy(arrays["input_features"])[None]  # (1, frames, 80)
    return model.encode(features)


def greedy(model: Speech2Text, encoder_out: torch.Tensor, reference: dict) -> tuple[list, list]:
    """The plain greedy loop of transformers' generate(): start token, forced first token
    (if any), argmax with the cache until </s> or max_length tokens in all."""
    tokens = [reference["decoder_start_token_id"]]
    forced = reference["forced_bos_token_id"]
    cache, step_logits = None, []
    while True:
        logits, cache = model.decode(torch.tensor([tokens[-1:]]), encoder_out, cache)
        step_logits.append(logits[0, -1])
        token = forced if forced is not None and len(tokens) == 1 else int(logits[0, -1].argmax())
        tokens.append(token)
        if token == reference["eos_token_id"] or len(tokens) >= reference["max_length"]:
            return tokens, step_logits


# ---------------------------------------------------------------------------------------------
# against transformers


def test_loading_leaves_nothing_on_the_meta_device(checkpoint):
    _, model = checkpoint
    tensors = list(model.parameters()) + list(model.buffers())
    assert tensors and not any(t.is_meta for t in tensors)


def test_encoder_matches_transformers(checkpoint, encoded, arrays):
    name, _ = checkpoint
    reference = arrays[f"{name}|encoder_out"]
    assert encoded.shape == (1, *reference.shape)
    assert np.abs(encoded[0].numpy() - reference).max() < 1e-4


def test_greedy_decoding_matches_transformers(checkpoint, encoded, arrays, expected):
    name, model = checkpoint
    reference = expected[name]
    tokens, step_logits = greedy(model, encoded, reference)
    assert tokens == reference["greedy_tokens"]
    logits = torch.stack(step_logits).numpy()
    assert np.abs(logits - arrays[f"{name}|greedy_logits"]).max() < 1e-4


def test_the_fixtures_cover_what_they_claim(expected):
    asr, st = expected["tiny-asr"], expected["tiny-st"]
    assert asr["greedy_tokens"][-1] == asr["eos_token_id"]
    assert len(asr["greedy_tokens"]) < asr["max_length"]
    assert st["greedy_tokens"][1] == st["forced_bos_token_id"] == st["lang_code_to_id"]["de"]
    assert len(st["greedy_tokens"]) == st["max_length"]
    assert st["pad_token_id"] in st["greedy_tokens"][2:]


# ---------------------------------------------------------------------------------------------
# the cache


def _cached_step_by_step(model, tokens, encoder_out, first: int = 1) -> torch.Tensor:
    logits, cache = model.decode(tokens[:, :first], encoder_out, None)
    parts = [logits]
    for i in range(first, tokens.shape[1]):
        logits, cache = model.decode(tokens[:, i : i + 1], encoder_out, cache)
        parts.append(logits)
    return torch.cat(parts, dim=1)


def test_cached_decoding_equals_one_pass_over_the_prefix(checkpoint, encoded, expected):
    name, model = checkpoint
    greedy_tokens = expected[name]["greedy_tokens"]
    pad = expected[name]["pad_token_id"]
    # transformers numbers positions differently with and without a cache once a <pad> is
    # among the tokens; the comparison is about the cache, so stop before the first one
    prefix = greedy_tokens[: greedy_tokens.index(pad)] if pad in greedy_tokens else greedy_tokens
    tokens = torch.tensor([prefix])
    whole, cache = model.decode(tokens, encoded, None)
    assert whole.dtype == torch.float32
    assert whole.shape == (1, len(prefix), model.config.vocab_size)
    assert cache[0][0].shape[2] == len(prefix)
    for first in (1, 2):  # a one-token start and a multi-token one (a forced prefix)
        stepwise = _cached_step_by_step(model, tokens, encoded, first)
        assert (whole - stepwise).abs().max() < 1e-5


def test_cache_layout_and_beam_reordering(checkpoint, encoded):
    _, model = checkpoint
    config = model.config
    rows = torch.tensor([[2, 5, 9, 4], [2, 7, 7, 30]])
    encoder_out = encoded.expand(2, -1, -1)
    logits, cache = model.decode(rows[:, :3], encoder_out, None)
    assert len(cache) == config.decoder_layers
    head_dim = config.d_model // config.decoder_attention_heads
    for layer in cache:
        assert len(layer) == 4
        key, value, cross_key, cross_value = layer
        assert key.shape == value.shape == (2, config.decoder_attention_heads, 3, head_dim)
        assert cross_key.shape == cross_value.shape
        assert cross_key.shape[:3] == (2, config.decoder_attention_heads, encoded.shape[1])
    # each row alone gives the same logits as the batch
    for row in range(2):
        alone, _ = model.decode(rows[row : row + 1, :3], encoded, None)
        assert (alone[0] - logits[row]).abs().max() < 1e-5
    # swap the beams: continuing row 0 from row 1's cache is row 1's sequence
    swap = torch.tensor([1, 0])
    reordered = [tuple(t.index_select(0, swap) for t in layer) for layer in cache]
    step, _ = model.decode(rows.index_select(0, swap)[:, 3:], encoder_out, reordered)
    full, _ = model.decode(rows, encoder_out, None)
    assert (step[0, 0] - full[1, 3]).abs().max() < 1e-5
    assert (step[1, 0] - full[0, 3]).abs().max() < 1e-5


# ---------------------------------------------------------------------------------------------
# configuration and weights


def _raw_config(name: str = "tiny-asr") -> dict:
    return json.loads((FIXTURES / name / "config.json").read_text(encoding="utf-8"))


def test_config_reads_the_fixture():
    config = _config(FIXTURES / "tiny-st")
    assert (config.d_model, config.encoder_layers, config.decoder_layers) == (32, 3, 2)
    assert config.conv_kernel_sizes == (5, 3) and config.num_conv_layers == 2
    assert config.num_mel_bins == 80 and config.tie_word_embeddings
    assert (config.pad_token_id, config.eos_token_id, config.decoder_start_token_id) == (1, 2, 2)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"decoder_layers": -1}, r"decoder_layers = -1 is out of range"),
        ({"encoder_layers": 0}, r"encoder_layers = 0 is out of range"),
        ({"d_model": 1 << 30}, r"d_model = 1073741824 is out of range"),
        ({"vocab_size": "200"}, r"vocab_size must be an integer"),
        ({"encoder_ffn_dim": True}, r"encoder_ffn_dim must be an integer"),
        ({"activation_function": "mish"}, r"activation_function = 'mish' is not supported"),
        ({"conv_kernel_sizes": [5]}, r"conv_kernel_sizes = \[5\] must list 2 sizes"),
        ({"conv_kernel_sizes": [5, 0]}, r"conv_kernel_sizes = \[5, 0\] is out of range"),
        ({"conv_channels": 33}, r"conv_channels = 33 must be even"),
        ({"decoder_attention_heads": 3}, r"d_model = 32 is not divisible by decoder_attention"),
        ({"pad_token_id": 200}, r"pad_token_id = 200 is out of range"),
        ({"input_channels": 2}, r"input_channels = 2 is out of range"),
        ({"scale_embedding": 1}, r"scale_embedding must be true or false"),
        ({"model_type": "whisper"}, r"model_type 'whisper' is not speech_to_text"),
    ],
)
def test_config_errors_name_the_file_and_the_value(change, message):
    source = Path("/models/s2t/config.json")
    with pytest.raises(ModelError, match=message) as error:
        Speech2TextConfig.from_json({**_raw_config(), **change}, source)
    assert str(error.value).startswith(f"{source}: ")
    assert "\n" not in str(error.value)


def test_missing_keys_take_transformers_defaults():
    config = Speech2TextConfig.from_json({"model_type": "speech_to_text"}, Path("config.json"))
    assert (config.vocab_size, config.d_model, config.encoder_layers) == (10_000, 256, 12)
    assert config.conv_kernel_sizes == (5, 5) and config.conv_channels == 1024
    assert config.activation_function == "relu" and config.scale_embedding


def test_convert_state_drops_tables_and_the_tied_head():
    state = _read_state(FIXTURES / "tiny-asr")
    assert "lm_head.weight" in state and "model.decoder.embed_positions.weights" in state
    converted = convert_state(state, _config(FIXTURES / "tiny-asr"))
    assert not any("embed_positions" in key for key in converted)
    assert "lm_head.weight" not in converted
    assert all(not key.startswith("model.") for key in converted)


def test_convert_state_keeps_unknown_keys_for_the_strict_check():
    folder = FIXTURES / "tiny-asr"
    config = _config(folder)
    state = _read_state(folder)
    state["model.encoder.extra.weight"] = torch.zeros(3)
    # a "tied" head that differs from the embedding is not silently dropped either
    state["lm_head.weight"] = state["lm_head.weight"] + 1
    converted = convert_state(state, config)
    with torch.device("meta"):
        expected = Speech2Text(config).state_dict()
    assert set(converted) - set(expected) == {"encoder.extra.weight", "lm_head.weight"}
    assert set(expected) <= set(converted)


def test_an_untied_head_is_a_weight_of_its_own():
    folder = FIXTURES / "tiny-asr"
    config = Speech2TextConfig.from_json(
        {**_raw_config(), "tie_word_embeddings": False}, folder / "config.json"
    )
    with torch.device("meta"):
        keys = set(Speech2Text(config).state_dict())
    state = _read_state(folder)
    state["lm_head.weight"] = torch.randn_like(state["lm_head.weight"])
    converted = convert_state(state, config)
    assert "lm_head.weight" in keys and set(converted) == keys
    model = Speech2Text(config).eval().requires_grad_(False)
    model.load_state_dict(converted)
    hidden_head = model.lm_head
    assert hidden_head is not None and torch.equal(hidden_head.weight, converted["lm_head.weight"])
    features = torch.randn(1, 40, 80)
    logits, _ = model.decode(torch.tensor([[2]]), model.encode(features), None)
    assert logits.shape == (1, 1, config.vocab_size)


def test_half_precision_runs_and_returns_float32_logits(arrays):
    model = load_like_the_loader(FIXTURES / "tiny-st").to(torch.bfloat16)
    features = torch.from_numpy(arrays["input_features"])[None]  # float32, cast by encode
    encoder_out = model.encode(features)
    assert encoder_out.dtype == torch.bfloat16
    logits, cache = model.decode(torch.tensor([[2, 11]]), encoder_out, None)
    assert logits.dtype == torch.float32 and torch.isfinite(logits).all()
    assert cache[0][0].dtype == torch.bfloat16
    reference = arrays["tiny-st|encoder_out"]
    assert np.abs(encoder_out[0].float().numpy() - reference).max() < 1.0  # bf16: coarse
