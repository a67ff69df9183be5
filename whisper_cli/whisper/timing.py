"""Word-level timestamps from the decoder's cross-attention.

The alignment heads of the decoder attend to the audio frames a token is heard in. Their
attention over a window's text is normalised, median-filtered along time, averaged, and aligned
to the frames by dynamic time warping; a word starts where its first token's path enters a new
frame. Then the reference's corrections: words at sentence ends and after pauses are kept to
plausible lengths, punctuation joins its neighbouring word, and segment edges follow the words.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from whisper_cli.constants import TOKENS_PER_SECOND
from whisper_cli.options import APPEND_PUNCTUATIONS, PREPEND_PUNCTUATIONS
from whisper_cli.whisper.model import Whisper
from whisper_cli.whisper.tokenizer import Tokenizer

_SENTENCE_ENDS = ".。!！?？"
MEDIAN_FILTER_WIDTH = 7
MAX_MEDIAN_WORD_DURATION = 0.7  # seconds


@dataclass
class WordTiming:
    word: str
    tokens: list[int]
    start: float  # seconds into the window
    end: float
    probability: float


@dataclass
class TimedWord:
    word: str
    start: float  # seconds into the audio
    end: float
    probability: float
    tokens: list[int] = field(default_factory=list)


@dataclass
class PendingSegment:
    """A segment while its window is being processed: times may still move."""

    seek: int
    start: float
    end: float
    tokens: list[int]
    words: list[TimedWord] = field(default_factory=list)


def median_filter(x: torch.Tensor, width: int) -> torch.Tensor:
    """Median over a sliding window along the last axis, edges reflected: same shape as x."""
    pad = width // 2
    if x.shape[-1] <= pad:  # too short to reflect: nothing to smooth
        return x
    padded = F.pad(x[None], (pad, pad, 0, 0), mode="reflect")[0]
    return padded.unfold(-1, width, 1).sort(dim=-1).values[..., pad]


def dtw(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The cheapest monotone path through cost: (N, M) → (row indices, column indices).

    Each cell extends the diagonal, upper or left neighbour: the diagonal or the upper one only
    when strictly cheapest, so ties advance along the columns (time). The cumulative costs are
    computed one anti-diagonal at a time, since a cell needs only the two diagonals before it.
    """
    n, m = cost.shape
    total = np.full((n + 1, m + 1), np.inf, dtype=np.float32)
    trace = np.full((n + 1, m + 1), -1, dtype=np.int8)
    total[0, 0] = 0
    cost = cost.astype(np.float32)
    for k in range(2, n + m + 1):  # anti-diagonal i + j = k
        i = np.arange(max(1, k - m), min(n, k - 1) + 1)
        j = k - i
        diagonal, up, left = total[i - 1, j - 1], total[i - 1, j], total[i, j - 1]
        step = np.where(
            (diagonal < up) & (diagonal < left), 0, np.where((up < diagonal) & (up < left), 1, 2)
        )
        best = np.choose(step, [diagonal, up, left])
        total[i, j] = cost[i - 1, j - 1] + best
        trace[i, j] = step
    trace[0, :] = 2
    trace[:, 0] = 1

    path = []
    i, j = n, m
    while i > 0 or j > 0:
        path.append((i - 1, j - 1))
        move = trace[i, j]
        if move == 0:
            i, j = i - 1, j - 1
        elif move == 1:
            i -= 1
        else:
            j -= 1
    indices = np.array(path[::-1]).T
    return indices[0], indices[1]


