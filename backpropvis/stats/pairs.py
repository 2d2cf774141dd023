"""Which two logits each image's maps are computed for (the paper's Figure 7 pairs).

Random choices are drawn from a generator derived from (seed, image key) alone, so an
image gets the same pair whatever its batch, worker, rank or restart.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from ..errors import BackpropvisError
from ..models.init import generator_for
from ..targets import random_other_indices

__all__ = ["PAIRS", "choose_pairs", "random_pairs"]

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
    if kind not in PAIRS:
        raise BackpropvisError(f"unknown `pairs` {kind!r}; choose one of {', '.join(PAIRS)}")
    if len(keys) != batch:
        raise ValueError(f"{len(keys)} keys for a batch of {batch}")
    logits = logits.detach().cpu()
    if kind == "random-random":
        return random_pairs(num_classes, keys, seed)
    _check_classes(num_classes)
    if kind == "top1-top2":
        return logits.topk(2, dim=1).indices.t().contiguous()
    predicted = logits.argmax(dim=1).tolist()
    return _with_first(num_classes, keys, seed, lambda column, generator: predicted[column])


def random_pairs(num_classes: int, keys: Sequence[str], seed: int) -> torch.Tensor:
    """ "random-random" pairs, which need no logits: LongTensor[2, B], two different
    logits per image, uniform, drawn from (seed, key)."""
    _check_classes(num_classes)
    return _with_first(
        num_classes, keys, seed, lambda column, generator: int(torch.randint(0, num_classes, (1,), generator=generator))
    )


def _check_classes(num_classes: int) -> None:
    if num_classes < 2:
        raise BackpropvisError(f"`pairs` needs a model with at least two logits, this one has {num_classes}")


def _with_first(
    num_classes: int, keys: Sequence[str], seed: int, first_of: Callable[[int, torch.Generator], int]
) -> torch.Tensor:
    """Pairs whose first logit is ``first_of(column, generator)`` and whose second is
    uniform over the other K - 1, both from the image's own generator."""
    pairs = torch.empty((2, len(keys)), dtype=torch.long)
    for column, key in enumerate(keys):
        generator = generator_for(seed, "pairs", key)
        first = first_of(column, generator)
        pairs[0, column] = first
        pairs[1, column] = random_other_indices(torch.tensor([first]), num_classes, generator)[0]
    return pairs
