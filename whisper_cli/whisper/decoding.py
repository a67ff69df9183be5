"""Decoding one 30-second window: from audio features to tokens.

The pieces follow the reference decoder's seams:
- `LogitFilter`s mask tokens each step (blank at the start, non-speech symbols, timestamp rules;
  `logit_filters`);
- a `TokenDecoder` picks the next tokens (greedy/sampling, or beam search);
- a `SequenceRanker` picks the best of several finished candidates;
and `DecodingTask` wires them around the cached decoder. Every row of a batch is one candidate
(a beam, or one of `best_of` samples); the rows of one audio share its encoder output.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import Tensor

from whisper_cli.errors import OptionsError
from whisper_cli.memory import release_freed_memory
from whisper_cli.options import DecodingOptions, verify_decoding
from whisper_cli.results import compression_ratio
from whisper_cli.whisper.logit_filters import (
    ApplyTimestampRules,
    FinishTheWindow,
    LogitFilter,
    SuppressBlank,
    SuppressTokens,
)
from whisper_cli.whisper.model import KVCache, Whisper, rows_of
from whisper_cli.whisper.tokenizer import Tokenizer


@dataclass(frozen=True)
class DecodingResult:
    language: str | None
    tokens: tuple[int, ...] = ()
    text: str = ""
    avg_logprob: float = float("nan")
    sum_logprob: float = float("nan")
    no_speech_prob: float = float("nan")
    temperature: float = float("nan")
    compression_ratio: float = float("nan")
    language_probs: dict[str, float] | None = field(default=None, compare=False)


def verify_options(options: DecodingOptions, tokenizer: Tokenizer) -> None:
    """Reject contradictory options, and a language the model has no token for."""
    verify_decoding(options)
    known = tokenizer.language_codes
    if options.language is not None and tokenizer.multilingual and options.language not in known:
        raise OptionsError(f"the model does not know language {options.language!r}")


# ---------------------------------------------------------------------------------------------
# token decoders: pick the next tokens (the logit filters, which mask them first: logit_filters)


class TokenDecoder:
    def reset(self) -> None:
        """Forget the previous window."""

    def update(
        self, tokens: Tensor, logits: Tensor, sum_logprobs: Tensor, cache: KVCache
    ) -> tuple[Tensor, list[bool]]:
        """Append the next token to every row: (tokens (B, T + 1), for each audio of the batch
        whether it is done). `sum_logprobs` (B,) is updated in place."""
        raise NotImplementedError

    def keep(self, audios: list[int]) -> None:
        """Forget every audio of the batch but `audios` (positions): the others have left it."""

    def finalize(
        self, tokens: Tensor, sum_logprobs: Tensor
    ) -> tuple[list[list[list[int]]], list[list[float]]]:
        """Candidates per audio: tokens (n_audio, n_group, T) → token lists, sum log-probs.
        Leaves the decoder's state as it was, so decoding may go on for other audios."""
        raise NotImplementedError


class GreedyDecoder(TokenDecoder):
    """The most likely token at temperature 0; a sample from the softened softmax above."""

    def __init__(self, temperature: float, eot: int, group: int = 1, seed: int | None = None):
        """`seed`: where each window's draws start (so a run repeats itself, whatever else is
        decoded before or beside it); None: PyTorch's global generator, as it stands."""
        self.temperature = temperature
        self.eot = eot
        self.group = group  # rows per audio (best_of samples)
        self.seed = seed
        self._generator: torch.Generator | None = None

    def reset(self) -> None:
        self._generator = None  # seeded anew at the window's first draw

    def _draw(self, logits: Tensor) -> Tensor:
        """A token per row from softmax(logits / temperature): `Categorical.sample`'s draw."""
        if self.seed is not None and self._generator is None:
            self._generator = torch.Generator(logits.device).manual_seed(self.seed)
        probs = torch.softmax(logits / self.temperature, dim=-1)
        return torch.multinomial(probs, 1, True, generator=self._generator).squeeze(-1)

    def update(self, tokens, logits, sum_logprobs, cache):
        if self.temperature == 0:
            next_tokens = logits.argmax(dim=-1)
        else:
            next_tokens = self._draw(logits)
        logprobs = F.log_softmax(logits.float(), dim=-1)
        current = logprobs[torch.arange(logprobs.shape[0]), next_tokens]
        finished = tokens[:, -1] == self.eot
        sum_logprobs += current * ~finished  # only while the row is still running
        next_tokens[finished] = self.eot
        tokens = torch.cat([tokens, next_tokens[:, None]], dim=-1)
        ended = (tokens[:, -1] == self.eot).reshape(-1, self.group)  # (n_audio, group)
        return tokens, ended.all(dim=1).tolist()

    def finalize(self, tokens, sum_logprobs):
        tokens = F.pad(tokens, (0, 1), value=self.eot)  # every row ends with end of text
        return tokens.tolist(), sum_logprobs.tolist()


