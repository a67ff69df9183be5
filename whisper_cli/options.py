"""Every option of decoding and transcription, in two frozen dataclasses, checked in one place.

Nothing here imports torch, so the command line can build and check options before it loads
anything heavy (and a contradiction is a usage error, not a failure of every input).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from whisper_cli.errors import OptionsError

PREPEND_PUNCTUATIONS = "\"'“¿([{-"
APPEND_PUNCTUATIONS = "\"'.。,，!！?？:：”)]}、"


@dataclass(frozen=True)
class DecodingOptions:
    # what to do
    task: str = "transcribe"  # or "translate" (into English)
    language: str | None = None  # None: detect it from the audio

    # how to pick tokens
    temperature: float = 0.0  # 0: the most likely token (or beam search); above: sampling
    sample_len: int | None = None  # most tokens to sample; default half the text context
    best_of: int | None = None  # candidates sampled at temperature > 0
    beam_size: int | None = None  # beams at temperature 0; None: greedy
    patience: float | None = None  # finished beams to wait for, as a multiple of beam_size
    length_penalty: float | None = None  # None: rank by mean log-probability
    seed: int | None = 0  # of each window's draws above 0, so runs repeat; None: torch's RNG

    # context
    prompt: str | tuple[int, ...] | None = None  # text before this window (previous windows)
    prefix: str | tuple[int, ...] | None = None  # the start of this window's text

    # what may not be sampled
    suppress_tokens: str | tuple[int, ...] | None = "-1"  # "-1": the non-speech symbols
    suppress_blank: bool = True  # no blank or end of text as the first token

    # timestamps
    without_timestamps: bool = False  # sample text tokens only
    max_initial_timestamp: float | None = 1.0  # seconds into the window for the first one


@dataclass(frozen=True)
class TranscribeOptions:
    # decoding of each window: task, language, beam_size, best_of, suppression, …
    decoding: DecodingOptions = DecodingOptions()

    # temperature fallback
    temperatures: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    compression_ratio_threshold: float | None = 2.4  # above: too repetitive, retry
    logprob_threshold: float | None = -1.0  # below: too unsure, retry
    no_speech_threshold: float | None = 0.6  # above, and unsure: the window is silent
    skip_silent_windows: bool = True  # skip windows where voice activity detection hears none

    # context
    condition_on_previous_text: bool = True
    initial_prompt: str | None = None
    carry_initial_prompt: bool = False  # keep the initial prompt in every window's prompt

    # word timestamps
    word_timestamps: bool = False
    prepend_punctuations: str = PREPEND_PUNCTUATIONS
    append_punctuations: str = APPEND_PUNCTUATIONS
    hallucination_silence_threshold: float | None = None  # seconds; needs word_timestamps
    split_on_pauses: float | None = 0.5  # seconds between words that end a segment

    # what to listen to
    clip_timestamps: tuple[float, ...] = ()  # start, end, start, end, … seconds
    language_detection_windows: int = 1

    # batched mode: speech chunks found by voice activity detection, decoded this many at once
    batch_size: int = 1  # 1: the reference's sequential seek loop
    chunk_length: float = 30.0  # seconds: the longest chunk (speech regions joined or cut)

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> TranscribeOptions:
        """Options from flat keywords, openai-whisper style: TranscribeOptions fields,
        DecodingOptions fields, and `temperature` as one value or a sequence."""
        decoding_fields = {f.name for f in dataclasses.fields(DecodingOptions)}
        own_fields = {f.name for f in dataclasses.fields(cls)}
        decoding = {k: kwargs.pop(k) for k in list(kwargs) if k in decoding_fields}
        if "temperature" in decoding:
            temperature = decoding.pop("temperature")
            kwargs["temperatures"] = (
                tuple(temperature)
                if isinstance(temperature, list | tuple)
                else (float(temperature),)
            )
        unknown = set(kwargs) - own_fields
        if unknown:
            raise OptionsError(f"unknown transcription option(s): {', '.join(sorted(unknown))}")
        if isinstance(kwargs.get("clip_timestamps"), str):
            kwargs["clip_timestamps"] = parse_clip_timestamps(kwargs["clip_timestamps"])
        return cls(decoding=DecodingOptions(**decoding), **kwargs)


def parse_clip_timestamps(text: str) -> tuple[float, ...]:
    """'10,20.5,30' → (10.0, 20.5, 30.0); empty → ()."""
    try:
        seconds = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise OptionsError(f"{text!r} is not a comma-separated list of seconds") from None
    if any(not 0 <= s < float("inf") for s in seconds):
        raise OptionsError("clip timestamps must be finite and not negative")
    check_clips(seconds)
    return seconds


def check_clips(seconds: tuple[float, ...]) -> None:
    """Clips (start, end, start, end, … seconds; the last end may be left out) must each end
    after they start, and follow one another without overlapping."""
    for index in range(1, len(seconds)):
        before, after = seconds[index - 1], seconds[index]
        if index % 2 and after <= before:  # an end
            raise OptionsError(
                f"a clip must end after it starts: {after:g} is not after {before:g}"
            )
        if not index % 2 and after < before:  # a start
            raise OptionsError(
                f"clips must be in order and not overlap: {after:g} starts before the clip "
                f"before it ends, at {before:g}"
            )


def verify_decoding(options: DecodingOptions) -> None:
    """Reject contradictory decoding options with a plain message."""
    if options.task not in ("transcribe", "translate"):
        raise OptionsError(f"unknown task {options.task!r}: use transcribe or translate")
    if options.beam_size is not None and options.best_of is not None and options.temperature == 0:
        raise OptionsError("best_of with temperature 0 has nothing to sample: use beam_size")
    if options.temperature > 0 and options.beam_size is not None:
        raise OptionsError("beam search is deterministic: use temperature 0 with beam_size")
    if options.beam_size is not None and options.beam_size < 1:
        raise OptionsError("beam_size must be at least 1")
    if options.best_of is not None and options.best_of < 1:
        raise OptionsError("best_of must be at least 1")
    if options.patience is not None and options.beam_size is None:
        raise OptionsError("patience needs beam_size")
    if options.patience is not None and options.patience <= 0:
        raise OptionsError("patience must be above 0")
    if options.length_penalty is not None and not 0 <= options.length_penalty <= 1:
        raise OptionsError("length_penalty must be between 0 and 1")
    if options.seed is not None and not 0 <= options.seed < 2**63:
        raise OptionsError("seed must be between 0 and 2**63 - 1")


def clips_requested(options: TranscribeOptions) -> bool:
    """Whether clip_timestamps asks for less than the whole recording ("0", the command
    line's default, is the whole of it)."""
    return options.clip_timestamps not in ((), (0.0,))


def verify(options: TranscribeOptions) -> None:
    """Reject contradictory transcription options with a plain message."""
    # beam_size (at temperature 0) and best_of (above it) are used in turn by the fallback
    verify_decoding(dataclasses.replace(options.decoding, best_of=None, temperature=0.0))
    if options.decoding.best_of is not None and options.decoding.best_of < 1:
        raise OptionsError("best_of must be at least 1")
    if not options.temperatures:
        raise OptionsError("at least one temperature is needed")
    if any(t < 0 for t in options.temperatures):
        raise OptionsError("temperatures cannot be negative")
    if any(t < 0 for t in options.clip_timestamps):
        raise OptionsError("clip timestamps cannot be negative")
    check_clips(options.clip_timestamps)
    if options.hallucination_silence_threshold is not None and not options.word_timestamps:
        raise OptionsError("hallucination_silence_threshold needs word_timestamps")
    if options.split_on_pauses is not None and options.split_on_pauses <= 0:
        raise OptionsError("split_on_pauses must be above 0 seconds (or None)")
    if options.language_detection_windows < 1:
        raise OptionsError("language_detection_windows must be at least 1")
    if options.batch_size < 1:
        raise OptionsError("batch_size must be at least 1")
    if not 0 < options.chunk_length <= 30:
        raise OptionsError("chunk_length must be above 0 and at most 30 seconds")
    if options.batch_size == 1 and options.chunk_length != 30:
        raise OptionsError("chunk_length needs batch_size > 1: the sequential loop reads 30 s")
    if options.batch_size > 1 and clips_requested(options):
        raise OptionsError(
            "clip_timestamps and batch_size > 1 do not combine: batches are VAD chunks"
        )
    if options.batch_size > 1 and options.hallucination_silence_threshold is not None:
        raise OptionsError(
            "hallucination_silence_threshold needs the sequential loop: leave batch_size at 1"
        )
