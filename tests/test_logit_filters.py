"""The logit rules as units, on a fake vocabulary: the timestamp grammar, no blank first token,
no end before a window's reach, each row on its own."""

import torch

from whisper_cli.whisper.logit_filters import ApplyTimestampRules, FinishTheWindow, SuppressBlank

NEG = float("-inf")


class FakeTokenizer:
    """Just the ids the rules use: 10 text tokens, end of text 10, timestamps from 12."""

    eot = 10
    no_timestamps = 11
    timestamp_begin = 12

    def encode(self, text):
        return [3] if text == " " else [4, 5]


def _rules(max_initial=2, sample_begin=2):
    return ApplyTimestampRules(FakeTokenizer(), sample_begin, max_initial)


def _apply(rule, sampled, vocab=20, eot_logit=0.0):
    tokens = torch.tensor([[0, 1, *sampled]])
    logits = torch.zeros(1, vocab)
    logits[0, FakeTokenizer.eot] = eot_logit
    rule.apply(logits, tokens)
    return logits[0]


def test_first_token_is_an_early_timestamp():
    logits = _apply(_rules(max_initial=2), [])
    allowed = (logits > NEG).nonzero().flatten().tolist()
    assert allowed == [12, 13, 14]  # <|0.00|> … the max initial timestamp


def test_after_an_opening_timestamp_comes_text():
    logits = _apply(_rules(), [12])
    assert (logits[12:] == NEG).all()
    assert (logits[:10] > NEG).all()


def test_after_text_ending_with_a_timestamp_comes_a_timestamp_or_the_end():
    logits = _apply(_rules(), [12, 4, 15], eot_logit=5.0)  # text more likely than timestamps
    assert (logits[:10] == NEG).all()
    assert logits[10] > NEG  # end of text
    # closing pair: the next start may equal the previous end, not go below it
    assert (logits[12:15] == NEG).all() and (logits[15:] > NEG).all()


def test_timestamps_never_decrease_and_segments_have_length():
    logits = _apply(_rules(), [12, 4, 15, 15, 4, 5])
    assert (logits[12:16] == NEG).all()  # strictly after the last timestamp
    assert (logits[16:] > NEG).all()


def test_timestamp_forced_when_timestamps_together_beat_every_text_token():
    rule = _rules()
    tokens = torch.tensor([[0, 1, 12, 4]])
    logits = torch.zeros(1, 20)
    logits[0, 12:] = 1.0  # each timestamp alone is as likely as text, together far more
    rule.apply(logits, tokens)
    assert (logits[0, :12] == NEG).all()


def test_rules_are_per_row_in_a_batch():
    rule = _rules()
    tokens = torch.tensor([[0, 1, 12, 4, 15], [0, 1, 12, 4, 4]])
    logits = torch.zeros(2, 20)
    logits[:, :11] = 5.0  # text more likely than timestamps: no forced timestamp
    rule.apply(logits, tokens)
    assert (logits[0, :10] == NEG).all()  # must close with a timestamp
    assert (logits[1, :10] > NEG).any()  # may go on with text


def test_suppress_blank_only_at_the_first_sampled_token():
    rule = SuppressBlank(FakeTokenizer(), sample_begin=2)
    first = torch.zeros(1, 20)
    rule.apply(first, torch.tensor([[0, 1]]))
    assert first[0, 3] == NEG and first[0, 10] == NEG
    later = torch.zeros(1, 20)
    rule.apply(later, torch.tensor([[0, 1, 4]]))
    assert (later > NEG).all()


def _finish(reach):
    return FinishTheWindow(2, FakeTokenizer.eot, FakeTokenizer.timestamp_begin, reach)


def test_no_end_after_a_pair_of_timestamps_before_the_reach():
    rule = _finish(torch.tensor([20, 20, 20, 20]))  # reach: <|0.16|>, timestamp 8
    tokens = torch.tensor(
        [
            [0, 1, 12, 4, 15, 15],  # a pair at 3, before the reach: the text must go on
            [0, 1, 12, 4, 15, 16],  # the same with the next segment opening a little later
            [0, 1, 12, 4, 15, 4],  # inside a segment: free
            [0, 1, 12, 4, 4, 15],  # a segment just closed (the end may follow): free
        ]
    )
    logits = torch.zeros(4, 30)
    rule.apply(logits, tokens)
    assert logits[:, 10].tolist() == [NEG, NEG, 0.0, 0.0]
    assert (logits[:, :10] == 0).all() and (logits[:, 11:] == 0).all()  # nothing else


def test_the_end_is_free_once_the_pair_reaches_the_reach():
    rule = _finish(torch.tensor([17, 16, 17]))
    tokens = torch.tensor([[0, 1, 12, 4, 15, 17], [0, 1, 12, 4, 15, 16], [0, 1, 12, 4, 15, 16]])
    logits = torch.zeros(3, 30)
    rule.apply(logits, tokens)
    assert logits[:, 10].tolist() == [0.0, 0.0, NEG]


def test_nothing_is_ruled_before_two_tokens_are_sampled():
    rule = _finish(torch.tensor([29]))
    for sampled in ([], [12]):
        logits = torch.zeros(1, 30)
        rule.apply(logits, torch.tensor([[0, 1, *sampled]]))
        assert (logits == 0).all()


def test_the_reach_follows_the_rows_that_stay():
    rule = _finish(torch.tensor([29, 29, 12, 12]))  # two audios of two rows each
    rule.keep(torch.tensor([2, 3]))  # the first audio left the batch
    logits = torch.zeros(2, 30)
    rule.apply(logits, torch.tensor([[0, 1, 12, 4, 15, 15]] * 2))
    assert (logits[:, 10] == 0).all()  # the second audio's reach, 12, is behind it