class BeamSearchDecoder(TokenDecoder):
    """Keep the `beam_size` best unfinished sequences per audio; collect finished ones until
    `round(beam_size * patience)` have ended."""

    def __init__(self, beam_size: int, eot: int, patience: float | None = None):
        self.beam_size = beam_size
        self.eot = eot
        self.patience = patience or 1.0
        self.max_candidates = round(beam_size * self.patience)
        assert self.max_candidates > 0, f"invalid beam size {beam_size} or patience {patience}"
        self.finished: list[dict[tuple[int, ...], float]] | None = None

    def reset(self) -> None:
        self.finished = None

    def update(self, tokens, logits, sum_logprobs, cache):
        n_rows = tokens.shape[0]
        assert n_rows % self.beam_size == 0, f"{n_rows} rows for beam size {self.beam_size}"
        n_audio = n_rows // self.beam_size
        if self.finished is None:
            self.finished = [{} for _ in range(n_audio)]

        logprobs = F.log_softmax(logits.float(), dim=-1)
        top_logprobs, top_tokens = logprobs.topk(self.beam_size + 1, dim=-1)  # (B, beam + 1)
        candidate_scores = (sum_logprobs[:, None] + top_logprobs).tolist()
        top_tokens_list = top_tokens.tolist()
        # Candidates are (prefix, token) pairs, prefixes numbered by their first row: rows with
        # the same tokens so far give the same sequences, and the later row's score wins, as
        # when whole sequences are the keys. Full sequences are built only for finished ones.
        prefixes = [tuple(row) for row in tokens.tolist()]
        first_row: dict[tuple[int, ...], int] = {}
        prefix_ids = [first_row.setdefault(prefix, row) for row, prefix in enumerate(prefixes)]

        sources, next_tokens, newly_finished = [], [], []
        for audio in range(n_audio):
            scores: dict[tuple[int, int], float] = {}
            origin: dict[tuple[int, int], int] = {}
            for row in range(audio * self.beam_size, (audio + 1) * self.beam_size):
                for score, token in zip(candidate_scores[row], top_tokens_list[row], strict=True):
                    scores[prefix_ids[row], token] = score
                    origin[prefix_ids[row], token] = row
            finished: dict[tuple[int, ...], float] = {}
            kept = 0
            for candidate in sorted(scores, key=scores.__getitem__, reverse=True):
                prefix_id, token = candidate
                if token == self.eot:
                    finished[(*prefixes[prefix_id], token)] = scores[candidate]
                else:
                    sum_logprobs[len(sources)] = scores[candidate]
                    sources.append(origin[candidate])
                    next_tokens.append(token)
                    kept += 1
                    if kept == self.beam_size:
                        break
            newly_finished.append(finished)

        source = torch.tensor(sources, device=tokens.device)
        appended = torch.tensor(next_tokens, device=tokens.device)[:, None]
        tokens = torch.cat([tokens[source], appended], dim=-1)
        cache.reorder(source)

        for collected, new in zip(self.finished, newly_finished, strict=True):
            for sequence in sorted(new, key=new.__getitem__, reverse=True):
                if len(collected) >= self.max_candidates:
                    break
                collected[sequence] = new[sequence]
        done = [len(collected) >= self.max_candidates for collected in self.finished]
        return tokens, done

    def keep(self, audios):
        assert self.finished is not None
        self.finished = [self.finished[audio] for audio in audios]

    def finalize(self, tokens, sum_logprobs):
        assert self.finished is not None
        scores = sum_logprobs.tolist()
        rows = tokens.tolist()
        candidates, logprobs = [], []
        for audio, finished in enumerate(self.finished):
            collected = dict(finished)
            if len(collected) < self.beam_size:  # too few ended: take the best unfinished ones
                order = sorted(range(len(scores[audio])), key=scores[audio].__getitem__)
                for beam in reversed(order):
                    collected[(*rows[audio][beam], self.eot)] = scores[audio][beam]
                    if len(collected) >= self.beam_size:
                        break
            candidates.append([list(seq) for seq in collected])
            logprobs.append(list(collected.values()))
        return candidates, logprobs


