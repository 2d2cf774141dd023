"""Which two logits each image's maps are computed for (the paper's Figure 7 pairs).

Random choices are drawn from a generator derived from (seed, image key) alone, so an
image gets the same pair whatever its batch, worker, rank or restart.
"""

from __future__ import annotations

from typing import Sequence

import torch

from ..core.errors import BackpropvisError
from ..core.targets import other_logit
from ..models.init import generator_for

__all__ = ["PAIRS", "choose_pairs", "random_pairs", "pair_draws", "pairs_from"]

PAIRS: dict[str, str] = {
    "max-random": "the predicted (max) logit and a random other one",
    "random-random": "two different logits drawn at random (the paper's Figure 7)",
    "top1-top2": "the two largest logits",
}
"""Pair kinds by name, with what they mean."""


def choose_pairs(kind: str, logits: torch.Tensor, keys: Sequence[str], seed: int) -> torch.Tensor:
    """The two logit indices per image.

    Args:
        kind: one of :data:`PAIRS`.
        logits: [B, K] the model's output for the batch.
        keys: B image keys (relative paths); with ``seed`` they fix the random draws.
        seed: the run's seed.

    Returns:
        LongTensor[2, B] on the CPU: row 0 the first logit, row 1 the second; the two
        always differ. Random draws are uniform over the allowed logits.
    """
    batch, num_classes = logits.shape
    if len(keys) != batch:
        raise ValueError(f"{len(keys)} keys for a batch of {batch}")
    logits = logits.detach().cpu()
    return pairs_from(kind, logits, pair_draws(kind, keys, seed, num_classes))


def random_pairs(num_classes: int, keys: Sequence[str], seed: int) -> torch.Tensor:
    """ "random-random" pairs, which need no logits: LongTensor[2, B], two different
    logits per image, uniform, drawn from (seed, key)."""
    draws = pair_draws("random-random", keys, seed, num_classes)
    return pairs_from("random-random", torch.empty((len(keys), num_classes)), draws)


def pair_draws(kind: str, keys: Sequence[str], seed: int, num_classes: int) -> torch.Tensor:
    """The random part of each image's pair, drawn on the CPU before the logits exist.

    From each image's own generator (seed, "pairs", key): for "random-random" first a
    logit in [0, K), then an offset in [0, K - 1); for "max-random" the offset only;
    "top1-top2" draws nothing. :func:`pairs_from` turns the offset into "a logit other
    than the first" (:func:`~backpropvis.core.targets.random_other_indices`'s rule).

    Returns:
        LongTensor[2, B]: row 0 the drawn first logit (-1 where the first is the max),
        row 1 the offset (-1 for "top1-top2").
    """
    if kind not in PAIRS:
        raise BackpropvisError(f"unknown `pairs` {kind!r}; choose one of {', '.join(PAIRS)}")
    draws = torch.full((2, len(keys)), -1, dtype=torch.long)
    if kind == "top1-top2":
        return draws
    _check_classes(num_classes)
    for column, key in enumerate(keys):
        generator = generator_for(seed, "pairs", key)
        if kind == "random-random":
            draws[0, column] = torch.randint(0, num_classes, (1,), generator=generator)[0]
        draws[1, column] = torch.randint(0, num_classes - 1, (1,), generator=generator)[0]
    return draws


def pairs_from(kind: str, logits: torch.Tensor, draws: torch.Tensor) -> torch.Tensor:
    """The pairs [2, B] on ``logits``' device from the logits [B, K] and :func:`pair_draws`
    (on that device or the CPU): vectorised, no wait for the device."""
    _check_classes(logits.shape[1])
    if kind == "top1-top2":
        return logits.topk(2, dim=1).indices.t().contiguous()
    draws = draws.to(logits.device, non_blocking=True)
    first = logits.argmax(dim=1) if kind == "max-random" else draws[0]
    return torch.stack([first, other_logit(draws[1], first)])


def _check_classes(num_classes: int) -> None:
    if num_classes < 2:
        raise BackpropvisError(f"`pairs` needs a model with at least two logits, this one has {num_classes}")
