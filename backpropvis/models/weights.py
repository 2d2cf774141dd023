"""Reading weight files safely and checking that they fit a model.

Files are read with ``torch.load(..., weights_only=True)``; every failure a user can
cause (missing file, not a checkpoint, keys or shapes that do not fit) is a
:class:`~backpropvis.core.errors.WeightsError` naming the file and the first mismatch.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import Mapping, Optional

import torch

from ..core.errors import WeightsError

__all__ = ["read_state_dict", "check_fits", "load_into", "hub_checkpoint"]


def read_state_dict(path: os.PathLike | str) -> dict[str, torch.Tensor]:
    """The state dict stored at ``path`` (a bare dict of tensors, or one under "state_dict").

    Raises:
        WeightsError: a missing file, or one that is not a state dict, saying in one line
            what the file is (a pickled whole model, a single tensor, a training
            checkpoint, not a PyTorch file at all) and what is accepted.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {path} " + ("is not a file" if path.exists() else "does not exist"))
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols: not the user's business
            warnings.simplefilter("ignore")
            loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for corrupt or unsafe files
        raise WeightsError(f"cannot read weights file {path}: {_what_the_file_is(path, error)}; {_ACCEPTED}") from None
    if isinstance(loaded, Mapping) and "state_dict" in loaded and isinstance(loaded["state_dict"], Mapping):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, Mapping) or not all(isinstance(value, torch.Tensor) for value in loaded.values()):
        raise WeightsError(f"weights file {path} {_what_it_holds(loaded)}, not a state dict of tensors; {_ACCEPTED}")
    return dict(loaded)


_ACCEPTED = (
    "give a state dict saved with torch.save(model.state_dict(), PATH), or a dict holding one under 'state_dict'"
)

_PICKLED_CLASS = re.compile(r"GLOBAL ([A-Za-z_][\w.]*)")


def _printable(text: str, limit: int = 80) -> str:
    """``text`` without control characters (terminal escapes), cut to ``limit`` characters."""
    clean = "".join(character for character in text if character.isprintable())
    return clean if len(clean) <= limit else clean[: limit - 3] + "..."


def _what_the_file_is(path: Path, error: Exception) -> str:
    """In our words, what a file that ``torch.load(weights_only=True)`` refused is."""
    with open(path, "rb") as file:
        head = file.read(16)
    pickled = _PICKLED_CLASS.search(str(error))
    if not head:
        return "the file is empty"
    if pickled:
        return (
            f"it is a pickled Python object of class {_printable(pickled.group(1))} (a whole model saved with "
            "torch.save(model)?), which backpropvis does not unpickle because loading it would run code"
        )
    if head.startswith(b"\x93NUMPY"):
        return "it is a NumPy array file (.npy), not a PyTorch file"
    if head.startswith(b"PK\x03\x04"):
        if "central directory" in str(error):
            return "it is a damaged PyTorch file (cut short, or changed after it was saved)"
        return "it is a zip archive that is not a PyTorch file (written by torch.save)"
    if len(head) >= 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < 100_000_000:
        return "it is a safetensors file, which backpropvis does not read"
    if head.startswith(b"\x80"):
        return "it is a Python pickle that is not a PyTorch state dict (or a damaged one)"
    return "it is not a PyTorch file (one written by torch.save)"


def _what_it_holds(loaded: object) -> str:
    if isinstance(loaded, torch.Tensor):
        return f"holds a single tensor of shape {list(loaded.shape)}"
    if isinstance(loaded, Mapping):
        nested = [
            str(key)
            for key, value in loaded.items()
            if isinstance(value, Mapping) and value and all(isinstance(v, torch.Tensor) for v in value.values())
        ]
        keys = ", ".join(_printable(str(key), 30) for key in list(loaded)[:6]) + (", ..." if len(loaded) > 6 else "")
        inside = ""
        if nested:
            inside = f" (its entry {_printable(nested[0], 30)!r} looks like a state dict: save that alone)"
        return f"holds a dict of other things than tensors (keys {keys}){inside}"
    return f"holds a {type(loaded).__name__}"


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
