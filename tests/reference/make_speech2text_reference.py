"""Write tiny Speech2Text checkpoints and what transformers computes with them, as fixtures.

Speech2Text (`facebook/s2t-small-librispeech-asr`, `facebook/s2t-medium-mustc-multilingual-st`
and their siblings, `model_type: speech_to_text`) reads Kaldi fbank features with utterance
CMVN through a convolutional subsampler into a Transformer encoder-decoder. transformers
dropped the model after 4.40, so these fixtures pin what 4.40 computes, and whisper-cli's
tests compare against them without transformers installed.

What is written under `--out` (tests/reference/speech2text):

* `features.npz`: for every readable file of the dev audio set, the output of
  `Speech2TextFeatureExtractor()` (its defaults: 80 bins, mean and variance normalisation),
  every 10th frame (`{file}|every10`, float32) and the frame count (`{file}|frames`).
* Two randomly initialised checkpoints from a fixed seed, saved with `save_pretrained` as
  `pytorch_model.bin` (like the real repos), with config.json, generation_config.json,
  preprocessor_config.json and the tokenizer files (vocab.json, sentencepiece.bpe.model,
  tokenizer_config.json, special_tokens_map.json):
  - `tiny-asr/`: an English ASR layout: lower-case unigram vocabulary of 200 pieces trained
    here on the manifest's English texts, `do_upper_case` (as the LibriSpeech checkpoint);
  - `tiny-st/`: a multilingual speech-translation layout: vocabulary trained on the Latin-script
    texts with the MuST-C language tokens `<lang:pt>` … `<lang:de>` as user-defined pieces,
    `lang_codes: mustc`, and `forced_bos_token_id` = `<lang:de>` in generation_config.json.
  Every parameter (biases and layer norms too) is drawn at random, so that a misplaced tensor
  cannot hide behind a default value.
* `expected.json` / `expected.npz`: for `en_ls_61-70968-0000.flac`, every frame of its
  features (`input_features`, so that model tests need no audio), and for each checkpoint the
  encoder output (`{name}|encoder_out`), the raw logits of each greedy step before any logits
  processor (`{name}|greedy_logits`), `generate()` greedy and beam-4 tokens (with the start
  tokens HF emits), `batch_decode(skip_special_tokens=True)` text, the special ids, and
  `decode_cases`: random id sequences (special ids among them) with what
  `decode(skip_special_tokens=True)` makes of them, to test detokenisation on its own.

How to run it (the outputs are committed; the venv is scratch, never a project dependency):

    python3 -m venv /work/scratch/hf
    /work/scratch/hf/bin/pip install torch==2.13.0 transformers==4.40.2 sentencepiece \
        soundfile soxr
    /work/scratch/hf/bin/python tests/reference/make_speech2text_reference.py \
        --audio-dir /work/shared/audio --out tests/reference/speech2text

torchaudio must NOT be installed there: the feature extractor then uses its numpy code path,
which is the one whisper-cli's `speech2text/features.py` follows. Audio is decoded by
whisper-cli's own `load_audio` (this script puts the checkout on `sys.path`), so the fixtures
compare features and models, not decoders.
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import sys
from pathlib import Path

import numpy as np
import sentencepiece
import torch
import transformers
from transformers import (
    Speech2TextConfig,
    Speech2TextFeatureExtractor,
    Speech2TextForConditionalGeneration,
    Speech2TextTokenizer,
)
from transformers.utils import is_speech_available

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from whisper_cli.audio import load_audio  # noqa: E402

AUDIO_FILE = "en_ls_61-70968-0000.flac"
MAX_LENGTH = 40  # generation_config.max_length: decoder tokens in all, the start token included
UNREADABLE = ("error", "error_or_partial")
MUSTC = ["pt", "fr", "ru", "nl", "ro", "it", "es", "de"]  # transformers' order for "mustc"
TARGET_LANGUAGE = "de"
LATIN_SCRIPT = ("en", "de", "es", "fr", "it", "pt", "sv")

# name → vocabulary size, random-weight scales and seed, architecture. Seeds and scales were
# picked (by trying a few dozen) so that greedy decoding is not one token repeated and its top
# two logits are never within 0.005: tiny-asr ends with </s> after 21 tokens; tiny-st runs to
# max_length and generates <pad> (id 1) several times on the way, which exercises
# transformers' rule that a padding token gets no position vector.
CHECKPOINTS = {
    "tiny-asr": dict(
        vocab=200,
        seed=16,
        embed_std=0.1,
        weight_std=0.6,
        d_model=32,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        conv_channels=32,
        conv_kernel_sizes=[5, 5],
    ),
    "tiny-st": dict(
        vocab=256,
        seed=1,
        embed_std=0.1,
        weight_std=0.4,
        d_model=32,
        encoder_layers=3,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=2,
        encoder_ffn_dim=48,
        decoder_ffn_dim=64,
        conv_channels=24,
        conv_kernel_sizes=[5, 3],
    ),
}


def read_manifest(audio_dir: Path) -> list[dict]:
    lines = (audio_dir / "manifest.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def train_vocabulary(texts: list[str], size: int, user_symbols: list[str]) -> bytes:
    """A unigram sentencepiece model with fairseq's special ids, as the S2T recipes train."""
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(texts),
        model_writer=model,
        vocab_size=size,
        model_type="unigram",
        bos_id=0,
        pad_id=1,
        eos_id=2,
        unk_id=3,
        user_defined_symbols=user_symbols,
        character_coverage=1.0,
        normalization_rule_name="identity",  # no 240 KB NFKC table; decoding never uses it
        num_threads=1,
        shuffle_input_sentence=False,
        minloglevel=2,
    )
    return model.getvalue()


