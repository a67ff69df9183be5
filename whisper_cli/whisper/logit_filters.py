"""The rules that mask a decoding step's logits, row by row: no blank first token, no
suppressed token, Whisper's timestamp grammar, and no early end before a window's reach."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from whisper_cli.whisper.tokenizer import Tokenizer

# each filter masks the logits of the next token, (B, n_vocab), in place


class LogitFilter:
    def apply(self, logits: Tensor, tokens: Tensor) -> None:
        """logits: (B, n_vocab) of the next token; tokens: (B, T) so far, prompt included."""
        raise NotImplementedError

    def keep(self, rows: Tensor) -> None:
        """Forget every row but `rows` (indices): their audios have left the batch."""


class SuppressBlank(LogitFilter):
    """No blank (a lone space) and no end of text as the first sampled token."""

    def __init__(self, tokenizer: Tokenizer, sample_begin: int):
        self.tokens = [*tokenizer.encode(" "), tokenizer.eot]
        self.sample_begin = sample_begin

    def apply(self, logits: Tensor, tokens: Tensor) -> None:
        if tokens.shape[1] == self.sample_begin:
            logits[:, self.tokens] = -torch.inf


class SuppressTokens(LogitFilter):
    def __init__(self, suppress: Sequence[int]):
        self.suppress = torch.tensor(list(suppress), dtype=torch.long)

    def apply(self, logits: Tensor, tokens: Tensor) -> None:
        if self.suppress.device != logits.device:
            self.suppress = self.suppress.to(logits.device)
        logits.index_fill_(1, self.suppress, -torch.inf)


class ApplyTimestampRules(LogitFilter):
    """Timestamps come in pairs (except right before the end), never decrease, and each
    segment has a nonzero length; the first token is a timestamp no later than
    `max_initial_timestamp_index`; and a timestamp is forced when timestamps together are more
    likely than any single text token. Vectorised over the batch.
    """

    def __init__(self, tokenizer: Tokenizer, sample_begin: int, max_initial_timestamp_index):
        self.eot = tokenizer.eot
        self.no_timestamps = tokenizer.no_timestamps
        self.timestamp_begin = tokenizer.timestamp_begin
        self.sample_begin = sample_begin
        self.max_initial_timestamp_index = max_initial_timestamp_index

    def apply(self, logits: Tensor, tokens: Tensor) -> None:
        begin = self.timestamp_begin
        logits[:, self.no_timestamps] = -torch.inf
        sampled = tokens[:, self.sample_begin :]  # (B, n)
        if sampled.shape[1] == 0:
            logits[:, :begin] = -torch.inf  # the first token is a timestamp
            if self.max_initial_timestamp_index is not None:
                logits[:, begin + self.max_initial_timestamp_index + 1 :] = -torch.inf
        else:
            is_timestamp = sampled >= begin  # (B, n)
            last = is_timestamp[:, -1]
            if sampled.shape[1] >= 2:
                penultimate = is_timestamp[:, -2]
            else:
                penultimate = torch.ones_like(last)
            # Rows are masked one at a time: a boolean row mask over the whole vocabulary
            # costs a pass over every row's logits, ruled or not.
            pair_closed, text_ended = (last & penultimate).tolist(), (last & ~penultimate).tolist()
            for row, (closed, ended) in enumerate(zip(pair_closed, text_ended, strict=True)):
                if closed:  # a pair just closed (or one opened the text): text must follow
                    logits[row, begin:] = -torch.inf
                elif ended:  # a segment's text just ended with a timestamp: another, or the end
                    logits[row, : self.eot] = -torch.inf

            # never earlier than the last timestamp; strictly later unless closing a pair
            newest = torch.where(is_timestamp, sampled, begin - 1).amax(dim=1)  # (B,)
            lowest_allowed = torch.where(last & ~penultimate, newest, newest + 1)
            lowest_allowed = torch.where(is_timestamp.any(dim=1), lowest_allowed, begin)
            timestamps = torch.arange(begin, logits.shape[1], device=logits.device)
            too_early = timestamps < lowest_allowed[:, None]  # (B, n_timestamps)
            logits[:, begin:].masked_fill_(too_early, -torch.inf)

        # timestamps together beat the best text token: log-probabilities compared without
        # the softmax's normaliser, which both sides share
        timestamp_score = logits[:, begin:].float().logsumexp(dim=-1)
        max_text_score = logits[:, :begin].float().amax(dim=-1)
        for row in (timestamp_score > max_text_score).nonzero()[:, 0].tolist():
            logits[row, :begin] = -torch.inf


class FinishTheWindow(LogitFilter):
    """No end of text right after a pair of timestamps earlier than the row's `reach`
    (timestamp token, one per row): the text must go on to the window's end.

    Whisper ends a window early when its last sentence runs on past the window's end, leaving
    the rest to the next window. A speech chunk of batched mode has no next window: its rest
    would be decoded alone, without the words before it.
    """

    def __init__(self, sample_begin: int, eot: int, timestamp_begin: int, reach: Tensor):
        self.sample_begin = sample_begin
        self.eot = eot
        self.timestamp_begin = timestamp_begin
        self.reach = reach  # (B,), on the device of the tokens

    def apply(self, logits: Tensor, tokens: Tensor) -> None:
        if tokens.shape[1] - self.sample_begin < 2:
            return
        last, penultimate = tokens[:, -1], tokens[:, -2]  # (B,)
        pair_closed = (penultimate >= self.timestamp_begin) & (last >= self.timestamp_begin)
        early = pair_closed & (last < self.reach)
        logits[:, self.eot].masked_fill_(early, -torch.inf)

    def keep(self, rows: Tensor) -> None:
        self.reach = self.reach[rows]


# ---------------------------------------------------------------------------------------------
# token decoders: pick the next tokens
