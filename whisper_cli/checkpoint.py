"""Reading checkpoints, for both model families: JSON configuration, safetensors (or, for older
checkpoints, a `pytorch_model.bin` read with `weights_only=True`), and copying the tensors into
a network built on the meta device with every key and shape checked.

Loading executes no code from the checkpoint, and the configuration is bounds-checked before
any tensor is allocated.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Collection, Sequence
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


# safetensors' type names → torch's (the file is little-endian, as the machines we run on)
_SAFETENSORS_DTYPES = {
    "F16": "float16",
    "BF16": "bfloat16",
    "F32": "float32",
    "F64": "float64",
    "I64": "int64",
    "I32": "int32",
    "I16": "int16",
    "I8": "int8",
    "U8": "uint8",
    "BOOL": "bool",
}
_MAX_HEADER = 1 << 27  # bytes of JSON header this reader accepts


class StoredTensor:
    """A tensor of a safetensors file, read only when `read` is called: its type and shape are
    the header's.

    It is read with plain file reads into memory of its own, so that the file's pages stay in
    the system's cache and never count in the process's memory: a mapping of the file (what
    safetensors' own loader gives) counts every page read for as long as one tensor of it
    lives, which during a load is the whole file on top of the converted copies."""

    __slots__ = ("file", "dtype", "shape", "begin", "end")

    def __init__(
        self, file: Path, dtype: torch.dtype, shape: tuple[int, ...], begin: int, end: int
    ):
        self.file, self.dtype, self.shape, self.begin, self.end = file, dtype, shape, begin, end

    def read(self) -> torch.Tensor:
        import torch

        data = torch.empty(self.end - self.begin, dtype=torch.uint8)
        view = memoryview(data.numpy())
        try:
            with self.file.open("rb") as stream:
                stream.seek(self.begin)
                done = 0
                while done < len(view):
                    got = stream.readinto(view[done:])
                    if not got:
                        raise OSError("the file ends early")
                    done += got
        except OSError as error:
            raise ModelError(f"{self.file}: cannot read the weights ({error})") from None
        return data.view(self.dtype).view(self.shape)


def _safetensors_entries(file: Path) -> dict[str, StoredTensor] | None:
    """The tensors of one safetensors file, by name, from its header; None where the header is
    not one this reader can vouch for (safetensors' own loader then reads the file, and says
    what is wrong with it)."""
    import struct
    import sys

    import torch

    if sys.byteorder != "little":
        return None
    try:  # the format: the header's length (8 bytes), the header (JSON), the data
        size = file.stat().st_size
        with file.open("rb") as stream:
            (header_size,) = struct.unpack("<Q", stream.read(8))
            if header_size >= _MAX_HEADER:
                return None
            header = json.loads(stream.read(header_size))
    except (OSError, struct.error, ValueError):
        return None
    if not isinstance(header, dict):
        return None
    entries = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype = getattr(torch, _SAFETENSORS_DTYPES[entry["dtype"]])
            begin, end = (8 + header_size + int(offset) for offset in entry["data_offsets"])
            shape = tuple(int(n) for n in entry["shape"])
        except (KeyError, TypeError, ValueError):
            return None
        if (
            min(shape, default=0) < 0
            or not 8 + header_size <= begin <= end <= size
            or end - begin != dtype.itemsize * math.prod(shape)
        ):
            return None
        entries[name] = StoredTensor(file, dtype, shape, begin, end)
    return entries


def stored_weights(folder: Path) -> dict[str, StoredTensor] | None:
    """A folder's safetensors tensors, unread (`StoredTensor`), by name; None when it has no
    safetensors file, or one whose header this reader does not vouch for: `read_weights` then
    reads them, or says what is wrong."""
    files = _safetensors_files(folder)
    state: dict[str, StoredTensor] = {}
    for file in files:
        entries = _safetensors_entries(file)
        if entries is None or set(entries) & set(state):
            return None
        state |= entries
    return state if files else None


def mapped_tensor(
    folder: Path, key: str, rename: Callable[[str], str] = lambda name: name
) -> torch.Tensor | None:
    """Tensor `key` (as `rename` names the checkpoint's tensors) of a folder's safetensors as a
    view of its file mapped into memory, copy-on-write: a page is read in when first touched,
    and only the pages touched count in the process's memory. None where no safetensors file
    holds it as a floating-point tensor that can be viewed in place."""
    import torch

    for file in _safetensors_files(folder):
        entries = _safetensors_entries(file)
        if entries is None:
            return None
        names = [name for name in entries if rename(name) == key]
        if not names:
            continue
        entry = entries[names[0]]
        halves_and_singles = (torch.float16, torch.bfloat16, torch.float32)
        if entry.dtype not in halves_and_singles or entry.begin % entry.dtype.itemsize:
            return None
        size = file.stat().st_size
        mapped = torch.from_file(str(file), shared=False, size=size, dtype=torch.uint8)
        return mapped[entry.begin : entry.end].view(entry.dtype).view(entry.shape)
    return None


def assign_checked(
    model: torch.nn.Module,
    state: dict[str, Any],
    dtype: torch.dtype,
    source: Path,
    keep_half: Collection[str] = (),
    units: Sequence[str] = (),
    finish: Callable[[str], None] | None = None,
) -> None:
    """Copy `state` (tensors, or `StoredTensor`s read as their turn comes) into `model` (built on
    the meta device), insisting that keys and shapes match exactly; floating-point tensors are
    converted to `dtype`, except the float16 ones named in `keep_half`, which stay as they are.

    `state` is emptied as it is converted, so that a float16 checkpoint computed in float32
    never holds both copies of every weight at once. The tensors go in the model's order, and
    each of `units` (names of submodules) is loaded as soon as its last tensor is converted and
    handed to `finish(name)` before the next tensor is read: there the caller may lay it out
    anew (quantise it), so that no more than one unit at the checkpoint's precision is in
    memory at a time.
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
    unit_of = {key: unit for key in expected for unit in units if key.startswith(f"{unit}.")}
    left = Counter(unit_of.values())  # tensors each unit still waits for
    loading: dict[str, dict[str, torch.Tensor]] = {unit: {} for unit in left}
    rest = {}
    for key in expected:
        stored = state.pop(key)
        fresh = isinstance(stored, StoredTensor)
        tensor = stored.read() if fresh else stored
        half = key in keep_half and tensor.dtype == torch.float16
        kept = half or not tensor.is_floating_point()
        # copied, even where the type stays, rather than kept as a view of the given tensor (of
        # a mapped file, when safetensors' loader read it): one view keeps the whole mapping,
        # and in the process's memory every page the loader read for as long as the model lives
        tensor = tensor.to(tensor.dtype if kept else dtype, copy=not fresh)
        unit = unit_of.get(key)
        if unit is None:
            rest[key] = tensor
            continue
        loading[unit][key.removeprefix(f"{unit}.")] = tensor
        left[unit] -= 1
        if not left[unit]:
            model.get_submodule(unit).load_state_dict(loading.pop(unit), assign=True)
            if finish is not None:
                finish(unit)
    # the units are in, and may have changed their names: the rest was checked above
    model.load_state_dict(rest, assign=True, strict=not units)
