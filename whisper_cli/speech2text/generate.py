"""Token generation for the Speech2Text family: greedy search and beam search.

The models (`s2t.Speech2Text`, `s2t2.Speech2Text2`) expose one decoding seam,
`decode(tokens, encoder_out, cache) -> (logits, cache)`: the new tokens go in, their logits come
out, and the cache is a list of per-layer tuples of tensors whose first dimension is the batch.
That is all generation needs: beams are batch rows, and reordering them is an `index_select` on
every cached tensor.

Both follow transformers' `generate` for these checkpoints step for step, so that the same
weights give the same tokens: greedy search (`num_beams=1`) starts from the decoder start token
and any forced tokens (the target language), takes the most likely token until the end token
or `max_length` tokens in all; beam search is described at `beam_search`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch

Cache = list[tuple[torch.Tensor, ...]]


class SpeechSeq2Seq(Protocol):
    def decode(
        self, tokens: torch.Tensor, encoder_out: torch.Tensor, cache: Cache | None
    ) -> tuple[torch.Tensor, Cache]: ...


@dataclass(frozen=True)
class Generated:
    tokens: tuple[int, ...]  # without the start tokens and the end token
    sum_logprob: float
    avg_logprob: float  # per generated token, the end token included


def _reorder(cache: Cache, rows: torch.Tensor) -> Cache:
    return [tuple(t.index_select(0, rows) for t in layer) for layer in cache]


@torch.inference_mode()
def greedy(
    model: SpeechSeq2Seq,
    encoder_out: torch.Tensor,
    start: Sequence[int],
    eos: int,
    max_length: int,
) -> Generated:
    """The most likely token each step, from `start` until `eos` or `max_length` tokens in all.

    `encoder_out` is (1, source_len, d_model); `start` the decoder start token and any forced
    tokens (the target language).
    """
    tokens = torch.tensor([list(start)], device=encoder_out.device)  # (1, n_start)
    generated: list[int] = []
    sum_logprob = 0.0
    cache = None
    while len(start) + len(generated) < max_length:
        logits, cache = model.decode(tokens, encoder_out, cache)
        logprobs = logits[0, -1].float().log_softmax(dim=-1)  # (vocab,)
        token = int(logprobs.argmax())
        sum_logprob += float(logprobs[token])
        if token == eos:
            return Generated(tuple(generated), sum_logprob, sum_logprob / (len(generated) + 1))
        generated.append(token)
        tokens = tokens.new_tensor([[token]])
    return Generated(tuple(generated), sum_logprob, sum_logprob / max(len(generated), 1))


class _Finished:
    """The best `size` ended hypotheses so far, and the score a newcomer must beat."""

    def __init__(self, size: int):
        self.size = size
        self.entries: list[tuple[float, tuple[int, ...], float]] = []  # score, tokens, log-prob
        self.worst = float("inf")

    def add(self, score: float, tokens: tuple[int, ...], sum_logprob: float) -> None:
        if len(self.entries) < self.size or score > self.worst:
            self.entries.append((score, tokens, sum_logprob))
            self.entries.sort(key=lambda entry: entry[0], reverse=True)
            del self.entries[self.size :]
            self.worst = (
                self.entries[-1][0] if len(self.entries) == self.size else min(self.worst, score)
            )


@torch.inference_mode()
def beam_search(
    model: SpeechSeq2Seq,
    encoder_out: torch.Tensor,
    start: Sequence[int],
    eos: int,
    max_length: int,
    beam_size: int,
    length_penalty: float = 1.0,
) -> Generated:
    """transformers' beam search (`num_beams`, `early_stopping=False`), step for step.

    Each step takes the best 2 × beam_size continuations of all beams; an ending among the
    first beam_size of them is a finished hypothesis, scored by its summed log-probability over
    (tokens after the decoder start, the end token included) ** length_penalty; the best
    beam_size others run on. The search stops when beam_size hypotheses have finished and the
    best running score, at the current length, could not beat the worst of them, or at
    max_length, where the running beams become candidates too.
    """
    start = list(start)
    device = encoder_out.device
    encoder_out = encoder_out.expand(beam_size, -1, -1)  # (beams, source_len, d_model)
    tokens = torch.tensor([start] * beam_size, device=device)  # (beams, n_start)
    sequences: list[tuple[int, ...]] = [()] * beam_size
    scores = torch.full((beam_size,), -1e9, device=device)
    scores[0] = 0.0  # the beams start identical: only the first may expand at first
    finished = _Finished(beam_size)
    cache = None
    done = False
    while len(start) + len(sequences[0]) < max_length:
        logits, cache = model.decode(tokens, encoder_out, cache)
        logprobs = logits[:, -1].float().log_softmax(dim=-1)  # (beams, vocab)
        vocab = logprobs.shape[-1]
        top_scores, top_indices = (scores[:, None] + logprobs).flatten().topk(2 * beam_size)
        generated = len(start) + len(sequences[0])  # after the decoder start, with the new token
        rows, next_sequences, next_scores, next_tokens = [], [], [], []
        for rank, (score, index) in enumerate(
            zip(top_scores.tolist(), top_indices.tolist(), strict=True)
        ):
            row, token = divmod(index, vocab)
            if token == eos:
                if rank < beam_size:
                    finished.add(score / generated**length_penalty, sequences[row], score)
                continue
            rows.append(row)
            next_sequences.append((*sequences[row], token))
            next_scores.append(score)
            next_tokens.append(token)
            if len(rows) == beam_size:
                break
        if len(finished.entries) == beam_size:
            best_possible = top_scores.max().item() / generated**length_penalty
            done = finished.worst >= best_possible
        if done:
            break
        cache = _reorder(cache, torch.tensor(rows, device=device))
        sequences = next_sequences
        scores = torch.tensor(next_scores, device=device)
        tokens = torch.tensor(next_tokens, device=device)[:, None]  # (beams, 1)
    if not done:  # max_length: the running beams compete too
        for sequence, score in zip(sequences, scores.tolist(), strict=True):
            finished.add(
                score / (len(start) - 1 + len(sequence)) ** length_penalty, sequence, score
            )
    _, best, sum_logprob = finished.entries[0]
    return Generated(best, sum_logprob, sum_logprob / (len(best) + 1))
