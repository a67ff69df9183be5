"""Recordings without speech: no text.

The animal recording (tests/data/animal_pig_cc0.flac, see tests/data/README.md) is a grunt
that Silero VAD takes for 0.7 s of speech, over which the model, fairly sure there is no
speech (0.67), wrote "I don't know, I don't know, I don't know." with the reference's rules.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from whisper_cli.audio import load_audio
from whisper_cli.options import TranscribeOptions
from whisper_cli.whisper.decoding import DecodingResult
from whisper_cli.whisper.timing import PendingSegment
from whisper_cli.whisper.transcribe import transcribe_stream
from whisper_cli.whisper.window import MAX_TOKENS_PER_SECOND, is_silent, shown_text

DATA = Path(__file__).resolve().parent / "data"


# ---------------------------------------------------------------------------------------------
# the rules, without a model


def test_a_segment_of_punctuation_only_is_not_shown(tiny_model):
    tokenizer = tiny_model.tokenizer
    begin = tokenizer.timestamp_begin

    def segment(text: str) -> PendingSegment:
        return PendingSegment(0, 0.0, 7.0, [begin, *tokenizer.encode(text), begin + 350])

    for text in (".", " ...", " - !", " ♪"):
        assert shown_text(segment(text), tokenizer) is None, text
    assert shown_text(segment(" a."), tokenizer) == " a."
    assert shown_text(segment(" 5"), tokenizer) == " 5"


def test_a_window_is_silent_when_its_text_is_more_than_the_speech_heard_could_carry():
    options = TranscribeOptions()
    # the model leans to silence but is sure of its text: the reference keeps it
    result = DecodingResult("en", avg_logprob=-0.98, no_speech_prob=0.67)
    assert not is_silent(result, options)
    assert is_silent(result, options, 0.67, 15)  # 15 tokens over 0.67 s of voice
    assert not is_silent(result, options, 0.67, 3)  # "Oh no." fits
    assert not is_silent(result, options, 15 / MAX_TOKENS_PER_SECOND + 0.1, 15)
    # the model hears speech: whatever the detector says
    assert not is_silent(DecodingResult("en", avg_logprob=-0.5, no_speech_prob=0.1), options, 0, 9)
    # the reference's rule holds as before
    unsure = DecodingResult("en", avg_logprob=-1.3, no_speech_prob=0.7)
    assert is_silent(unsure, options) and is_silent(unsure, options, 30.0, 5)


# ---------------------------------------------------------------------------------------------
# the real base model


def _cli_defaults() -> TranscribeOptions:
    return TranscribeOptions.from_kwargs(beam_size=5, best_of=5)


def _transcribe(model, path: Path):
    return model.collect(*transcribe_stream(model, load_audio(path), _cli_defaults()))


@pytest.mark.real_model
def test_a_grunt_taken_for_speech_gives_no_text(real_model):
    transcript = _transcribe(real_model, DATA / "animal_pig_cc0.flac")
    assert transcript.segments == (), transcript.text
