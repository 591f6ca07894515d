"""Reading the weights of a trained model for fit(): a checkpoint file (safetensors or torch
pickle, read with weights_only) or a Hugging Face model folder, sharded or not, as one flat
state_dict of tensors (docs/fitting.md)."""

from __future__ import annotations

from collections.abc import Mapping
from os import PathLike
from pathlib import Path

import torch

__all__ = ["HF_WEIGHT_FILES", "load_weights"]

#: The files of a Hugging Face model folder, in the order load_weights looks for them.
HF_WEIGHT_FILES = (
    "model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json",
)


def _is_safetensors(path: Path) -> bool:
    """A safetensors file by its content: an 8-byte little-endian header length, then a JSON
    header of that length that starts with '{' (whatever the file's name)."""
    with path.open("rb") as file:
        start = file.read(9)
    if len(start) < 9:
        return False
    header = int.from_bytes(start[:8], "little")
    return start[8:9] == b"{" and 2 <= header <= path.stat().st_size - 8


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        from safetensors import SafetensorError
        from safetensors.torch import load_file
    except ImportError:
        raise ImportError(f"nspl_filler: {path}: a safetensors file; reading it needs the safetensors package "
                          "(pip install safetensors)") from None
    try:
        return load_file(path, device="cpu")
    except SafetensorError as error:
        raise ValueError(f"nspl_filler: {path}: not a safetensors file that safetensors can read ({error})") from error


def _load_torch(path: Path) -> dict[str, torch.Tensor]:
    try:
        # From an open file: torch.load given a name picks its reader by the suffix.
        with path.open("rb") as file:
            obj = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as error:  # torch.load reports a foreign file by whatever its reader trips on
        detail = (str(error).splitlines() or [""])[0][:200]
        raise ValueError(
            f"nspl_filler: {path}: not a checkpoint that torch.load can read ({type(error).__name__}: {detail})"
        ) from error
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping):
        raise ValueError(
            f"nspl_filler: {path}: expected a state_dict (a mapping of names to tensors), got {type(obj).__name__}"
        )
    return {str(name): value for name, value in obj.items() if isinstance(value, torch.Tensor)}


def _index_shards(path: Path) -> dict[str, list[str]]:
    """The weight_map of a ``*.index.json``, as shard file → the tensor names it holds there,
    shards in the order of their first tensor."""
    import json

    try:
        weight_map = json.loads(path.read_text())["weight_map"]
    except RecursionError:
        raise ValueError(f"nspl_filler: {path}: JSON nested too deeply for a sharded-checkpoint index") from None
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(
            f"nspl_filler: {path}: not a sharded-checkpoint index (a JSON object with a weight_map): {error}"
        ) from None
    if not isinstance(weight_map, dict) or not all(isinstance(s, str) for s in weight_map.values()):
        raise ValueError(f"nspl_filler: {path}: the weight_map must map tensor names to shard file names")
    shards: dict[str, list[str]] = {}
    for name, shard in weight_map.items():
        shards.setdefault(shard, []).append(name)
    return shards


def _confined_shard(index: Path, shard: str) -> Path:
    """The file that ``index`` names ``shard``, which must lie in the index's folder once
    every symlink is resolved (a shard in a Hugging Face hub snapshot may lead to the
    repository's blobs/ folder, where the hub keeps the files its snapshots link to)."""
    # Names are relative to the folder the index is found in (in the hub cache the index
    # itself is a link into blobs/); the bounds are that folder's real path.
    folder = index.absolute().parent
    real_folder = folder.resolve()
    try:
        resolved = (folder / shard).resolve()
    except (OSError, ValueError, RuntimeError) as error:  # a NUL in the name, a symlink loop
        raise ValueError(f"nspl_filler: {index}: the shard {shard!r} is not a usable path ({error})") from None
    allowed = [real_folder]
    if real_folder.parent.name == "snapshots":
        allowed.append(real_folder.parent.parent / "blobs")
    if not any(resolved.is_relative_to(root) for root in allowed):
        raise ValueError(
            f"nspl_filler: {index}: the shard {shard!r} lies outside the index's folder; shards are read only "
            "from the folder that holds the index"
        )
    if resolved == index.resolve():
        raise ValueError(f"nspl_filler: {index}: names itself as a shard")
    if resolved.name.endswith(".index.json") or shard.endswith(".index.json"):
        raise ValueError(f"nspl_filler: {index}: names the index {shard!r} as a shard; a shard holds tensors")
    if not resolved.is_file():
        raise FileNotFoundError(f"nspl_filler: {folder / shard}: no such file (a shard that {index.name} names)")
    return resolved


