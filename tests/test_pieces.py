"""A packed window's segments back to their files: each to the one span that holds it (or
its neighbours unsafe), on its file's clock, within its chunk."""

from __future__ import annotations

import pytest

from whisper_cli.whisper.pieces import assign_to_pieces, clamped, moved
from whisper_cli.whisper.timing import PendingSegment, TimedWord


def _segment(start: float, end: float, words: list[tuple[float, float]] = ()) -> PendingSegment:
    timed = [TimedWord(" w", a, b, 0.9, [1]) for a, b in words]
    return PendingSegment(0, start, end, [1, 2], timed)


def test_each_segment_goes_to_the_span_that_holds_it():
    spans = [(0.0, 4.0), (5.0, 9.0), (10.0, 12.0)]
    # Whisper ends a segment where the next speech begins: 5.2 is the second file's padding
    segments = [_segment(0.0, 2.0), _segment(2.0, 5.2), _segment(4.8, 9.2), _segment(10, 12)]
    by_span = assign_to_pieces(segments, spans)
    assert by_span == [segments[:2], [segments[2]], [segments[3]]]


@pytest.mark.parametrize(
    "segment",
    [
        _segment(3.0, 6.0),  # straddles the first two files
        _segment(3.5, 5.8),  # from the first file well into the second
        _segment(0.0, 3.0, words=[(0.5, 1.0), (2.0, 6.0)]),  # a word runs into the next file
        _segment(4.2, 4.8),  # in the silence between the two: either's
    ],
)
def test_a_segment_no_single_file_holds_makes_both_files_unsafe(segment):
    spans = [(0.0, 4.0), (5.0, 9.0), (10.0, 12.0)]
    last = _segment(10.0, 12.0)
    assert assign_to_pieces([_segment(0.0, 1.0), segment, last], spans) == [None, None, [last]]


def test_a_segment_belongs_to_the_one_span_it_overlaps_whatever_its_rounded_times():
    # timestamps in whole seconds: the second file's segment starts in the gap before it
    spans = [(0.0, 3.6), (5.6, 7.1), (9.1, 10.7), (12.7, 20.4)]
    segments = [_segment(0.0, 4.0), _segment(5.0, 8.0), _segment(9.0, 12.0), _segment(13, 20)]
    assert assign_to_pieces(segments, spans) == [[segment] for segment in segments]
    short = _segment(2.0, 2.3)  # shorter than the padding, inside the first span
    assert assign_to_pieces([short], spans)[0] == [short]


def test_segments_move_to_their_files_clock_and_stay_in_their_chunk():
    segment = _segment(5.2, 7.0, words=[(5.2, 6.0), (6.1, 7.0)])
    here = moved(
        segment, shift=2.0 - 5.0, seek=200
    )  # a piece at 5 s in the window, 2 s in the file
    assert (here.seek, here.start, here.end) == (200, pytest.approx(2.2), pytest.approx(4.0))
    assert [(w.start, w.end) for w in here.words] == [
        (pytest.approx(2.2), pytest.approx(3.0)),
        (pytest.approx(3.1), pytest.approx(4.0)),
    ]
    assert moved(_segment(4.6, 5.5), shift=-5.0, seek=0).start == 0.0  # not before the file
    cut = clamped(here, 3.5)
    assert cut.end == 3.5 and cut.words[-1].end == 3.5 and cut.words[0].end == pytest.approx(3.0)
