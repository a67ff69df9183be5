"""Voice activity: which parts of a recording hold speech, from Silero VAD.

Whisper invents text for windows without speech ("you" on digital silence, "Music" over an
orchestra) whenever its own no-speech probability is not confident enough. The transcriber asks
this detector first and skips a 30-s window that holds less than `MIN_SPEECH` seconds of speech,
as it skips windows the model itself calls silent; windows with speech are decoded unchanged.

The detector listens to the audio as it streams in (32-ms chunks, one probability each), so it
adds no second pass over the file and keeps one float per chunk.

Speed. Silero's network is a per-chunk encoder (STFT and four convolutions over the chunk and
the last 64 samples before it) followed by an LSTM cell that carries state from chunk to chunk.
Calling the packaged TorchScript model once per chunk spends nearly all its time on call
overhead. Only the LSTM is sequential, so the detector buffers up to `BATCH` chunks (16 s), runs
the encoder on all of them in one batched call, the LSTM over them as one sequence
(`torch.nn.LSTM` with the cell's weights, its state carried to the next batch) and the output
layer on all of them at once: much faster, the same computation in another order (probabilities
within 1e-5 of the per-chunk model's; figures in bench/README.md). No approximation such as
independent lanes with warm-up is needed. When the model loads, a short synthetic signal is run
both ways; should a future silero-vad change its network so that they disagree, the per-chunk
model is used instead. Otherwise the packaged model is let go (its graphs, its executor's state,
the 8-kHz network): the batched one keeps only the 16-kHz weights.

Regions. `speech_regions` turns the probabilities into speech regions in seconds with
silero-vad's rules (`get_speech_timestamps`: hysteresis, minimum speech and silence, padding);
`merge_regions` joins them into pieces of at most 30 s (faster-whisper's and whisperX's chunk
merging) for models that read one window at a time.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from functools import lru_cache
from itertools import pairwise
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from whisper_cli.constants import CHUNK_LENGTH, HOP_LENGTH, SAMPLE_RATE

CHUNK = 512  # samples per probability at 16 kHz (32 ms), as the model expects
THRESHOLD = 0.5  # a chunk at or above this probability holds speech
MIN_SPEECH = 0.25  # seconds of speech that make a window worth decoding
BATCH = 512  # chunks per batched call (16.4 s): enough to amortise it, little to hold

_State = Any  # what a network carries from one batch of a stream to the next


def _silero_jit() -> torch.jit.ScriptModule:
    import warnings

    threads = torch.get_num_threads()
    from silero_vad import load_silero_vad  # ships its model: no download

    torch.set_num_threads(threads)  # importing silero_vad.model sets one thread, process-wide
    with warnings.catch_warnings():  # it loads TorchScript, which PyTorch now deprecates:
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.load up to 2.13,
        warnings.simplefilter("ignore", FutureWarning)  # shown to every user from 2.14
        return load_silero_vad()


class _BatchedNetwork:
    """Silero VAD's 16-kHz network cut where its state is: the encoder (STFT and convolutions)
    and the output layer see one chunk at a time, so they run on a whole batch of chunks; the
    LSTM runs over the batch as one sequence, from the state the previous batch left."""

    def __init__(self, jit: torch.jit.ScriptModule) -> None:
        net = jit._model  # the 16-kHz half; `_model_8k` is the 8-kHz one
        self.context = int(net.context_size_samples)  # 64 samples before each chunk
        self.n_fft = int(net.stft.filter_length)  # 256
        self.hop = int(net.stft.hop_length)  # 128
        # The STFT basis is a periodic-Hann-windowed DFT: an FFT gives it for less.
        self.window = torch.hann_window(self.n_fft, periodic=True)
        self.convs: list[tuple[torch.Tensor, torch.Tensor, int, int]] = []  # Conv1d + ReLU x4
        for block in net.encoder.children():
            conv = block.reparam_conv
            weight, bias = conv.weight.detach(), conv.bias.detach()
            self.convs.append((weight, bias, conv.stride[0], conv.padding[0]))
        cell = net.decoder.rnn
        self.lstm = torch.nn.LSTM(cell.input_size, cell.hidden_size)
        with torch.no_grad():
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(self.lstm, f"{name}_l0").copy_(getattr(cell, name))
        self.lstm.requires_grad_(False)
        head = getattr(net.decoder.decoder, "2")  # Conv1d(hidden, 1, 1) before the sigmoid
        self.head_weight = head.weight.detach().reshape(1, -1).T.contiguous()
        self.head_bias = head.bias.detach()

    def start(self) -> _State:
        """A new stream: silence before it, a zero LSTM state (as `reset_states` gives)."""
        return torch.zeros(self.context), None

    @torch.inference_mode()
    def __call__(self, chunks: np.ndarray, state: _State) -> tuple[np.ndarray, _State]:
        """Probabilities of (n, CHUNK) consecutive chunks, and the state after them."""
        previous, lstm_state = state
        x = torch.tensor(chunks)  # a copy: the caller's array may be read-only
        before = torch.cat([previous[None], x[:-1, -self.context :]])
        windows = torch.cat([before, x], dim=1)  # what the model sees: context, then the chunk
        padded = F.pad(windows, (0, self.context), mode="reflect")
        frames = padded.unfold(1, self.n_fft, self.hop) * self.window
        spectrum = torch.fft.rfft(frames)
        magnitude = (spectrum.real.square() + spectrum.imag.square()).sqrt()  # faster than abs
        magnitude = magnitude.transpose(1, 2).contiguous()  # (n, bins, frames)
        features = magnitude
        for weight, bias, stride, padding in self.convs:
            features = F.relu(F.conv1d(features, weight, bias, stride, padding))
        features = features.squeeze(-1)  # (n, hidden): the convolutions leave one frame
        hidden, lstm_state = self.lstm(features[:, None], lstm_state)
        logits = F.relu(hidden[:, 0]) @ self.head_weight + self.head_bias
        probabilities = torch.sigmoid(logits)[:, 0].numpy()
        return probabilities, (x[-1, -self.context :].clone(), lstm_state)


class _ChunkByChunkNetwork:
    """The packaged model called once per chunk: the fallback, and the reference.

    Its state lives in the shared model, so two streams must not interleave."""

    def __init__(self, jit: torch.jit.ScriptModule) -> None:
        self.jit = jit

    def start(self) -> _State:
        self.jit.reset_states()
        return None

    @torch.inference_mode()
    def __call__(self, chunks: np.ndarray, state: _State) -> tuple[np.ndarray, _State]:
        values = [float(self.jit(torch.tensor(chunk), SAMPLE_RATE)) for chunk in chunks]
        return np.asarray(values, dtype=np.float32), state


def _probe_signal() -> np.ndarray:
    """Two seconds with silence, a voiced tone and noise: enough to move the LSTM."""
    rng = np.random.default_rng(0)
    t = np.arange(64 * CHUNK) / SAMPLE_RATE
    tone = 0.3 * np.sin(2 * np.pi * 180 * t) * np.sin(2 * np.pi * 1.5 * t) ** 2
    signal = tone + rng.normal(0, 0.02, len(t))
    signal[: 8 * CHUNK] = 0
    return signal.astype(np.float32).reshape(-1, CHUNK)


@lru_cache(maxsize=1)
def _network() -> _BatchedNetwork | _ChunkByChunkNetwork:
    """The batched network when it computes what the packaged model does, else the latter."""
    jit = _silero_jit()
    reference = _ChunkByChunkNetwork(jit)
    try:
        batched = _BatchedNetwork(jit)
        probe = _probe_signal()
        fast, _ = batched(probe, batched.start())
        # unoptimised: optimising the graph for a check would cost memory the process keeps
        with torch.jit.optimized_execution(False):
            slow, _ = reference(probe, reference.start())
        if np.abs(fast - slow).max() <= 1e-4:
            return batched  # the packaged model, its graph and the 8-kHz half are let go
    except (AttributeError, RuntimeError, TypeError, ValueError):  # another network layout
        pass
    return reference


class SpeechDetector:
    """Speech probabilities of a recording, computed while its sample blocks pass by.

    Up to `BATCH` chunks of audio wait to be scored together; whatever is read from the
    detector (`speech_seconds`, `has_speech`, `regions`) first scores what waits, and
    `probabilities` is complete once `observe` has passed its last block on.
    """

    def __init__(self) -> None:
        self.network = _network()
        self.probabilities: list[float] = []
        self.n_samples = 0  # samples heard, the tail shorter than a chunk included
        self._pending: list[np.ndarray] = []
        self._n_pending = 0
        self._state = self.network.start()

    def observe(self, blocks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """Pass the blocks through unchanged, listening to them on the way.

        Each call starts a new recording: what was heard before is forgotten."""
        self.probabilities = []
        self.n_samples = 0
        self._pending, self._n_pending = [], 0
        self._state = self.network.start()
        for block in blocks:
            self._listen(np.asarray(block, dtype=np.float32).reshape(-1))
            yield block
        self._score_pending()

    def _listen(self, samples: np.ndarray) -> None:
        self.n_samples += len(samples)
        self._n_pending += len(samples)
        if self._n_pending >= BATCH * CHUNK:
            self._pending.append(samples)
            self._score_pending()  # keeps a copy of the rest only
        else:
            self._pending.append(samples.copy())  # the caller may reuse its buffer

    def _score_pending(self) -> None:
        """Score every whole chunk waiting, `BATCH` at a time; keep the rest for later."""
        if self._n_pending < CHUNK:
            return
        samples = self._pending[0] if len(self._pending) == 1 else np.concatenate(self._pending)
        whole = len(samples) // CHUNK
        chunks = samples[: whole * CHUNK].reshape(whole, CHUNK)
        for first in range(0, whole, BATCH):
            values, self._state = self.network(chunks[first : first + BATCH], self._state)
            self.probabilities.extend(values.tolist())
        rest = samples[whole * CHUNK :].copy()
        self._pending, self._n_pending = [rest], len(rest)

    def speech_seconds(self, start_frame: int, n_frames: int) -> float:
        """Seconds of speech among mel frames [start_frame, start_frame + n_frames)."""
        self._score_pending()
        first = start_frame * HOP_LENGTH // CHUNK
        last = -(-(start_frame + n_frames) * HOP_LENGTH // CHUNK)  # ceiling
        voiced = sum(p >= THRESHOLD for p in self.probabilities[first:last])
        return voiced * CHUNK / SAMPLE_RATE

    def has_speech(self, start_frame: int, n_frames: int) -> bool:
        """Whether those mel frames hold enough speech (`MIN_SPEECH`) to be worth decoding."""
        return self.speech_seconds(start_frame, n_frames) >= MIN_SPEECH

    def first_speech(self, n_frames: int) -> int | None:
        """The mel frame where speech first starts: the first chunk of speech from which
        `n_frames` frames hold enough of it (`has_speech`), so that a click is not taken for
        it; None when no stretch of that length does, so that no window is worth decoding."""
        self._score_pending()
        voiced = np.asarray(self.probabilities, dtype=np.float64) >= THRESHOLD
        counts = np.concatenate([[0], np.cumsum(voiced)])  # voiced chunks before each one
        frames = np.flatnonzero(voiced) * CHUNK // HOP_LENGTH  # where each voiced chunk starts
        first = frames * HOP_LENGTH // CHUNK  # the chunks `speech_seconds` counts, as it does
        last = np.minimum(-(-(frames + n_frames) * HOP_LENGTH // CHUNK), len(voiced))
        enough = np.flatnonzero((counts[last] - counts[first]) * CHUNK / SAMPLE_RATE >= MIN_SPEECH)
        return int(frames[enough[0]]) if len(enough) else None

    def regions(self, duration: float | None = None, **kwargs: Any) -> list[tuple[float, float]]:
        """`speech_regions` of what was heard; `duration` defaults to the samples heard."""
        self._score_pending()
        if duration is None:
            duration = self.n_samples / SAMPLE_RATE
        return speech_regions(self.probabilities, duration=duration, **kwargs)


def detect_speech(samples: np.ndarray) -> SpeechDetector:
    """A detector that has heard a whole recording (16 kHz mono samples)."""
    detector = SpeechDetector()
    for _ in detector.observe([np.asarray(samples, dtype=np.float32).reshape(-1)]):
        pass
    return detector


# ---------------------------------------------------------------------------------------------
# speech regions


def speech_regions(
    probabilities: Sequence[float] | np.ndarray,
    *,
    threshold: float = THRESHOLD,
    neg_threshold: float | None = None,
    min_speech: float = 0.25,
    min_silence: float = 0.1,
    pad: float = 0.03,
    duration: float | None = None,
) -> list[tuple[float, float]]:
    """Seconds (start, end) of each speech region, in order, non-overlapping, within
    [0, duration] (default: the chunks scored).

    silero-vad's `get_speech_timestamps` rules, without its maximum length (`merge_regions`
    cuts long regions), so that regions are what its users expect. Speech starts at a chunk at
    or above `threshold`. With hysteresis against flicker, silence starts only at a chunk below
    `neg_threshold` (default `threshold` - 0.15), and ends the region where it started once a
    chunk `min_silence` seconds later is still below it with none at or above `threshold`
    between, so that pauses between words do not cut a sentence; speech still going at the end
    runs to `duration`. Regions no longer than `min_speech` are dropped as clicks. Each region
    then grows by `pad` on both sides so that soft word edges are kept, except that neighbours
    closer than 2 * `pad` share the gap between them instead of overlapping.
    """
    if neg_threshold is None:
        neg_threshold = max(threshold - 0.15, 0.01)
    if neg_threshold > threshold:
        raise ValueError(f"neg_threshold {neg_threshold} is above threshold {threshold}")
    values = np.asarray(probabilities, dtype=np.float64).reshape(-1).tolist()
    length = len(values) * CHUNK if duration is None else round(duration * SAMPLE_RATE)
    min_speech_samples = min_speech * SAMPLE_RATE
    min_silence_samples = min_silence * SAMPLE_RATE
    pad_samples = round(pad * SAMPLE_RATE)

    spans: list[list[int]] = []  # [start, end) in samples
    start: int | None = None  # of the region in progress
    silent_since: int | None = None  # where the silence that may end it began
    for i, p in enumerate(values):
        here = i * CHUNK
        if p >= threshold:
            silent_since = None
            if start is None:
                start = here
        elif start is not None and p < neg_threshold:
            if silent_since is None:
                silent_since = here
            if here - silent_since >= min_silence_samples:
                if silent_since - start > min_speech_samples:
                    spans.append([start, silent_since])
                start = silent_since = None
    if start is not None and length - start > min_speech_samples:
        spans.append([start, length])  # speech runs to the end, as in silero-vad

    for i, span in enumerate(spans):
        if i == 0:
            span[0] = max(0, span[0] - pad_samples)
        if i + 1 < len(spans):
            following = spans[i + 1]
            gap = following[0] - span[1]
            share = gap // 2 if gap < 2 * pad_samples else pad_samples
            span[1] += share
            following[0] -= share
        else:
            span[1] += pad_samples
    limit = length / SAMPLE_RATE if duration is None else duration
    regions = [(max(0, s) / SAMPLE_RATE, min(limit, e / SAMPLE_RATE)) for s, e in spans]
    return [(start, end) for start, end in regions if start < end]


def merge_regions(
    regions: Sequence[tuple[float, float]], max_duration: float = CHUNK_LENGTH
) -> list[tuple[float, float]]:
    """Join neighbouring regions into chunks no longer than max_duration (a region longer than
    that is cut into pieces of at most max_duration); chunks in order, non-overlapping.

    Greedy, as faster-whisper's `merge_segments` and whisperX's `merge_chunks`: a chunk runs
    from the start of its first region to the end of its last, the silence between them
    included, and the next region opens a new chunk when it would not fit. A region longer than
    `max_duration` is cut into equal pieces, the fewest that fit, rather than full pieces and a
    short remainder that would hold a word or two without context. Regions must be in order
    and not overlap, as `speech_regions` gives them.
    """
    if max_duration <= 0:
        raise ValueError(f"max_duration must be positive, not {max_duration}")
    chunks: list[tuple[float, float]] = []
    for start, end in regions:
        n_pieces = max(1, math.ceil((end - start) / max_duration))
        step = (end - start) / n_pieces
        bounds = [start + k * step for k in range(n_pieces)] + [end]
        for first, last in pairwise(bounds):
            if chunks and last - chunks[-1][0] <= max_duration:
                chunks[-1] = (chunks[-1][0], last)
            else:
                chunks.append((first, last))
    return chunks