def _load_index(path: Path) -> dict[str, torch.Tensor]:
    """The tensors that a Hugging Face ``*.index.json`` names in its weight_map, each from the
    shard the map gives it, shard by shard in the order of their first tensor. Shards lie in
    the index's folder, are read by content and are never indexes themselves; a tensor that
    two shards hold, or that its shard lacks, is a ValueError."""
    shards = {shard: (_confined_shard(path, shard), names) for shard, names in _index_shards(path).items()}
    tensors: dict[str, torch.Tensor] = {}
    holder: dict[str, str] = {}
    for shard, (shard_path, names) in shards.items():
        content = _load_tensors(shard_path)
        twice = sorted(name for name in content if name in holder)
        if twice:
            raise ValueError(
                f"nspl_filler: {path}: tensor(s) {_listed(twice)} held by both {holder[twice[0]]!r} and {shard!r}"
            )
        holder.update(dict.fromkeys(content, shard))
        missing = [name for name in names if name not in content]
        if missing:
            raise ValueError(f"nspl_filler: {path}: the shard {shard!r} lacks tensor(s) {_listed(missing)} that the "
                             "weight_map places there")
        tensors.update((name, content[name]) for name in names)
    return tensors


def _listed(names: list[str], most: int = 5) -> str:
    """The first `most` names, quoted, and how many more."""
    shown = ", ".join(repr(name) for name in names[:most])
    return f"{shown} and {len(names) - most} more" if len(names) > most else shown


def _load_tensors(path: Path) -> dict[str, torch.Tensor]:
    return _load_safetensors(path) if _is_safetensors(path) else _load_torch(path)


def _load_file(path: Path) -> dict[str, torch.Tensor]:
    return _load_index(path) if path.name.endswith(".index.json") else _load_tensors(path)


def load_weights(path: str | PathLike[str]) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint, loaded on the CPU.

    ``path`` is a file or a Hugging Face model folder:

    - a safetensors file, recognised by its content whatever its name (read with the
      ``safetensors`` package);
    - a sharded checkpoint's ``*.index.json``: each tensor its ``weight_map`` names, from the
      shard the map gives it (each shard read by content). Shards are read only from the
      index's folder: a name that leads elsewhere (``../x``, an absolute path, a symlink
      that resolves outside) is refused, except the hub cache's snapshot links into
      ``blobs/``. A shard is never itself an index;
    - anything else is read with ``torch.load(..., weights_only=True)``: a plain state_dict,
      or a dict that holds one under ``"state_dict"`` or ``"model"``; non-tensor entries are
      dropped;
    - a folder: the first of ``model.safetensors``, ``model.safetensors.index.json``,
      ``pytorch_model.bin``, ``pytorch_model.bin.index.json`` that it holds.

    Raises:
        FileNotFoundError: no file at ``path``, or a shard that an index names is missing.
        IsADirectoryError: ``path`` is a folder without any of those files.
        ImportError: a safetensors file, without the safetensors package.
        ValueError: a file that neither safetensors nor torch.load can read, or whose content
            is not a mapping holding tensors; an index that is not a JSON object with a
            weight_map (or is nested too deeply), that names a shard outside its folder, an
            index or itself as a shard, whose shards hold a tensor twice, or whose shard
            lacks a tensor the map places there.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"nspl_filler: {path}: no such file")
    if path.is_dir():
        found = next((path / name for name in HF_WEIGHT_FILES if (path / name).is_file()), None)
        if found is None:
            raise IsADirectoryError(
                f"nspl_filler: {path}: is a directory without a checkpoint file ({', '.join(HF_WEIGHT_FILES)})"
            )
        path = found
    tensors = _load_file(path)
    if not tensors:
        raise ValueError(f"nspl_filler: {path}: the checkpoint holds no tensors")
    return tensors