def find_alignment(
    model: Whisper,
    tokenizer: Tokenizer,
    sot_sequence: Sequence[int],
    text_tokens: list[int],
    audio_features: torch.Tensor,
    num_frames: int,
    language: str | None = None,
) -> list[WordTiming]:
    """Time every word of `text_tokens` within one window.

    audio_features: (1, S, C) of the window; num_frames: mel frames of real audio in it;
    language: how to split words (per character for languages written without spaces).
    """
    if not text_tokens:
        return []
    sequence = [*sot_sequence, tokenizer.no_timestamps, *text_tokens, tokenizer.eot]
    tokens = torch.tensor([sequence], device=audio_features.device)
    scores: list[torch.Tensor] = []
    with torch.inference_mode():
        cache = model.decoder.new_cache(audio_features, 1)
        hidden = model.decoder(tokens, cache, scores)  # every layer's (1, H, T, S)
        logits = model.decoder.logits(hidden[0, len(sot_sequence) :, : tokenizer.eot])
    token_probs = logits[:, : tokenizer.eot].softmax(dim=-1)
    text_probs = token_probs[torch.arange(len(text_tokens)), text_tokens].tolist()

    weights = torch.stack([scores[layer][0, head] for layer, head in model.alignment_heads])
    weights = weights[:, :, : num_frames // 2].float().softmax(dim=-1)  # (heads, T, frames)
    std, mean = torch.std_mean(weights, dim=-2, keepdim=True, unbiased=False)
    weights = median_filter((weights - mean) / std, MEDIAN_FILTER_WIDTH)
    matrix = weights.mean(dim=0)[len(sot_sequence) : -1]  # rows: <|notimestamps|> + text
    text_indices, time_indices = dtw(-matrix.cpu().numpy())

    words, word_tokens = tokenizer.split_to_word_tokens([*text_tokens, tokenizer.eot], language)
    if len(word_tokens) <= 1:
        return []
    boundaries = np.pad(np.cumsum([len(t) for t in word_tokens[:-1]]), (1, 0))
    jumps = np.pad(np.diff(text_indices), (1, 0), constant_values=1).astype(bool)
    jump_times = time_indices[jumps] / TOKENS_PER_SECOND
    return [
        WordTiming(
            word,
            list(tokens_),
            float(jump_times[start]),
            float(jump_times[end]),
            float(np.mean(text_probs[start:end])),
        )
        for word, tokens_, start, end in zip(
            words, word_tokens, boundaries[:-1], boundaries[1:], strict=False
        )
    ]


def merge_punctuations(alignment: list[WordTiming], prepended: str, appended: str) -> None:
    """Join opening punctuation to the word after it and closing punctuation to the word
    before it; the emptied entries keep their place with no text and no tokens."""
    following = len(alignment) - 1
    for i in range(len(alignment) - 2, -1, -1):
        previous, after = alignment[i], alignment[following]
        if previous.word.startswith(" ") and previous.word.strip() in prepended:
            after.word = previous.word + after.word
            after.tokens = previous.tokens + after.tokens
            previous.word, previous.tokens = "", []
        else:
            following = i
    kept = 0
    for j in range(1, len(alignment)):
        previous, after = alignment[kept], alignment[j]
        if not previous.word.endswith(" ") and after.word in appended:
            previous.word += after.word
            previous.tokens = previous.tokens + after.tokens
            after.word, after.tokens = "", []
        else:
            kept = j


def add_word_timestamps(
    segments: list[PendingSegment],
    model: Whisper,
    tokenizer: Tokenizer,
    sot_sequence: Sequence[int],
    audio_features: torch.Tensor,
    num_frames: int,
    time_offset: float,
    last_speech_timestamp: float,
    prepend_punctuations: str = PREPEND_PUNCTUATIONS,
    append_punctuations: str = APPEND_PUNCTUATIONS,
    language: str | None = None,
) -> None:
    """Fill in `words` of one window's segments and let segment edges follow them."""
    if not segments:
        return
    per_segment = [[t for t in s.tokens if t < tokenizer.eot] for s in segments]
    text_tokens = [t for tokens in per_segment for t in tokens]
    alignment = find_alignment(
        model, tokenizer, sot_sequence, text_tokens, audio_features, num_frames, language
    )

    durations = np.array([w.end - w.start for w in alignment])
    durations = durations[durations.nonzero()]
    median = min(MAX_MEDIAN_WORD_DURATION, float(np.median(durations)) if len(durations) else 0.0)
    longest = median * 2

    # a word at a sentence boundary may not swallow the pause next to it
    if len(durations):
        for i in range(1, len(alignment)):
            word, previous = alignment[i], alignment[i - 1]
            if word.end - word.start > longest:
                if word.word in _SENTENCE_ENDS:
                    word.end = word.start + longest
                elif previous.word in _SENTENCE_ENDS:
                    word.start = word.end - longest

    merge_punctuations(alignment, prepend_punctuations, append_punctuations)

    index = 0
    for segment, tokens in zip(segments, per_segment, strict=True):
        consumed = 0
        words: list[TimedWord] = []
        while index < len(alignment) and consumed < len(tokens):
            timing = alignment[index]
            if timing.word:
                words.append(
                    TimedWord(
                        timing.word,
                        round(time_offset + timing.start, 2),
                        round(time_offset + timing.end, 2),
                        timing.probability,
                        timing.tokens,
                    )
                )
            consumed += len(timing.tokens)
            index += 1
        if words:
            last_speech_timestamp = _fit_segment(segment, words, median, last_speech_timestamp)
        segment.words = words


def _fit_segment(
    segment: PendingSegment, words: list[TimedWord], median: float, last_speech: float
) -> float:
    """Clip words that swallow a pause, and move the segment's edges to its words."""
    longest = median * 2
    first = words[0]
    after_pause = first.end - last_speech > median * 4
    too_long = first.end - first.start > longest or (
        len(words) > 1 and words[1].end - first.start > longest * 2
    )
    if after_pause and too_long:
        if len(words) > 1 and words[1].end - words[1].start > longest:
            boundary = max(words[1].end / 2, words[1].end - longest)
            first.end = words[1].start = boundary
        first.start = max(0, first.end - longest)

    if segment.start < first.end and segment.start - 0.5 > first.start:
        first.start = max(0, min(first.end - median, segment.start))
    else:
        segment.start = first.start
    last = words[-1]
    if segment.end > last.start and segment.end + 0.5 < last.end:
        last.end = max(last.start + median, segment.end)
    else:
        segment.end = last.end
    return segment.end


def split_at_pauses(segment: PendingSegment, pause: float, eot: int) -> list[PendingSegment]:
    """Cut a segment wherever its words are at least `pause` seconds apart, so that one
    segment (one subtitle) never spans a silence; tokens are cut at the same word."""
    words = segment.words
    text_positions = [i for i, t in enumerate(segment.tokens) if t < eot]
    if len(words) < 2 or sum(len(w.tokens) for w in words) != len(text_positions):
        return [segment]
    pieces: list[PendingSegment] = []
    first_word, token_start, text_seen = 0, 0, 0
    for k in range(len(words) - 1):
        text_seen += len(words[k].tokens)
        if words[k + 1].start - words[k].end < pause:
            continue
        token_end = text_positions[text_seen - 1] + 1
        start = segment.start if not pieces else words[first_word].start
        piece_words = words[first_word : k + 1]
        piece = PendingSegment(
            segment.seek, start, words[k].end, segment.tokens[token_start:token_end], piece_words
        )
        pieces.append(piece)
        first_word, token_start = k + 1, token_end
    if not pieces:
        return [segment]
    rest = PendingSegment(
        segment.seek,
        words[first_word].start,
        segment.end,
        segment.tokens[token_start:],
        words[first_word:],
    )
    return [*pieces, rest]


# ---------------------------------------------------------------------------------------------
# hallucination detection (used with hallucination_silence_threshold)

_PUNCTUATION = PREPEND_PUNCTUATIONS + APPEND_PUNCTUATIONS


def _word_anomaly(word: TimedWord) -> float:
    duration = word.end - word.start
    score = 0.0
    if word.probability < 0.15:
        score += 1.0
    if duration < 0.133:
        score += (0.133 - duration) * 15
    if duration > 2.0:
        score += duration - 2.0
    return score


def is_anomaly(segment: PendingSegment | None) -> bool:
    """Whether a segment's first words look hallucinated: improbable, too short or too long."""
    if segment is None or not segment.words:
        return False
    words = [w for w in segment.words if w.word not in _PUNCTUATION][:8]
    score = sum(_word_anomaly(w) for w in words)
    return score >= 3 or score + 0.01 >= len(words)
