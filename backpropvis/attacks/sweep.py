"""The adversarial test of the paper's Figure 8, as a function of any model and images.

Each image is perturbed in pixel space by one FGSM step up the loss of its predicted
class (:func:`backpropvis.attacks.fgsm`), for every step of a sweep declared before
the run. Each method's map of the original (for its max logit) is compared with its
map of each adversarial image (for that image's max logit) by the class distance
(:func:`backpropvis.core.metrics.class_distance`): a class-sensitive method's map changes
when the prediction does; an image-recovering one hardly changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch

from ..core.metrics import class_distance
from ..core.rules import PAPER_METHODS
from ..engine import Precision, PrecisionLike, attribute_many
from .fgsm import fgsm_direction

__all__ = ["AdversarialSweep", "fgsm_sweep"]


@dataclass(frozen=True)
class AdversarialSweep:
    """FGSM at each step of a sweep over a batch of images, and how each map changed.

    Attributes:
        steps: the S steps, in units of 1/255 of the pixel range [0, 1].
        original: LongTensor[B], each original image's predicted class.
        predicted: LongTensor[S, B], each adversarial image's predicted class.
        distance: method -> Tensor[S, B] (float64), the class distance between the
            original's map and the adversarial image's map.
        adversarial: [S, B, C, H, W] the adversarial images' pixels in [0, 1].
        maps: method -> [1 + S, B, C, H, W] the maps (original first), raw and signed.
    """

    steps: tuple[float, ...]
    original: torch.Tensor
    predicted: torch.Tensor
    distance: dict[str, torch.Tensor]
    adversarial: torch.Tensor
    maps: dict[str, torch.Tensor]

    @property
    def flipped(self) -> torch.Tensor:
        """Bool[S, B]: whether the step changed the image's prediction."""
        return self.predicted != self.original

    def smallest_flipping_step(self) -> list[Optional[int]]:
        """Per image, the index into ``steps`` of the smallest step that changes the
        prediction, or None where none of the steps does."""
        flipped = self.flipped
        return [
            int(flipped[:, image].nonzero()[0]) if bool(flipped[:, image].any()) else None
            for image in range(flipped.shape[1])
        ]


def fgsm_sweep(
    model: Callable[[torch.Tensor], torch.Tensor],
    pixels: torch.Tensor,
    normalize: Callable[[torch.Tensor], torch.Tensor],
    steps: Sequence[float],
    methods: Sequence[str] = PAPER_METHODS,
    *,
    precision: PrecisionLike = Precision.FLOAT32,
) -> AdversarialSweep:
    """Run the adversarial test on a batch of images.

    Args:
        model: maps the model's inputs [B, C, H, W] to logits [B, K].
        pixels: [B, C, H, W] images in [0, 1] (display scale).
        normalize: pixels -> the model's input scale (e.g. ``model.preprocessing.normalize``).
        steps: FGSM steps in units of 1/255, declared before the run (sorted here).
        methods: the rules whose maps are compared.
        precision: the engine's arithmetic (default exact float32, for reproducible claims).

    Returns:
        :class:`AdversarialSweep`; one engine call computes the maps of the originals and
        of every adversarial image (one forward pass for all of them).
    """
    steps = tuple(sorted(float(step) for step in steps))

    def on_pixels(batch: torch.Tensor) -> torch.Tensor:
        return model(normalize(batch))

    with torch.no_grad():
        original = on_pixels(pixels).argmax(dim=1)
    direction = fgsm_direction(on_pixels, pixels, original)  # one gradient for every step
    adversarial = torch.stack([(pixels.detach() + step / 255.0 * direction).clamp(0.0, 1.0) for step in steps])
    batch, count = len(pixels), len(steps)
    inputs = normalize(torch.cat([pixels, adversarial.flatten(0, 1)]))  # [(1 + S) B, C, H, W]
    maps = attribute_many(model, inputs, ["max"], methods, precision=precision)
    predicted = maps.logits.argmax(dim=1)[batch:].reshape(count, batch)
    distance, by_step = {}, {}
    for method, method_maps in maps.items():
        per_step = method_maps[0].reshape(1 + count, batch, *pixels.shape[1:])  # [1 + S, B, C, H, W]
        distance[method] = class_distance(per_step[:1].expand_as(per_step[1:]), per_step[1:]).cpu()
        by_step[method] = per_step
    return AdversarialSweep(steps, original.cpu(), predicted.cpu(), distance, adversarial, by_step)