# ---------------------------------------------------------------------------------------------
# ranking


class SequenceRanker:
    def rank(self, tokens: list[list[list[int]]], sum_logprobs: list[list[float]]) -> list[int]:
        """The index of the best candidate of each audio."""
        raise NotImplementedError


class MaximumLikelihoodRanker(SequenceRanker):
    """Sum of log-probabilities over length (or over Google NMT's length penalty)."""

    def __init__(self, length_penalty: float | None):
        self.length_penalty = length_penalty

    def rank(self, tokens, sum_logprobs):
        def score(logprob: float, length: int) -> float:
            if self.length_penalty is None:
                return logprob / length
            return logprob / ((5 + length) / 6) ** self.length_penalty

        best = []
        for candidates, logprobs in zip(tokens, sum_logprobs, strict=True):
            scores = [score(lp, len(t)) for t, lp in zip(candidates, logprobs, strict=True)]
            best.append(max(range(len(scores)), key=scores.__getitem__))
        return best


# ---------------------------------------------------------------------------------------------


def detect_language(
    model: Whisper, tokenizer: Tokenizer, audio_features: Tensor
) -> tuple[list[str], list[dict[str, float]]]:
    """One decoder step on <|startoftranscript|>, restricted to the language tokens.

    audio_features: (B, S, C) → the most likely language of each audio and every language's
    probability, most likely first.
    """
    if not tokenizer.multilingual:
        return ["en"] * audio_features.shape[0], [{"en": 1.0}] * audio_features.shape[0]
    batch = audio_features.shape[0]
    cache = model.decoder.new_cache(audio_features, batch)
    sot = torch.full((batch, 1), tokenizer.sot, device=audio_features.device)
    logits = model.decoder.logits(model.decoder(sot, cache)[:, 0])  # (B, n_vocab)
    language_tokens = torch.tensor(tokenizer.language_tokens, device=logits.device)
    probs = logits[:, language_tokens].softmax(dim=-1).cpu()  # (B, n_languages)
    codes = tokenizer.language_codes
    all_probs = []
    for row in probs.tolist():
        ranked = sorted(zip(codes, row, strict=True), key=lambda pair: pair[1], reverse=True)
        all_probs.append(dict(ranked))
    return [next(iter(p)) for p in all_probs], all_probs


