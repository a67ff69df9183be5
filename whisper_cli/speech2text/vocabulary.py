"""The Speech2Text family's vocabulary: token ids to pieces, and pieces joined into text."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from whisper_cli.checkpoint import read_json
from whisper_cli.errors import ModelError

# transformers' `clean_up_tokenization_spaces`: spaces the word pieces leave before punctuation
_CLEAN_UP = ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"))
_CLEAN_UP += ((" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"))


@dataclass(frozen=True)
class Vocabulary:
    """Token ids ↔ pieces, from the checkpoint's `vocab.json`, and how pieces join into text
    (as the checkpoint's transformers tokenizer decodes with `skip_special_tokens=True`).

    Speech2Text pieces are sentencepiece's: `▁` starts a word. Speech2Text2 pieces are BPE
    units: a piece ending in `@@` continues into the next one.
    """

    pieces: tuple[str, ...]  # by id
    special: frozenset[int]  # <s>, <pad>, </s>, <unk>, <lang:xx>: never shown
    joiner: str  # "▁" (sentencepiece) or "@@" (BPE)
    clean_up_spaces: bool = True  # tokenizer_config.json's clean_up_tokenization_spaces
    upper_case: bool = False  # tokenizer_config.json's do_upper_case (Speech2Text)

    @classmethod
    def from_folder(cls, folder: Path, joiner: str) -> Vocabulary:
        path = folder / "vocab.json"
        if not path.is_file():
            raise ModelError(f"{folder}: no vocab.json beside the weights")
        raw = read_json(path)
        if not raw or not all(isinstance(i, int) and 0 <= i < 10_000_000 for i in raw.values()):
            raise ModelError(f"{path}: expected an object of piece → non-negative id")
        pieces = [""] * (max(raw.values()) + 1)
        for piece, index in raw.items():
            pieces[index] = piece
        special = frozenset(
            i for i, p in enumerate(pieces) if p.startswith("<") and p.endswith(">") and len(p) > 2
        )
        config_path = folder / "tokenizer_config.json"
        config = read_json(config_path) if config_path.is_file() else {}
        return cls(
            tuple(pieces),
            special,
            joiner,
            bool(config.get("clean_up_tokenization_spaces", True)),
            bool(config.get("do_upper_case", False)),
        )

    @property
    def languages(self) -> dict[str, int]:
        """Target-language tokens (`<lang:de>` → {"de": id}) of multilingual checkpoints."""
        return {
            p[len("<lang:") : -1]: i for i, p in enumerate(self.pieces) if p.startswith("<lang:")
        }

    def decode(self, tokens: Iterable[int]) -> str:
        pieces = [self.pieces[t] for t in tokens if t not in self.special and t < len(self.pieces)]
        if self.joiner == "@@":
            text = " ".join(pieces).replace("@@ ", "")
        else:
            text = "".join(pieces).replace("▁", " ").strip(" ")
            text = text.upper() if self.upper_case else text
        if self.clean_up_spaces:
            for before, after in _CLEAN_UP:
                text = text.replace(before, after)
        return text
