"""Writing result files so that a reader never sees half of one."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Iterator, Mapping, Union

import numpy as np

from .errors import OutputError

__all__ = ["write_text", "write_json", "write_arrays", "read_arrays", "replacing", "make_folder"]


def make_folder(path: Union[str, os.PathLike]) -> Path:
    """Create the output folder ``path`` (and its parents) if needed, and check that a file
    can be written in it (a probe file, removed at once); call it before long work.

    Raises:
        OutputError: when a file stands in the way, or the folder cannot be created or
            written (no permission, a read-only file system).
    """
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".backpropvis-probe-"):
            pass
    except OSError as error:
        raise OutputError(f"cannot use {path} as the output folder: {error.strerror or error}") from None
    return path


@contextlib.contextmanager
def replacing(path: Union[str, os.PathLike]) -> Iterator[Path]:
    """Yield a sibling file to write in full (``results.json.partial``, or
    ``figure.partial.png`` for a picture, whose writer reads the suffix); it replaces
    ``path`` at once when the block ends without an error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    picture = path.suffix.lower() in (".png", ".jpg", ".jpeg", ".pdf", ".svg")
    partial = path.with_name(f"{path.stem}.partial{path.suffix}" if picture else f"{path.name}.partial")
    yield partial
    os.replace(partial, path)


def write_text(text: str, path: Union[str, os.PathLike]) -> Path:
    """Write ``text`` to ``path`` atomically."""
    with replacing(path) as partial:
        partial.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(data: dict, path: Union[str, os.PathLike]) -> Path:
    """Write ``data`` as indented JSON, atomically."""
    return write_text(json.dumps(data, indent=2) + "\n", path)


def write_arrays(arrays: Mapping[str, np.ndarray], path: Union[str, os.PathLike]) -> Path:
    """Write named arrays as an uncompressed ``.npz`` file, atomically (load it with
    ``np.load(path, allow_pickle=False)``)."""
    with replacing(path) as partial, open(partial, "wb") as file:
        np.savez(file, **arrays)  # type: ignore[arg-type]
    return Path(path)


def read_arrays(path: Union[str, os.PathLike]) -> dict[str, np.ndarray]:
    """The named arrays of an ``.npz`` file, read whole (no pickle).

    Raises:
        OSError, ValueError: a missing, unreadable or corrupt file.
    """
    with np.load(path, allow_pickle=False) as saved:
        return {name: saved[name] for name in saved.files}
