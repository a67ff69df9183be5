"""Write tiny Speech2Text2 checkpoints and what transformers computes with them, as fixtures.

Speech2Text2 (`facebook/s2t-wav2vec2-large-en-de` and its siblings) is a Hugging Face
`SpeechEncoderDecoderModel`: a wav2vec 2.0 encoder that reads the normalised waveform and a
small post-norm Transformer decoder ("speech_to_text_2"). transformers dropped the model after
4.40, so these fixtures pin what 4.40 computes, and whisper-cli's tests compare against them
without transformers installed.

Two checkpoints are written, both randomly initialised from a fixed seed:

* `tiny/`: the large-lv60 layout of the real checkpoints (conv feature encoder with layer
  norm, `do_stable_layer_norm`), encoder width 96 and decoder width 64, so `enc_to_dec_proj`
  exists; the decoder's `tie_word_embeddings` is left at its default (true), so the saved
  file has no `decoder.lm_head.weight`.
* `tiny-group/`: the base layout (group norm in the first conv layer, post-norm encoder
  layers), encoder and decoder both 32 wide (no projection), and an untied `lm_head` whose
  `</s>` row is tilted so that greedy decoding stops on `</s>` before `max_length`.

Both draw the decoder's matrices wider than transformers' initialisation (see EMBED_STD), and
record which tensor transformers loads when a tied checkpoint also holds an `lm_head`.

How to run it (the outputs are committed; the venv is scratch, never a project dependency):

    python3 -m venv /work/scratch/hf
    /work/scratch/hf/bin/pip install torch==2.13.0 transformers==4.40.2 soundfile soxr
    /work/scratch/hf/bin/python tests/reference/make_speech2text2_reference.py \
        --audio-dir /work/shared/audio --out tests/reference/speech2text2

Audio is decoded by whisper-cli's own `load_audio` (this script puts the checkout on
`sys.path`), so the fixtures compare models, not decoders.
"""

import argparse
import hashlib
import json
import platform
import re
import sys
from pathlib import Path

import numpy as np
import torch
import transformers
from safetensors.torch import load_file, safe_open, save_file
from transformers import (
    GenerationConfig,
    Speech2Text2Config,
    Speech2Text2ForCausalLM,
    Speech2Text2Tokenizer,
    SpeechEncoderDecoderModel,
    Wav2Vec2Config,
    Wav2Vec2FeatureExtractor,
    Wav2Vec2Model,
)

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from whisper_cli.audio import load_audio  # noqa: E402

AUDIO_FILE = "en_ls_61-70968-0000.flac"
SEED = 0
# transformers' initialisation (std 0.02) gives nearly flat logits, so greedy decoding would
# repeat one token; the decoder's matrices are redrawn wider so that tokens vary with position
EMBED_STD = 0.1  # embed_tokens and lm_head
OTHER_STD = 0.3  # every other decoder matrix
MAX_LENGTH = 40  # generation_config.max_length: decoder tokens in all, the start token included

# the special tokens of every Speech2Text2 vocabulary (fairseq's dictionary order)
SPECIALS = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
BOS, PAD, EOS = 0, 1, 2
# fairseq decoders start from </s>. transformers' conversion script for these checkpoints
# (convert_speech_to_text_wav2vec2_seq2seq_original_to_pytorch.py) takes the decoder config
# from a Speech2Text one (decoder_start_token_id 2, also Speech2Text2Config's default) and sets
# no top-level start id, so generate() falls back to the decoder's: 2. The fixtures say 2 at
# both levels and in generation_config.json.
DECODER_START = EOS

# the real checkpoint's conv feature encoder: 7 layers, 320 samples per frame
CONV_KERNEL = (10, 3, 3, 3, 3, 2, 2)
CONV_STRIDE = (5, 2, 2, 2, 2, 2, 2)

VARIANTS = {
    "tiny": dict(
        encoder=dict(
            conv_dim=(32,) * 7,
            feat_extract_norm="layer",
            do_stable_layer_norm=True,
            hidden_size=96,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=192,
            num_conv_pos_embeddings=16,
            num_conv_pos_embedding_groups=4,
        ),
        decoder=dict(d_model=64, decoder_ffn_dim=128, tie_word_embeddings=True),
    ),
    "tiny-group": dict(
        encoder=dict(
            conv_dim=(16,) * 7,
            feat_extract_norm="group",
            do_stable_layer_norm=False,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            num_conv_pos_embeddings=15,  # odd: no padding frame to remove
            num_conv_pos_embedding_groups=4,
        ),
        decoder=dict(d_model=32, decoder_ffn_dim=64, tie_word_embeddings=False),
        eos_like=253,  # untied lm_head only: with a tied one this would change </s>'s embedding
    ),
}