def write_tokenizer(folder: Path, spm_model: bytes, **options) -> Speech2TextTokenizer:
    """vocab.json maps every sentencepiece piece to its sentencepiece id, as in the real repos
    (fairseq's dictionary puts <s> <pad> </s> <unk> first, and the pieces keep their order)."""
    folder.mkdir(parents=True, exist_ok=True)
    spm_file = folder / "sentencepiece.bpe.model"
    spm_file.write_bytes(spm_model)
    processor = sentencepiece.SentencePieceProcessor(model_proto=spm_model)
    vocab = {processor.id_to_piece(i): i for i in range(processor.get_piece_size())}
    vocab_file = folder / "vocab.json"
    vocab_file.write_text(json.dumps(vocab, ensure_ascii=False, indent=2), encoding="utf-8")
    tokenizer = Speech2TextTokenizer(str(vocab_file), str(spm_file), **options)
    tokenizer.save_pretrained(folder)
    return tokenizer


def randomise(model: torch.nn.Module, embed_std: float, weight_std: float) -> None:
    """Draw every parameter, so no tensor keeps a telltale default (zero bias, unit norm)."""
    for name, parameter in model.named_parameters():
        with torch.no_grad():
            if "embed_positions" in name:
                continue  # the sinusoid tables: saved as parameters, but fixed by design
            if "layer_norm" in name and name.endswith("weight"):
                parameter.normal_(1.0, 0.1)
            elif "embed_tokens" in name:
                parameter.normal_(0.0, embed_std)
            else:
                parameter.normal_(0.0, weight_std if name.endswith("weight") else 0.05)


def build_checkpoint(folder: Path, settings: dict, spm_model: bytes, tokenizer_options: dict):
    tokenizer = write_tokenizer(folder, spm_model, **tokenizer_options)
    drawn = ("vocab", "seed", "embed_std", "weight_std")
    arch = {k: v for k, v in settings.items() if k not in drawn}
    config = Speech2TextConfig(
        vocab_size=len(tokenizer.encoder),
        max_source_positions=512,  # only the saved table's size: transformers extends it
        max_target_positions=128,
        num_conv_layers=len(arch["conv_kernel_sizes"]),
        input_feat_per_channel=80,
        input_channels=1,
        activation_function="relu",
        scale_embedding=True,
        dropout=0.0,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        decoder_start_token_id=2,
        **arch,
    )
    torch.manual_seed(settings["seed"])
    model = Speech2TextForConditionalGeneration(config).eval()
    randomise(model, settings["embed_std"], settings["weight_std"])
    generation = model.generation_config
    generation.max_length = MAX_LENGTH
    generation.num_beams = 1
    generation.do_sample = False
    generation.decoder_start_token_id = 2
    generation.bos_token_id = 0
    generation.eos_token_id = 2
    generation.pad_token_id = 1
    if "lang_codes" in tokenizer_options:
        generation.forced_bos_token_id = tokenizer.lang_code_to_id[TARGET_LANGUAGE]
    model.save_pretrained(folder, safe_serialization=False)
    Speech2TextFeatureExtractor().save_pretrained(folder)


