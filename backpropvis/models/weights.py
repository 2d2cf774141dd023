"""Reading weight files safely and checking that they fit a model.

Files are read with ``torch.load(..., weights_only=True)``; every failure a user can
cause (missing file, not a checkpoint, keys or shapes that do not fit) is a
:class:`~backpropvis.errors.WeightsError` naming the file and the first mismatch.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Optional

import torch

from ..errors import WeightsError

__all__ = ["read_state_dict", "check_fits", "load_into", "hub_checkpoint"]


def read_state_dict(path: os.PathLike | str) -> dict[str, torch.Tensor]:
    """The state dict stored at ``path`` (a bare dict, or one under "state_dict")."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for corrupt or unsafe files
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise WeightsError(f"cannot read weights file {path}: {reason}") from None
    if isinstance(loaded, Mapping) and "state_dict" in loaded and isinstance(loaded["state_dict"], Mapping):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, Mapping) or not all(isinstance(value, torch.Tensor) for value in loaded.values()):
        raise WeightsError(f"weights file {path} does not hold a state dict of tensors")
    return dict(loaded)


def check_fits(model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """Raise :class:`WeightsError` naming the first key whose presence or shape differs."""
    expected = model.state_dict()
    for key, value in expected.items():
        if key not in state_dict:
            raise WeightsError(f"{source} does not fit {type(model).__name__}: key {key} is missing")
        if tuple(state_dict[key].shape) != tuple(value.shape):
            raise WeightsError(
                f"{source} does not fit {type(model).__name__}: key {key} has shape "
                f"{list(state_dict[key].shape)}, the model needs {list(value.shape)}"
            )
    for key in state_dict:
        if key not in expected:
            raise WeightsError(f"{source} does not fit {type(model).__name__}: unexpected key {key}")


def load_into(model: torch.nn.Module, path: os.PathLike | str) -> None:
    """Read ``path``, check it fits ``model`` exactly, and load it."""
    state_dict = read_state_dict(path)
    check_fits(model, state_dict, f"weights file {path}")
    model.load_state_dict(state_dict)


def hub_checkpoint(filename: str, url: Optional[str] = None) -> Path:
    """The path of ``filename`` in the torch hub cache, downloading it from ``url`` if
    it is not there and a network is available.

    Raises:
        WeightsError: when the file is neither cached nor downloadable.
    """
    cached = Path(torch.hub.get_dir()) / "checkpoints" / filename
    if cached.is_file():
        return cached
    if url is None:
        raise WeightsError(f"{filename} is not in the torch hub cache ({cached.parent})")
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(url, str(cached), progress=True)
    except Exception as error:
        cached.unlink(missing_ok=True)
        raise WeightsError(
            f"{filename} is not in the torch hub cache ({cached.parent}) and could not be downloaded "
            f"from {url} ({type(error).__name__}); pass the checkpoint's path instead"
        ) from None
    return cached
