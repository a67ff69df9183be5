"""Finding and loading checkpoints: folders, the Hub cache, openai .pt files, and every way a
checkpoint can be wrong."""

import dataclasses
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.conftest import REFERENCE, lay_out_hub_cache, require
from whisper_cli.checkpoint import StoredTensor, assign_checked, mapped_tensor, stored_weights
from whisper_cli.errors import ModelError
from whisper_cli.hub import MODELS, resolve_model
from whisper_cli.loading import load_model
from whisper_cli.nn.quantize import Int8Linear
from whisper_cli.whisper.loading import hf_to_openai_key


def _copy(checkpoint: Path, tmp_path: Path) -> Path:
    target = tmp_path / "model"
    shutil.copytree(checkpoint, target)
    return target


def _first_logits(model) -> torch.Tensor:
    mel = torch.linspace(-1, 1, model.model.dims.n_mels * 3000).reshape(1, -1, 3000)
    with torch.inference_mode():
        features = model.model.encoder(mel)
        tokens = torch.tensor([model.tokenizer.sot_sequence("en")])
        hidden = model.model.decoder(tokens, model.model.decoder.new_cache(features, 1))
        return model.model.decoder.logits(hidden[0, -1])


def test_every_short_name_maps_to_a_hub_repo():
    assert MODELS["turbo"] == MODELS["large-v3-turbo"] == "openai/whisper-large-v3-turbo"
    for name in ("tiny", "tiny.en", "base", "small", "medium", "large-v1", "large-v2", "large-v3"):
        assert MODELS[name].startswith("openai/whisper-")
    assert MODELS["distil-large-v3"] == "distil-whisper/distil-large-v3"


def test_hf_names_map_onto_openai_names():
    assert hf_to_openai_key("model.decoder.layers.3.encoder_attn.k_proj.weight") == (
        "decoder.blocks.3.cross_attn.key.weight"
    )
    assert hf_to_openai_key("model.encoder.layer_norm.bias") == "encoder.ln_post.bias"
    assert hf_to_openai_key("model.decoder.layers.0.fc2.bias") == "decoder.blocks.0.mlp.2.bias"
    assert hf_to_openai_key("model.encoder.embed_positions.weight") == (
        "encoder.positional_embedding"
    )


def test_loads_a_folder_with_its_alignment_heads(tiny_checkpoint):
    model = load_model(tiny_checkpoint, device="cpu")
    assert model.model.alignment_heads == ((1, 0),)
    assert model.model.dtype == torch.float32
    assert all(not p.requires_grad for p in model.model.parameters())
    assert model.is_multilingual and model.can_translate


def test_float16_weights_compute_in_float32_on_cpu(tiny_checkpoint, tmp_path):
    folder = _copy(tiny_checkpoint, tmp_path)
    state = load_file(folder / "model.safetensors")
    save_file({k: v.half() for k, v in state.items()}, folder / "model.safetensors")
    model = load_model(folder, device="cpu")
    assert model.model.dtype == torch.float32
    assert torch.isfinite(_first_logits(model)).all()


def test_assign_checked_keeps_float16_only_where_asked(tmp_path):
    with torch.device("meta"):
        model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    state = {k: torch.ones(v.shape, dtype=torch.float16) for k, v in model.state_dict().items()}
    state["1.weight"] = state["1.weight"].float()  # asked, but not float16: converted anyway
    assign_checked(model, state, torch.float32, tmp_path, keep_half={"0.weight", "1.weight"})
    dtypes = {k: v.dtype for k, v in model.state_dict().items()}
    assert dtypes == {
        "0.weight": torch.float16,
        "0.bias": torch.float32,
        "1.weight": torch.float32,
        "1.bias": torch.float32,
    }
    assert not state  # emptied as it went


def test_assign_checked_copies_even_what_it_keeps_as_it_is(tmp_path):
    """No weight stays a view of the checkpoint's tensors (of its mapped file, when read from
    safetensors): one view would keep the whole file's pages in memory."""
    with torch.device("meta"):
        model = torch.nn.Linear(4, 3)
    state = {k: torch.ones(v.shape, dtype=torch.float16) for k, v in model.state_dict().items()}
    given = {k: v.data_ptr() for k, v in state.items()}
    assign_checked(model, state, torch.float16, tmp_path, keep_half={"weight"})
    for key, value in model.state_dict().items():
        assert value.dtype == torch.float16
        assert value.data_ptr() != given[key]
        assert torch.equal(value, torch.ones_like(value))


