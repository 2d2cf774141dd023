"""Writing result files so that a reader never sees half of one."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Union

from .errors import OutputError

__all__ = ["write_text", "write_json", "make_folder"]


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


def write_text(text: str, path: Union[str, os.PathLike]) -> Path:
    """Write ``text`` to ``path`` atomically: a sibling ``.partial`` file, then a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)
    return path


def write_json(data: dict, path: Union[str, os.PathLike]) -> Path:
    """Write ``data`` as indented JSON, atomically."""
    return write_text(json.dumps(data, indent=2) + "\n", path)
