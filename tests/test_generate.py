"""Greedy and beam search over the decode seam, on a toy decoder whose next-token
distribution depends only on the last token, so the best sequence can be worked out by hand."""

from __future__ import annotations

import math

import torch

from whisper_cli.speech2text.generate import beam_search, greedy

START, EOS, A, B, C = 0, 1, 2, 3, 4


class Markov:
    """decode() of a model whose logits are log P(next | last token), with a cache that holds
    the tokens seen (batch first, like a real key/value cache)."""

    def __init__(self, table: dict[int, dict[int, float]], vocab: int = 5):
        self.logits = torch.full((vocab, vocab), -1e4)
        for last, nexts in table.items():
            for token, p in nexts.items():
                self.logits[last, token] = math.log(p)
        self.calls = 0

    def decode(self, tokens, encoder_out, cache):
        self.calls += 1
        seen = tokens if cache is None else torch.cat([cache[0][0], tokens], dim=1)
        logits = self.logits[tokens]  # (batch, n_new, vocab)
        return logits, [(seen,)]


# greedy takes A (0.6) and then C (0.6): P(A, C) = 0.36, below P(B) = 0.4
TRAP = {
    START: {A: 0.6, B: 0.4},
    A: {C: 0.6, EOS: 0.4},
    C: {EOS: 1.0},
    B: {EOS: 1.0},
}
FEATURES = torch.zeros(1, 3, 2)


def test_greedy_takes_the_most_likely_token_each_step():
    result = greedy(Markov(TRAP), FEATURES, [START], EOS, max_length=10)
    assert result.tokens == (A, C)
    assert math.isclose(result.sum_logprob, math.log(0.6 * 0.6), rel_tol=1e-5)
    assert math.isclose(result.avg_logprob, result.sum_logprob / 3, rel_tol=1e-6)


def test_greedy_stops_at_max_length_counting_the_start_tokens():
    loop = {START: {A: 1.0}, A: {A: 1.0}}
    assert greedy(Markov(loop), FEATURES, [START], EOS, max_length=4).tokens == (A, A, A)
    assert greedy(Markov(loop), FEATURES, [START, A], EOS, max_length=4).tokens == (A, A)


def test_beam_search_finds_what_greedy_misses():
    """Without a length penalty, the most probable sequence wins: (B,)."""
    result = beam_search(Markov(TRAP), FEATURES, [START], EOS, 10, beam_size=2, length_penalty=0)
    assert result.tokens == (B,)
    assert math.isclose(result.sum_logprob, math.log(0.4), rel_tol=1e-5)


def test_length_penalty_divides_by_the_length_with_the_end_token():
    """log 0.36 / 3 (A, C, end) beats log 0.4 / 2 (B, end)."""
    result = beam_search(Markov(TRAP), FEATURES, [START], EOS, 10, beam_size=2, length_penalty=1)
    assert result.tokens == (A, C)


def test_a_beam_of_one_is_greedy_when_no_early_ending_competes():
    chain = {START: {A: 0.7, B: 0.3}, A: {C: 0.9, EOS: 0.1}, C: {EOS: 0.8, B: 0.2}, B: {EOS: 1}}
    beam = beam_search(Markov(chain), FEATURES, [START], EOS, max_length=10, beam_size=1)
    assert beam.tokens == greedy(Markov(chain), FEATURES, [START], EOS, max_length=10).tokens