def test_stored_weights_read_what_safetensors_reads(tmp_path):
    """Read tensor by tensor with plain reads into memory of their own: the file's pages stay
    in the system's cache, not in the process (a mapping would count each page read)."""
    state = {
        "half": torch.randn(3, 4).half(),
        "brain": torch.randn(5).to(torch.bfloat16),
        "single": torch.randn(2, 2, 2),
        "long": torch.arange(6).reshape(2, 3),
        "scalar": torch.tensor(2.5),
        "empty": torch.zeros(0, 4),
        "flags": torch.tensor([True, False, True]),
    }
    save_file(state, tmp_path / "model.safetensors")
    stored = stored_weights(tmp_path)
    assert stored is not None and set(stored) == set(state)
    for key, tensor in state.items():
        assert (stored[key].dtype, stored[key].shape) == (tensor.dtype, tuple(tensor.shape))
        read = stored[key].read()
        assert read.dtype == tensor.dtype and torch.equal(read, tensor)
        if read.numel() and Path("/proc/self/maps").is_file():
            ranges = _file_mappings(tmp_path / "model.safetensors")
            assert not any(start <= read.data_ptr() < end for start, end in ranges)


def _shard(folder: Path) -> dict[str, torch.Tensor]:
    """Split a folder's model.safetensors into two shards and an index, as large checkpoints
    come; the tensors it held."""
    state = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    names = sorted(state)
    shards = {"a.safetensors": names[::2], "b.safetensors": names[1::2]}
    for file, keys in shards.items():
        save_file({k: state[k] for k in keys}, folder / file)
    weight_map = {k: file for file, keys in shards.items() for k in keys}
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    return state


def test_a_sharded_folder_is_read_shard_by_shard_as_one(tiny_checkpoint, tmp_path):
    folder = _copy(tiny_checkpoint, tmp_path)
    whole = load_model(folder, device="cpu")
    state = _shard(folder)
    stored = stored_weights(folder)
    assert stored is not None and set(stored) == set(state)
    assert torch.equal(_first_logits(load_model(folder, device="cpu")), _first_logits(whole))


def test_weights_stored_weights_cannot_vouch_for_go_to_safetensors(tiny_checkpoint, tmp_path):
    """A file whose header does not match its size (cut short) is left to safetensors' own
    loader, which says what is wrong."""
    folder = _copy(tiny_checkpoint, tmp_path)
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[:-100])
    assert stored_weights(folder) is None
    with pytest.raises(ModelError, match="cannot read the weights"):
        load_model(folder, device="cpu")


def test_assign_checked_hands_over_each_unit_before_reading_on(tmp_path, monkeypatch):
    """Each unit is loaded and handed to `finish` as soon as its last tensor is read, before the
    next tensor is: what lets int8 loading quantise block by block."""
    with torch.device("meta"):
        model = torch.nn.Sequential(
            torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2), torch.nn.LayerNorm(2)
        )
    state = {k: torch.randn(v.shape) for k, v in model.state_dict().items()}
    save_file(state, tmp_path / "model.safetensors")
    stored = stored_weights(tmp_path)
    assert stored is not None
    names = {id(tensor): key for key, tensor in stored.items()}
    events = []
    read = StoredTensor.read
    monkeypatch.setattr(
        StoredTensor, "read", lambda self: events.append(names[id(self)]) or read(self)
    )

    def finish(unit: str) -> None:
        events.append(f"finish {unit} on {model.get_submodule(unit).weight.device.type}")

    assign_checked(model, stored, torch.float32, tmp_path, units=["0", "2"], finish=finish)
    assert events == [
        "0.weight", "0.bias", "finish 0 on cpu",
        "2.weight", "2.bias", "finish 2 on cpu",
        "3.weight", "3.bias",
    ]  # fmt: skip
    assert not stored
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key])


