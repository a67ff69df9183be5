"""Whisper's tokenizer: byte-level BPE from the checkpoint's `tokenizer.json`, plus the special
tokens that steer the model (start of transcript, language, task, timestamps, end).

Special tokens are looked up by name in the vocabulary, never by fixed offsets, so English-only,
multilingual and large-v3 vocabularies (one more language) all work.

An openai-whisper `.pt` comes without a tokenizer (openai-whisper ships its vocabularies in its
package), and so does this package: `bundled_tokenizer` gives the English-only or the
multilingual vocabulary from `vocabularies/` (made by
`tests/reference/make_bundled_vocabularies.py`), with the language tokens the model has.
"""

from __future__ import annotations

import gzip
import json
import string
from collections.abc import Sequence
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any

import tokenizers

from whisper_cli.constants import TOKENS_PER_SECOND
from whisper_cli.errors import ModelError
from whisper_cli.whisper.languages import LANGUAGES, NO_SPACE_LANGUAGES


class Tokenizer:
    """Text ↔ token ids, and the special tokens of one Whisper vocabulary."""

    def __init__(self, encoding: tokenizers.Tokenizer, multilingual: bool, num_languages: int):
        self.encoding = encoding
        self.multilingual = multilingual
        self.num_languages = num_languages

    @classmethod
    def from_file(cls, path: str | Path, multilingual: bool, num_languages: int) -> Tokenizer:
        """Read a `tokenizer.json` and check that it has every special token decoding uses
        (raises ModelError naming the file and the first token missing)."""
        try:
            encoding = tokenizers.Tokenizer.from_file(str(path))
        except Exception as error:  # tokenizers raises its own Exception subclass
            raise ModelError(f"{path}: not a usable tokenizer.json ({error})") from None
        return cls.checked(encoding, multilingual, num_languages, str(path))

    @classmethod
    def checked(
        cls, encoding: tokenizers.Tokenizer, multilingual: bool, num_languages: int, source: str
    ) -> Tokenizer:
        """The tokenizer, once `check` passes (ModelError naming `source` otherwise)."""
        tokenizer = cls(encoding, multilingual, num_languages)
        try:
            tokenizer.check()
        except KeyError as error:
            raise ModelError(f"{source}: not a Whisper tokenizer.json ({error.args[0]})") from None
        return tokenizer

    def check(self) -> None:
        """Look up every special token decoding uses; KeyError for the first one missing."""
        _ = self.eot, self.sot, self.sot_prev, self.no_speech, self.no_timestamps
        if self.multilingual:
            _ = self.transcribe, self.translate, self.language_tokens

    def _special(self, *names: str) -> int:
        for name in names:
            token = self.encoding.token_to_id(name)
            if token is not None:
                return token
        raise KeyError(f"the vocabulary has no {' or '.join(names)} token")

    def encode(self, text: str) -> list[int]:
        return self.encoding.encode(text, add_special_tokens=False).ids

    def decode(self, tokens: Sequence[int]) -> str:
        """The text of the text tokens among `tokens` (special and timestamp tokens dropped)."""
        eot = self.eot
        return self.encoding.decode([t for t in tokens if t < eot], skip_special_tokens=False)

    def decode_with_timestamps(self, tokens: Sequence[int]) -> str:
        """Text with every special token spelled out, timestamps as <|1.08|>."""
        begin = self.timestamp_begin
        parts: list[str] = []
        run: list[int] = []
        for token in tokens:
            if token >= begin:
                parts.append(self.encoding.decode(run, skip_special_tokens=False))
                parts.append(f"<|{(token - begin) / TOKENS_PER_SECOND:.2f}|>")
                run = []
            else:
                run.append(token)
        parts.append(self.encoding.decode(run, skip_special_tokens=False))
        return "".join(parts)

    @cached_property
    def eot(self) -> int:
        return self._special("<|endoftext|>")

    @cached_property
    def sot(self) -> int:
        return self._special("<|startoftranscript|>")

    @cached_property
    def sot_prev(self) -> int:
        return self._special("<|startofprev|>")

    @cached_property
    def sot_lm(self) -> int:
        return self._special("<|startoflm|>")

    @cached_property
    def transcribe(self) -> int:
        return self._special("<|transcribe|>")

    @cached_property
    def translate(self) -> int:
        return self._special("<|translate|>")

    @cached_property
    def no_speech(self) -> int:
        return self._special("<|nospeech|>", "<|nocaptions|>")

    @cached_property
    def no_timestamps(self) -> int:
        return self._special("<|notimestamps|>")

    @cached_property
    def timestamp_begin(self) -> int:
        return self.no_timestamps + 1  # <|0.00|>

    @cached_property
    def language_codes(self) -> tuple[str, ...]:
        """The languages this vocabulary has tokens for, in token order."""
        return tuple(list(LANGUAGES)[: self.num_languages])

    @cached_property
    def language_tokens(self) -> tuple[int, ...]:
        return tuple(self._special(f"<|{code}|>") for code in self.language_codes)

    def language_token(self, code: str) -> int:
        if code not in self.language_codes:
            raise KeyError(f"the model has no token for language {code!r}")
        return self._special(f"<|{code}|>")

    def sot_sequence(self, language: str | None, task: str = "transcribe") -> tuple[int, ...]:
        """The tokens that start every window: [sot, <|lang|>, <|task|>]; [sot] for .en."""
        if not self.multilingual:
            return (self.sot,)
        sequence = [self.sot]
        if language is not None:
            sequence.append(self.language_token(language))
        sequence.append(self.translate if task == "translate" else self.transcribe)
        return tuple(sequence)

    @cached_property
    def non_speech_tokens(self) -> tuple[int, ...]:
        """Tokens of symbols that speech transcripts do not contain (speaker tags, music notes),
        suppressed by default so the model transcribes speech rather than captions. A symbol
        counts when it is one token, alone or after a space; the music notes count by their
        first byte-token.
        """
        symbols = list('"#()*+/:;<=>@[\\]^_`{|}~「」『』')
        symbols += "<< >> <<< >>> -- --- -( -[ (' (\" (( )) ((( ))) [[ ]] {{ }} ♪♪ ♪♪♪".split()
        notes = set("♩♪♫♬♭♮♯")
        assert all(0x2640 <= ord(c) <= 0x267F for c in notes)
        result = {self.encode(" -")[0], self.encode(" '")[0]}
        for symbol in symbols + sorted(notes):
            for tokens in (self.encode(symbol), self.encode(" " + symbol)):
                if len(tokens) == 1 or symbol in notes:
                    result.add(tokens[0])
        return tuple(sorted(result))

    def split_to_word_tokens(
        self, tokens: Sequence[int], language: str | None
    ) -> tuple[list[str], list[list[int]]]:
        """Group tokens into words: (word texts, token lists), for word timestamps."""
        if language in NO_SPACE_LANGUAGES:
            return self._split_on_unicode(tokens)
        return self._split_on_spaces(tokens)

    def _split_on_unicode(self, tokens: Sequence[int]) -> tuple[list[str], list[list[int]]]:
        """Cut wherever the tokens so far decode to whole characters."""
        full = self.decode_with_timestamps(tokens)
        words: list[str] = []
        word_tokens: list[list[int]] = []
        current: list[int] = []
        offset = 0
        for token in tokens:
            current.append(token)
            decoded = self.decode_with_timestamps(current)
            if "\ufffd" not in decoded or full[offset + decoded.index("\ufffd")] == "\ufffd":
                words.append(decoded)
                word_tokens.append(current)
                current = []
                offset += len(decoded)
        return words, word_tokens

    def _split_on_spaces(self, tokens: Sequence[int]) -> tuple[list[str], list[list[int]]]:
        """A new word starts at a space, a special token or a punctuation-only piece."""
        words: list[str] = []
        word_tokens: list[list[int]] = []
        for piece, piece_tokens in zip(*self._split_on_unicode(tokens), strict=True):
            starts_word = (
                piece_tokens[0] >= self.eot
                or piece.startswith(" ")
                or piece.strip() in string.punctuation
            )
            if starts_word or not words:
                words.append(piece)
                word_tokens.append(list(piece_tokens))
            else:
                words[-1] += piece
                word_tokens[-1].extend(piece_tokens)
        return words, word_tokens


