"""The handwritten digits the small VGG-style network is trained on, offline.

scikit-learn ships the UCI "optical recognition of handwritten digits" test set
(``sklearn.datasets.load_digits``: 1797 images of 8 x 8 pixels, 17 grey levels,
0-9, about 180 per class) inside its wheel, so it needs no network. Each image is
scaled to 8 bits (ink bright on black, as scikit-learn stores it), upsampled to
32 x 32 with PIL's bilinear filter and repeated over three channels: a PIL RGB
image that any model's preprocessing can read, and that the figures can show.

The split is fixed and stratified: in each class, a permutation drawn from a
generator seeded by (:data:`SPLIT_SEED`, class) puts the first
:data:`TEST_FRACTION` of the images into the held-out test set (360 images) and the
rest into the training set (1437 images).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from PIL import Image

from ..core.errors import ModelError
from .init import generator_for
from .preprocessing import Preprocessing

__all__ = [
    "DIGITS_CLASSES",
    "DIGITS_PREPROCESSING",
    "DIGITS_SIZE",
    "SPLIT_SEED",
    "TEST_FRACTION",
    "DigitsSet",
    "digit_image",
    "load_digits_split",
]

DIGITS_SIZE = 32
"""The side of the upsampled images, in pixels."""

DIGITS_CLASSES: tuple[str, ...] = tuple(str(digit) for digit in range(10))
"""Class names by logit index: "0" ... "9"."""

DIGITS_PREPROCESSING = Preprocessing(crop=DIGITS_SIZE, resize=DIGITS_SIZE, mean=(0.31,) * 3, std=(0.32,) * 3)
"""Resize to 32 x 32, then (pixel / 255 - 0.31) / 0.32: the mean and standard deviation
of the upsampled digits' pixels (0.306 and 0.324 over all 1797), rounded."""

SPLIT_SEED = 0
"""The seed of the train / test split (fixed: the shipped checkpoint was trained on it)."""

TEST_FRACTION = 0.2
"""The share of each class held out for testing."""

Split = Literal["train", "test", "all"]


@dataclass(frozen=True)
class DigitsSet:
    """Digits ready for a model and for display.

    Attributes:
        inputs: [B, 3, 32, 32] float32, in the digits model's input scale
            (:data:`DIGITS_PREPROCESSING` of ``images``).
        labels: [B] int64, the digit shown.
        images: B PIL RGB images, 32 x 32, for display or any other preprocessing.
        indices: [B] int64, each image's position in ``sklearn.datasets.load_digits()``.
    """

    inputs: torch.Tensor
    labels: torch.Tensor
    images: tuple[Image.Image, ...]
    indices: torch.Tensor

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, count: int) -> DigitsSet:
        """The first ``count`` digits."""
        return DigitsSet(self.inputs[:count], self.labels[:count], self.images[:count], self.indices[:count])


def digit_image(pixels: np.ndarray) -> Image.Image:
    """One digit as a 32 x 32 RGB PIL image.

    Args:
        pixels: [8, 8] grey levels 0-16, as ``load_digits().images`` holds them.
    """
    grey = np.round(np.asarray(pixels, dtype=np.float64) * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    return Image.fromarray(grey).resize((DIGITS_SIZE, DIGITS_SIZE), Image.Resampling.BILINEAR).convert("RGB")


@functools.lru_cache(maxsize=1)
def _raw_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits: [1797, 8, 8] float64 grey levels and [1797] int labels."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ModelError(
            "the digits model's data come from scikit-learn (load_digits); install it with: pip install scikit-learn"
        ) from None
    digits = load_digits()
    return np.asarray(digits.images), np.asarray(digits.target, dtype=np.int64)


def _split_indices(labels: np.ndarray) -> dict[str, np.ndarray]:
    """Sorted positions of the training and test images (stratified, seeded)."""
    test = []
    for digit in range(len(DIGITS_CLASSES)):
        members = np.flatnonzero(labels == digit)
        order = torch.randperm(len(members), generator=generator_for(SPLIT_SEED, "digits-split", digit)).numpy()
        test.append(members[order[: round(TEST_FRACTION * len(members))]])
    held_out = np.sort(np.concatenate(test))
    return {"test": held_out, "train": np.setdiff1d(np.arange(len(labels)), held_out), "all": np.arange(len(labels))}


def load_digits_split(split: Split = "test") -> DigitsSet:
    """The held-out test digits (default), the training digits, or all of them.

    Raises:
        ModelError: an unknown split, or scikit-learn not installed.
    """
    if split not in ("train", "test", "all"):
        raise ModelError(f"unknown digits split {split!r}; choose train, test or all")
    pixels, labels = _raw_digits()
    chosen = _split_indices(labels)[split]
    images = tuple(digit_image(pixels[index]) for index in chosen)
    return DigitsSet(
        inputs=DIGITS_PREPROCESSING.batch(images),
        labels=torch.from_numpy(labels[chosen]),
        images=images,
        indices=torch.from_numpy(chosen),
    )
