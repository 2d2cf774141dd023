"""Raw maps as arrays, for people who analyse them: ``--save-maps maps.npz`` (or ``.pt``).

One file holds one ``visualize`` call: every method's raw, signed maps for every
(target, image), the logit behind each map, the model's logits and the preprocessed
inputs. Keys (NumPy arrays in ``.npz``; tensors and lists in ``.pt``):

- ``maps``: float32 [M, T, B, C, H, W], methods x targets x images;
- ``methods`` [M], ``targets`` [T] (as given: "max", "random", "281"), ``images`` [B];
- ``target_indices``: int64 [T, B], the logit index of every map;
- ``logits``: float32 [B, K]; ``inputs``: float32 [B, C, H, W], the model's inputs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence, Union

import numpy as np
import torch

from .errors import OutputError
from .files import make_folder, read_arrays, replacing, write_arrays

__all__ = ["MAPS_SUFFIXES", "check_maps_path", "save_maps", "load_maps"]

MAPS_SUFFIXES = (".npz", ".pt")
"""File endings :func:`save_maps` writes: NumPy's ``.npz`` or PyTorch's ``.pt``."""


def check_maps_path(path: Union[str, os.PathLike]) -> Path:
    """Check, before any work, that maps can be saved at ``path``: a known ending, and a
    folder that exists (or can be made) and can be written.

    Raises:
        OutputError: another ending, ``path`` is a folder, or its folder is not writable.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"`save_maps` {path} is a folder; give a file name such as maps.npz")
    if path.suffix.lower() not in MAPS_SUFFIXES:
        raise OutputError(f"`save_maps` {path} must end with {' or '.join(MAPS_SUFFIXES)} (NumPy or PyTorch arrays)")
    make_folder(path.parent)
    return path


def save_maps(
    path: Union[str, os.PathLike],
    *,
    maps: Mapping[str, torch.Tensor],
    targets: Sequence[str],
    images: Sequence[str],
    target_indices: torch.Tensor,
    logits: torch.Tensor,
    inputs: torch.Tensor,
) -> Path:
    """Write the arrays of the module's docstring to ``path`` (.npz or .pt), atomically.

    Args:
        maps: method name -> Tensor[T, B, C, H, W], raw and signed.
        targets: T target specifications as given.
        images: B image names.
        target_indices: LongTensor[T, B].
        logits: [B, K].
        inputs: [B, C, H, W].
    """
    path = check_maps_path(path)
    methods = list(maps)
    content = {
        "maps": torch.stack([maps[method].detach().float().cpu() for method in methods]),
        "methods": methods,
        "targets": [str(target) for target in targets],
        "images": [str(image) for image in images],
        "target_indices": target_indices.detach().long().cpu(),
        "logits": logits.detach().float().cpu(),
        "inputs": inputs.detach().float().cpu(),
    }
    if path.suffix.lower() == ".pt":
        with replacing(path) as partial, open(partial, "wb") as file:
            torch.save(content, file)
        return path
    arrays = {
        key: value.numpy() if isinstance(value, torch.Tensor) else np.array(value) for key, value in content.items()
    }
    return write_arrays(arrays, path)


def load_maps(path: Union[str, os.PathLike]) -> dict:
    """What :func:`save_maps` wrote, as tensors (``maps``, ``target_indices``, ``logits``,
    ``inputs``) and lists of strings (``methods``, ``targets``, ``images``)."""
    path = Path(path)
    if path.suffix.lower() == ".pt":
        return torch.load(path, map_location="cpu", weights_only=True)
    return {
        key: value.tolist() if value.dtype.kind == "U" else torch.from_numpy(value)
        for key, value in read_arrays(path).items()
    }
