"""Every method's map of the run's image for one target, from ONE forward pass, with
each map's input similarity: what the random-network figures (4, 5, 6) show.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from ..engine import attribute_many
from ..images import load_image
from ..metrics import input_similarity
from ..models.preprocessing import Preprocessing, preprocessing_of
from ..rules import PAPER_METHODS
from ..targets import Target
from .base import RunContext

__all__ = ["COLUMN_ORDER", "MethodMaps", "method_maps"]

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
    """

    inputs: torch.Tensor
    picture: torch.Tensor
    maps: dict[str, torch.Tensor]
    similarity: dict[str, float]
    target: int


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
    preprocessing = preprocessing or preprocessing_of(model)
    inputs = preprocessing.batch([load_image(context.image)]).to(context.device)
    result = attribute_many(model, inputs, [target], list(methods), precision=context.precision)
    maps = {method: result[method][0, 0].detach().cpu() for method in methods}
    cpu_inputs = inputs.cpu()
    return MethodMaps(
        inputs=cpu_inputs,
        picture=preprocessing.unnormalize(cpu_inputs[0]),
        maps=maps,
        similarity={method: float(input_similarity(map_, cpu_inputs[0])) for method, map_ in maps.items()},
        target=int(result.targets[0, 0]),
    )