@pytest.mark.parametrize("compute_type", ["int8", "float32"])
def test_laid_out_as_it_loads_is_laid_out_as_after_loading(
    tiny_checkpoint, tmp_path, monkeypatch, compute_type
):
    """Block by block while the checkpoint is read, or the whole model once read (as before):
    the same layers, the same logits to the bit (float16 weights, as OpenAI's: the float32
    layout is then FBGEMM's float16 one)."""
    from whisper_cli.whisper import loading, packing

    folder = _copy(tiny_checkpoint, tmp_path)
    state = load_file(folder / "model.safetensors")
    save_file({k: v.half() for k, v in state.items()}, folder / "model.safetensors")
    streamed = load_model(folder, device="cpu", compute_type=compute_type)

    class AfterLoading(packing.StreamedLayout):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.units = []  # nothing laid out as it loads: prepare_for_cpu does it all

    monkeypatch.setattr(loading, "StreamedLayout", AfterLoading)
    whole = load_model(folder, device="cpu", compute_type=compute_type)
    kinds = [
        [type(module).__name__ for module in model.model.modules()] for model in (streamed, whole)
    ]
    assert kinds[0] == kinds[1]
    fused = type(streamed.model.decoder.blocks[0].attn.query_key_value)
    assert fused is not torch.nn.Linear and streamed.model.decoder.output is not None
    assert torch.equal(_first_logits(streamed), _first_logits(whole))


@pytest.mark.real_model
def test_loading_in_int8_holds_one_block_at_a_time_at_the_checkpoints_precision(
    real_model_path,
):
    """int8 layers are quantised as the checkpoint is read, and the file is read rather than
    mapped: the process's memory never holds the file's pages and a float16 copy of every
    weight besides the int8 ones. The rise of the peak over the process before loading, with
    base (138 MiB of float16): 298-345 MiB before, 205-275 MiB now (glibc's heaps keep some of
    what the pool's threads free, more in some runs than others: the lower of two runs is
    taken); the bound sits between."""
    import subprocess
    import sys

    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("needs Linux's /proc to reset the peak")
    script = (
        "import torch; torch.set_num_threads(2)\n"
        "from whisper_cli.loading import load_model\n"
        "def status(key):\n"
        "    lines = open('/proc/self/status').read().splitlines()\n"
        "    return next(int(l.split()[1]) for l in lines if l.startswith(key)) // 1024\n"
        "open('/proc/self/clear_refs', 'w').write('5')\n"
        "before = status('VmRSS')\n"
        f"load_model({str(real_model_path)!r}, device='cpu', compute_type='int8')\n"
        "print(status('VmHWM') - before)\n"
    )
    rises = []
    for _ in range(2):
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        rises.append(int(done.stdout))
    checkpoint_mib = (real_model_path / "model.safetensors").stat().st_size / 2**20
    assert min(rises) < 2.0 * checkpoint_mib, rises


def test_a_broken_tokenizer_is_named_and_broken_weights_first(tiny_checkpoint, tmp_path):
    """The tokenizer is read on a thread of its own while the weights load: its error still
    names it, and weights that do not fit are still what is reported first."""
    folder = _copy(tiny_checkpoint, tmp_path)
    (folder / "tokenizer.json").write_text("{not json")
    with pytest.raises(ModelError, match=r"tokenizer\.json: not a usable tokenizer\.json"):
        load_model(folder, device="cpu")
    state = load_file(folder / "model.safetensors")
    del state["model.encoder.conv1.bias"]
    save_file(state, folder / "model.safetensors")
    with pytest.raises(ModelError, match=r"missing encoder\.conv1\.bias"):
        load_model(folder, device="cpu")


def _file_mappings(path: Path) -> list[tuple[int, int]]:
    """The address ranges of this process's mappings of `path` (Linux)."""
    ranges = []
    for line in Path("/proc/self/maps").read_text().splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and Path(fields[5]) == path.resolve():
            start, end = (int(bound, 16) for bound in fields[0].split("-"))
            ranges.append((start, end))
    return ranges


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32])
def test_mapped_tensor_reads_a_tensor_in_place(tiny_checkpoint, tmp_path, dtype):
    folder = _copy(tiny_checkpoint, tmp_path)
    state = {k: v.to(dtype) for k, v in load_file(folder / "model.safetensors").items()}
    save_file(state, folder / "model.safetensors")
    table = mapped_tensor(folder, "decoder.token_embedding.weight", hf_to_openai_key)
    assert table is not None and table.dtype == dtype
    assert torch.equal(table, state["model.decoder.embed_tokens.weight"])
    assert mapped_tensor(folder, "decoder.no_such.weight", hf_to_openai_key) is None
    if Path("/proc/self/maps").is_file():
        ranges = _file_mappings(folder / "model.safetensors")
        assert any(start <= table.data_ptr() < end for start, end in ranges)


