"""Record openai-whisper's tokenizer behaviour as tests/reference/tokenizer.json.

Run with the scratch venv that has openai-whisper (never a project dependency):
    /work/scratch/ref/bin/python tests/reference/make_tokenizer_reference.py
"""

import json
from pathlib import Path

import whisper
from whisper.tokenizer import get_tokenizer

SAMPLES = {
    "en": " Hello world, it's 3:30 p.m. (really) — “quoted” 日本語!",
    "ja": "こんにちは、世界。今日は良い天気ですね。",
    "zh": "今天天气很好，我们去公园吧。",
    "de": " Grüße aus Köln: Straße, Äpfel und Öl.",
}


def main() -> None:
    out: dict = {"meta": {"whisper_version": whisper.__version__}, "vocabularies": {}}
    for name, multilingual in (("multilingual", True), ("english", False)):
        tokenizer = get_tokenizer(multilingual, num_languages=99, language="en", task="transcribe")
        vocab = {
            "eot": tokenizer.eot,
            "sot": tokenizer.sot,
            "sot_prev": tokenizer.sot_prev,
            "sot_lm": tokenizer.sot_lm,
            "no_speech": tokenizer.no_speech,
            "no_timestamps": tokenizer.no_timestamps,
            "timestamp_begin": tokenizer.timestamp_begin,
            "transcribe": tokenizer.transcribe,
            "translate": tokenizer.translate,
            "sot_sequence": list(tokenizer.sot_sequence),
            "non_speech_tokens": list(tokenizer.non_speech_tokens),
            "blank": tokenizer.encode(" "),
            "samples": {},
        }
        if multilingual:
            vocab["language_tokens"] = dict(
                zip(tokenizer.all_language_codes, tokenizer.all_language_tokens, strict=True)
            )
        for language, text in SAMPLES.items():
            if not multilingual and language != "en":
                continue
            tokens = tokenizer.encode(text)
            with_eot = tokens + [tokenizer.eot]
            lang_tokenizer = get_tokenizer(multilingual, num_languages=99, language=language)
            words, word_tokens = lang_tokenizer.split_to_word_tokens(with_eot)
            vocab["samples"][language] = {
                "text": text,
                "tokens": tokens,
                "decoded": tokenizer.decode(tokens),
                "words": words,
                "word_tokens": word_tokens,
            }
        out["vocabularies"][name] = vocab
    path = Path(__file__).with_name("tokenizer.json")
    path.write_text(json.dumps(out, ensure_ascii=False, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
