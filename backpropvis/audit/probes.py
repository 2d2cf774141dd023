"""The few images the costly steps look at: ``count`` readable ones spread over the audit's list.

Cascading randomisation builds and runs a copy of the model per stage, and the
adversarial test runs an attack per step, so they look at a few images only: those at
``count`` evenly spaced places of the sorted list (the first and the last included), so
that an ImageFolder tree gives images of several classes rather than ``count`` of the
first one; an unreadable one is replaced by the next readable image of the list. The
same list gives the same images on every run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image

from ..core.errors import ImageError
from ..core.metrics import minmax_normalize
from ..images.sets import ImageSource, read_image

__all__ = ["Probes", "load_probes", "display_pixels"]


@dataclass(frozen=True)
class Probes:
    """The images of the costly steps.

    Attributes:
        keys: their keys, in list order.
        hashes: the SHA-256 of each one's content (part of a kept step's identity).
        inputs: [B, C, S, S] the model's inputs (after its preprocessing).
        pixels: [B, 3, S, S] in [0, 1], for figures.
    """

    keys: tuple[str, ...]
    hashes: tuple[str, ...]
    inputs: torch.Tensor
    pixels: torch.Tensor


def display_pixels(inputs: torch.Tensor, preprocessing: Callable) -> torch.Tensor:
    """The model's inputs [B, C, H, W] as pixels in [0, 1]: undone by the preprocessing's
    ``unnormalize`` when it has one, else min-max scaled per image."""
    unnormalize = getattr(preprocessing, "unnormalize", None)
    if callable(unnormalize):
        return unnormalize(inputs)
    return minmax_normalize(inputs).float()


def load_probes(
    source: ImageSource, keys: Sequence[str], preprocessing: Callable[[Image.Image], torch.Tensor], count: int
) -> Probes:
    """``count`` readable images of ``keys``, spread over the list (see the module's docstring;
    unreadable ones are passed over, the class-distance step records why), in list order.

    Raises:
        ImageError: when none of ``keys`` can be read.
    """
    spread = sorted({round(float(place)) for place in np.linspace(0, len(keys) - 1, min(count, len(keys)))})
    candidates = [keys[place] for place in spread] + [key for place, key in enumerate(keys) if place not in spread]
    chosen, hashes, inputs = [], [], []
    first_failure = None
    for key in candidates:
        read = read_image(source, key)
        if read.picture is None:
            first_failure = first_failure or f"{key}: {read.reason}"
            continue
        chosen.append(key)
        hashes.append(read.content_hash)
        inputs.append(preprocessing(read.picture))
        if len(chosen) == count:
            break
    if not chosen:
        raise ImageError(f"none of the {len(keys)} images can be read, e.g. {first_failure}")
    order = sorted(range(len(chosen)), key=lambda number: keys.index(chosen[number]))
    batch = torch.stack([inputs[number] for number in order])
    return Probes(
        tuple(chosen[number] for number in order),
        tuple(hashes[number] for number in order),
        batch,
        display_pixels(batch, preprocessing),
    )