def test_mapped_tensor_declines_what_it_cannot_view(tmp_path):
    file, key = tmp_path / "model.safetensors", "decoder.token_embedding.weight"
    save_file({"model.decoder.embed_tokens.weight": torch.arange(6)}, file)
    assert mapped_tensor(tmp_path, key, hf_to_openai_key) is None  # not floating-point
    file.write_bytes(b"\xff" * 8 + b"{}")  # a header it cannot read
    assert mapped_tensor(tmp_path, key, hf_to_openai_key) is None
    assert mapped_tensor(tmp_path / "missing", key, hf_to_openai_key) is None


def test_mapped_tensor_finds_the_shard_that_holds_it(tiny_checkpoint, tmp_path):
    folder = _copy(tiny_checkpoint, tmp_path)
    state = _shard(folder)
    for key in ("model.decoder.embed_tokens.weight", "model.encoder.conv1.weight"):
        table = mapped_tensor(folder, hf_to_openai_key(key), hf_to_openai_key)
        assert table is not None and torch.equal(table, state[key])


@pytest.mark.parametrize("compute_type", ["float32", "int8"])
def test_the_lookup_table_is_read_from_the_file_once_it_has_a_projection(
    tiny_checkpoint, tmp_path, compute_type
):
    """On the CPU the projection is a layer of its own, and the table only looks tokens up:
    it stays in the file, and the model's logits are those of a model holding a copy."""
    folder = _copy(tiny_checkpoint, tmp_path)
    state = load_file(folder / "model.safetensors")
    save_file({k: v.half() for k, v in state.items()}, folder / "model.safetensors")
    model = load_model(folder, device="cpu", compute_type=compute_type)
    if model.model.decoder.output is None:
        pytest.skip("this PyTorch has no CPU layout for the projection")
    table = model.model.decoder.token_embedding.weight
    assert torch.equal(table, state["model.decoder.embed_tokens.weight"].half())
    if Path("/proc/self/maps").is_file():
        ranges = _file_mappings(folder / "model.safetensors")
        assert any(start <= table.data_ptr() < end for start, end in ranges)
    copied = load_model(folder, device="cpu", compute_type=compute_type)
    copied.model.decoder.token_embedding.weight = torch.nn.Parameter(table.clone())
    assert torch.equal(_first_logits(model), _first_logits(copied))


def test_half_precision_compute_types_run_on_cpu_too(tiny_checkpoint):
    """bfloat16 on a CPU: the layer norms compute in float32 with float32 parameters."""
    model = load_model(tiny_checkpoint, device="cpu", compute_type="bfloat16")
    assert model.model.dtype == torch.bfloat16
    assert torch.isfinite(_first_logits(model)).all()
    transcript = model.transcribe(np.zeros(16000, dtype=np.float32), temperature=0.0)
    assert transcript.duration == 1.0


def test_bfloat16_is_called_slow_only_where_the_cpu_emulates_it(monkeypatch):
    from whisper_cli import loading

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    monkeypatch.setattr(loading, "native_bfloat16", lambda: False)
    assert "emulated" in loading.slow_compute_type("bfloat16", cpu)
    assert loading.slow_compute_type("bfloat16", cuda) is None
    assert loading.slow_compute_type("float32", cpu) is None
    assert loading.slow_compute_type("int8", cpu) is None
    monkeypatch.setattr(loading, "native_bfloat16", lambda: True)
    assert loading.slow_compute_type("bfloat16", cpu) is None


def test_a_cpu_limited_to_avx2_has_no_native_bfloat16():
    """What an AVX2 CPU (or oneDNN held to AVX2) reports, on whatever CPU runs the test."""
    import subprocess
    import sys

    probe = "from whisper_cli.loading import native_bfloat16; print(native_bfloat16())"
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def _drop(name):
    return lambda state: state.pop(name)


