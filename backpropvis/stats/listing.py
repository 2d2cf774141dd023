"""A run's images split across torchrun ranks, and each rank's database file.

The images themselves are listed by :func:`backpropvis.images.sets.list_images`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence, TypeVar, Union

__all__ = ["shard", "rank_db_path"]

Item = TypeVar("Item")


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
