"""The adversarial step: the paper's Figure 8 on the few images.

:func:`backpropvis.attacks.sweep.fgsm_sweep` perturbs each image by one FGSM step up the
loss of its predicted class, at every step of :data:`ADVERSARIAL_STEPS` (declared
before the run: the project's Figure 8 sweep), and measures each method's class
distance between its map of the original (max logit) and of the adversarial image
(its own max logit). A method's change is read at each image's smallest step that
changes the prediction (the least perturbation that fools the model, as the paper
uses one adversarial example); images that no step fools are left out.

FGSM works in pixel space ([0, 1]), so the model's preprocessing must be able to go
back and forth (``normalize`` and ``unnormalize``, as every
:class:`~backpropvis.models.Preprocessing` can); otherwise the step is skipped, saying why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch
from torch import nn

from ..attacks.sweep import fgsm_sweep
from ..core.claims import Skip
from ..core.metrics import ratio
from ..core.rules import METHOD_LABELS
from ..engine import PrecisionLike
from ..images.samples import logit_name
from ..render import CLIP_99, pyplot, save_figure, to_display
from .results import StepResult
from .step import ADVERSARIAL_STEPS, AuditContext, AuditStep

__all__ = ["ADVERSARIAL_STEPS", "AdversarialStep", "AdversarialResult", "Shown", "adversarial_numbers"]


@dataclass(frozen=True)
class Shown:
    """The image the figure shows (an image that flips, or the first) and the step (index into ``steps``)."""

    image: int
    step: int


@dataclass(frozen=True)
class AdversarialResult(StepResult):
    """The adversarial test on the few images (B images, S steps, M methods).

    Attributes:
        steps: the FGSM steps, in units of 1/255.
        original, original_names: [B] each image's predicted class, and its name.
        predicted, predicted_names: [S][B] the adversarial images' predicted classes, and their names.
        flipping_step: [B] each image's smallest step that changes its prediction (index into
            ``steps``; None: no step does).
        distance: method -> [S][B] the class distance between the map of the image (its max logit)
            and of its adversarial image (that one's max logit).
        at_flip: method -> [B] the distance at the image's flipping step (None: it does not flip).
        mean_at_flip: method -> its mean over the images that flip (None: none does).
        shown: the image and step the figure shows.
        pictures: [2, 3, H, W] that image and its adversarial image, pixels in [0, 1].
        maps: [M, 2, C, H, W] their maps.
    """

    steps: list[float]
    original: list[int]
    original_names: list[str]
    predicted: list[list[int]]
    predicted_names: list[list[str]]
    flipping_step: list[Optional[int]]
    distance: dict[str, list[list[float]]]
    at_flip: dict[str, list[Optional[float]]]
    mean_at_flip: dict[str, Optional[float]]
    shown: Shown
    pictures: np.ndarray
    maps: np.ndarray

    def distance_at_flip(self, method: str) -> float:
        """``method``'s mean change at the flipping steps (NaN: no image flips)."""
        value = self.mean_at_flip[method]
        return math.nan if value is None else value


class AdversarialStep(AuditStep[AdversarialResult]):
    """FGSM adversarial images: does a method's map change when the prediction does?"""

    name = "adversarial"
    result_type = AdversarialResult

    def identity(self, context: AuditContext) -> dict[str, Any]:
        return {**context.identity, "adversarial_steps": context.recorded["adversarial_steps"]}

    def measure(self, context: AuditContext) -> AdversarialResult:
        assert context.inputs is not None
        return adversarial_numbers(
            context.module,
            context.inputs,
            context.loaded.preprocessing,
            context.methods,
            steps=context.settings.adversarial_steps,
            precision=context.settings.precision,
        )

    def verdict_numbers(self, result: AdversarialResult, method: str, reference: str) -> dict[str, float]:
        at_flip = result.distance_at_flip(method)
        return {
            "adversarial_distance": at_flip,
            "adversarial_over_saliency": ratio(at_flip, result.distance_at_flip(reference)),
        }

    def not_measured(self, result: AdversarialResult) -> Optional[str]:
        if all(value is None for value in result.mean_at_flip.values()):
            return "no FGSM step tried changed the prediction of any of the images"
        return None

    def figures(self, result: AdversarialResult, context: AuditContext, folder: Path) -> list[tuple[Path, str]]:
        title = f"FGSM adversarial test: {context.title}"[:110]
        return [
            (
                draw_adversarial(result, context.methods, folder / "adversarial.png", title),
                "The adversarial test (Figure 8): each method's class distance between its map of an image (its max "
                "logit) and of its FGSM example (that one's max logit) against the step; the maps of one image at its "
                "smallest step that changes the prediction.",
            )
        ]


def adversarial_numbers(
    model: nn.Module,
    inputs: torch.Tensor,
    preprocessing: Callable,
    methods: Sequence[str],
    *,
    steps: Sequence[float] = ADVERSARIAL_STEPS,
    precision: PrecisionLike,
) -> AdversarialResult:
    """The adversarial test on ``inputs`` [B, C, H, W] (the model's inputs).

    Raises:
        Skip: a preprocessing without ``normalize`` and ``unnormalize``.
    """
    normalize, unnormalize = getattr(preprocessing, "normalize", None), getattr(preprocessing, "unnormalize", None)
    if not (callable(normalize) and callable(unnormalize)):
        raise Skip(
            f"FGSM works on pixels in [0, 1] and the model's preprocessing ({type(preprocessing).__name__}) has no "
            "normalize/unnormalize to go back and forth (a backpropvis.models.Preprocessing has both)"
        )
    pixels = unnormalize(inputs)
    sweep = fgsm_sweep(model, pixels, normalize, steps, methods, precision=precision)
    flipping = sweep.smallest_flipping_step()
    with torch.no_grad():
        num_logits = model(inputs[:1]).shape[1]
    at_flip = {
        method: [
            None if step is None else float(sweep.distance[method][step, image]) for image, step in enumerate(flipping)
        ]
        for method in methods
    }
    shown = next((image for image, step in enumerate(flipping) if step is not None), 0)
    first_flip = flipping[shown]
    shown_step = first_flip if first_flip is not None else len(sweep.steps) - 1
    return AdversarialResult(
        steps=list(sweep.steps),
        original=sweep.original.tolist(),
        original_names=[logit_name(int(index), num_logits) for index in sweep.original],
        predicted=sweep.predicted.tolist(),
        predicted_names=[[logit_name(int(index), num_logits) for index in row] for row in sweep.predicted],
        flipping_step=list(flipping),
        distance={method: sweep.distance[method].tolist() for method in methods},
        at_flip=at_flip,
        mean_at_flip={method: _mean(values) for method, values in at_flip.items()},
        shown=Shown(shown, shown_step),
        pictures=torch.stack([pixels[shown].cpu(), sweep.adversarial[shown_step, shown].cpu()]).numpy(),
        maps=torch.stack([sweep.maps[method][[0, 1 + shown_step], shown].cpu() for method in methods]).numpy(),
    )


def _mean(values: Sequence[Optional[float]]) -> Optional[float]:
    present = [value for value in values if value is not None]
    return sum(present) / len(present) if present else None


def draw_adversarial(result: AdversarialResult, methods: Sequence[str], path: Path, title: str) -> Path:
    """Left: an image and its adversarial example with each method's maps; right: each
    method's change (mean over the images, and each image) against the FGSM step."""
    steps, image, at = result.steps, result.shown.image, result.shown.step
    pictures, maps = torch.from_numpy(np.array(result.pictures)), torch.from_numpy(np.array(result.maps))
    plt = pyplot()
    figure = plt.figure(figsize=(3.0 * (len(methods) + 1) + 5.5, 5.6))
    grid = figure.add_gridspec(2, len(methods) + 2, width_ratios=[1] * (len(methods) + 1) + [2.2])
    labels = [
        f"original: {result.original_names[image]}"[:40],
        f"FGSM {steps[at]:g}/255: {result.predicted_names[at][image]}"[:40],
    ]
    for row in range(2):
        axis = figure.add_subplot(grid[row, 0])
        axis.imshow(pictures[row].permute(1, 2, 0).clamp(0, 1).numpy())
        axis.set_xticks([]), axis.set_yticks([])
        axis.set_ylabel(labels[row], fontsize=8)
        for column, method in enumerate(methods, start=1):
            axis = figure.add_subplot(grid[row, column])
            axis.imshow(to_display(maps[column - 1, row]))
            axis.set_xticks([]), axis.set_yticks([])
            if row == 0:
                axis.set_title(METHOD_LABELS.get(method, method), fontsize=9)
            else:
                axis.set_xlabel(f"distance {result.distance[method][at][image]:.3f}", fontsize=8)
    axis = figure.add_subplot(grid[:, -1])
    flipped = np.array(result.predicted) != np.array(result.original)[None, :]  # [S, B]
    for method in methods:
        values = np.array(result.distance[method])  # [S, B]
        line = axis.plot(steps, values.mean(axis=1), marker="o", label=METHOD_LABELS.get(method, method))[0]
        for index in range(values.shape[1]):
            axis.plot(steps, values[:, index], color=line.get_color(), alpha=0.25, linewidth=0.8)
    for number, step_value in enumerate(steps):
        axis.annotate(f"{int(flipped[number].sum())}/{flipped.shape[1]}", (step_value, 1.9), fontsize=7, ha="center")
    axis.set_xscale("log", base=2)
    axis.set_xticks(steps, [f"{value:g}" for value in steps])
    axis.set_xlabel("FGSM step (x 1/255); top: images whose prediction changed", fontsize=8)
    axis.set_ylabel("class distance, original vs adversarial map", fontsize=8)
    axis.set_ylim(0, 2)
    axis.legend(fontsize=8)
    return save_figure(figure, path, title, CLIP_99)