def _put(name, tensor):
    return lambda state: state.__setitem__(name, tensor)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_drop("model.decoder.layers.1.fc1.bias"), r"missing decoder\.blocks\.1\.mlp\.0\.bias"),
        (_put("model.decoder.extra.weight", torch.zeros(2)), r"unexpected decoder\.extra\.weight"),
        (
            _put("model.encoder.conv1.bias", torch.zeros(3)),
            r"encoder\.conv1\.bias has shape \(3,\)",
        ),
    ],
    ids=["missing", "unexpected", "shape"],
)
def test_weights_that_do_not_fit_the_configuration_are_named(
    tiny_checkpoint, tmp_path, edit, message
):
    folder = _copy(tiny_checkpoint, tmp_path)
    state = load_file(folder / "model.safetensors")
    edit(state)
    save_file(state, folder / "model.safetensors")
    with pytest.raises(ModelError, match=message):
        load_model(folder, device="cpu")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"model_type": "bert"}', "is not whisper"),
    ],
)
def test_malformed_config_is_one_clear_error(tiny_checkpoint, tmp_path, text, message):
    folder = _copy(tiny_checkpoint, tmp_path)
    (folder / "config.json").write_text(text)
    with pytest.raises(ModelError, match=message):
        load_model(folder, device="cpu")


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("d_model", 10**9, "out of range"),
        ("encoder_layers", -1, "out of range"),
        ("vocab_size", "many", "must be an integer"),
        ("decoder_attention_heads", 3, "not divisible"),
    ],
)
def test_config_values_are_bounds_checked_before_allocation(
    tiny_checkpoint, tmp_path, key, value, message
):
    folder = _copy(tiny_checkpoint, tmp_path)
    config = json.loads((folder / "config.json").read_text())
    config[key] = value
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match=message):
        load_model(folder, device="cpu")


def test_folder_without_weights_or_config(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="no config.json"):
        load_model(tmp_path / "empty", device="cpu")


def test_wrong_paths_and_unknown_names(tmp_path):
    with pytest.raises(ModelError, match="no such model folder or file"):
        resolve_model(str(tmp_path / "nowhere" / "model.pt"))
    with pytest.raises(ModelError, match="unknown model 'bsae'"):
        resolve_model("bsae", offline=True)
    not_a_model = tmp_path / "notes.txt"
    not_a_model.write_text("hello")
    with pytest.raises(ModelError, match="not a model folder"):
        resolve_model(not_a_model)


def test_resolves_a_short_name_from_the_hub_cache_offline(tiny_checkpoint, tmp_path):
    snapshot = lay_out_hub_cache(tiny_checkpoint, tmp_path / "hub")
    checkpoint = resolve_model("base", offline=True, cache_dir=tmp_path / "hub")
    assert checkpoint.path == snapshot and checkpoint.repo_id == "openai/whisper-base"
    model = load_model("base", offline=True, cache_dir=tmp_path / "hub", device="cpu")
    assert model.name == "base"


def test_a_model_missing_offline_says_what_and_how(tmp_path):
    with pytest.raises(ModelError) as error:
        resolve_model("base", offline=True, cache_dir=tmp_path / "empty-hub")
    message = str(error.value)
    assert "openai/whisper-base" in message and "not in the Hugging Face cache" in message
    assert "whisper-cli models download base" in message
    assert "\n" not in message


def _write_openai_pt(model, path: Path, checkpoint: Path) -> None:
    """The checkpoint's tensors under openai-whisper's names (a loaded model's own state is
    laid out for the CPU: packed layers have no plain weights)."""
    dims = dataclasses.asdict(model.model.dims)
    weights = load_file(checkpoint / "model.safetensors")
    state = {hf_to_openai_key(k): v for k, v in weights.items()}
    torch.save({"dims": dims, "model_state_dict": state}, path)


def test_openai_pt_loads_with_the_tokenizer_beside_it(tiny_model, tiny_checkpoint, tmp_path):
    _write_openai_pt(tiny_model, tmp_path / "tiny.pt", tiny_checkpoint)
    shutil.copy(tiny_checkpoint / "tokenizer.json", tmp_path / "tokenizer.json")
    from_pt = load_model(tmp_path / "tiny.pt", device="cpu", offline=True)
    torch.testing.assert_close(_first_logits(from_pt), _first_logits(tiny_model))


def test_pt_files_never_unpickle_code(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"dims": {}, "model_state_dict": {}, "payload": Path("x")}, path)
    with pytest.raises(ModelError, match="not a loadable openai-whisper checkpoint"):
        load_model(path, device="cpu", offline=True)


