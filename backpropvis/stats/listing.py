"""Which images a run looks at: a sorted, stable, recursive listing, split across ranks.

Keys are paths relative to the images folder, with "/" separators, so a run's rows
name the same image on every machine and after the folder moves.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence, TypeVar, Union

from ..errors import ImageError
from ..images import sample_names

__all__ = ["IMAGE_SUFFIXES", "SAMPLES_SOURCE", "list_images", "shard", "rank_db_path"]

IMAGE_SUFFIXES: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"}
)
"""File name endings taken as images (case-insensitive); other files are ignored."""

SAMPLES_SOURCE = "samples"
"""The ``images`` setting of a run over the bundled samples instead of a folder."""

Item = TypeVar("Item")


def list_images(root: Optional[Union[str, os.PathLike]], limit: Optional[int] = None) -> list[str]:
    """The image keys under ``root``, sorted by their relative path; ``None``: the samples.

    Every entry whose name ends like an image is listed, whatever it is (a dangling
    link or a folder named ``x.jpg`` is listed too, and fails when read, so that it is
    recorded rather than silently left out). Linked folders are followed, each real
    folder once; hidden folders (".name") are skipped.

    Args:
        root: a folder (searched recursively, e.g. an ImageFolder tree), or None for
            the bundled sample images.
        limit: keep only the first ``limit`` keys of the sorted list.

    Raises:
        ImageError: when ``root`` is missing, is not a folder, or holds no image.
    """
    if root is None:
        keys = sample_names()
    else:
        root = Path(root)
        if not root.exists():
            raise ImageError(f"images folder {root} does not exist")
        if not root.is_dir():
            raise ImageError(f"--images must be a folder, and {root} is not one")
        keys, visited = [], set()
        for folder, subfolders, files in os.walk(root, onerror=_raise_unreadable, followlinks=True):
            real = os.path.realpath(folder)
            if real in visited:  # a link back up the tree: list each folder once
                subfolders[:] = []
                continue
            visited.add(real)
            subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))  # a stable walk
            relative = Path(folder).relative_to(root)
            names = files + [name for name in subfolders if _is_image_name(name)]
            keys += [(relative / name).as_posix() for name in names if _is_image_name(name)]
        keys.sort()
        if not keys:
            raise ImageError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found under {root}")
    if limit is not None:
        if limit < 1:
            raise ImageError(f"--limit must be at least 1, not {limit}")
        keys = keys[:limit]
    return keys


def _is_image_name(name: str) -> bool:
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES


def _raise_unreadable(error: OSError) -> None:
    raise ImageError(f"cannot list images folder {error.filename}: {error.strerror}")


def shard(items: Sequence[Item], rank: int, world_size: int) -> list[Item]:
    """Rank ``rank``'s part of ``items``: every ``world_size``-th item from ``rank`` on."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside a world of {world_size}")
    return list(items[rank::world_size])


def rank_db_path(db: Union[str, os.PathLike], rank: int, world_size: int) -> Path:
    """The database file of one rank: ``results.sqlite`` -> ``results.rank-R.sqlite``
    when ``world_size > 1``, else ``db`` itself."""
    db = Path(db)
    if world_size <= 1:
        return db
    return db.with_name(f"{db.stem}.rank-{rank}{db.suffix}")
