"""What every loaded model offers, whichever family it is (Whisper, Speech2Text): the face the
command line, and anything else that drives a model, is written against."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeAlias

if TYPE_CHECKING:
    import numpy as np
    import torch

    from whisper_cli.options import TranscribeOptions
    from whisper_cli.results import Segment, Transcript, TranscriptionInfo

# a path, encoded bytes, 16 kHz mono samples, or an iterable of sample blocks
AudioInput: TypeAlias = (
    "str | os.PathLike[str] | bytes | np.ndarray | torch.Tensor | Iterable[np.ndarray]"
)

Progress = Callable[[float, float], None]  # (seconds done, seconds in all)

Family = Literal["whisper", "speech2text"]


class SpeechModel(Protocol):
    """A loaded model with its vocabulary, ready to transcribe: what `load_model` returns."""

    name: str  # what the user asked for
    compute_type: str
    family: Family

    @property
    def device(self) -> torch.device: ...

    @property
    def is_multilingual(self) -> bool:
        """Whether it can detect or be told the spoken language."""
        ...

    @property
    def can_translate(self) -> bool: ...

    @property
    def can_detect_language(self) -> bool: ...

    def transcribe(
        self,
        audio: str | os.PathLike[str] | np.ndarray,
        progress: Progress | None = None,
        **options: Any,
    ) -> Transcript:
        """Transcribe a file or 16 kHz mono samples; options are TranscribeOptions fields."""
        ...

    def transcribe_stream(
        self,
        audio: AudioInput,
        options: TranscribeOptions | None = None,
        progress: Progress | None = None,
    ) -> tuple[TranscriptionInfo, Iterator[Segment]]:
        """Start transcribing: the language and duration now, the segments as decoded."""
        ...

    def collect(self, info: TranscriptionInfo, segments: Iterable[Segment]) -> Transcript:
        """The Transcript of a stream's segments (consuming them)."""
        ...

    def detect_language(self, audio: AudioInput) -> dict[str, float]:
        """Every language's probability, most likely first, over the first 30 s that hold
        speech; empty where no speech is heard (ModelError where it cannot detect)."""
        ...
