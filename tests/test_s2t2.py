"""Speech2Text2 (wav2vec 2.0 encoder + Speech2Text2 decoder) against transformers 4.40.

The fixtures in tests/reference/speech2text2 were written by make_speech2text2_reference.py:
two tiny random checkpoints in Hugging Face layout, and what transformers computed with them on
one LibriSpeech file. `tiny` has the large-lv60 layout of the real checkpoints (layer-normed
conv layers, pre-norm Transformer, `enc_to_dec_proj`, tied output matrix); `tiny-group` the base
layout (group norm, post-norm layers, no projection, untied output matrix). Tests that read the
recording skip without ../shared/audio; the decoder tests start from the recorded encoder
output and never skip.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import REFERENCE
from whisper_cli.errors import ModelError
from whisper_cli.speech2text.s2t2 import (
    DROPPED_KEYS,
    Speech2Text2,
    convert_state,
    fold_weight_norm,
    normalize_waveform,
)
from whisper_cli.speech2text.s2t2_config import Speech2Text2Config

FIXTURES = REFERENCE / "speech2text2"
VARIANTS = ["tiny", "tiny-group"]
POS_CONV = "encoder.encoder.pos_conv_embed.conv."


@cache
def expected() -> dict:
    return json.loads((FIXTURES / "expected.json").read_text(encoding="utf-8"))


@cache
def arrays() -> dict[str, np.ndarray]:
    with np.load(FIXTURES / "expected.npz") as npz:
        return {key: npz[key] for key in npz.files}


def read_config(name: str) -> tuple[dict, Path]:
    path = FIXTURES / name / "config.json"
    return json.loads(path.read_text(encoding="utf-8")), path


def build(state: dict[str, torch.Tensor], config: Speech2Text2Config) -> Speech2Text2:
    """Load as whisper-cli's loader does: build on the meta device, convert, check every key
    and shape, assign. Nothing is called after loading: the model has no buffers."""
    with torch.device("meta"):
        model = Speech2Text2(config)
    converted = convert_state(state, config)
    own = model.state_dict()
    assert set(converted) == set(own), set(converted) ^ set(own)
    for key, tensor in converted.items():
        assert tensor.shape == own[key].shape, key
    model.load_state_dict(converted, assign=True)
    return model.eval()


@cache
def load(name: str) -> Speech2Text2:
    raw, path = read_config(name)
    config = Speech2Text2Config.from_json(raw, path)
    return build(load_file(FIXTURES / name / "model.safetensors"), config)


def encoder_out(name: str) -> torch.Tensor:
    """What transformers' decoder cross-attended to (after enc_to_dec_proj): (1, S, d_model)."""
    return torch.from_numpy(arrays()[f"{name}|encoder_out"])[None]


def greedy(model: Speech2Text2, memory: torch.Tensor, start: list[int], eos: int, max_length: int):
    """A plain greedy loop over `decode` with the cache: argmax each step until eos or
    max_length tokens in all (start tokens included), as transformers' generate(num_beams=1)."""
    tokens = list(start)
    step = torch.tensor([tokens])
    cache = None
    while len(tokens) < max_length:
        logits, cache = model.decode(step, memory, cache)
        token = int(logits[0, -1].argmax())
        tokens.append(token)
        if token == eos:
            break
        step = torch.tensor([[token]])
    return tokens