def test_pt_with_bad_dims_is_rejected(tiny_model, tmp_path):
    path = tmp_path / "bad.pt"
    dims = dataclasses.asdict(tiny_model.model.dims) | {"n_text_layer": 10**6}
    torch.save({"dims": dims, "model_state_dict": {}}, path)
    with pytest.raises(ModelError, match="dims.n_text_layer"):
        load_model(path, device="cpu", offline=True)


def test_int8_compute_type_quantises_linear_layers(tiny_checkpoint):
    model = load_model(tiny_checkpoint, device="cpu", compute_type="int8")
    float_model = load_model(tiny_checkpoint, device="cpu")
    logits, reference = _first_logits(model), _first_logits(float_model)
    assert not torch.equal(logits, reference)  # really quantised
    assert torch.corrcoef(torch.stack([logits, reference]))[0, 1] > 0.99
    assert isinstance(model.model.decoder.output, Int8Linear)  # the vocabulary projection too


def _openai_pt() -> Path | None:
    value = os.environ.get("WHISPER_CLI_TEST_OPENAI_PT")
    default = Path.home() / ".cache" / "whisper-test-models" / "openai-base.pt"
    path = Path(value) if value else default
    return path if path.is_file() else None


@pytest.mark.real_model
def test_get_model_pt_gives_the_same_tokens_as_the_safetensors_folder(
    real_model, audio_dir, tmp_path
):
    pt = require(
        _openai_pt(),
        "openai-base.pt from ../shared/tools/get-model base (set WHISPER_CLI_TEST_OPENAI_PT)",
    )
    local = tmp_path / "openai-base.pt"
    os.symlink(pt, local)
    shutil.copy(_real_tokenizer(), tmp_path / "tokenizer.json")
    from_pt = load_model(local, device="cpu", offline=True)
    audio = audio_dir / "en_ls_61-70968-0000.flac"
    ours = real_model.transcribe(str(audio), temperature=0.0)
    theirs = from_pt.transcribe(str(audio), temperature=0.0)
    assert [s.tokens for s in theirs.segments] == [s.tokens for s in ours.segments]
    np.testing.assert_allclose(
        [s.avg_logprob for s in theirs.segments], [s.avg_logprob for s in ours.segments], atol=1e-4
    )


def _real_tokenizer() -> Path:
    from tests.conftest import SHARED, _path_from

    folder = _path_from("WHISPER_CLI_TEST_MODEL", SHARED / "models" / "whisper-base")
    assert folder is not None
    return folder / "tokenizer.json"


@pytest.mark.parametrize(
    ("files", "wants_bin"),
    [
        (["config.json", "model.safetensors", "pytorch_model.bin"], False),
        (["config.json", "pytorch_model.bin", "vocab.json"], True),
        (None, True),  # the Hub gave no listing: ask for everything
    ],
)
def test_pytorch_model_bin_is_downloaded_only_without_safetensors(files, wants_bin):
    from whisper_cli.hub import HUB_FILES, _download_patterns

    patterns = _download_patterns(files)
    assert ("pytorch_model.bin" in patterns) == wants_bin
    assert {"config.json", "vocab.json", "tokenizer_config.json"} <= set(patterns) <= set(HUB_FILES)


@pytest.mark.parametrize("family", ["whisper", "speech2text"])
def test_loading_gives_back_what_it_freed(tiny_checkpoint, monkeypatch, family):
    """Once loaded, whichever the model, the memory loading freed goes back to the system."""
    from whisper_cli import memory

    trims = []
    monkeypatch.setattr(memory, "_malloc_trim", lambda: trims.append)
    path = tiny_checkpoint if family == "whisper" else REFERENCE / "speech2text" / "tiny-asr"
    load_model(path, device="cpu")
    assert trims == [0]


def test_loading_does_not_import_torch_dynamo(tiny_checkpoint):
    """Built on the meta device, layers skip random initialisation: filling meta tensors goes
    through PyTorch's Python decompositions, whose first use imports torch._dynamo (a second
    or more of every start-up)."""
    import subprocess
    import sys

    script = (
        "import sys; from whisper_cli.loading import load_model; "
        f"load_model({str(tiny_checkpoint)!r}, device='cpu'); "
        "print('torch._dynamo' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
