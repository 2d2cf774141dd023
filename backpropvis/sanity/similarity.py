"""Adebayo et al.'s (2018) four similarities between two maps, per image, and the maps
their controls compare with.

Each map is normalised as in the authors' code (``adebayoj/sanity_checks_saliency``,
the Inception-v3 notebooks; read, not copied) before it is compared:

- ``spearman_abs``: Spearman rank correlation of the *absolute-value grayscale* maps:
  the sum of ``|map|`` over channels, scaled to [0, 1] between its minimum and its 99th
  percentile and clipped (the top 1% become ties at 1).
- ``spearman_signed``: Spearman rank correlation of the *diverging* maps: the sum over
  channels, divided by the absolute value of its 99th percentile and clipped to [-1, 1].
- ``ssim``: the structural similarity (Wang et al. 2004) of the maps min-max normalised
  over all their values to [0, 1], channels kept: Gaussian weights (sigma 1.5, 11 taps),
  sample covariance, K1 = 0.01, K2 = 0.03, the mean over every channel of the window
  positions that fit inside the image. The data range is 2: the authors called
  scikit-image 0.14's ``compare_ssim`` on float32 maps without a data range, which then
  took float32's nominal range [-1, 1].
- ``hog``: the Pearson correlation of the histograms of oriented gradients (scikit-image's
  ``hog``: 9 orientations, 3 x 3 cells per block, L2-Hys) of the same [0, 1] maps, with
  cells scaled to the map (the authors' 16 pixels at 299: :func:`hog_cell`). The paper says
  Pearson; the notebook computes a Spearman correlation of the two feature vectors.

The controls' maps: :func:`random_maps` (independent standard normal values, seeded) and
:func:`edge_maps` (the Sobel gradient magnitude of each channel of the input).

Every function takes [B, C, H, W] maps and returns one value per image ([B] float64,
numpy); a value is NaN where it means nothing (a constant map has no ranks).
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import rankdata

from ..metrics import minmax_normalize

__all__ = [
    "METRICS",
    "METRIC_LABELS",
    "SSIM_DATA_RANGE",
    "abs_grayscale",
    "diverging",
    "edge_maps",
    "hog_cell",
    "hog_similarity",
    "random_maps",
    "similarities",
    "spearman",
    "ssim",
]

SSIM_DATA_RANGE = 2.0
"""The data range of the SSIM's constants (float32's nominal range, as the authors' call had)."""

_PERCENTILE = 99.0


def abs_grayscale(maps: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] -> [B, H, W]: the sum of |map| over channels, (x - min) / (p99 - min), clipped to [0, 1]."""
    summed = maps.double().abs().sum(1)
    flat = summed.flatten(1)
    low = flat.min(1).values[:, None, None]
    high = torch.quantile(flat, _PERCENTILE / 100.0, dim=1)[:, None, None]
    return ((summed - low) / (high - low)).nan_to_num(0.0).clamp(0.0, 1.0)


def diverging(maps: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] -> [B, H, W]: the sum over channels divided by |its 99th percentile|, clipped to [-1, 1]."""
    summed = maps.double().sum(1)
    span = torch.quantile(summed.flatten(1), _PERCENTILE / 100.0, dim=1).abs()[:, None, None]
    return (summed / span).nan_to_num(0.0).clamp(-1.0, 1.0)


