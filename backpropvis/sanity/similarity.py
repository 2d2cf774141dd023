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
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import rankdata

from ..core.errors import InputError
from ..core.metrics import minmax_normalize

__all__ = [
    "METRICS",
    "METRIC_LABELS",
    "SSIM_DATA_RANGE",
    "PreparedMaps",
    "abs_grayscale",
    "compare_prepared",
    "diverging",
    "edge_maps",
    "hog_cell",
    "hog_similarity",
    "prepare",
    "random_maps",
    "similarities",
    "spearman",
    "ssim",
]

SSIM_DATA_RANGE = 2.0
"""The data range of the SSIM's constants (float32's nominal range, as the authors' call had)."""

_PERCENTILE = 99.0


def _percentile(values: torch.Tensor) -> torch.Tensor:
    """[B, N] -> [B]: the 99th percentile of each row (linear interpolation, as numpy's)."""
    return torch.from_numpy(np.percentile(values.detach().cpu().numpy(), _PERCENTILE, axis=1)).to(values)


def abs_grayscale(maps: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] -> [B, H, W]: the sum of |map| over channels, (x - min) / (p99 - min), clipped to [0, 1]."""
    summed = maps.double().abs().sum(1)
    flat = summed.flatten(1)
    low = flat.min(1).values[:, None, None]
    high = _percentile(flat)[:, None, None]
    return ((summed - low) / (high - low)).nan_to_num(0.0).clamp(0.0, 1.0)


def diverging(maps: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] -> [B, H, W]: the sum over channels divided by |its 99th percentile|, clipped to [-1, 1]."""
    summed = maps.double().sum(1)
    span = _percentile(summed.flatten(1)).abs()[:, None, None]
    return (summed / span).nan_to_num(0.0).clamp(-1.0, 1.0)


def _centred(rows: np.ndarray) -> np.ndarray:
    return rows - rows.mean(1, keepdims=True)


def _correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of each pair of already centred rows: [B, N] x [B, N] -> [B]."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return (a * b).sum(1) / np.sqrt((a**2).sum(1) * (b**2).sum(1))


def _ranks(values: torch.Tensor) -> np.ndarray:
    """[B, ...] -> [B, N] centred ranks of each row (ties share their mean rank)."""
    return _centred(rankdata(values.flatten(1).cpu().numpy(), axis=1))