# the vocabularies shipped with the package, for checkpoints that come without theirs

BUNDLED_LANGUAGES = 99  # language tokens in the bundled multilingual vocabulary
N_TIMESTAMPS = 1501  # <|0.00|> to <|30.00|>, after <|notimestamps|>


def bundled_tokenizer(multilingual: bool, num_languages: int) -> Tokenizer | None:
    """openai-whisper's vocabulary for a model with these dimensions, as this package ships it:
    GPT-2's for English-only models, the multilingual one otherwise, with the model's number
    of language tokens (large-v3's 100: `<|yue|>` and every later token one id up). None for
    more languages than `LANGUAGES` knows."""
    if multilingual and not 1 <= num_languages <= len(LANGUAGES):
        return None
    name = "multilingual" if multilingual else "english"
    source = f"{name}.tokenizer.json.gz"
    packed = resources.files(__package__).joinpath("vocabularies", source).read_bytes()
    text = gzip.decompress(packed).decode("utf-8")
    if multilingual and num_languages != BUNDLED_LANGUAGES:
        text = json.dumps(with_languages(json.loads(text), num_languages))
    encoding = tokenizers.Tokenizer.from_str(text)
    return Tokenizer.checked(encoding, multilingual, num_languages, f"the bundled {source}")


def with_languages(data: dict[str, Any], num_languages: int) -> dict[str, Any]:
    """A multilingual tokenizer.json's data with the first `num_languages` languages of
    `LANGUAGES` as language tokens, and the special tokens laid out after them as
    openai-whisper lays them out: <|endoftext|>, <|startoftranscript|>, the languages,
    <|translate|>, <|transcribe|>, <|startoflm|>, <|startofprev|>, <|nospeech|>,
    <|notimestamps|>, then the timestamps. The text tokens stay as they are."""
    added = {entry["content"]: entry for entry in data["added_tokens"]}
    names = ["<|endoftext|>", "<|startoftranscript|>"]
    names += [f"<|{code}|>" for code in list(LANGUAGES)[:num_languages]]
    names += ["<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>"]
    names += ["<|nospeech|>", "<|notimestamps|>"]
    names += [f"<|{i * 0.02:.2f}|>" for i in range(N_TIMESTAMPS)]
    first = added["<|endoftext|>"]["id"]
    ids = {name: first + index for index, name in enumerate(names)}
    language = added["<|en|>"]  # a new language token is written as the others are
    data["added_tokens"] = [
        {**added.get(name, language), "id": ids[name], "content": name} for name in names
    ]
    processor = data.get("post_processor") or {}
    for name, entry in processor.get("special_tokens", {}).items():
        if name in ids:
            entry["ids"] = [ids[name]]
    return data