class DecodingTask:
    def __init__(self, model: Whisper, tokenizer: Tokenizer, options: DecodingOptions):
        verify_options(options, tokenizer)
        self.model = model
        self.tokenizer = tokenizer
        self.options = options
        self.n_ctx = model.dims.n_text_ctx
        self.sample_len = options.sample_len or self.n_ctx // 2
        self.n_group = options.beam_size or options.best_of or 1

        self.sot_sequence = tokenizer.sot_sequence(options.language or "en", options.task)
        if options.without_timestamps:
            self.sot_sequence = (*self.sot_sequence, tokenizer.no_timestamps)
        self.initial_tokens = self._initial_tokens()
        self.sample_begin = len(self.initial_tokens)
        self.sot_index = self.initial_tokens.index(tokenizer.sot)
        self.time_precision = model.dims.time_precision  # 0.02 s per timestamp

        # seam 1: which tokens may be sampled at each step
        self.logit_filters: list[LogitFilter] = []
        if options.suppress_blank:
            self.logit_filters.append(SuppressBlank(tokenizer, self.sample_begin))
        if options.suppress_tokens:
            self.logit_filters.append(SuppressTokens(self._suppressed_tokens()))
        if not options.without_timestamps:
            max_initial = None
            if options.max_initial_timestamp:
                max_initial = round(options.max_initial_timestamp / self.time_precision)
            self.logit_filters.append(
                ApplyTimestampRules(tokenizer, self.sample_begin, max_initial)
            )
        # seam 2: how the next token is chosen
        self.decoder: TokenDecoder
        if options.beam_size is not None:
            self.decoder = BeamSearchDecoder(options.beam_size, tokenizer.eot, options.patience)
        else:
            self.decoder = GreedyDecoder(
                options.temperature, tokenizer.eot, self.n_group, options.seed
            )
        # seam 3: which finished candidate wins
        self.ranker: SequenceRanker = MaximumLikelihoodRanker(options.length_penalty)

    def _as_tokens(self, text_or_tokens: str | tuple[int, ...]) -> list[int]:
        if isinstance(text_or_tokens, str):
            return self.tokenizer.encode(" " + text_or_tokens.strip())
        return list(text_or_tokens)

    def _initial_tokens(self) -> tuple[int, ...]:
        tokens = list(self.sot_sequence)
        if self.options.prefix:
            prefix = self._as_tokens(self.options.prefix)
            if self.options.sample_len is not None:
                prefix = prefix[-(self.n_ctx // 2 - self.options.sample_len) :]
            tokens += prefix
        if self.options.prompt:
            prompt = self._as_tokens(self.options.prompt)
            tokens = [self.tokenizer.sot_prev, *prompt[-(self.n_ctx // 2 - 1) :], *tokens]
        return tuple(tokens)

    def _suppressed_tokens(self) -> list[int]:
        requested = self.options.suppress_tokens
        if isinstance(requested, str):
            requested = tuple(int(t) for t in requested.split(",") if t.strip())
        suppress = {t for t in requested if t >= 0}
        if -1 in requested:
            suppress.update(self.tokenizer.non_speech_tokens)
        tk = self.tokenizer
        suppress.update((tk.transcribe, tk.translate, tk.sot, tk.sot_prev, tk.sot_lm))
        suppress.add(tk.no_speech)
        return sorted(suppress)

    def _main_loop(
        self, audio_features: Tensor, tokens: Tensor, logit_filters: list[LogitFilter]
    ) -> tuple[list[list[list[int]]], list[list[float]], list[float]]:
        """Sample until every audio has ended: the candidates of each audio (token lists), their
        sum log-probabilities, and each audio's no-speech probability.

        tokens: (n_audio * n_group, T), the rows of a group identical; the prompt runs through
        the decoder once per audio, and the group's rows then share its keys/values.
        An audio leaves the batch once it is done (nothing can change its candidates then), so
        the others go on without its rows: a batch decodes as each of its audios alone would.
        """
        n_rows, group = tokens.shape[0], self.n_group
        n_audio = n_rows // group
        sum_logprobs = torch.zeros(n_rows, device=tokens.device)
        cache = self.model.decoder.new_cache(audio_features, n_audio)
        release_freed_memory()  # what the encoder and building the cache freed
        hidden = self.model.decoder(tokens[::group], cache)  # (n_audio, T, C)
        # the model's belief that the window holds no speech, at <|startoftranscript|>
        sot_logits = self.model.decoder.logits(hidden[:, self.sot_index])
        no_speech_probs = sot_logits.softmax(dim=-1)[:, self.tokenizer.no_speech].tolist()
        logits = self.model.decoder.logits(hidden[:, -1]).repeat_interleave(group, dim=0)
        cache.share_prompt(group, room=self.sample_len)  # a token a step at most

        candidates: list[list[list[int]]] = [[] for _ in range(n_audio)]
        logprobs: list[list[float]] = [[] for _ in range(n_audio)]
        alive = list(range(n_audio))  # the audios in the batch, by their index in this call

        def collect(leaving: list[int]) -> None:  # positions in the batch
            found, scores = self.decoder.finalize(
                tokens.reshape(len(alive), group, -1), sum_logprobs.reshape(len(alive), group)
            )
            for position in leaving:
                candidates[alive[position]] = found[position]
                logprobs[alive[position]] = scores[position]

        for _ in range(self.sample_len):
            for logit_filter in logit_filters:
                logit_filter.apply(logits, tokens)
            tokens, done = self.decoder.update(tokens, logits, sum_logprobs, cache)
            if all(done) or tokens.shape[-1] > self.n_ctx:
                break
            if any(done):
                collect([position for position, ended in enumerate(done) if ended])
                staying = [position for position, ended in enumerate(done) if not ended]
                picked = torch.tensor(rows_of(staying, group), device=tokens.device)
                tokens, sum_logprobs = tokens[picked], sum_logprobs[picked]
                for logit_filter in logit_filters:
                    logit_filter.keep(picked)
                cache.keep_audio(staying)
                self.decoder.keep(staying)
                alive = [alive[position] for position in staying]
            hidden = self.model.decoder(tokens[:, -1:], cache)  # (n_rows, 1, C)
            logits = self.model.decoder.logits(hidden[:, -1])  # (n_rows, n_vocab), float32
        collect(list(range(len(alive))))
        return candidates, logprobs, no_speech_probs

    @torch.inference_mode()
    def run(
        self, audio_features: Tensor, reach: Sequence[float] | None = None
    ) -> list[DecodingResult]:
        """audio_features: (n_audio, S, C) → one result per audio.

        reach: seconds into each window that its text must reach before it may end after a
        pair of timestamps (`FinishTheWindow`); None: wherever the model likes.
        """
        self.decoder.reset()
        logit_filters = list(self.logit_filters)
        if reach is not None and not self.options.without_timestamps:
            begin = self.tokenizer.timestamp_begin
            indices = [begin + round(seconds / self.time_precision) for seconds in reach]
            rows = torch.tensor(indices, device=audio_features.device)
            rows = rows.repeat_interleave(self.n_group)  # (n_audio * n_group,)
            logit_filters.append(
                FinishTheWindow(self.sample_begin, self.tokenizer.eot, begin, rows)
            )
        n_audio = audio_features.shape[0]
        languages: list[str | None] = [self.options.language] * n_audio
        language_probs: list[dict[str, float] | None] = [None] * n_audio
        tokens = torch.tensor([self.initial_tokens], device=audio_features.device)
        tokens = tokens.repeat(n_audio, 1)
        if self.options.language is None and self.tokenizer.multilingual:
            detected, language_probs = detect_language(self.model, self.tokenizer, audio_features)
            languages = list(detected)
            column = torch.tensor([self.tokenizer.language_token(c) for c in detected])
            tokens[:, self.sot_index + 1] = column.to(tokens.device)

        tokens = tokens.repeat_interleave(self.n_group, dim=0)  # (n_audio * n_group, T)
        candidates, candidate_logprobs, no_speech_probs = self._main_loop(
            audio_features, tokens, logit_filters
        )
        eot = self.tokenizer.eot
        candidates = [
            [seq[self.sample_begin : seq.index(eot, self.sample_begin)] for seq in group]
            for group in candidates
        ]
        best = self.ranker.rank(candidates, candidate_logprobs)

        results = []
        for i in range(n_audio):
            chosen = candidates[i][best[i]]
            text = self.tokenizer.decode(chosen).strip()
            sum_logprob = candidate_logprobs[i][best[i]]
            results.append(
                DecodingResult(
                    language=languages[i],
                    language_probs=language_probs[i],
                    tokens=tuple(chosen),
                    text=text,
                    avg_logprob=sum_logprob / (len(chosen) + 1),
                    sum_logprob=sum_logprob,
                    no_speech_prob=no_speech_probs[i],
                    temperature=self.options.temperature,
                    compression_ratio=compression_ratio(text),
                )
            )
        return results


def decode(
    model: Whisper,
    tokenizer: Tokenizer,
    audio_features: Tensor,
    options: DecodingOptions = DecodingOptions(),  # noqa: B008 (frozen, so safe to share)
    **overrides,
) -> list[DecodingResult]:
    """Decode windows from their encoder output (n_audio, S, C)."""
    if overrides:
        options = replace(options, **overrides)
    return DecodingTask(model, tokenizer, options).run(audio_features)
