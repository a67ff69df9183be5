"""Decoding one window: beam search and sampling as units, and greedy/beam output against the
reference implementation's on the real base weights (the logit rules: test_logit_filters)."""

import pytest
import torch

from tests.conftest import load_reference
from whisper_cli.audio import load_audio
from whisper_cli.constants import N_FRAMES, N_SAMPLES
from whisper_cli.errors import OptionsError
from whisper_cli.whisper.decoding import (
    BeamSearchDecoder,
    DecodingOptions,
    DecodingTask,
    compression_ratio,
    decode,
    detect_language,
)
from whisper_cli.whisper.features import log_mel_spectrogram, pad_or_trim


def test_compression_ratio_rises_with_repetition():
    assert compression_ratio("") == 0.0
    varied = "The quick brown fox jumps over the lazy dog."
    assert compression_ratio("la " * 100) > 2.4 > compression_ratio(varied)


def test_beam_search_keeps_the_best_unfinished_and_collects_finished():
    decoder = BeamSearchDecoder(beam_size=2, eot=10)
    tokens = torch.tensor([[0, 1], [0, 1]])
    logits = torch.full((2, 12), -10.0)
    logits[:, 10] = 5.0  # end of text is the most likely
    logits[:, 4] = 4.0
    logits[:, 5] = 3.0
    sum_logprobs = torch.zeros(2)

    class NullCache:
        def reorder(self, source):
            self.source = source.tolist()

    cache = NullCache()
    tokens, done = decoder.update(tokens, logits, sum_logprobs, cache)
    assert tokens[:, -1].tolist() == [4, 5]  # end of text went to the finished set
    assert len(set(cache.source)) == 1  # identical beams collapse into one origin
    assert list(decoder.finished[0]) == [(0, 1, 10)]
    assert done == [False]


def test_invalid_options_are_refused(tiny_model):
    for options in (
        DecodingOptions(task="summarise"),
        DecodingOptions(temperature=0.5, beam_size=5),
        DecodingOptions(patience=2.0),
        DecodingOptions(language="xx"),
        DecodingOptions(length_penalty=3.0),
        DecodingOptions(seed=-1),
    ):
        with pytest.raises(OptionsError):
            DecodingTask(tiny_model.model, tiny_model.tokenizer, options)


def _tiny_features(tiny_model, batch=1):
    mel = torch.randn(batch, 80, N_FRAMES, generator=torch.Generator().manual_seed(1))
    return tiny_model.model.encoder(mel)


def test_batch_decoding_equals_one_by_one(tiny_model):
    features = _tiny_features(tiny_model, batch=2)
    options = DecodingOptions(language="en", sample_len=20)
    both = decode(tiny_model.model, tiny_model.tokenizer, features, options)
    single = [
        decode(tiny_model.model, tiny_model.tokenizer, features[i : i + 1], options)[0]
        for i in range(2)
    ]
    assert [r.tokens for r in both] == [r.tokens for r in single]


def test_random_model_output_respects_the_timestamp_rules(tiny_model):
    features = _tiny_features(tiny_model)
    options = DecodingOptions(language="en", sample_len=40, beam_size=3)
    (result,) = decode(tiny_model.model, tiny_model.tokenizer, features, options)
    begin = tiny_model.tokenizer.timestamp_begin
    assert result.tokens and begin <= result.tokens[0] <= begin + 50
    stamps = [t for t in result.tokens if t >= begin]
    assert stamps == sorted(stamps)


def _ends_early(tokens, begin, reach):
    """Whether `tokens` end on a pair of timestamps earlier than `reach` (a token)."""
    return len(tokens) >= 2 and tokens[-2] >= begin and reach > tokens[-1] >= begin


def test_no_window_of_a_beam_batch_ends_before_its_reach(tiny_model):
    """Audios of one batch with their own reach, and leaving it at different steps."""
    features = _tiny_features(tiny_model, batch=3)
    options = DecodingOptions(language="en", sample_len=30, beam_size=2)
    task = DecodingTask(tiny_model.model, tiny_model.tokenizer, options)
    reach = [29.0, 0.0, 12.0]
    results = task.run(features, reach)
    begin = tiny_model.tokenizer.timestamp_begin
    for result, seconds in zip(results, reach, strict=True):
        assert len(result.tokens) == 30 or not _ends_early(
            result.tokens, begin, begin + round(seconds / 0.02)
        )
    # a reach of 0 rules nothing: that audio decodes as it does without one
    alone = DecodingTask(tiny_model.model, tiny_model.tokenizer, options).run(features[1:2])
    assert results[1].tokens == alone[0].tokens


def test_sampling_repeats_itself_from_its_seed(tiny_model):
    """At a temperature above 0 each window's draws start from the options' seed (0 unless
    given): the same samples whatever the global generator's state or what was decoded
    before; another seed, other samples; None, the global generator (seeded by the caller)."""
    features = _tiny_features(tiny_model)
    options = DecodingOptions(language="en", sample_len=15, temperature=1.0, best_of=3)
    task = DecodingTask(tiny_model.model, tiny_model.tokenizer, options)
    first = task.run(features)[0].tokens
    torch.manual_seed(123)  # the global generator elsewhere
    assert task.run(features)[0].tokens == first  # the same task again: from the seed anew
    assert decode(tiny_model.model, tiny_model.tokenizer, features, options)[0].tokens == first
    other = decode(tiny_model.model, tiny_model.tokenizer, features, options, seed=1)[0]
    assert other.tokens != first
    unseeded = []
    for _ in range(2):
        torch.manual_seed(7)
        result = decode(tiny_model.model, tiny_model.tokenizer, features, options, seed=None)
        unseeded.append(result[0].tokens)
    assert unseeded[0] == unseeded[1]