def plain(obj):
    """numpy / torch values -> plain Python values for JSON."""
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, (torch.Tensor, np.ndarray)):
        return plain(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def build_vocab(audio_dir: Path) -> dict[str, int]:
    """A Speech2Text2-style vocabulary from the manifest's English transcripts.

    Words of up to four letters are whole tokens; longer ones are cut into three-letter
    pieces where every piece but the last ends in "@@", which is how fastBPE marks a piece that
    the next one continues. A few punctuation tokens exercise the tokenizer's space clean-up.
    """
    lines = (audio_dir / "manifest.jsonl").read_text(encoding="utf-8").splitlines()
    entries = [json.loads(line) for line in lines if line.strip()]
    words: list[str] = []
    for entry in entries:
        if entry.get("language") == "en":
            words += re.findall(r"[a-z']+", entry["text"].lower())
    tokens = dict(SPECIALS)
    for piece in [".", ",", "?", "!", ":", "'s", "n't", '"']:
        tokens.setdefault(piece, len(tokens))
    for word in words:
        if len(word) <= 4:
            pieces = [word]
        else:
            chunks = [word[i : i + 3] for i in range(0, len(word), 3)]
            pieces = [c + "@@" for c in chunks[:-1]] + [chunks[-1]]
        for piece in pieces:
            tokens.setdefault(piece, len(tokens))
    return tokens


def build_model(variant: dict, vocab_size: int) -> SpeechEncoderDecoderModel:
    encoder_config = Wav2Vec2Config(
        conv_kernel=CONV_KERNEL,
        conv_stride=CONV_STRIDE,
        conv_bias=True,
        feat_extract_activation="gelu",
        hidden_act="gelu",
        layer_norm_eps=1e-5,
        mask_time_prob=0.05,  # the default: the file keeps the training-only masked_spec_embed
        **variant["encoder"],
    )
    decoder_config = Speech2Text2Config(
        vocab_size=vocab_size,
        decoder_layers=2,
        decoder_attention_heads=4,
        activation_function="relu",  # the default, and the conversion script's source config's
        scale_embedding=True,
        max_target_positions=64,
        pad_token_id=PAD,
        bos_token_id=BOS,
        eos_token_id=EOS,
        decoder_start_token_id=DECODER_START,
        **variant["decoder"],
    )
    encoder = Wav2Vec2Model(encoder_config)
    decoder = Speech2Text2ForCausalLM(decoder_config)
    model = SpeechEncoderDecoderModel(encoder=encoder, decoder=decoder)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "decoder" in name and parameter.ndim == 2 and "embed_positions" not in name:
                wide = "embed_tokens" in name or "lm_head" in name
                parameter.normal_(0, EMBED_STD if wide else OTHER_STD)
        if variant.get("eos_like") is not None:
            # </s> scores a little above a token that greedy picks mid-way: decoding stops there
            head = model.decoder.lm_head.weight
            head[EOS] = 1.05 * head[variant["eos_like"]]
    model.config.pad_token_id = PAD
    model.config.bos_token_id = BOS
    model.config.eos_token_id = EOS
    model.config.decoder_start_token_id = DECODER_START
    model.generation_config = GenerationConfig(
        decoder_start_token_id=DECODER_START,
        bos_token_id=BOS,
        eos_token_id=EOS,
        pad_token_id=PAD,
        max_length=MAX_LENGTH,
        num_beams=1,
        do_sample=False,
    )
    return model.eval()


def tied_lm_head_in_file(folder: Path) -> dict:
    """What transformers loads when the decoder's `tie_word_embeddings` is true and the file
    nevertheless holds a `decoder.lm_head.weight` of its own (transformers' conversion script
    from fairseq writes both, from fairseq's separate `embed_out`): which tensor ends up as the
    input embedding and which as the output."""
    import tempfile

    state = load_file(folder / "model.safetensors")
    embedding = state["decoder.model.decoder.embed_tokens.weight"]
    head = torch.randn(embedding.shape, generator=torch.Generator().manual_seed(1))
    state["decoder.lm_head.weight"] = head
    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(scratch)
        (copy / "config.json").write_text((folder / "config.json").read_text())
        save_file(state, copy / "model.safetensors", metadata={"format": "pt"})
        model = SpeechEncoderDecoderModel.from_pretrained(copy).eval()
    loaded_embedding = model.decoder.model.decoder.embed_tokens.weight
    loaded_head = model.decoder.lm_head.weight
    return {
        "config_tie_word_embeddings": model.config.decoder.tie_word_embeddings,
        "embed_tokens_is_file_lm_head": torch.equal(loaded_embedding, head),
        "embed_tokens_is_file_embed_tokens": torch.equal(loaded_embedding, embedding),
        "lm_head_is_file_lm_head": torch.equal(loaded_head, head),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--audio-dir", type=Path, default=REPO.parent / "shared" / "audio")
    parser.add_argument("--out", type=Path, default=REPO / "tests" / "reference" / "speech2text2")
    args = parser.parse_args()
    torch.set_num_threads(2)
    args.out.mkdir(parents=True, exist_ok=True)

    vocab = build_vocab(args.audio_dir)
    extractor = Wav2Vec2FeatureExtractor(
        feature_size=1,
        sampling_rate=16000,
        padding_value=0.0,
        do_normalize=True,
        return_attention_mask=True,
    )
    samples = load_audio(args.audio_dir / AUDIO_FILE)
    features = extractor(samples, sampling_rate=16000, return_tensors="pt")
    inputs = features["input_values"]  # (1, n_samples) float32
    attention_mask = features["attention_mask"]
    normalised = inputs[0].numpy()

    arrays: dict[str, np.ndarray] = {
        "input_head": normalised[:1000],
        "input_every_97": normalised[::97],
    }
    expected: dict = {
        "meta": {
            "transformers": transformers.__version__,
            "torch": torch.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
            "threads": torch.get_num_threads(),
            "seed": SEED,
            "command": "make_speech2text2_reference.py --audio-dir /work/shared/audio "
            "--out tests/reference/speech2text2",
        },
        "audio_file": AUDIO_FILE,
        "input": {
            "n_samples": int(normalised.size),
            "sum": float(normalised.astype(np.float64).sum()),
            "abs_sum": float(np.abs(normalised.astype(np.float64)).sum()),
            "first": normalised[:8],
            "sha256": hashlib.sha256(normalised.tobytes()).hexdigest(),
            "raw_mean": float(samples.mean()),
            "raw_var": float(samples.var()),
        },
        "special_ids": {"bos": BOS, "pad": PAD, "eos": EOS, "decoder_start": DECODER_START},
        "checkpoints": {},
    }

    for index, (name, variant) in enumerate(VARIANTS.items()):
        folder = args.out / name
        torch.manual_seed(SEED + index)
        model = build_model(variant, len(vocab))
        model.save_pretrained(folder)  # model.safetensors, config.json, generation_config.json
        extractor.save_pretrained(folder)
        (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False, indent=1) + "\n")
        tokenizer = Speech2Text2Tokenizer(str(folder / "vocab.json"))
        tokenizer.save_pretrained(folder)

        # reload from disk, so the fixtures describe the saved files, not the objects in memory
        model = SpeechEncoderDecoderModel.from_pretrained(folder).eval()
        tokenizer = Speech2Text2Tokenizer.from_pretrained(folder)
        with torch.no_grad():
            hidden = model.encoder(inputs, attention_mask=attention_mask).last_hidden_state
            projected = hasattr(model, "enc_to_dec_proj")
            encoder_out = model.enc_to_dec_proj(hidden) if projected else hidden
            greedy = model.generate(
                inputs,
                attention_mask=attention_mask,
                num_beams=1,
                do_sample=False,
                max_length=MAX_LENGTH,
            )
            beam4 = model.generate(
                inputs,
                attention_mask=attention_mask,
                num_beams=4,
                do_sample=False,
                max_length=MAX_LENGTH,
            )
            # teacher-forced logits over the greedy tokens: what decode must give at each step
            logits = model(
                inputs=inputs, attention_mask=attention_mask, decoder_input_ids=greedy
            ).logits
        greedy_ids = greedy[0].tolist()
        arrays[f"{name}|encoder_out"] = encoder_out[0].numpy()
        arrays[f"{name}|greedy_logits"] = logits[0].numpy()
        with safe_open(folder / "model.safetensors", framework="pt") as saved:
            keys = sorted(saved.keys())
        expected["checkpoints"][name] = {
            "encoder_out_shape": list(encoder_out.shape),
            "enc_to_dec_proj": projected,
            "greedy_tokens": greedy_ids,
            "greedy_stopped_on_eos": greedy_ids[-1] == EOS and len(greedy_ids) > 1,
            "beam4_tokens": beam4[0].tolist(),
            "text": tokenizer.batch_decode(greedy, skip_special_tokens=True)[0],
            "text_no_cleanup": tokenizer.batch_decode(
                greedy, skip_special_tokens=True, clean_up_tokenization_spaces=False
            )[0],
            "pieces": tokenizer.convert_ids_to_tokens(greedy_ids),
            "beam4_text": tokenizer.batch_decode(beam4, skip_special_tokens=True)[0],
            "max_length": MAX_LENGTH,
            "generation_config": model.generation_config.to_diff_dict(),
            "saved_keys": keys,  # what model.safetensors holds
        }
        size = (folder / "model.safetensors").stat().st_size
        print(f"wrote {folder} (model.safetensors {size / 1024:.0f} KiB)")
        print(f"  greedy {greedy_ids}")
        print(f"  text   {expected['checkpoints'][name]['text']!r}")

    expected["tied_lm_head_in_file"] = tied_lm_head_in_file(args.out / "tiny")

    np.savez_compressed(args.out / "expected.npz", **arrays)
    print(f"wrote {args.out / 'expected.npz'}")
    path = args.out / "expected.json"
    path.write_text(json.dumps(plain(expected), indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
