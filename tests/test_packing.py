"""Weights laid out for the CPU: the packed vocabulary projection computes what the plain
product does, and float16 storage is used only where it is exact."""

import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.conftest import make_tiny_checkpoint
from whisper_cli.constants import N_FRAMES
from whisper_cli.decoding import decode
from whisper_cli.model import Conv1d, Linear, Whisper
from whisper_cli.models import hf_to_openai_key, load_model
from whisper_cli.packing import PackedLinear, halve_if_exact, packing_works


def test_packing_works_wherever_onednn_is_built_in():
    assert packing_works() == torch.backends.mkldnn.is_available()


@pytest.mark.parametrize("shape", [(1, 48), (5, 48), (40, 48), (300, 48), (5, 1, 48)])
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
    # the decoder's layers run every step: converted once, at load, and packed
    layer = model.decoder.blocks[0].mlp[0]
    if packing_works():
        assert isinstance(model.decoder.output, PackedLinear)
        assert isinstance(layer, PackedLinear)
    else:
        assert layer.weight.dtype == torch.float32


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