def generation_settings(name: str) -> dict:
    path = FIXTURES / name / "generation_config.json"
    return json.loads(path.read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------------------------
# input normalisation


def test_normalize_waveform_is_zero_mean_unit_variance():
    rng = np.random.default_rng(0)
    samples = (rng.standard_normal(16000) * 0.1 + 0.02).astype(np.float32)
    out = normalize_waveform(samples)
    assert out.dtype == np.float32 and out.shape == samples.shape
    x = samples.astype(np.float64)
    reference = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
    np.testing.assert_allclose(out, reference, atol=1e-5)
    assert normalize_waveform(np.zeros(0, dtype=np.float32)).shape == (0,)
    with pytest.raises(ValueError):
        normalize_waveform(np.zeros((2, 100), dtype=np.float32))


def test_normalize_waveform_matches_transformers(audio_dir):
    from whisper_cli.audio import load_audio

    recorded = expected()["input"]
    out = normalize_waveform(load_audio(audio_dir / expected()["audio_file"]))
    assert out.size == recorded["n_samples"]
    np.testing.assert_allclose(out[:1000], arrays()["input_head"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(out[::97], arrays()["input_every_97"], rtol=0, atol=1e-6)
    assert out.astype(np.float64).sum() == pytest.approx(recorded["sum"], abs=1e-3)


# ---------------------------------------------------------------------------------------------
# encoder


@pytest.mark.parametrize("name", VARIANTS)
def test_encoder_matches_transformers(name, audio_dir):
    from whisper_cli.audio import load_audio

    model = load(name)
    samples = normalize_waveform(load_audio(audio_dir / expected()["audio_file"]))
    with torch.inference_mode():
        out = model.encode(torch.from_numpy(samples)[None])
    reference = encoder_out(name)
    assert list(out.shape) == expected()["checkpoints"][name]["encoder_out_shape"]
    assert (out - reference).abs().max().item() <= 1e-4
    # and greedy decoding from our own encoder output gives transformers' tokens too
    recorded = expected()["checkpoints"][name]
    start = recorded["greedy_tokens"][:1]
    settings = generation_settings(name)
    with torch.inference_mode():
        tokens = greedy(model, out, start, settings["eos_token_id"], settings["max_length"])
    assert tokens == recorded["greedy_tokens"]


def test_encode_rejects_too_short_input():
    model = load("tiny")
    assert model.config.min_samples == 400  # the real conv stack's receptive field
    with torch.inference_mode():
        assert model.encode(torch.zeros(1, 400)).shape[1] == 1
        with pytest.raises(ValueError, match="at least 400"):
            model.encode(torch.zeros(1, 399))


# ---------------------------------------------------------------------------------------------
# decoder


@pytest.mark.parametrize("name", VARIANTS)
def test_greedy_matches_transformers(name):
    recorded = expected()["checkpoints"][name]
    settings = generation_settings(name)
    assert settings["decoder_start_token_id"] == recorded["greedy_tokens"][0] == 2
    with torch.inference_mode():
        tokens = greedy(
            load(name),
            encoder_out(name),
            recorded["greedy_tokens"][:1],
            settings["eos_token_id"],
            settings["max_length"],
        )
    assert tokens == recorded["greedy_tokens"]


def test_fixtures_cover_both_ways_of_stopping():
    checkpoints = expected()["checkpoints"]
    assert not checkpoints["tiny"]["greedy_stopped_on_eos"]
    assert len(checkpoints["tiny"]["greedy_tokens"]) == checkpoints["tiny"]["max_length"]
    assert checkpoints["tiny-group"]["greedy_stopped_on_eos"]


@pytest.mark.parametrize("name", VARIANTS)
def test_teacher_forced_logits_match_transformers(name):
    tokens = torch.tensor([expected()["checkpoints"][name]["greedy_tokens"]])
    with torch.inference_mode():
        logits, _ = load(name).decode(tokens, encoder_out(name), None)
    reference = torch.from_numpy(arrays()[f"{name}|greedy_logits"])
    assert logits.dtype == torch.float32
    assert (logits[0] - reference).abs().max().item() <= 1e-4


@pytest.mark.parametrize("name", VARIANTS)
def test_cached_decoding_equals_uncached(name):
    model = load(name)
    memory = encoder_out(name)
    recorded = expected()["checkpoints"][name]["greedy_tokens"]
    tokens = torch.tensor([(recorded + list(range(10, 22)))[:12]])
    with torch.inference_mode():
        whole, _ = model.decode(tokens, memory, None)
        logits, cache = model.decode(tokens[:, :3], memory, None)  # a prompt, then one by one
        steps = [logits]
        for i in range(3, tokens.shape[1]):
            logits, cache = model.decode(tokens[:, i : i + 1], memory, cache)
            steps.append(logits)
    assert (torch.cat(steps, dim=1) - whole).abs().max().item() <= 1e-5
    assert len(cache) == model.config.decoder_layers
    assert all(len(layer) == 4 and layer[0].shape[:2] == (1, 12) for layer in cache)


def test_batched_decoding_and_reordering():
    """Beams are batch rows sharing one encoder output; reordering the cache with index_select
    equals decoding the reordered sequences from scratch."""
    model = load("tiny")
    memory = encoder_out("tiny")  # batch 1: shared by every row
    rows = torch.tensor([[2, 10, 11, 12], [2, 40, 41, 42], [2, 7, 7, 7]])
    with torch.inference_mode():
        logits, cache = model.decode(rows, memory, None)
        for i in range(3):
            alone, _ = model.decode(rows[i : i + 1], memory, None)
            assert (logits[i] - alone[0]).abs().max().item() <= 1e-5
        order = torch.tensor([2, 0, 0])
        cache = [tuple(t.index_select(0, order) for t in layer) for layer in cache]
        new = torch.tensor([[5], [6], [7]])
        stepped, _ = model.decode(new, memory, cache)
        fresh, _ = model.decode(torch.cat([rows[order], new], dim=1), memory, None)
    assert (stepped[:, 0] - fresh[:, -1]).abs().max().item() <= 1e-5


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("name", VARIANTS)
def test_half_precision_runs(name, dtype):
    model = copy.deepcopy(load(name)).to(dtype)
    with torch.inference_mode():
        memory = model.encode(torch.randn(1, 8000))
        logits, _ = model.decode(torch.tensor([[2, 5]]), memory, None)
    assert memory.dtype == dtype and logits.dtype == torch.float32
    assert torch.isfinite(logits).all()


# ---------------------------------------------------------------------------------------------
# weights


def test_both_weight_norm_key_styles_load_the_same_weights():
    raw, path = read_config("tiny")
    config = Speech2Text2Config.from_json(raw, path)
    state = load_file(FIXTURES / "tiny" / "model.safetensors")
    g = state[POS_CONV + "parametrizations.weight.original0"]  # torch >= 2.1 names
    v = state[POS_CONV + "parametrizations.weight.original1"]
    old_style = {k: t for k, t in state.items() if ".parametrizations." not in k}
    old_style[POS_CONV + "weight_g"] = g  # hub checkpoints' names
    old_style[POS_CONV + "weight_v"] = v
    new_model, old_model = build(state, config), build(old_style, config)
    assert torch.equal(new_model.encoder.pos_conv.weight, old_model.encoder.pos_conv.weight)
    # the fold is torch's weight norm over the kernel axis
    conv = torch.nn.Conv1d(96, 96, 16, padding=8, groups=4)
    conv = torch.nn.utils.parametrizations.weight_norm(conv, name="weight", dim=2)
    with torch.no_grad():
        conv.parametrizations.weight.original0.copy_(g)
        conv.parametrizations.weight.original1.copy_(v)
    torch_weight = conv.weight.detach()
    assert (fold_weight_norm(g, v) - torch_weight).abs().max().item() <= 1e-6
    assert (new_model.encoder.pos_conv.weight - torch_weight).abs().max().item() <= 1e-6


def test_half_a_weight_norm_pair_is_reported():
    raw, path = read_config("tiny")
    config = Speech2Text2Config.from_json(raw, path)
    state = load_file(FIXTURES / "tiny" / "model.safetensors")
    del state[POS_CONV + "parametrizations.weight.original0"]
    converted = convert_state(state, config)
    assert "encoder.pos_conv.weight" not in converted
    assert POS_CONV + "weight_v" in converted


def test_convert_state_drops_training_keys_and_keeps_unknown_ones():
    raw, path = read_config("tiny")
    config = Speech2Text2Config.from_json(raw, path)
    state = load_file(FIXTURES / "tiny" / "model.safetensors")
    assert set(state) >= DROPPED_KEYS  # the saved file has both
    state["encoder.encoder.adapter.weight"] = torch.zeros(3)
    converted = convert_state(state, config)
    assert not DROPPED_KEYS & set(converted)
    with torch.device("meta"):
        model = Speech2Text2(config)
    unknown = set(converted) - set(model.state_dict())
    assert unknown == {"encoder.adapter.weight"}
    with pytest.raises(RuntimeError, match="adapter"):
        model.load_state_dict(converted, assign=True)


def test_lm_head_tied_and_untied():
    raw, path = read_config("tiny")
    config = Speech2Text2Config.from_json(raw, path)
    assert config.tie_word_embeddings
    state = load_file(FIXTURES / "tiny" / "model.safetensors")
    embedding = state["decoder.model.decoder.embed_tokens.weight"]
    assert "decoder.lm_head.weight" not in state  # saved tied: the file has the embedding only
    converted = convert_state(state, config)
    assert converted["lm_head.weight"] is converted["decoder.embed_tokens.weight"] is embedding

    # tied, yet the file has its own lm_head (hub checkpoints converted from fairseq):
    # transformers 4.40 makes both matrices the file's lm_head, as the fixture recorded
    recorded = expected()["tied_lm_head_in_file"]
    assert recorded["embed_tokens_is_file_lm_head"] and recorded["lm_head_is_file_lm_head"]
    head = torch.randn(embedding.shape)
    converted = convert_state({**state, "decoder.lm_head.weight": head}, config)
    assert converted["lm_head.weight"] is converted["decoder.embed_tokens.weight"] is head

    # untied: each its own, and a missing lm_head stays missing for the key check
    raw, path = read_config("tiny-group")
    untied = Speech2Text2Config.from_json(raw, path)
    assert not untied.tie_word_embeddings
    state = load_file(FIXTURES / "tiny-group" / "model.safetensors")
    converted = convert_state(state, untied)
    assert torch.equal(converted["lm_head.weight"], state["decoder.lm_head.weight"])
    assert not torch.equal(converted["lm_head.weight"], converted["decoder.embed_tokens.weight"])
    del state["decoder.lm_head.weight"]
    assert "lm_head.weight" not in convert_state(state, untied)


# ---------------------------------------------------------------------------------------------
# configuration


def test_config_reads_the_fixture():
    raw, path = read_config("tiny")
    config = Speech2Text2Config.from_json(raw, path)
    assert config.has_projection and config.do_stable_layer_norm
    assert config.feat_extract_norm == "layer" and config.conv_bias
    assert (config.decoder_start_token_id, config.bos_token_id, config.eos_token_id) == (2, 0, 2)
    assert config.pad_token_id == 1 and config.activation_function == "relu"
    raw, path = read_config("tiny-group")
    config = Speech2Text2Config.from_json(raw, path)
    assert not config.has_projection and not config.do_stable_layer_norm
    assert config.feat_extract_norm == "group"


def test_generation_ids_come_from_the_top_level_first():
    raw, path = read_config("tiny")
    raw = copy.deepcopy(raw)
    raw["decoder_start_token_id"] = None  # transformers then takes the decoder's
    raw["decoder"]["decoder_start_token_id"] = 7
    assert Speech2Text2Config.from_json(raw, path).decoder_start_token_id == 7
    raw["decoder_start_token_id"] = 5
    assert Speech2Text2Config.from_json(raw, path).decoder_start_token_id == 5


@pytest.mark.parametrize(
    ("section", "key", "value", "field"),
    [
        (None, "model_type", "wav2vec2", "model_type"),
        (None, "encoder", None, "encoder"),
        ("encoder", "model_type", "hubert", "encoder.model_type"),
        ("decoder", "model_type", "bart", "decoder.model_type"),
        ("encoder", "hidden_size", 0, "encoder.hidden_size"),
        ("encoder", "hidden_size", 10**9, "encoder.hidden_size"),
        ("encoder", "hidden_size", 96.0, "encoder.hidden_size"),
        ("encoder", "num_attention_heads", 5, "encoder.num_attention_heads"),
        ("encoder", "num_hidden_layers", True, "encoder.num_hidden_layers"),
        ("encoder", "conv_dim", [32] * 6, "encoder.conv_kernel"),
        ("encoder", "conv_dim", [32] * 6 + [-1], "encoder.conv_dim"),
        ("encoder", "conv_stride", "5,2,2", "encoder.conv_stride"),
        ("encoder", "conv_kernel", [4096] * 7, "encoder.conv_kernel"),
        ("encoder", "num_feat_extract_layers", 3, "encoder.num_feat_extract_layers"),
        ("encoder", "feat_extract_norm", "batch", "encoder.feat_extract_norm"),
        ("encoder", "hidden_act", "tanh", "encoder.hidden_act"),
        ("encoder", "layer_norm_eps", 0, "encoder.layer_norm_eps"),
        ("encoder", "num_conv_pos_embedding_groups", 7, "encoder.num_conv_pos_embedding_groups"),
        ("encoder", "do_stable_layer_norm", "yes", "encoder.do_stable_layer_norm"),
        ("encoder", "add_adapter", True, "encoder.add_adapter"),
        ("decoder", "vocab_size", -1, "decoder.vocab_size"),
        ("decoder", "d_model", "64", "decoder.d_model"),
        ("decoder", "decoder_attention_heads", 3, "decoder.decoder_attention_heads"),
        ("decoder", "decoder_layers", 10**6, "decoder.decoder_layers"),
        ("decoder", "activation_function", "swish", "decoder.activation_function"),
        ("decoder", "pad_token_id", 10**6, "decoder.pad_token_id"),
        ("decoder", "cross_attention_hidden_size", 96, "decoder.cross_attention_hidden_size"),
        (None, "eos_token_id", 10**6, "eos_token_id"),
        (None, "decoder_start_token_id", -2, "decoder_start_token_id"),
    ],
)
def test_config_bounds_are_checked(section, key, value, field):
    raw, path = read_config("tiny")
    raw = copy.deepcopy(raw)
    (raw if section is None else raw[section])[key] = value
    with pytest.raises(ModelError) as error:
        Speech2Text2Config.from_json(raw, path)
    message = str(error.value)
    assert message.startswith(f"{path}: {field} ") and "\n" not in message
