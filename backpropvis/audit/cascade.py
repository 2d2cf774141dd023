"""The maps the page shows, and step 3: cascading randomisation from the top down.

- :func:`example_maps`: each method's maps of the few images for the two logits the
  class-distance database uses for them (:func:`backpropvis.stats.choose_pairs`, seeded
  by the image's key), so the page shows the pictures behind the Figure 7 statistic.
- :func:`cascading_randomization`: the model's stages (:func:`~backpropvis.models.randomization.default_stages`:
  the model's declared ones, e.g. VGG-16's Conv1-1, Conv3-1, Conv5-1, FC3, or evenly
  spaced single layers) are redrawn at random from the top down
  (:func:`~backpropvis.models.randomization.redrawn_from`: first the top stage, then it
  and the one below, ..., down to the whole network), as in the paper's partly trained
  networks (Figure 9) read from the top, and Adebayo et al.'s (2018) cascading
  randomisation. Every map is for the trained model's predicted class, so each network
  is asked the same question; a method's change is the class distance between its
  map in the trained and in the partly random network.

Redrawn layers get the paper's init from a seed derived from the audit's seed (so a
random model given with ``--weights random`` is redrawn with other values than its
own), and batch norm after a redrawn convolution is re-estimated on the few images and
their mirror images (the randomisation's default policy).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from ..core.metrics import class_distance, input_similarity
from ..engine import PrecisionLike, attribute_many
from ..images.samples import logit_name
from ..models import derive_seed
from ..models.randomization import default_stages, redrawn_from
from ..stats import choose_pairs

__all__ = ["example_maps", "cascading_randomization", "redraw_seed"]


def redraw_seed(seed: int) -> int:
    """The seed of the redrawn layers: derived from the audit's ``seed``, never equal to a model's own."""
    return derive_seed(seed, "audit", "cascading randomisation")


def example_maps(
    model: nn.Module,
    inputs: torch.Tensor,
    keys: Sequence[str],
    methods: Sequence[str],
    *,
    pairs: str,
    seed: int,
    precision: PrecisionLike,
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Each method's maps of ``inputs`` [B, C, H, W] for the database's two logits per image.

    Returns:
        numbers: ``targets`` [2][B] logit indices and ``target_names``;
        arrays: ``maps`` [M, 2, B, C, H, W] (methods in order, raw and signed).
    """
    with torch.no_grad():
        logits = model(inputs)
    chosen = choose_pairs(pairs, logits, keys, seed).to(inputs.device)  # [2, B]
    maps = attribute_many(model, inputs, [chosen[0], chosen[1]], methods, precision=precision)
    num_logits = maps.logits.shape[1]
    numbers = {
        "targets": chosen.cpu().tolist(),
        "target_names": [[logit_name(int(index), num_logits) for index in row] for row in chosen.cpu()],
    }
    return numbers, {"maps": torch.stack([maps[method].cpu() for method in methods])}


def cascading_randomization(
    model: nn.Module,
    inputs: torch.Tensor,
    methods: Sequence[str],
    *,
    seed: int,
    precision: PrecisionLike,
    progress: bool = True,
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Each method's map as the model's stages are redrawn from the top down.

    Args:
        model: the trained model (left untouched: every variant is a copy).
        inputs: [B, C, H, W] the few images, on the model's device.
        methods: rule names.
        seed, precision: the audit's seed (see :func:`redraw_seed`); the engine's arithmetic.

    Returns:
        numbers: ``stages`` (labels, top first: row s has every stage from the top down to
        it redrawn), ``descriptions`` (each network's weights in words), ``predicted``
        [B] and ``predicted_names``, ``redraw_seed``, ``distance`` and ``input_similarity``:
        method -> [S][B] (each map against the trained map, and against the image);
        arrays: ``maps`` [1 + S, M, C, H, W], the first image's maps in the trained network
        then in each partly random one.
    """
    stages = tuple(reversed(default_stages(model)))
    trained = attribute_many(model, inputs, ["max"], methods, precision=precision)
    predicted = trained.targets[0]  # [B]
    reference = {method: trained[method][0].cpu() for method in methods}  # [B, C, H, W]
    calibration = torch.cat([inputs, inputs.flip(-1)])
    seed_of_layers = redraw_seed(seed)
    distance: dict[str, list[list[float]]] = {method: [] for method in methods}
    similarity: dict[str, list[list[float]]] = {method: [] for method in methods}
    first_image = [torch.stack([reference[method][0] for method in methods])]
    descriptions = []
    for stage in tqdm(stages, desc="cascading randomisation", unit="stage", disable=not progress):
        network = redrawn_from(model, stage, example=inputs, seed=seed_of_layers, calibration=calibration)
        maps = attribute_many(network, inputs, [predicted], methods, precision=precision)
        descriptions.append(str(getattr(network, "weights_description", "")))
        del network
        for method in methods:
            redrawn = maps[method][0].cpu()  # [B, C, H, W]
            distance[method].append(class_distance(reference[method], redrawn).tolist())
            similarity[method].append(input_similarity(redrawn, inputs.cpu()).tolist())
        first_image.append(torch.stack([maps[method][0, 0].cpu() for method in methods]))
    names = [logit_name(int(index), trained.logits.shape[1]) for index in predicted.cpu()]
    numbers = {
        "stages": [stage.label for stage in stages],
        "descriptions": descriptions,
        "predicted": predicted.cpu().tolist(),
        "predicted_names": names,
        "redraw_seed": seed_of_layers,
        "batch_norm": "reestimate",
        "distance": distance,
        "input_similarity": similarity,
        "trained_input_similarity": {
            method: input_similarity(reference[method], inputs.cpu()).tolist() for method in methods
        },
    }
    return numbers, {"maps": torch.stack(first_image)}