def reference_outputs(folder: Path, samples: np.ndarray) -> tuple[dict, dict[str, np.ndarray]]:
    """Reload the saved checkpoint like a user would and record what it computes."""
    model = Speech2TextForConditionalGeneration.from_pretrained(folder).eval()
    tokenizer = Speech2TextTokenizer.from_pretrained(folder)
    extractor = Speech2TextFeatureExtractor.from_pretrained(folder)
    features = extractor(samples, sampling_rate=16000, return_tensors="pt").input_features
    generation = model.generation_config
    with torch.no_grad():
        encoder_out = model.get_encoder()(features).last_hidden_state
        greedy = model.generate(
            features,
            num_beams=1,
            do_sample=False,
            max_length=generation.max_length,
            output_logits=True,
            return_dict_in_generate=True,
        )
        beam = model.generate(features, num_beams=4, do_sample=False)
    tokens = greedy.sequences[0].tolist()
    logits = torch.stack(greedy.logits, dim=1)[0].float()  # (steps, vocab), before processors
    top2 = logits.topk(2, dim=-1).values
    info = {
        "features_shape": list(features.shape),
        "encoder_out_shape": list(encoder_out.shape),
        "greedy_tokens": tokens,
        "greedy_text": tokenizer.batch_decode(greedy.sequences, skip_special_tokens=True)[0],
        "greedy_pieces": tokenizer.convert_ids_to_tokens(tokens),
        "greedy_min_margin": float((top2[:, 0] - top2[:, 1]).min()),
        "beam4_tokens": beam[0].tolist(),
        "beam4_text": tokenizer.batch_decode(beam, skip_special_tokens=True)[0],
        "decoder_start_token_id": generation.decoder_start_token_id,
        "eos_token_id": generation.eos_token_id,
        "pad_token_id": generation.pad_token_id,
        "bos_token_id": generation.bos_token_id,
        "forced_bos_token_id": generation.forced_bos_token_id,
        "max_length": generation.max_length,
        "do_upper_case": tokenizer.do_upper_case,
        "lang_code_to_id": tokenizer.lang_code_to_id,
        "all_special_ids": tokenizer.all_special_ids,
    }
    # detokenisation on its own: random id sequences, special ids among them
    rng = np.random.default_rng(0)
    cases = [
        rng.integers(0, len(tokenizer.encoder), rng.integers(1, 16)).tolist() for _ in range(40)
    ]
    cases += [[2, 3, 2], [tokenizer.encoder["▁"]] * 3 if "▁" in tokenizer.encoder else [4]]
    info["decode_cases"] = [
        {"tokens": ids, "text": tokenizer.decode(ids, skip_special_tokens=True)} for ids in cases
    ]
    arrays = {
        "input_features": features[0].numpy(),
        "encoder_out": encoder_out[0].numpy(),
        "greedy_logits": logits.numpy(),
    }
    return info, arrays


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--audio-dir", type=Path, default=REPO.parent / "shared" / "audio")
    parser.add_argument("--out", type=Path, default=REPO / "tests" / "reference" / "speech2text")
    args = parser.parse_args()
    if is_speech_available():
        sys.exit("uninstall torchaudio: the fixtures pin the feature extractor's numpy path")
    torch.set_num_threads(2)
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "sentencepiece": sentencepiece.__version__,
        "python": platform.python_version(),
        "checkpoints": CHECKPOINTS,
        "audio": AUDIO_FILE,
    }

    manifest = read_manifest(args.audio_dir)
    extractor = Speech2TextFeatureExtractor()
    features: dict[str, np.ndarray] = {"__meta__": np.array(json.dumps(meta))}
    for entry in manifest:
        if entry["expect"] in UNREADABLE:
            continue
        samples = load_audio(args.audio_dir / entry["file"])
        fbank = extractor(samples, sampling_rate=16000, return_tensors="np").input_features[0]
        features[f"{entry['file']}|every10"] = fbank[::10].astype(np.float32)
        features[f"{entry['file']}|frames"] = np.array(fbank.shape[0], dtype=np.int64)
    np.savez_compressed(args.out / "features.npz", **features)
    print(f"features.npz: {(len(features) - 1) // 2} files")

    english = [e["text"].lower() for e in manifest if e["language"] == "en" and e["text"]]
    latin = [e["text"] for e in manifest if e["language"] in LATIN_SCRIPT and e["text"]]
    lang_tokens = [f"<lang:{code}>" for code in MUSTC]
    vocabularies = {
        "tiny-asr": (train_vocabulary(english, CHECKPOINTS["tiny-asr"]["vocab"], []), {}),
        "tiny-st": (
            train_vocabulary(latin, CHECKPOINTS["tiny-st"]["vocab"], lang_tokens),
            {"lang_codes": "mustc", "tgt_lang": TARGET_LANGUAGE},
        ),
    }
    vocabularies["tiny-asr"][1]["do_upper_case"] = True

    samples = load_audio(args.audio_dir / AUDIO_FILE)
    expected: dict = {"meta": meta}
    arrays: dict[str, np.ndarray] = {"__meta__": np.array(json.dumps(meta))}
    for name, settings in CHECKPOINTS.items():
        folder = args.out / name
        spm_model, options = vocabularies[name]
        build_checkpoint(folder, settings, spm_model, options)
        info, tensors = reference_outputs(folder, samples)
        expected[name] = info
        # the input features are the same for both: kept once, under their own name
        arrays["input_features"] = tensors.pop("input_features")
        arrays.update({f"{name}|{key}": value for key, value in tensors.items()})
        size = sum(f.stat().st_size for f in folder.iterdir())
        print(f"{name}/: {size // 1024} KB; greedy {info['greedy_tokens']}")
        print(f"  text {info['greedy_text']!r}; margin {info['greedy_min_margin']:.3f}")
        print(f"  beam4 {info['beam4_tokens']}")
    (args.out / "expected.json").write_text(
        json.dumps(expected, indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    np.savez_compressed(args.out / "expected.npz", **arrays)
    print(f"expected.json, expected.npz: {', '.join(CHECKPOINTS)}")


if __name__ == "__main__":
    main()