def spearman(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """[B, ...] x [B, ...] -> [B]: Spearman rank correlation of each pair (ties share their mean rank)."""
    return _correlation(_ranks(a), _ranks(b))


def _gaussian_window(sigma: float = 1.5, truncate: float = 3.5) -> torch.Tensor:
    radius = int(truncate * sigma + 0.5)
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    weights = torch.exp(-(offsets**2) / (2 * sigma**2))
    return weights / weights.sum()


_WINDOW = _gaussian_window()
_POINTS = _WINDOW.numel() ** 2
_COVARIANCE_NORM = _POINTS / (_POINTS - 1)  # sample covariance, as scikit-image's default


def _filtered(images: torch.Tensor) -> torch.Tensor:
    """[N, 1, H, W] -> [N, 1, H - 2r, W - 2r]: the separable Gaussian filter where the window fits."""
    size = _WINDOW.numel()
    window = _WINDOW.to(images.device)
    return F.conv2d(F.conv2d(images, window.view(1, 1, size, 1)), window.view(1, 1, 1, size))


@dataclass(frozen=True)
class _SsimStatistics:
    """A map's per-channel planes [B * C, 1, H, W] and their local means and variances."""

    planes: torch.Tensor
    means: torch.Tensor
    variances: torch.Tensor


def _ssim_statistics(maps: torch.Tensor) -> _SsimStatistics:
    if min(maps.shape[-2:]) < _WINDOW.numel():
        raise InputError(
            f"SSIM needs maps of at least {_WINDOW.numel()} pixels a side, not {list(maps.shape)}: "
            "use a larger input size"
        )
    planes = maps.double().flatten(0, 1)[:, None]
    means = _filtered(planes)
    return _SsimStatistics(planes, means, _COVARIANCE_NORM * (_filtered(planes * planes) - means**2))


def _ssim_of(x: _SsimStatistics, y: _SsimStatistics, batch: int, data_range: float) -> np.ndarray:
    covariance = _COVARIANCE_NORM * (_filtered(x.planes * y.planes) - x.means * y.means)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    numerator = (2 * x.means * y.means + c1) * (2 * covariance + c2)
    index = numerator / ((x.means**2 + y.means**2 + c1) * (x.variances + y.variances + c2))
    return index.reshape(batch, -1).mean(1).cpu().numpy()


def ssim(a: torch.Tensor, b: torch.Tensor, data_range: float = SSIM_DATA_RANGE) -> np.ndarray:
    """[B, C, H, W] x [B, C, H, W] -> [B]: the mean structural similarity over channels and
    window positions (maps taken as they are; :func:`similarities` normalises them first).

    Raises:
        InputError: maps smaller than the 11-pixel window (a ValueError).
    """
    return _ssim_of(_ssim_statistics(a), _ssim_statistics(b), a.shape[0], data_range)


def hog_cell(size: int) -> int:
    """The HOG cell side for maps of ``size`` pixels: the authors' 16 at 299, scaled (at least 2)."""
    return max(2, round(16 * size / 299))


def _hog_features(maps: torch.Tensor) -> np.ndarray:
    """[B, C, H, W] -> [B, F] centred HOG features."""
    from skimage.feature import hog

    cell = hog_cell(min(maps.shape[-2:]))
    pictures = maps.double().permute(0, 2, 3, 1).cpu().numpy()  # [B, H, W, C]
    return _centred(np.stack([hog(picture, pixels_per_cell=(cell, cell), channel_axis=-1) for picture in pictures]))


def hog_similarity(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """[B, C, H, W] x [B, C, H, W] -> [B]: Pearson correlation of the two maps' HOG features
    (maps taken as they are; :func:`similarities` normalises them to [0, 1] first)."""
    return _correlation(_hog_features(a), _hog_features(b))


METRICS: tuple[str, ...] = ("spearman_abs", "spearman_signed", "ssim", "hog")
"""Adebayo et al.'s similarities, in display order."""

METRIC_LABELS: dict[str, str] = {
    "spearman_abs": "Spearman (abs.)",
    "spearman_signed": "Spearman (signed)",
    "ssim": "SSIM",
    "hog": "HOG (Pearson)",
}


@dataclass(frozen=True)
class PreparedMaps:
    """Maps [B, C, H, W] in the form every metric compares (normalised, ranked, filtered,
    HOG features): prepare a map once, compare it with many (:func:`compare_prepared`)."""

    count: int
    ranks_abs: np.ndarray
    ranks_signed: np.ndarray
    ssim: _SsimStatistics
    hog: np.ndarray


def prepare(maps: torch.Tensor) -> PreparedMaps:
    """[B, C, H, W] maps, prepared for :func:`compare_prepared` (normalisations as in the module's docstring)."""
    unit = minmax_normalize(maps.double())
    return PreparedMaps(
        count=maps.shape[0],
        ranks_abs=_ranks(abs_grayscale(maps)),
        ranks_signed=_ranks(diverging(maps)),
        ssim=_ssim_statistics(unit),
        hog=_hog_features(unit),
    )


def compare_prepared(a: PreparedMaps, b: PreparedMaps) -> dict[str, np.ndarray]:
    """Every metric of :data:`METRICS` between two prepared sets of maps: name -> [B]."""
    if a.ranks_abs.shape != b.ranks_abs.shape:
        raise ValueError("maps to compare must have one shape")
    return {
        "spearman_abs": _correlation(a.ranks_abs, b.ranks_abs),
        "spearman_signed": _correlation(a.ranks_signed, b.ranks_signed),
        "ssim": _ssim_of(a.ssim, b.ssim, a.count, SSIM_DATA_RANGE),
        "hog": _correlation(a.hog, b.hog),
    }


def similarities(a: torch.Tensor, b: torch.Tensor) -> dict[str, np.ndarray]:
    """Every metric of :data:`METRICS` between ``a`` and ``b`` ([B, C, H, W] each): name -> [B]."""
    if a.shape != b.shape:
        raise ValueError(f"maps to compare must have one shape, not {list(a.shape)} and {list(b.shape)}")
    return compare_prepared(prepare(a), prepare(b))


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
