"""Seeded random initialisation, as in the paper: truncated normal, mean 0, std 0.1.

Every draw takes its own :class:`torch.Generator`, derived from the model seed and a
name (a layer, a column), so that one layer's values never depend on which other
layers were drawn, or in which order; the global RNG is never touched.
"""

from __future__ import annotations

import functools
import hashlib
from typing import Callable, Iterable, Sequence, TypeVar

import numpy as np
import torch

__all__ = [
    "PAPER_STD",
    "derive_seed",
    "generator_for",
    "truncated_normal_",
    "truncated_normal_rows_",
    "init_layer_",
    "keeps_global_rng",
]

_Build = TypeVar("_Build", bound=Callable)

PAPER_STD = 0.1
"""The paper's standard deviation for every random weight (cut at +-2 std)."""

_TRUNCATION = 2.0


def derive_seed(seed: int, *keys: object) -> int:
    """A 63-bit seed derived from ``seed`` and any keys (names, indices), stably.

    An int key is one 32-bit word; any other key is its text's 64-bit BLAKE2b digest
    (two words), so every character of a name counts ("conv1_1" and "conv1_2", or two
    image paths, give different seeds).
    """
    entropy = [int(seed) & 0xFFFFFFFF]
    for key in keys:
        if isinstance(key, int):
            entropy.append(key & 0xFFFFFFFF)
        else:
            digest = int.from_bytes(hashlib.blake2b(str(key).encode(), digest_size=8).digest(), "little")
            entropy += [digest & 0xFFFFFFFF, digest >> 32]
    return int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def generator_for(seed: int, *keys: object) -> torch.Generator:
    """A CPU generator seeded with :func:`derive_seed` of ``seed`` and ``keys``."""
    return torch.Generator().manual_seed(derive_seed(seed, *keys))


def keeps_global_rng(build: _Build) -> _Build:
    """Decorate a model factory so that it leaves torch's global CPU RNG as it found it.

    ``nn.Conv2d`` and ``nn.Linear`` draw their default init from the global RNG when
    they are built, even though every weight is then redrawn from a seeded generator or
    loaded; without this, building a model would shift a user's global random stream.
    """

    @functools.wraps(build)
    def wrapper(*args, **kwargs):
        with torch.random.fork_rng(devices=[]):
            return build(*args, **kwargs)

    return wrapper  # type: ignore[return-value]  # functools.wraps keeps build's signature


@torch.no_grad()
def truncated_normal_(tensor: torch.Tensor, std: float, generator: torch.Generator) -> torch.Tensor:
    """Fill ``tensor`` in place with N(0, std^2) truncated at +-2 std (the paper's init).

    Exact rejection sampling: draw standard normals, redraw the 4.6 % that fall
    beyond +-2 until none is left, then scale. The values are drawn in float32 on the
    CPU and copied, so a seed gives the same weights on every device and dtype.
    """
    target = tensor
    if tensor.device.type != "cpu" or tensor.dtype != torch.float32 or not tensor.is_contiguous():
        target = torch.empty(tensor.shape, dtype=torch.float32)
    truncated_normal_rows_(target.view(1, target.numel()), std, [generator])
    if target is not tensor:
        tensor.copy_(target)
    return tensor


@torch.no_grad()
def truncated_normal_rows_(
    rows: torch.Tensor,
    std: float,
    generators: Sequence[torch.Generator],
    map_rows: Callable[[Callable[[int], None], Iterable[int]], Iterable] = map,
) -> torch.Tensor:
    """Fill each row ``rows[r]`` exactly as ``truncated_normal_(rows[r], std, generators[r])``
    would, faster: the normals are drawn row by row through ``map_rows`` (e.g. a thread
    pool's ``map``: drawing releases the GIL); then the rejection loop runs for the whole
    block at once, round by round: in each round every row draws, from its own generator and
    in one call, as many normals as it has values still outside +-2 (in column order), as
    the per-row loop would; finding the values still outside is one operation per round.

    Shapes: rows [n, d] (CPU, float32, contiguous); ``generators``: n generators.
    """

    def draw(row: int) -> None:
        rows[row].normal_(generator=generators[row])

    list(map_rows(draw, range(len(rows))))
    outside = rows.abs().gt_(_TRUNCATION).nonzero()  # [m, 2] (row, column), sorted by row then column
    row_of, column_of = outside[:, 0], outside[:, 1]
    pending = torch.arange(len(outside))  # entries of ``outside`` still to draw, in order
    while pending.numel():
        values = torch.empty(pending.numel())
        counts = torch.bincount(row_of[pending], minlength=len(rows)).tolist()
        for row, piece in zip(range(len(rows)), values.split(counts)):
            if piece.numel():
                piece.normal_(generator=generators[row])  # = torch.randn(count, generator=...)
        rows[row_of[pending], column_of[pending]] = values
        pending = pending[values.abs() > _TRUNCATION]
    return rows.mul_(std)


@torch.no_grad()
def init_layer_(layer: torch.nn.Module, seed: int, name: str, std: float = PAPER_STD, bias: float = 0.0) -> None:
    """Draw a conv or linear layer's weight from the paper's init and set its bias.

    Args:
        layer: a module with ``weight`` (and optionally ``bias``).
        seed: the model seed.
        name: the layer's name; with ``seed`` it fixes the values.
        std: the normal's standard deviation before truncation.
        bias: the constant every bias is set to (the paper: 0).
    """
    weight, layer_bias = layer.weight, getattr(layer, "bias", None)
    assert isinstance(weight, torch.Tensor)
    truncated_normal_(weight, std, generator_for(seed, name))
    if isinstance(layer_bias, torch.Tensor):
        layer_bias.fill_(bias)