def test_a_draw_is_the_categorical_distributions_draw():
    """Unseeded, a draw takes from the global generator what openai-whisper's
    `Categorical(logits=logits / temperature).sample()` takes, and gives the same tokens."""
    from whisper_cli.whisper.decoding import GreedyDecoder

    logits = torch.randn(6, 500, generator=torch.Generator().manual_seed(2)) * 4
    for temperature in (0.2, 1.0):
        torch.manual_seed(11)
        expected = torch.distributions.Categorical(logits=logits / temperature).sample()
        state = torch.get_rng_state()
        torch.manual_seed(11)
        assert torch.equal(GreedyDecoder(temperature, eot=499)._draw(logits), expected)
        assert torch.equal(torch.get_rng_state(), state)  # as much of the generator used


# ---------------------------------------------------------------------------------------------
# the real base weights against openai-whisper (tests/reference/short_greedy.json)


def _window_features(model, path):
    mel = log_mel_spectrogram(load_audio(path), model.model.dims.n_mels, padding=N_SAMPLES)
    with torch.inference_mode():
        return model.model.encoder(pad_or_trim(mel, N_FRAMES)[None])


def _english_short_files():
    files = load_reference("short_greedy.json")["files"]
    return [name for name, entry in files.items() if entry["manifest_language"] == "en"]


@pytest.mark.real_model
@pytest.mark.parametrize(
    ("kind", "options"),
    [
        ("decode_notimestamps", {"without_timestamps": True}),
        ("decode_timestamps", {}),
        ("decode_beam5", {"beam_size": 5}),
    ],
)
def test_window_tokens_equal_the_reference(real_model, audio_dir, kind, options):
    reference = load_reference("short_greedy.json")["files"]
    names = _english_short_files()
    assert len(names) >= 8
    mismatches = []
    for name in names:
        expected = reference[name][kind]
        features = _window_features(real_model, audio_dir / name)
        result = DecodingTask(
            real_model.model,
            real_model.tokenizer,
            DecodingOptions(language=reference[name]["transcribe"]["language"], **options),
        ).run(features)[0]
        if list(result.tokens) != expected["tokens"]:
            mismatches.append((name, result.text, expected["text"]))
        else:
            assert result.avg_logprob == pytest.approx(expected["avg_logprob"], abs=1e-3)
    assert not mismatches


@pytest.mark.real_model
def test_a_window_stopping_early_goes_on_to_its_reach(real_model, audio_dir):
    """The long-form file's first 27.5 s stop in the middle of a sentence that goes on past
    them: greedy decoding stops at the start of that sentence; with a reach of 27 s it
    transcribes it, the same tokens up to there."""
    audio = load_audio(audio_dir / "en_longform_dev.flac")[round(0.53 * 16000) : 28 * 16000]
    mel = log_mel_spectrogram(audio, real_model.model.dims.n_mels, padding=N_SAMPLES)
    with torch.inference_mode():
        features = real_model.model.encoder(pad_or_trim(mel, N_FRAMES)[None])
    task = DecodingTask(real_model.model, real_model.tokenizer, DecodingOptions(language="en"))
    begin = real_model.tokenizer.timestamp_begin
    free = task.run(features)[0].tokens
    assert _ends_early(free, begin, begin + 27 * 50)  # what the reach is there for
    (reached,) = task.run(features, [27.0])
    assert reached.tokens[: len(free)] == free
    assert not _ends_early(reached.tokens, begin, begin + 27 * 50)
    assert "foe" in reached.text[len(real_model.tokenizer.decode(list(free))) :]


@pytest.mark.real_model
def test_language_detection_matches_the_manifest_and_the_reference(real_model, audio_dir):
    reference = load_reference("language.json")["files"]
    for name, expected in reference.items():
        features = _window_features(real_model, audio_dir / name)
        (language,), (probs,) = detect_language(real_model.model, real_model.tokenizer, features)
        assert language == expected["manifest_language"], name
        for code, probability in expected["top5"]:
            assert probs[code] == pytest.approx(probability, abs=2e-3), (name, code)


@pytest.mark.real_model
def test_audios_leave_a_beam_batch_when_done_and_decode_as_alone(real_model, audio_dir):
    names = _english_short_files()[:4]  # utterances of different lengths: they end apart
    features = torch.cat([_window_features(real_model, audio_dir / name) for name in names])
    options = DecodingOptions(language="en", beam_size=5)
    rows_per_step = []
    decoder = real_model.model.decoder
    original = type(decoder).forward

    def counting(self, tokens, cache, scores=None):
        rows_per_step.append(tokens.shape[0])
        return original(self, tokens, cache, scores)

    type(decoder).forward = counting
    try:
        together = DecodingTask(real_model.model, real_model.tokenizer, options).run(features)
    finally:
        type(decoder).forward = original
    alone = [
        DecodingTask(real_model.model, real_model.tokenizer, options).run(features[i : i + 1])[0]
        for i in range(len(names))
    ]
    assert [r.tokens for r in together] == [r.tokens for r in alone]
    assert [r.avg_logprob for r in together] == pytest.approx([r.avg_logprob for r in alone])
    # the batch shrinks one finished audio at a time: 5 beams each
    assert rows_per_step[1] == 5 * len(names) and rows_per_step[-1] == 5
    assert sorted(set(rows_per_step[1:]), reverse=True) == [20, 15, 10, 5]
