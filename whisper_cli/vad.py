"""Voice activity: which parts of a recording hold speech, from Silero VAD.

Whisper invents text for windows without speech ("you" on digital silence, "Music" over an
orchestra) whenever its own no-speech probability is not confident enough. The transcriber asks
this detector first and skips a 30-s window that holds less than `MIN_SPEECH` seconds of speech,
as it skips windows the model itself calls silent; windows with speech are decoded unchanged.

The detector listens to the audio as it streams in (32-ms chunks, one probability each), so it
adds no second pass over the file and keeps one float per chunk.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from functools import lru_cache

import numpy as np
import torch

from whisper_cli.constants import HOP_LENGTH, SAMPLE_RATE

CHUNK = 512  # samples per probability at 16 kHz (32 ms), as the model expects
THRESHOLD = 0.5  # a chunk at or above this probability holds speech
MIN_SPEECH = 0.25  # seconds of speech that make a window worth decoding


@lru_cache(maxsize=1)
def _model() -> torch.jit.ScriptModule:
    import warnings

    from silero_vad import load_silero_vad  # ships its model: no download

    with warnings.catch_warnings():  # its loader uses APIs its dependencies now deprecate
        warnings.simplefilter("ignore", DeprecationWarning)
        return load_silero_vad()


class SpeechDetector:
    """Speech probabilities of a recording, computed while its sample blocks pass by."""

    def __init__(self) -> None:
        self.model = _model()
        self.probabilities: list[float] = []
        self._rest = np.zeros(0, dtype=np.float32)

    def observe(self, blocks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """Pass the blocks through unchanged, listening to them on the way."""
        self.model.reset_states()
        for block in blocks:
            self._listen(np.asarray(block, dtype=np.float32).reshape(-1))
            yield block

    @torch.inference_mode()
    def _listen(self, samples: np.ndarray) -> None:
        samples = np.concatenate([self._rest, samples])
        whole = len(samples) // CHUNK * CHUNK
        for start in range(0, whole, CHUNK):
            chunk = torch.from_numpy(samples[start : start + CHUNK])
            self.probabilities.append(float(self.model(chunk, SAMPLE_RATE)))
        self._rest = samples[whole:]

    def speech_seconds(self, start_frame: int, n_frames: int) -> float:
        """Seconds of speech among mel frames [start_frame, start_frame + n_frames)."""
        first = start_frame * HOP_LENGTH // CHUNK
        last = -(-(start_frame + n_frames) * HOP_LENGTH // CHUNK)  # ceiling
        voiced = sum(p >= THRESHOLD for p in self.probabilities[first:last])
        return voiced * CHUNK / SAMPLE_RATE

    def has_speech(self, start_frame: int, n_frames: int) -> bool:
        return self.speech_seconds(start_frame, n_frames) >= MIN_SPEECH
