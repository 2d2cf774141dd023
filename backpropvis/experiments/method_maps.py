"""Every method's map of the run's image for one target, from ONE forward pass, with
each map's input similarity and how it compares with white noise's: what the
random-network figures (4, 5, 6) show.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from ..core.metrics import expected_normal_maximum, input_similarity, noise_similarity_std
from ..core.rules import PAPER_METHODS
from ..core.targets import Target
from ..engine import attribute_many
from ..images.samples import load_image
from ..models.preprocessing import Preprocessing, preprocessing_of
from .base import RunContext

__all__ = ["COLUMN_ORDER", "MethodMaps", "method_maps", "method_maps_of_copies"]

COLUMN_ORDER: tuple[str, ...] = PAPER_METHODS[::-1]
"""The paper's three methods in the column order of its Figures 4 and 6: GBP, DeconvNet, saliency."""


@dataclass
class MethodMaps:
    """Every method's map of one image for one target, from one forward pass.

    Attributes:
        inputs: [1, 3, S, S] the model's input.
        picture: [3, S, S] the input as pixels in [0, 1] (for display).
        maps: method name -> [3, S, S] raw, signed map.
        similarity: method name -> input similarity (per-channel centred cosine).
        target: the logit index the maps explain.
        logit_count: K, how many logits the model has.
        largest_logit: whether ``target`` was chosen as the largest of them ("max").
    """

    inputs: torch.Tensor
    picture: torch.Tensor
    maps: dict[str, torch.Tensor]
    similarity: dict[str, float]
    target: int
    logit_count: int
    largest_logit: bool

    @property
    def noise_std(self) -> float:
        """The standard deviation of a white-noise map's input similarity at this input's
        size, 1 / sqrt(n) (:func:`~backpropvis.core.metrics.noise_similarity_std`)."""
        return noise_similarity_std(self.inputs[0])

    def noise_sigmas(self, method: str) -> float:
        """|input similarity| of ``method``'s map in standard deviations of the input
        similarity of noise with that map's spectrum (white noise's for a white map;
        NaN for a zero map)."""
        return abs(self.similarity[method]) / noise_similarity_std(self.inputs[0], self.maps[method])

    @property
    def logit_allowance(self) -> float:
        """How many noise standard deviations the choice of the largest of K logits alone
        puts between a noise map and 0 (:func:`~backpropvis.core.metrics.expected_normal_maximum`;
        3.24 for K = 1000), or 0 for a target chosen otherwise."""
        return expected_normal_maximum(self.logit_count) if self.largest_logit else 0.0

    def noise_excess(self, method: str) -> float:
        """:meth:`noise_sigmas` beyond :attr:`logit_allowance`: under 5 is noise, 5 or more
        carries the image (the claims of Figures 4-6)."""
        return self.noise_sigmas(method) - self.logit_allowance

    def zero_maps(self) -> list[str]:
        """The methods whose map is all zeros (a broken method, or a dead network)."""
        return [method for method, map_ in self.maps.items() if not bool(map_.any())]


def method_maps(
    model: nn.Module,
    methods: Sequence[str],
    context: RunContext,
    target: Target = "max",
    preprocessing: Preprocessing | None = None,
) -> MethodMaps:
    """Every method's map of the run's image (``context.image``) through ``model``.

    Args:
        model: a model on ``context.device``.
        methods: rule names, e.g. :data:`COLUMN_ORDER`.
        context: the run (its image, a sample name or a path, and its device).
        target: the logit explained (the paper: "max").
        preprocessing: the input pipeline; default ``model.preprocessing``.
    """
    return method_maps_of_copies(model, 1, methods, context, target, preprocessing)[0]


def method_maps_of_copies(
    model: nn.Module,
    copies: int,
    methods: Sequence[str],
    context: RunContext,
    target: Target = "max",
    preprocessing: Preprocessing | None = None,
) -> list[MethodMaps]:
    """:func:`method_maps` of a batch of ``copies`` copies of the run's image, ONE forward
    pass for all: for a model whose samples take different paths (e.g. one pool per
    sample), each copy's maps, for that copy's own ``target`` (its own max logit).

    Returns:
        ``copies`` :class:`MethodMaps`, in batch order.
    """
    preprocessing = preprocessing or preprocessing_of(model)
    inputs = preprocessing.batch([load_image(context.image)] * copies).to(context.device)
    result = attribute_many(model, inputs, [target], list(methods), precision=context.precision)
    cpu_inputs = inputs.cpu()
    found = []
    for copy in range(copies):
        maps = {method: result[method][0, copy].detach().cpu() for method in methods}
        found.append(
            MethodMaps(
                inputs=cpu_inputs[copy : copy + 1],
                picture=preprocessing.unnormalize(cpu_inputs[copy]),
                maps=maps,
                similarity={method: float(input_similarity(map_, cpu_inputs[copy])) for method, map_ in maps.items()},
                target=int(result.targets[0, copy]),
                logit_count=int(result.logits.shape[-1]),
                largest_logit=isinstance(target, str) and target == "max",
            )
        )
    return found