def spearman(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """[B, ...] x [B, ...] -> [B]: Spearman rank correlation of each pair (ties share their mean rank)."""
    ranks_a = rankdata(a.flatten(1).cpu().numpy(), axis=1)
    ranks_b = rankdata(b.flatten(1).cpu().numpy(), axis=1)
    ranks_a -= ranks_a.mean(1, keepdims=True)
    ranks_b -= ranks_b.mean(1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (ranks_a * ranks_b).sum(1) / np.sqrt((ranks_a**2).sum(1) * (ranks_b**2).sum(1))


def _gaussian_window(sigma: float = 1.5, truncate: float = 3.5) -> torch.Tensor:
    radius = int(truncate * sigma + 0.5)
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    weights = torch.exp(-(offsets**2) / (2 * sigma**2))
    return weights / weights.sum()


def _filtered(images: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """[N, 1, H, W] -> [N, 1, H - 2r, W - 2r]: the separable Gaussian filter where the window fits."""
    size = window.numel()
    vertical = F.conv2d(images, window.view(1, 1, size, 1))
    return F.conv2d(vertical, window.view(1, 1, 1, size))


def ssim(a: torch.Tensor, b: torch.Tensor, data_range: float = SSIM_DATA_RANGE) -> np.ndarray:
    """[B, C, H, W] x [B, C, H, W] -> [B]: the mean structural similarity over channels and
    window positions (maps taken as they are; :func:`similarities` normalises them first).

    Raises:
        ValueError: maps smaller than the 11-pixel window.
    """
    window = _gaussian_window().to(a.device)
    if min(a.shape[-2:]) < window.numel():
        raise ValueError(f"SSIM needs maps of at least {window.numel()} x {window.numel()} pixels, not {list(a.shape)}")
    batch = a.shape[0]
    x = a.double().flatten(0, 1)[:, None]  # [B * C, 1, H, W]
    y = b.double().flatten(0, 1)[:, None]
    points = window.numel() ** 2
    covariance_norm = points / (points - 1)  # sample covariance, as scikit-image's default
    mean_x, mean_y = _filtered(x, window), _filtered(y, window)
    var_x = covariance_norm * (_filtered(x * x, window) - mean_x**2)
    var_y = covariance_norm * (_filtered(y * y, window) - mean_y**2)
    cov = covariance_norm * (_filtered(x * y, window) - mean_x * mean_y)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    index = ((2 * mean_x * mean_y + c1) * (2 * cov + c2)) / ((mean_x**2 + mean_y**2 + c1) * (var_x + var_y + c2))
    return index.reshape(batch, -1).mean(1).cpu().numpy()


def hog_cell(size: int) -> int:
    """The HOG cell side for maps of ``size`` pixels: the authors' 16 at 299, scaled (at least 2)."""
    return max(2, round(16 * size / 299))


def hog_similarity(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """[B, C, H, W] x [B, C, H, W] -> [B]: Pearson correlation of the two maps' HOG features
    (maps taken as they are; :func:`similarities` normalises them to [0, 1] first)."""
    from skimage.feature import hog

    cell = hog_cell(min(a.shape[-2:]))

    def features(maps: torch.Tensor) -> np.ndarray:
        pictures = maps.double().permute(0, 2, 3, 1).cpu().numpy()  # [B, H, W, C]
        return np.stack([hog(picture, pixels_per_cell=(cell, cell), channel_axis=-1) for picture in pictures])

    first, second = features(a), features(b)
    first -= first.mean(1, keepdims=True)
    second -= second.mean(1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (first * second).sum(1) / np.sqrt((first**2).sum(1) * (second**2).sum(1))


METRICS: dict[str, Callable[[torch.Tensor, torch.Tensor], np.ndarray]] = {
    "spearman_abs": lambda a, b: spearman(abs_grayscale(a), abs_grayscale(b)),
    "spearman_signed": lambda a, b: spearman(diverging(a), diverging(b)),
    "ssim": lambda a, b: ssim(minmax_normalize(a.double()), minmax_normalize(b.double())),
    "hog": lambda a, b: hog_similarity(minmax_normalize(a.double()), minmax_normalize(b.double())),
}
"""Adebayo et al.'s similarities, each ``(maps, maps) -> [B]``, normalisation included."""

METRIC_LABELS: dict[str, str] = {
    "spearman_abs": "Spearman (abs.)",
    "spearman_signed": "Spearman (signed)",
    "ssim": "SSIM",
    "hog": "HOG (Pearson)",
}


def similarities(a: torch.Tensor, b: torch.Tensor) -> dict[str, np.ndarray]:
    """Every metric of :data:`METRICS` between ``a`` and ``b`` ([B, C, H, W] each): name -> [B]."""
    if a.shape != b.shape:
        raise ValueError(f"maps to compare must have one shape, not {list(a.shape)} and {list(b.shape)}")
    return {name: np.asarray(metric(a, b), dtype=np.float64) for name, metric in METRICS.items()}


def random_maps(shape: torch.Size, seed: int) -> torch.Tensor:
    """[B, C, H, W] independent standard normal values from a generator seeded by ``seed``."""
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def edge_maps(inputs: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] -> [B, C, H, W]: the Sobel gradient magnitude of each channel (edges replicated)."""
    derivative = torch.tensor([-1.0, 0.0, 1.0], dtype=torch.float64)
    smoothing = torch.tensor([1.0, 2.0, 1.0], dtype=torch.float64)
    kernel_x = (smoothing[:, None] * derivative[None, :]).view(1, 1, 3, 3)
    images = F.pad(inputs.double().cpu().flatten(0, 1)[:, None], (1, 1, 1, 1), mode="replicate")
    along_x = F.conv2d(images, kernel_x)
    along_y = F.conv2d(images, kernel_x.transpose(-1, -2))
    return torch.sqrt(along_x**2 + along_y**2).view(inputs.shape) / math.sqrt(32.0)
