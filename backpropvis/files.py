"""Writing result files so that a reader never sees half of one."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Union

__all__ = ["write_text", "write_json"]


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
