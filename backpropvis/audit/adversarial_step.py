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
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch
from torch import nn

from ..attacks.sweep import fgsm_sweep
from ..core.claims import Skip
from ..core.metrics import ratio
from ..engine import PrecisionLike
from ..images.samples import logit_name
from .figures import draw_adversarial
from .saved import StepData
from .step import ADVERSARIAL_STEPS, AuditContext, AuditStep

__all__ = ["ADVERSARIAL_STEPS", "AdversarialStep", "adversarial_numbers"]


class AdversarialStep(AuditStep):
    """FGSM adversarial images: does a method's map change when the prediction does?"""

    name = "adversarial"

    def identity(self, context: AuditContext) -> dict[str, Any]:
        return {**context.identity, "adversarial_steps": context.recorded["adversarial_steps"]}

    def measure(self, context: AuditContext) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        assert context.inputs is not None
        return adversarial_numbers(
            context.module,
            context.inputs,
            context.loaded.preprocessing,
            context.methods,
            steps=context.settings.adversarial_steps,
            precision=context.settings.precision,
        )

    def verdict_numbers(self, data: StepData, method: str, reference: str) -> dict[str, float]:
        at_flip = {name: math.nan if value is None else value for name, value in data.numbers["mean_at_flip"].items()}
        return {
            "adversarial_distance": at_flip[method],
            "adversarial_over_saliency": ratio(at_flip[method], at_flip[reference]),
        }

    def not_measured(self, data: StepData) -> Optional[str]:
        if all(value is None for value in data.numbers["mean_at_flip"].values()):
            return "no FGSM step tried changed the prediction of any of the images"
        return None

    def figures(self, data: StepData, context: AuditContext, folder: Path) -> list[tuple[Path, str]]:
        title = f"FGSM adversarial test: {context.title}"[:110]
        return [
            (
                draw_adversarial(data, context.methods, folder / "adversarial.png", title),
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
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The adversarial test on ``inputs`` [B, C, H, W] (the model's inputs).

    Returns:
        numbers: ``steps``, ``original`` [B] and ``predicted`` [S][B] classes (with names),
        ``flipping_step`` [B] (index into ``steps`` or None), ``distance`` method -> [S][B],
        ``at_flip`` method -> [B] (the distance at the image's flipping step, None where
        no step flips it) and ``mean_at_flip`` method -> mean over flipped images (None: none);
        arrays: ``pictures`` [2, 3, H, W] (an image that flips, or the first, and its
        adversarial image at the step shown) and ``maps`` [M, 2, C, H, W] their maps.

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
    numbers = {
        "steps": list(sweep.steps),
        "original": sweep.original.tolist(),
        "original_names": [logit_name(int(index), num_logits) for index in sweep.original],
        "predicted": sweep.predicted.tolist(),
        "predicted_names": [[logit_name(int(index), num_logits) for index in row] for row in sweep.predicted],
        "flipping_step": flipping,
        "distance": {method: sweep.distance[method].tolist() for method in methods},
        "at_flip": at_flip,
        "mean_at_flip": {method: _mean(values) for method, values in at_flip.items()},
        "shown": {"image": shown, "step": shown_step},
    }
    arrays = {
        "pictures": torch.stack([pixels[shown].cpu(), sweep.adversarial[shown_step, shown].cpu()]),
        "maps": torch.stack([sweep.maps[method][[0, 1 + shown_step], shown].cpu() for method in methods]),
    }
    return numbers, arrays


def _mean(values: Sequence[Optional[float]]) -> Optional[float]:
    present = [value for value in values if value is not None]
    return sum(present) / len(present) if present else None
