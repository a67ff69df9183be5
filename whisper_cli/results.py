"""What transcription returns: plain dataclasses that serialise to whisper-cli's JSON format.

The JSON is a superset of what openai-whisper writes: the same `text`, `segments` and
`language` keys, plus `duration` and `model`.
"""

from __future__ import annotations

import dataclasses
import zlib
from dataclasses import dataclass
from typing import Any


def compression_ratio(text: str) -> float:
    """How much gzip shrinks the text: high for repetitive (looping) output."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


@dataclass(frozen=True)
class TranscriptionInfo:
    """What is known of a recording before its segments are decoded."""

    language: str | None
    language_probability: float | None
    duration: float  # seconds


@dataclass(frozen=True)
class Word:
    word: str  # with its leading space, as the tokenizer decodes it
    start: float  # seconds
    end: float  # seconds
    probability: float


@dataclass(frozen=True)
class Segment:
    id: int
    seek: int  # mel frame where the window that produced this segment started
    start: float  # seconds
    end: float  # seconds
    text: str
    tokens: tuple[int, ...]
    temperature: float
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float
    words: tuple[Word, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["tokens"] = list(self.tokens)
        if self.words is None:
            del data["words"]
        else:
            data["words"] = [dataclasses.asdict(w) for w in self.words]
        return data


@dataclass(frozen=True)
class Transcript:
    text: str
    language: str | None
    duration: float  # seconds of audio
    segments: tuple[Segment, ...] = ()
    model: str | None = None
    language_probability: float | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "text": self.text,
            "segments": [s.to_dict() for s in self.segments],
            "language": self.language,
            "duration": self.duration,
            "model": self.model,
        }
        if self.language_probability is not None:
            data["language_probability"] = self.language_probability
        return data
