"""The randomisation step: each map's change as the model's stages are redrawn at random from
the top down (Figure 9 read from the top; Adebayo et al. 2018).

:func:`cascading_randomization`: the model's stages
(:func:`~backpropvis.models.randomization.default_stages`: the model's declared ones, e.g.
VGG-16's Conv1-1, Conv3-1, Conv5-1, FC3, or evenly spaced single layers) are redrawn at
random from the top down (:func:`~backpropvis.models.randomization.redrawn_from`: first the
top stage, then it and the one below, ..., down to the whole network), as in the paper's
partly trained networks (Figure 9) read from the top, and Adebayo et al.'s (2018) cascading
randomisation. Every map is for the trained model's predicted class, so each network is
asked the same question; a method's change is the class distance between its map in the
trained and in the partly random network.

Redrawn layers get the paper's init from a seed derived from the audit's seed (so a
random model given with ``--weights random`` is redrawn with other values than its
own), and batch norm after a redrawn convolution is re-estimated on the few images and
their mirror images (the randomisation's default policy).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..core.metrics import class_distance, input_similarity, ratio
from ..core.rules import METHOD_LABELS
from ..engine import PrecisionLike, attribute_many
from ..images.samples import logit_name
from ..models import derive_seed
from ..models.randomization import default_stages, redrawn_from
from ..render import CLIP_99, pyplot, save_figure, save_grid, to_display
from .results import StepResult
from .step import AuditContext, AuditStep

__all__ = ["RandomizationStep", "RandomizationResult", "cascading_randomization", "redraw_seed"]


@dataclass(frozen=True)
class RandomizationResult(StepResult):
    """Each method's map as the model's stages are redrawn from the top down.

    Attributes:
        stages: the stages' labels, top first (row s has every stage from the top down to it redrawn).
        descriptions: each partly random network's weights in words.
        predicted: [B] the trained model's predicted classes (every map is for them).
        predicted_names: [B] their class names.
        redraw_seed: the seed of the redrawn layers (:func:`redraw_seed`).
        batch_norm: what became of batch norm after a redrawn layer ("reestimate").
        distance: method -> [S][B] the class distance of each map to the trained model's.
        input_similarity: method -> [S][B] each map's input similarity.
        trained_input_similarity: method -> [B] the trained model's maps' input similarity.
        maps: [1 + S, M, C, H, W] the first image's maps in the trained network, then in each partly random one.
    """

    stages: list[str]
    descriptions: list[str]
    predicted: list[int]
    predicted_names: list[str]
    redraw_seed: int
    batch_norm: str
    distance: dict[str, list[list[float]]]
    input_similarity: dict[str, list[list[float]]]
    trained_input_similarity: dict[str, list[float]]
    maps: np.ndarray

    def top_redrawn(self, method: str) -> float:
        """``method``'s mean class distance with the top stage redrawn (NaN: no image)."""
        values = self.distance[method][0]
        return sum(values) / len(values) if values else math.nan


class RandomizationStep(AuditStep[RandomizationResult]):
    """Cascading randomisation: does a method's map follow the model's weights?"""

    name = "randomization"
    result_type = RandomizationResult

    def measure(self, context: AuditContext) -> RandomizationResult:
        assert context.inputs is not None
        settings = context.settings
        return cascading_randomization(
            context.module,
            context.inputs,
            context.methods,
            seed=settings.seed,
            precision=settings.precision,
            progress=context.progress,
        )

    def verdict_numbers(self, result: RandomizationResult, method: str, reference: str) -> dict[str, float]:
        top = result.top_redrawn(method)
        return {"top_redrawn_distance": top, "top_redrawn_over_saliency": ratio(top, result.top_redrawn(reference))}

    def figures(self, result: RandomizationResult, context: AuditContext, folder: Path) -> list[tuple[Path, str]]:
        title = f"cascading randomisation: {context.title}"[:110]
        curves, maps = folder / "randomization.png", folder / "randomization-maps.png"
        draw_randomization(result, context.methods, curves, maps, title)
        return [
            (
                curves,
                "Cascading randomisation (Figure 9 read from the top; Adebayo et al. 2018): the class distance between "
                "each method's map in the trained model and with the stages redrawn at random from the top down, for "
                "the trained model's predicted class (thick: mean over the images; thin: each image; dotted: sqrt 2, "
                "unrelated maps).",
            ),
            (
                maps,
                "The first image's maps along the cascade, with each map's distance to the trained one and its input "
                "similarity.",
            ),
        ]


