"""Weights laid out for the CPU: the float16-weight and packed layouts of the layers decoding
reads every step compute what the plain product does, and float16 is used only where exact."""

from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.conftest import make_tiny_checkpoint
from whisper_cli.constants import N_FRAMES
from whisper_cli.loading import load_model
from whisper_cli.nn.layers import Conv1d, Linear
from whisper_cli.whisper.decoding import decode
from whisper_cli.whisper.loading import hf_to_openai_key
from whisper_cli.whisper.model import Whisper
from whisper_cli.whisper.packing import (
    HalfWeightLinear,
    PackedLinear,
    half_weights_work,
    halve_if_exact,
    holds_in_half,
    kept_at_half,
    packing_works,
    streamed_linear,
)


def test_packing_works_wherever_onednn_is_built_in():
    assert packing_works() == torch.backends.mkldnn.is_available()


@pytest.mark.parametrize("shape", [(48,), (1, 48), (5, 48), (40, 48), (300, 48), (5, 1, 48)])
@pytest.mark.parametrize("with_bias", [False, True])
def test_packed_linear_equals_a_plain_product(shape, with_bias):
    if not packing_works():
        pytest.skip("this PyTorch has no oneDNN packed linear")
    generator = torch.Generator().manual_seed(1)
    weight = torch.randn(1000, 48, generator=generator)
    bias = torch.randn(1000, generator=generator) if with_bias else None
    x = torch.randn(*shape, generator=generator)
    expected = torch.nn.functional.linear(x, weight, bias)
    torch.testing.assert_close(PackedLinear(weight, bias)(x), expected, atol=1e-4, rtol=1e-5)


def test_half_weights_work_wherever_fbgemm_is_built_in():
    assert half_weights_work() == ("fbgemm" in torch.backends.quantized.supported_engines)


@pytest.mark.parametrize("shape", [(48,), (1, 48), (5, 48), (40, 48), (300, 48), (5, 1, 48)])
@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("block_rows", [300, 4096])  # four blocks (the last one short), or one
def test_half_weight_linear_equals_a_plain_product(shape, with_bias, block_rows, monkeypatch):
    if not half_weights_work():
        pytest.skip("this PyTorch has no FBGEMM float16-weight linear")
    monkeypatch.setattr(HalfWeightLinear, "BLOCK_ROWS", block_rows)
    generator = torch.Generator().manual_seed(1)
    weight = torch.randn(1000, 48, generator=generator).half()
    bias = torch.randn(1000, generator=generator) if with_bias else None
    x = torch.randn(*shape, generator=generator)
    layer = HalfWeightLinear(weight, bias)
    assert len(layer._blocks) == -(-1000 // block_rows)
    expected = torch.nn.functional.linear(x, weight.float(), bias)
    out = layer(x)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, expected, atol=1e-4, rtol=1e-5)
    with ThreadPoolExecutor(2) as pool:  # blocks packed side by side: the same layer
        assert torch.equal(HalfWeightLinear(weight, bias, map_blocks=pool.map)(x), out)


def test_streamed_linear_takes_float16_only_where_exact():
    generator = torch.Generator().manual_seed(4)
    exact = torch.randn(64, 16, generator=generator).half().float()
    inexact = exact + 1e-4
    assert holds_in_half(exact) and holds_in_half(exact.half())
    assert not holds_in_half(inexact) and not holds_in_half(exact.bfloat16())
    if half_weights_work():
        assert isinstance(streamed_linear(exact), HalfWeightLinear)
    fallback = streamed_linear(inexact)
    if packing_works():
        assert isinstance(fallback, PackedLinear)
    else:
        assert fallback is None


def test_halve_if_exact_halves_only_float16_values():
    exact = torch.nn.Parameter(torch.randn(64, 8).half().float(), requires_grad=False)
    halved = halve_if_exact(exact)
    assert halved.dtype == torch.float16
    assert torch.equal(halved.float(), exact)
    inexact = torch.nn.Parameter(torch.randn(64, 8) + 1e-4, requires_grad=False)
    assert halve_if_exact(inexact) is inexact


