"""A packed window's segments handed back to its files: which file's span holds each segment
(or that none can be sure of it), and each segment moved to that file's clock."""

from __future__ import annotations

from whisper_cli.whisper.batched import SPEECH_PAD
from whisper_cli.whisper.timing import PendingSegment, TimedWord


def assign_to_pieces(
    segments: list[PendingSegment], spans: list[tuple[float, float]]
) -> list[list[PendingSegment] | None]:
    """The segments of each span (a piece's start and end in the window, seconds), or None
    for a piece whose words may have gone to a segment of another.

    A segment belongs to the one span it overlaps, and so must each of its words. Spans are
    voice activity detection's speech with `SPEECH_PAD` on each side, which holds no word, so
    an overlap of less than that does not count (Whisper ends a segment where the next speech
    begins): a segment or word that overlaps two spans holds two files' words, or may; one
    that overlaps none lies in the silence between two files, and may belong to either. Either
    way the pieces on both sides are unsafe, and only they."""
    by_span: list[list[PendingSegment] | None] = [[] for _ in spans]
    unsafe: set[int] = set()
    for segment in segments:
        held = _spans_held(segment.start, segment.end, spans)
        for word in segment.words:
            held |= _spans_held(word.start, word.end, spans)
        if len(held) == 1:
            (index,) = held
            owned = by_span[index]
            assert owned is not None
            owned.append(segment)
        else:
            unsafe |= held or _around(segment.start, segment.end, spans)
    for index in unsafe:
        by_span[index] = None
    return by_span


def _spans_held(start: float, end: float, spans: list[tuple[float, float]]) -> set[int]:
    """The spans that [start, end] overlaps by more than `SPEECH_PAD` (or by more than half
    its length, for a short one); an instant, the spans that contain it."""
    if end <= start:
        return {index for index, (a, b) in enumerate(spans) if a <= start <= b}
    least = min(SPEECH_PAD, (end - start) / 2)
    return {index for index, (a, b) in enumerate(spans) if min(end, b) - max(start, a) > least}


def _around(start: float, end: float, spans: list[tuple[float, float]]) -> set[int]:
    """The spans just before and just after [start, end], which lies between them."""
    before = [index for index, (a, _) in enumerate(spans) if a <= start]
    after = [index for index, (_, b) in enumerate(spans) if b >= end]
    return set(before[-1:] + after[:1]) or set(range(len(spans)))


def moved(segment: PendingSegment, shift: float, seek: int) -> PendingSegment:
    """A packed window's segment on its own file's clock (`shift` seconds later), never
    before the file's start."""

    def at(time: float) -> float:
        return max(0.0, time + shift)

    words = [
        TimedWord(w.word, at(w.start), at(w.end), w.probability, w.tokens) for w in segment.words
    ]
    return PendingSegment(seek, at(segment.start), at(segment.end), segment.tokens, words)


def clamped(segment: PendingSegment, end: float) -> PendingSegment:
    """The segment with no time after `end` (the end of its chunk)."""
    words = [
        TimedWord(w.word, min(w.start, end), min(w.end, end), w.probability, w.tokens)
        for w in segment.words
    ]
    start, stop = min(segment.start, end), min(segment.end, end)
    return PendingSegment(segment.seek, start, stop, segment.tokens, words)
