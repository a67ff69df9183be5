"""Reading checkpoints, for both model families: JSON configuration, safetensors (or, for older
checkpoints, a `pytorch_model.bin` read with `weights_only=True`), and copying the tensors into
a network built on the meta device with every key and shape checked.

Loading executes no code from the checkpoint, and the configuration is bounds-checked before
any tensor is allocated.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Collection
from pathlib import Path
from typing import TYPE_CHECKING, Any

from whisper_cli.errors import ModelError, first_line

if TYPE_CHECKING:
    import torch


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ModelError(f"{path}: not valid JSON ({error.msg} at line {error.lineno})") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ModelError(f"{path}: cannot be read ({error})") from None
    if not isinstance(data, dict):
        raise ModelError(f"{path}: expected a JSON object")
    return data


def bounded_int(config: dict[str, Any], key: str, low: int, high: int, source: Path) -> int:
    value = config.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ModelError(f"{source}: {key} must be an integer, not {value!r}")
    if not low <= value <= high:
        raise ModelError(f"{source}: {key} = {value} is out of range [{low}, {high}]")
    return value


def read_weights(folder: Path) -> dict[str, torch.Tensor]:
    """A folder's tensors: its safetensors, else (older checkpoints) its `pytorch_model.bin`,
    which is read with `weights_only=True`, so it cannot run code."""
    bin_file = folder / "pytorch_model.bin"
    has_safetensors = (folder / "model.safetensors").is_file() or (
        folder / "model.safetensors.index.json"
    ).is_file()
    if has_safetensors or not bin_file.is_file():
        return _read_safetensors(folder)
    import pickle

    import torch

    try:
        state = torch.load(bin_file, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, OSError, EOFError) as error:
        raise ModelError(f"{bin_file}: cannot read the weights ({first_line(error)})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{bin_file}: not a state dict of tensors")
    return state


def _safetensors_files(folder: Path) -> list[Path]:
    """A folder's safetensors files: the one, or the shards its index names; [] for none."""
    index = folder / "model.safetensors.index.json"
    if (folder / "model.safetensors").is_file():
        return [folder / "model.safetensors"]
    if index.is_file():
        return sorted({folder / f for f in read_json(index).get("weight_map", {}).values()})
    return []


def _read_safetensors(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    files = _safetensors_files(folder)
    if not files:
        raise ModelError(f"{folder}: no model.safetensors (is this a Whisper model folder?)")
    state: dict[str, torch.Tensor] = {}
    for file in files:
        try:
            state.update(load_file(file))
        except (SafetensorError, OSError) as error:
            raise ModelError(f"{file}: cannot read the weights ({error})") from None
    return state


_SAFETENSORS_FLOATS = {"F16": "float16", "BF16": "bfloat16", "F32": "float32"}


def mapped_tensor(
    folder: Path, key: str, rename: Callable[[str], str] = lambda name: name
) -> torch.Tensor | None:
    """Tensor `key` (as `rename` names the checkpoint's tensors) of a folder's safetensors as a
    view of its file mapped
    into memory, copy-on-write: a page is read in when first touched, and only the pages
    touched count in the process's memory. None where no safetensors file holds it as a
    floating-point tensor that can be viewed in place."""
    import struct

    import torch

    for file in _safetensors_files(folder):
        try:  # the format: the header's length (8 bytes), the header (JSON), the data
            with file.open("rb") as stream:
                (header_size,) = struct.unpack("<Q", stream.read(8))
                header = json.loads(stream.read(header_size)) if header_size < 1 << 27 else {}
        except (OSError, struct.error, ValueError):
            return None
        names = [name for name in header if rename(name) == key]
        if not names:
            continue
        entry = header[names[0]]
        dtype = getattr(torch, _SAFETENSORS_FLOATS.get(entry.get("dtype"), ""), None)
        try:
            begin, end = (8 + header_size + int(offset) for offset in entry["data_offsets"])
            shape = [int(n) for n in entry["shape"]]
        except (KeyError, TypeError, ValueError):
            return None
        size = file.stat().st_size
        if (
            dtype is None
            or begin % dtype.itemsize
            or end - begin != dtype.itemsize * math.prod(shape)
            or end > size
        ):
            return None
        mapped = torch.from_file(str(file), shared=False, size=size, dtype=torch.uint8)
        return mapped[begin:end].view(dtype).view(shape)
    return None


def assign_checked(
    model: torch.nn.Module,
    state: dict[str, torch.Tensor],
    dtype: torch.dtype,
    source: Path,
    keep_half: Collection[str] = (),
) -> None:
    """Copy `state` into `model` (built on the meta device), insisting that keys and shapes
    match exactly; floating-point tensors are converted to `dtype`, except the float16 ones
    named in `keep_half`, which stay as they are.

    `state` is emptied as it is converted, so that a float16 checkpoint computed in float32
    never holds both copies of every weight at once.
    """
    import torch

    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:3])}" + (" …" if len(missing) > 3 else ""))
        if unexpected:
            more = " …" if len(unexpected) > 3 else ""
            parts.append(f"unexpected {', '.join(unexpected[:3])}{more}")
        raise ModelError(
            f"{source}: the weights do not match the configuration ({'; '.join(parts)})"
        )
    for key, tensor in state.items():
        if tuple(tensor.shape) != tuple(expected[key].shape):
            raise ModelError(
                f"{source}: tensor {key} has shape {tuple(tensor.shape)}, "
                f"the configuration implies {tuple(expected[key].shape)}"
            )
    converted = {}
    for key in list(state):
        tensor = state.pop(key)
        half = key in keep_half and tensor.dtype == torch.float16
        kept = half or not tensor.is_floating_point()
        # copied, even where the type stays, rather than kept as a view of the mapped file: one
        # view keeps the whole mapping, and in the process's memory every page the loader read
        # (weights since repacked too) for as long as the model lives
        converted[key] = tensor.to(tensor.dtype if kept else dtype, copy=True)
    model.load_state_dict(converted, assign=True)