@pytest.fixture(scope="module")
def half_checkpoint(tmp_path_factory):
    """A random checkpoint saved in float16, as OpenAI's are."""
    folder = make_tiny_checkpoint(tmp_path_factory.mktemp("half") / "whisper-half", seed=3)
    weights = folder / "model.safetensors"
    save_file({k: v.half() for k, v in load_file(weights).items()}, weights)
    return folder


@pytest.mark.parametrize("compute_type", ["float32", "int8"])
def test_kept_at_half_names_weights_of_layers_that_convert_or_repack_them(tiny_model, compute_type):
    with torch.device("meta"):
        model = Whisper(tiny_model.model.dims)
    keys = kept_at_half(model, compute_type)
    assert keys <= set(model.state_dict())
    assert {"encoder.conv1.weight", "encoder.blocks.0.mlp.0.weight"} <= keys
    # added to or compared with float32 values directly: never left at half
    assert not any("positional_embedding" in k or "ln" in k or k.endswith("bias") for k in keys)
    decoder_layer = "decoder.blocks.0.mlp.0.weight"
    assert (decoder_layer in keys) == (compute_type == "int8" or half_weights_work())


def _plain_float32(folder, dims):
    """The same network built straight from the checkpoint, every weight in float32."""
    weights = load_file(folder / "model.safetensors")
    model = Whisper(dims)
    model.load_state_dict({hf_to_openai_key(k): v.float() for k, v in weights.items()})
    return model.eval().requires_grad_(False)


def test_float16_checkpoint_is_stored_at_half_where_read_rarely(half_checkpoint):
    model = load_model(half_checkpoint, device="cpu").model
    assert model.dtype == torch.float32
    assert model.decoder.token_embedding.weight.dtype == torch.float16
    encoder_weights = [m.weight for m in model.encoder.modules() if isinstance(m, (Linear, Conv1d))]
    assert encoder_weights and all(w.dtype == torch.float16 for w in encoder_weights)
    # the layers every decoding step reads: in float16 for FBGEMM (or packed for oneDNN)
    block = model.decoder.blocks[0]
    if half_weights_work():  # and the cross-attention keys/values' layers: kept as loaded
        assert block.cross_attn.key.weight.dtype == torch.float16
    streamed = [model.decoder.output, block.attn.query_key_value, block.attn.out, block.mlp[0]]
    streamed += [block.mlp[2], block.cross_attn.query, block.cross_attn.out]
    if half_weights_work():
        assert all(isinstance(layer, HalfWeightLinear) for layer in streamed)
    elif packing_works():
        assert all(isinstance(layer, PackedLinear) for layer in streamed)
    else:
        assert block.mlp[0].weight.dtype == torch.float32


def test_half_storage_and_packing_compute_what_float32_does(half_checkpoint):
    loaded = load_model(half_checkpoint, device="cpu")
    model = loaded.model
    plain = _plain_float32(half_checkpoint, model.dims)
    mel = torch.randn(1, model.dims.n_mels, N_FRAMES, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        features = model.encoder(mel)
        assert torch.equal(features, plain.encoder(mel))  # the very same float32 products
        tokens = torch.tensor([[50258, 50259, 50359, 50364, 400, 401]])
        hidden = model.decoder(tokens, model.decoder.new_cache(features, 1))
        expected = plain.decoder(tokens, plain.decoder.new_cache(features, 1))
        torch.testing.assert_close(hidden, expected, atol=1e-4, rtol=1e-5)
        logits = model.decoder.logits(hidden)
        torch.testing.assert_close(logits, plain.decoder.logits(hidden), atol=1e-4, rtol=1e-5)
    ours = decode(model, loaded.tokenizer, features, language="en", beam_size=3)
    reference = decode(plain, loaded.tokenizer, features, language="en", beam_size=3)
    assert ours[0].tokens == reference[0].tokens


def test_float32_checkpoint_stays_float32(tiny_model):
    model = tiny_model.model
    assert model.decoder.token_embedding.weight.dtype == torch.float32
    assert model.encoder.blocks[0].mlp[0].weight.dtype == torch.float32
    assert not isinstance(model.decoder.output, HalfWeightLinear)
    assert not isinstance(model.decoder.blocks[0].mlp[0], HalfWeightLinear)
