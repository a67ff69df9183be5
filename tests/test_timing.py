"""Word timing pieces against plain, independent implementations."""

import numpy as np
import pytest
import torch

from whisper_cli.whisper.timing import (
    PendingSegment,
    TimedWord,
    WordTiming,
    dtw,
    is_anomaly,
    median_filter,
    merge_punctuations,
    split_at_pauses,
)


def _dtw_oracle(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The textbook cell-by-cell recurrence, with the reference's tie rule."""
    n, m = cost.shape
    total = np.full((n + 1, m + 1), np.inf, dtype=np.float32)
    trace = -np.ones((n + 1, m + 1))
    total[0, 0] = 0
    for j in range(1, m + 1):
        for i in range(1, n + 1):
            c0, c1, c2 = total[i - 1, j - 1], total[i - 1, j], total[i, j - 1]
            if c0 < c1 and c0 < c2:
                c, t = c0, 0
            elif c1 < c0 and c1 < c2:
                c, t = c1, 1
            else:
                c, t = c2, 2
            total[i, j] = cost[i - 1, j - 1] + c
            trace[i, j] = t
    trace[0, :], trace[:, 0] = 2, 1
    i, j, path = n, m, []
    while i > 0 or j > 0:
        path.append((i - 1, j - 1))
        t = trace[i, j]
        i, j = (i - 1, j - 1) if t == 0 else (i - 1, j) if t == 1 else (i, j - 1)
    path = np.array(path[::-1]).T
    return path[0], path[1]


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (5, 1), (4, 9), (12, 40), (30, 25)])
def test_dtw_equals_the_cell_by_cell_recurrence(shape):
    rng = np.random.default_rng(sum(shape))
    cost = rng.normal(size=shape).astype(np.float32)
    rows, cols = dtw(cost)
    expected_rows, expected_cols = _dtw_oracle(cost)
    np.testing.assert_array_equal(rows, expected_rows)
    np.testing.assert_array_equal(cols, expected_cols)


def test_dtw_ties_advance_in_time():
    rows, cols = dtw(np.zeros((2, 4), dtype=np.float32))
    _, expected_cols = _dtw_oracle(np.zeros((2, 4), dtype=np.float32))
    np.testing.assert_array_equal(cols, expected_cols)
    assert rows[0] == 0 and cols[-1] == 3


def test_median_filter_equals_a_plain_sliding_median():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 4, 20)).astype(np.float32)
    ours = median_filter(torch.from_numpy(x), 7).numpy()
    padded = np.pad(x, [(0, 0), (0, 0), (3, 3)], mode="reflect")
    expected = np.stack([np.median(padded[..., i : i + 7], axis=-1) for i in range(20)], -1)
    np.testing.assert_allclose(ours, expected)


def _timings(*words):
    return [WordTiming(w, [i], i * 1.0, i + 0.5, 0.9) for i, w in enumerate(words)]


def test_punctuation_joins_its_neighbours():
    alignment = _timings(" “", "Hello", ",", " world", ".", "”")
    merge_punctuations(alignment, "\"'“¿([{-", "\"'.。,，!！?？:：”)]}、")
    kept = [(a.word, a.tokens) for a in alignment if a.word]
    assert kept == [(" “Hello,", [0, 1, 2]), (" world.”", [3, 4, 5])]
    assert len(alignment) == 6  # emptied entries keep their places


def test_anomalous_words_flag_a_segment():
    def segment(*words):
        return PendingSegment(0, 0.0, 1.0, [], [TimedWord(*w) for w in words])

    assert is_anomaly(segment((" hmm", 0.0, 0.05, 0.05)))  # improbable and very short
    assert not is_anomaly(segment((" hello", 0.0, 0.4, 0.9), (" there", 0.4, 0.8, 0.95)))
    assert not is_anomaly(None)


def test_segments_split_where_words_pause():
    words = [
        TimedWord(" one", 0.0, 0.4, 0.9, [11]),
        TimedWord(" two,", 0.5, 0.9, 0.9, [12, 13]),
        TimedWord(" three", 1.6, 2.0, 0.9, [14]),  # after a 0.7-s pause
        TimedWord(" four", 2.1, 2.5, 0.9, [15]),
    ]
    segment = PendingSegment(0, 0.0, 2.6, [100, 11, 12, 13, 14, 15, 130], words)
    first, second = split_at_pauses(segment, 0.5, eot=50)
    assert (first.start, first.end, first.tokens) == (0.0, 0.9, [100, 11, 12, 13])
    assert (second.start, second.end, second.tokens) == (1.6, 2.6, [14, 15, 130])
    assert [w.word for w in second.words] == [" three", " four"]
    assert split_at_pauses(segment, 1.0, eot=50) == [segment]


def test_segments_whose_words_do_not_cover_the_tokens_stay_whole():
    words = [TimedWord(" a", 0.0, 0.2, 0.9, [11]), TimedWord(" b", 2.0, 2.2, 0.9, [])]
    segment = PendingSegment(0, 0.0, 2.2, [100, 11, 12, 130], words)
    assert split_at_pauses(segment, 0.5, eot=50) == [segment]