def redraw_seed(seed: int) -> int:
    """The seed of the redrawn layers: derived from the audit's ``seed``, never equal to a model's own."""
    return derive_seed(seed, "audit", "cascading randomisation")


def cascading_randomization(
    model: nn.Module,
    inputs: torch.Tensor,
    methods: Sequence[str],
    *,
    seed: int,
    precision: PrecisionLike,
    progress: bool = True,
) -> RandomizationResult:
    """Each method's map as the model's stages are redrawn from the top down.

    Args:
        model: the trained model (left untouched: every variant is a copy).
        inputs: [B, C, H, W] the few images, on the model's device.
        methods: rule names.
        seed, precision: the audit's seed (see :func:`redraw_seed`); the engine's arithmetic.
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
    return RandomizationResult(
        stages=[stage.label for stage in stages],
        descriptions=descriptions,
        predicted=predicted.cpu().tolist(),
        predicted_names=[logit_name(int(index), trained.logits.shape[1]) for index in predicted.cpu()],
        redraw_seed=seed_of_layers,
        batch_norm="reestimate",
        distance=distance,
        input_similarity=similarity,
        trained_input_similarity={
            method: input_similarity(reference[method], inputs.cpu()).tolist() for method in methods
        },
        maps=torch.stack(first_image).numpy(),
    )


def _label(method: str) -> str:
    return METHOD_LABELS.get(method, method)


def draw_randomization(
    result: RandomizationResult, methods: Sequence[str], path: Path, maps_path: Path, title: str
) -> None:
    """The change of each method's map (class distance to the trained map, mean over the
    images and each image) as the stages are redrawn from the top down; and a grid of the
    first image's maps (rows: methods; columns: trained, then each partly random network)."""
    stages = result.stages
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(7.5, 4.2))
    positions = np.arange(len(stages))
    for method in methods:
        values = np.array(result.distance[method])  # [S, B]
        line = axis.plot(positions, values.mean(axis=1), marker="o", label=_label(method))[0]
        for image in range(values.shape[1]):
            axis.plot(positions, values[:, image], color=line.get_color(), alpha=0.25, linewidth=0.8)
    axis.set_xticks(
        positions, [f"{label}\nand above" if number else f"{label}" for number, label in enumerate(stages)], fontsize=8
    )
    axis.set_xlabel("redrawn at random, from the top down", fontsize=9)
    axis.set_ylabel("class distance to the trained model's map", fontsize=9)
    axis.set_ylim(0, 2)
    axis.axhline(np.sqrt(2), color="0.7", linestyle=":", linewidth=1)
    axis.legend(fontsize=8)
    save_figure(figure, path, title)
    maps = torch.from_numpy(np.array(result.maps))  # [1 + S, M, C, H, W]
    similarity = result.input_similarity
    rows = [[to_display(maps[column, number]) for column in range(maps.shape[0])] for number in range(len(methods))]
    captions = [
        [f"input sim. {result.trained_input_similarity[method][0]:+.2f}"]
        + [
            f"dist. {result.distance[method][stage][0]:.2f}, sim. {similarity[method][stage][0]:+.2f}"
            for stage in range(len(stages))
        ]
        for method in methods
    ]
    save_grid(
        rows,
        maps_path,
        row_labels=[_label(method) for method in methods],
        column_labels=["trained"] + [f"{label} and above" if number else label for number, label in enumerate(stages)],
        panel_labels=captions,
        title=f"{title}\nthe first image, for the trained model's predicted class ({result.predicted_names[0]})",
        panel_size=1.9,
        display=CLIP_99,
    )
