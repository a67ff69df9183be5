"""The transcription commands' parameter values as the library's options: one
`TranscribeOptions` and one `WriterOptions` (`build_options`), the temperatures of the fallback
from openai-whisper's two parameters (`temperatures`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from whisper_cli.cli.params import parse_clip_timestamps, parse_suppress_tokens

if TYPE_CHECKING:
    from whisper_cli.options import TranscribeOptions
    from whisper_cli.writers import WriterOptions


def build_options(
    task: str,
    *,
    language: str | None,
    temperature: float,
    best_of: int,
    seed: int,
    beam_size: int,
    patience: float | None,
    length_penalty: float | None,
    suppress_tokens: str,
    language_detection_windows: int,
    batch_size: int,
    temperature_increment_on_fallback: float | None,
    compression_ratio_threshold: float | None,
    logprob_threshold: float | None,
    no_speech_threshold: float | None,
    skip_silent_windows: bool,
    initial_prompt: str | None,
    carry_initial_prompt: bool,
    condition_on_previous_text: bool,
    word_timestamps: bool,
    prepend_punctuations: str,
    append_punctuations: str,
    hallucination_silence_threshold: float | None,
    split_on_pauses: float | None,
    clip_timestamps: str,
    max_line_width: int | None,
    max_line_count: int | None,
    max_words_per_line: int | None,
    highlight_words: bool,
) -> tuple[TranscribeOptions, WriterOptions]:
    """The library's options from the transcription commands' parameter values.

    Takes the parameters of `transcribe` that become options, by name. Raises `OptionsError`
    for values that contradict each other.
    """
    from whisper_cli.options import DecodingOptions, TranscribeOptions, verify
    from whisper_cli.writers import WriterOptions

    writer = WriterOptions(
        max_line_width=max_line_width,
        max_line_count=max_line_count,
        max_words_per_line=max_words_per_line,
        highlight_words=highlight_words,
    )
    decoding = DecodingOptions(
        task=task,
        language=language,
        best_of=best_of,
        seed=seed,
        beam_size=beam_size,
        patience=patience,
        length_penalty=length_penalty,
        suppress_tokens=parse_suppress_tokens(suppress_tokens),
    )
    options = TranscribeOptions(
        decoding=decoding,
        temperatures=temperatures(temperature, temperature_increment_on_fallback),
        compression_ratio_threshold=compression_ratio_threshold,
        logprob_threshold=logprob_threshold,
        no_speech_threshold=no_speech_threshold,
        skip_silent_windows=skip_silent_windows,
        condition_on_previous_text=condition_on_previous_text,
        initial_prompt=initial_prompt,
        carry_initial_prompt=carry_initial_prompt,
        word_timestamps=word_timestamps
        or writer.needs_words
        or hallucination_silence_threshold is not None,
        prepend_punctuations=prepend_punctuations,
        append_punctuations=append_punctuations,
        hallucination_silence_threshold=hallucination_silence_threshold,
        split_on_pauses=split_on_pauses,
        clip_timestamps=parse_clip_timestamps(clip_timestamps),
        language_detection_windows=language_detection_windows,
        batch_size=batch_size,
    )
    verify(options)
    return options, writer


def temperatures(start: float, increment: float | None) -> tuple[float, ...]:
    """The temperatures to try: `start`, then up by `increment` to 1.0 (openai-whisper's rule).

    An increment of 0 or None turns fallback off; a start above 1.0 (which the command line
    rejects) is tried alone.
    """
    if not increment:
        return (start,)
    import numpy as np

    steps = tuple(float(t) for t in np.arange(start, 1.0 + 1e-6, increment))
    return steps or (start,)
