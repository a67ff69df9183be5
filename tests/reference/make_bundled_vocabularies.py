"""Make the two vocabularies the package ships for openai-whisper `.pt` files, which come
without a tokenizer: `whisper_cli/whisper/vocabularies/{english,multilingual}.tokenizer.json.gz`.

They are Whisper's two byte-level BPE vocabularies (MIT, as OpenAI published them) in the
Hugging Face `tokenizer.json` form: GPT-2's for the English-only models (`*.en`), the
multilingual one for the rest (large-v3's, with one language more, is derived from it when a
model needs it; see `whisper_cli.whisper.tokenizer.bundled_tokenizer`). They were made from
the tokenizer.json files that `../shared/tools/get-model` writes:

    PYTHON=.venv/bin/python ../shared/tools/get-model tiny.en /tmp/tinyen
    python tests/reference/make_bundled_vocabularies.py \\
        /tmp/tinyen/whisper-tiny.en/tokenizer.json ../shared/models/whisper-base/tokenizer.json

The JSON is written compactly and gzipped without a time stamp, so the same input
gives the same bytes; each file is read back and checked to tokenize as its source does.
"""

from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path

import tokenizers

FOLDER = Path(__file__).resolve().parent.parent / "whisper_cli" / "whisper" / "vocabularies"
SAMPLE = " Hello world, it's 3:30 p.m. (really) — “quoted” 日本語! <|startoftranscript|>"


def bundle(source: Path, name: str) -> Path:
    text = source.read_text(encoding="utf-8")
    compact = json.dumps(json.loads(text), ensure_ascii=False, separators=(",", ":"))
    target = FOLDER / f"{name}.tokenizer.json.gz"
    target.write_bytes(gzip.compress(compact.encode("utf-8"), compresslevel=9, mtime=0))
    original = tokenizers.Tokenizer.from_str(text)
    bundled = tokenizers.Tokenizer.from_str(gzip.decompress(target.read_bytes()).decode())
    assert bundled.get_vocab(True) == original.get_vocab(True), source
    ids = original.encode(SAMPLE, add_special_tokens=False).ids
    assert bundled.encode(SAMPLE, add_special_tokens=False).ids == ids, source
    assert bundled.decode(ids, skip_special_tokens=False) == original.decode(ids, False), source
    print(f"{target}: {len(text.encode())} bytes → {target.stat().st_size}")
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("english", type=Path, help="tokenizer.json of tiny.en (or any *.en)")
    parser.add_argument("multilingual", type=Path, help="tokenizer.json of tiny, base, ...")
    args = parser.parse_args()
    FOLDER.mkdir(parents=True, exist_ok=True)
    bundle(args.english, "english")
    bundle(args.multilingual, "multilingual")


if __name__ == "__main__":
    main()
