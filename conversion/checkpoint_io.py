"""Reading source checkpoints, reporting key mappings and writing converted checkpoints atomically."""

import json
import os
import pickle
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file


WEIGHT_FILE_NAMES = ("model.safetensors", "pytorch_model.bin")
INDEX_FILE_NAMES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")


def _load_weight_file(path: Path) -> dict[str, torch.Tensor]:
    try:
        if path.suffix == ".safetensors":
            return load_file(str(path), device="cpu")
        # Pickled checkpoints may only hold tensors: never execute code from a downloaded file.
        state_dict = torch.load(str(path), map_location="cpu", weights_only=True)
    except (SafetensorError, pickle.UnpicklingError, RuntimeError, OSError, EOFError, ValueError) as error:
        raise ValueError(f"Cannot read the checkpoint file {path}: {error}") from error
    if (
        isinstance(state_dict, dict)
        and "state_dict" in state_dict
        and isinstance(state_dict["state_dict"], dict)
    ):
        state_dict = state_dict["state_dict"]
    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise ValueError(f"The checkpoint file {path} does not hold a state dict of tensors.")
    return state_dict


def load_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Loads a state dict from a checkpoint file or directory.

    Args:
        path: a `.safetensors` or `.bin` file, or a directory holding `model.safetensors`,
            `pytorch_model.bin` or a sharded index of either (safetensors preferred).

    Raises:
        ValueError: when the path holds no weights or a file cannot be read.
    """
    path = Path(path)
    if path.is_file():
        return _load_weight_file(path)
    if not path.is_dir():
        raise ValueError(f"Checkpoint path {path} is neither a file nor a directory.")
    for name in WEIGHT_FILE_NAMES:
        if (path / name).is_file():
            return _load_weight_file(path / name)
    for name in INDEX_FILE_NAMES:
        if (path / name).is_file():
            try:
                weight_map = json.loads((path / name).read_text())["weight_map"]
            except (json.JSONDecodeError, KeyError) as error:
                raise ValueError(f"Cannot read the shard index {path / name}: {error}") from error
            state_dict = {}
            for shard in sorted(set(weight_map.values())):
                state_dict.update(_load_weight_file(path / shard))
            return state_dict
    raise ValueError(f"No weights in {path}: expected one of {WEIGHT_FILE_NAMES + INDEX_FILE_NAMES}.")


@dataclass
class ConversionReport:
    """What a conversion did with every key: mapped (source -> target), dropped (with why), initialized."""

    mapped: dict[str, str] = field(default_factory=dict)
    dropped: dict[str, str] = field(default_factory=dict)
    initialized: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"mapped": self.mapped, "dropped": self.dropped, "initialized": sorted(self.initialized)}

    def format(self) -> str:
        lines = [
            f"mapped {len(self.mapped)} keys, dropped {len(self.dropped)}, newly initialized {len(self.initialized)}"
        ]
        lines += [f"  mapped       {source} -> {target}" for source, target in self.mapped.items()]
        lines += [f"  dropped      {key}  ({why})" for key, why in self.dropped.items()]
        lines += [f"  initialized  {key}" for key in sorted(self.initialized)]
        return "\n".join(lines)


def check_output_dir(output_dir: str | os.PathLike, overwrite: bool = False) -> Path:
    """Raises `ValueError` when `output_dir` exists and is not empty, unless `overwrite`."""
    output_dir = Path(output_dir)
    if output_dir.exists() and (not output_dir.is_dir() or any(output_dir.iterdir())) and not overwrite:
        raise ValueError(f"Output directory {output_dir} is not empty; pass overwrite=True to replace it.")
    return output_dir


def write_directory_atomically(output_dir: str | os.PathLike, write, overwrite: bool = False) -> Path:
    """Calls `write(tmp_dir)` on a fresh temporary directory beside `output_dir`, then renames it.

    Nothing half-written is ever left at `output_dir`: on any error the temporary directory is removed.

    Raises:
        ValueError: when `output_dir` exists and is not empty, unless `overwrite`.
    """
    output_dir = check_output_dir(output_dir, overwrite)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.tmp-", dir=output_dir.parent))
    try:
        write(tmp_dir)
        if output_dir.exists():
            shutil.rmtree(output_dir)
        os.replace(tmp_dir, output_dir)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    return output_dir
