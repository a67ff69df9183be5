"""The network: cached decoding is the same computation as a full pass, and the real
weights give the reference's encoder output and logits."""

import numpy as np
import pytest
import torch

from tests.conftest import load_reference
from whisper_cli.audio import load_audio
from whisper_cli.constants import N_FRAMES, N_SAMPLES
from whisper_cli.whisper.features import log_mel_spectrogram, pad_or_trim


@pytest.fixture(scope="module")
def tiny(tiny_model):
    return tiny_model.model


def _features(model, seed=0, batch=1):
    generator = torch.Generator().manual_seed(seed)
    mel = torch.randn(batch, model.dims.n_mels, N_FRAMES, generator=generator)
    return model.encoder(mel)


def test_encoder_output_shape(tiny):
    features = _features(tiny, batch=2)
    assert features.shape == (2, tiny.dims.n_audio_ctx, tiny.dims.n_audio_state)


def test_step_by_step_decoding_equals_one_pass(tiny):
    features = _features(tiny)
    tokens = torch.tensor([[50258, 50259, 50359, 50364, 400, 401, 402, 50400]])
    full = tiny.decoder(tokens, tiny.decoder.new_cache(features, 1))
    cache = tiny.decoder.new_cache(features, 1)
    steps = [tiny.decoder(tokens[:, :3], cache)]
    steps += [tiny.decoder(tokens[:, i : i + 1], cache) for i in range(3, tokens.shape[1])]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("group", [1, 3])
def test_the_cache_grows_as_tokens_come_and_keeps_them(tiny, group):
    """Its buffers start small (most windows end far short of the text context) and double
    when full; a long sequence step by step still equals one pass, past several doublings."""
    features = _features(tiny)
    tokens = torch.tensor([[50258, 50259, 50359, 50364, *range(400, 500)]])
    full = tiny.decoder(tokens, tiny.decoder.new_cache(features, 1))
    cache = tiny.decoder.new_cache(features, 1)
    steps = [tiny.decoder(tokens[:, :4], cache)]
    cache.share_prompt(group)
    assert cache.key.shape[3] < 2 * cache.ROOM < tiny.dims.n_text_ctx
    rows = tokens.repeat(group, 1)
    steps += [tiny.decoder(rows[:, i : i + 1], cache)[:1] for i in range(4, tokens.shape[1])]
    assert cache.key.shape[3] < tiny.dims.n_text_ctx  # grown to what the tokens need
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="text context"):
        cache.make_room(cache.limit + 1)


def test_cache_positions_are_never_read_before_they_are_written(tiny):
    """The buffers are allocated without zeroing: filled with NaN, nothing changes, with or
    without a shared prompt."""
    features = _features(tiny)
    tokens = torch.tensor([[50258, 50259, 50359, 50364, 400, 401]])
    for group in (1, 2):
        clean, poisoned = (tiny.decoder.new_cache(features, 1) for _ in range(2))
        outputs = []
        for cache, poison in ((clean, False), (poisoned, True)):
            if poison:
                cache.key.fill_(torch.nan), cache.value.fill_(torch.nan)
            out = [tiny.decoder(tokens[:, :3], cache)]
            cache.share_prompt(group)
            if poison and group > 1:  # the rows' own buffers are new
                cache.key.fill_(torch.nan), cache.value.fill_(torch.nan)
            rows = tokens.repeat(group, 1)
            out += [tiny.decoder(rows[:, i : i + 1], cache)[:1] for i in range(3, 6)]
            outputs.append(torch.cat(out, dim=1))
        assert outputs[1].isfinite().all()
        torch.testing.assert_close(outputs[1], outputs[0], atol=0, rtol=0)


def test_rows_sharing_audio_equal_rows_with_copied_audio(tiny):
    """Beams fold into the query length of their audio's cross-attention."""
    features = _features(tiny, batch=2)
    tokens = torch.tensor([[50258, 50259, 50359, 7], [50258, 50259, 50359, 9]] * 2)  # 4 rows
    shared = tiny.decoder(tokens, tiny.decoder.new_cache(features, 4))  # 2 rows per audio
    copied = features.repeat_interleave(2, dim=0)
    separate = tiny.decoder(tokens, tiny.decoder.new_cache(copied, 4))
    torch.testing.assert_close(shared, separate, atol=1e-5, rtol=1e-5)


def test_collecting_attention_scores_does_not_change_the_output(tiny):
    features = _features(tiny)
    tokens = torch.tensor([[50258, 50259, 50359, 50363, 300, 301, 50257]])
    plain = tiny.decoder(tokens, tiny.decoder.new_cache(features, 1))
    scores: list[torch.Tensor] = []
    with_scores = tiny.decoder(tokens, tiny.decoder.new_cache(features, 1), scores)
    torch.testing.assert_close(plain, with_scores, atol=1e-5, rtol=1e-5)
    assert len(scores) == tiny.dims.n_text_layer
    assert scores[0].shape == (1, tiny.dims.n_text_head, tokens.shape[1], tiny.dims.n_audio_ctx)


