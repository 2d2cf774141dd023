"""One batch of a class-distance run on the device, and its rows on the CPU.

:func:`measure_batch` makes ONE :func:`~backpropvis.engine.attribute_many` call per
batch: the pairs are engine targets that are functions of the logits
(:func:`~backpropvis.stats.pairs.pairs_from`), so the predicted class comes from the
engine's own forward pass and no second forward pass is needed. Every number of the
batch stays on the device in one float64 tensor (:data:`PACKED_ROWS`); nothing waits
for the device. :func:`result_rows` turns that tensor, once on the CPU, into the
store's rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from torch import nn

from ..core.metrics import class_distance, class_distance_minmax, input_similarity
from ..core.rules import Rule
from ..engine import Attributions, PrecisionLike, attribute_many
from ..images.samples import logit_name
from .pairs import pair_draws, pairs_from
from .store import ResultRow

__all__ = ["PairTargets", "measure_batch", "result_rows", "PACKED_ROWS"]

PACKED_ROWS = ("first_logit", "second_logit", "predicted")
"""The first rows of a packed batch; then per method: class distance, its min-max
variant, the input similarity of the first and of the second map."""

_PER_METHOD = 4


@dataclass
class PairTargets:
    """A batch's two engine targets, functions of the engine's logits [B, K].

    ``draws`` are :func:`~backpropvis.stats.pairs.pair_draws` when the number of logits
    is known before the call (every batch after the first), else drawn from the logits'
    shape on the first call. ``count`` images are real; the padding's targets are 0.
    """

    kind: str
    keys: Sequence[str]
    seed: int
    draws: Optional[torch.Tensor] = None
    pairs: Optional[torch.Tensor] = None

    def resolve(self, logits: torch.Tensor) -> torch.Tensor:
        """LongTensor[2, B] on the logits' device."""
        if self.pairs is None:
            count = len(self.keys)
            draws = self.draws
            if draws is None:
                draws = pair_draws(self.kind, self.keys, self.seed, logits.shape[1])
            pairs = torch.zeros((2, len(logits)), dtype=torch.long, device=logits.device)
            pairs[:, :count] = pairs_from(self.kind, logits[:count], draws)
            self.pairs = pairs
        return self.pairs

    def targets(self) -> list:
        return [lambda logits: self.resolve(logits)[0], lambda logits: self.resolve(logits)[1]]


def measure_batch(
    network: nn.Module,
    inputs: torch.Tensor,
    count: int,
    pairs: PairTargets,
    rules: Sequence[Rule],
    precision: PrecisionLike,
) -> tuple[torch.Tensor, Attributions]:
    """The packed results of a batch's first ``count`` images, and the engine's maps.

    Args:
        inputs: [B, 3, S, S] on the model's device, the images first, zeros after.
        count: real images in ``inputs``.

    Returns:
        (float64 [len(PACKED_ROWS) + 4 * len(rules), count] on the device, the
        :class:`~backpropvis.engine.Attributions` of the call).
    """
    maps = attribute_many(network, inputs, pairs.targets(), rules, precision=precision)
    image = inputs[:count]
    chosen = maps.targets[:, :count].double()
    packed = [chosen[0], chosen[1], maps.logits[:count].argmax(dim=1).double()]
    for rule in rules:
        pair = maps[rule.name][:, :count]  # [2, count, 3, S, S]
        similarity = input_similarity(pair, image)  # [2, count]
        packed += [class_distance(pair[0], pair[1]), class_distance_minmax(pair[0], pair[1])]
        packed += [similarity[0], similarity[1]]
    return torch.stack(packed), maps


def result_rows(
    packed: torch.Tensor, keys: Sequence[str], hashes: Sequence[str], rules: Sequence[Rule], num_logits: int
) -> list[ResultRow]:
    """The store's rows of one batch from its packed results (on the CPU)."""
    values = packed.tolist()
    first, second, predicted = ([int(value) for value in row] for row in values[: len(PACKED_ROWS)])
    names: dict[int, str] = {}

    def name(index: int) -> str:
        if index not in names:
            names[index] = logit_name(index, num_logits)
        return names[index]

    rows = []
    for number, rule in enumerate(rules):
        start = len(PACKED_ROWS) + _PER_METHOD * number
        distance, minmax, similarity_first, similarity_second = values[start : start + _PER_METHOD]
        for column, key in enumerate(keys):
            a, b, top = first[column], second[column], predicted[column]
            rows.append(
                ResultRow(
                    image=key,
                    content_hash=hashes[column],
                    method=rule.name,
                    first_logit=a,
                    first_name=name(a),
                    second_logit=b,
                    second_name=name(b),
                    predicted=top,
                    predicted_name=name(top),
                    class_distance=distance[column],
                    class_distance_minmax=minmax[column],
                    input_similarity_first=similarity_first[column],
                    input_similarity_second=similarity_second[column],
                )
            )
    return rows