def test_cache_reorder_follows_the_chosen_rows(tiny):
    features = _features(tiny)
    tokens = torch.tensor([[50258, 11], [50258, 22]])
    cache = tiny.decoder.new_cache(features, 2)
    tiny.decoder(tokens, cache)
    cache.reorder(torch.tensor([1, 1]))
    nxt = tiny.decoder(torch.tensor([[5], [5]]), cache)
    torch.testing.assert_close(nxt[0], nxt[1])
    expected = tiny.decoder(torch.tensor([[50258, 22, 5]]), tiny.decoder.new_cache(features, 1))
    torch.testing.assert_close(nxt[0, -1], expected[0, -1], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("source", [[2, 0, 1], [1, 0, 0], [0, 2, 2]])
def test_cache_reorder_with_rows_that_are_both_source_and_destination(tiny, source):
    """A rotation or swap reads rows that are overwritten in the same reorder."""
    features = _features(tiny)
    prefixes = [[50258, 11, 12], [50258, 22, 23], [50258, 33, 34]]
    cache = tiny.decoder.new_cache(features, 3)
    tiny.decoder(torch.tensor(prefixes), cache)
    cache.reorder(torch.tensor(source))
    nxt = tiny.decoder(torch.tensor([[5], [5], [5]]), cache)
    for row, src in enumerate(source):
        fresh = tiny.decoder.new_cache(features, 1)
        expected = tiny.decoder(torch.tensor([prefixes[src] + [5]]), fresh)
        torch.testing.assert_close(nxt[row, -1], expected[0, -1], atol=1e-5, rtol=1e-5)


def test_shared_prompt_reorder_and_leaving_audios_keep_every_row_exact(tiny):
    """Two audios' prompts, shared by 3 rows each; rows then go their own way, are reordered
    within their audio, and the first audio leaves: each row must still compute what a
    fresh cache fed its whole sequence computes."""
    features = torch.cat([_features(tiny), _features(tiny) * -1])  # two different audios
    prompts = [[50258, 11, 12], [50258, 22, 23]]
    cache = tiny.decoder.new_cache(features, 2)
    tiny.decoder(torch.tensor(prompts), cache)
    cache.share_prompt(3)
    # the prompt is held on its own, not as a view into the text-context buffer
    assert cache.shared_key is not None
    held = cache.shared_key.untyped_storage().nbytes()
    assert held == cache.shared_key.numel() * cache.shared_key.element_size()
    rows = [prompts[0]] * 3 + [prompts[1]] * 3
    steps = [[5, 6, 7, 8, 9, 10], [40, 41, 42, 43, 44, 45]]
    for step, source in zip(steps, ([0, 1, 2, 3, 4, 5], [2, 2, 0, 5, 3, 3]), strict=True):
        cache.reorder(torch.tensor(source))
        rows = [rows[s] for s in source]
        tiny.decoder(torch.tensor(step)[:, None], cache)
        rows = [row + [token] for row, token in zip(rows, step, strict=True)]
    cache.keep_audio([1])
    rows = rows[3:]
    out = tiny.decoder(torch.tensor([[50], [51], [52]]), cache)
    for row, (sequence, token) in enumerate(zip(rows, [50, 51, 52], strict=True)):
        fresh = tiny.decoder.new_cache(features[1:], 1)
        expected = tiny.decoder(torch.tensor([sequence + [token]]), fresh)
        torch.testing.assert_close(out[row, -1], expected[0, -1], atol=1e-5, rtol=1e-5)


@pytest.mark.real_model
def test_encoder_output_and_first_step_logits_match_the_reference(real_model, audio_dir):
    reference = load_reference("logits.npz")
    audio = load_audio(audio_dir / "en_ls_1995-1837-0001.wav")
    mel = pad_or_trim(log_mel_spectrogram(audio, 80, padding=N_SAMPLES), N_FRAMES)
    model = real_model.model
    with torch.inference_mode():
        features = model.encoder(mel[None])
        assert list(features.shape) == reference["encoder_out_shape"].tolist()
        encoder_difference = np.abs(features[0, ::50].numpy() - reference["encoder_out_every50"])
        assert encoder_difference.max() < 1e-3
        for name in ("sot", "sot_notimestamps"):
            tokens = torch.tensor(reference[f"tokens_{name}"])[None]
            hidden = model.decoder(tokens, model.decoder.new_cache(features, 1))
            logits = model.decoder.logits(hidden[0, -1]).numpy()
            difference = np.abs(logits - reference[f"logits_{name}"]).max()
            assert difference < 1e-3, f"{name}: max |Δ logits| = {difference:.2e}"
