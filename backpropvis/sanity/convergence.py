"""Sixt, Granz & Landgraf's (2020) two measures, as pure functions (read from the authors'
code, ``berleon/when-explanations-lie``, not copied):

- :func:`cosine_convergence` (their CSC, the notebook ``cosine_similarity_convergence``):
  S backward signals of one image at one layer, started from S different vectors at the
  top; at every spatial position the channel vectors of every pair of signals are
  compared by their cosine; the absolute values of all pairs and positions are pooled and
  their median taken (positions where a signal is zero give no cosine and are left out,
  as the authors filter NaNs). A value near 1 means the signals have collapsed onto one
  direction (rank one): the layer's signal no longer depends on where it started.
- :func:`sixt_ssim` (their ``ssim_flipped``, used for the cascading-randomisation figure):
  each map is reduced to one channel by the maximum absolute value over channels
  (``abs.max``, their post-processing for GBP, DeconvNet and the gradient), normalised by
  :func:`normalize_sanity` with the 99.5th percentile, and compared by SSIM with a
  uniform 5 x 5 window, sample covariance, K1 = 0.01, K2 = 0.03 and data range 2 (what
  scikit-image's ``compare_ssim`` took for float64 without a data range), averaged over
  the window positions inside the map; the larger of the SSIM with the map and with its
  negation is kept.

Every function takes a batch and returns one value per image ([B] float64 numpy).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ..core.errors import InputError

__all__ = [
    "SIXT_PERCENTILE",
    "SIXT_SSIM_DATA_RANGE",
    "SIXT_WINDOW",
    "abs_max",
    "cosine_convergence",
    "normalize_sanity",
    "sixt_ssim",
    "uniform_ssim",
]

SIXT_PERCENTILE = 99.5
"""The normalisation's percentile (the authors': 99.5 for every method but RectGrad)."""

SIXT_WINDOW = 5
"""The SSIM's window side (uniform weights)."""

SIXT_SSIM_DATA_RANGE = 2.0
"""The SSIM's data range (float64's nominal [-1, 1] in scikit-image 0.16)."""


def cosine_convergence(signals: torch.Tensor) -> np.ndarray:
    """[S, B, C, *spatial] or [S, B, D] -> [B]: the median over pairs of signals and
    positions of the absolute cosine between channel vectors (NaN without any cosine).

    A dense layer's signal [S, B, D] is one D-vector per image; a convolutional one has a
    C-vector at every position.
    """
    if signals.shape[0] < 2:
        raise ValueError(f"cosine convergence needs at least 2 signals per image, not {signals.shape[0]}")
    vectors = signals.double().unsqueeze(2) if signals.dim() == 3 else signals.double().flatten(3).transpose(2, 3)
    norms = vectors.norm(dim=-1, keepdim=True)  # [S, B, P, 1]
    units = torch.where(norms > 0, vectors / norms.clamp_min(1e-300), torch.full_like(vectors, math.nan))
    first, second = torch.triu_indices(len(signals), len(signals), offset=1)
    cosines = (units[first] * units[second]).sum(-1).abs()  # [pairs, B, P]
    pooled = cosines.transpose(0, 1).flatten(1).cpu().numpy()  # [B, pairs * P]
    result = np.full(pooled.shape[0], math.nan)
    for image, values in enumerate(pooled):
        finite = values[np.isfinite(values)]
        if finite.size:
            result[image] = float(np.median(finite))
    return result


def abs_max(maps: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] -> [B, H, W]: the largest absolute value over channels."""
    return maps.double().abs().amax(1)


def normalize_sanity(maps: torch.Tensor, percentile: float = SIXT_PERCENTILE) -> torch.Tensor:
    """[B, H, W] -> [B, H, W]: the authors' ``normalize_sanity``: with ``low`` the
    ``percentile``-th and ``high`` the ``(100 - percentile)``-th percentile of each map
    (linear interpolation), ``clip((x - low) / (high - low), 0, 1)``. The names are theirs:
    ``low`` is the upper percentile, so the map comes out inverted; SSIM compares two maps
    inverted alike, and :func:`sixt_ssim` keeps the better of a map and its negation.
    NaN for a constant map."""
    flat = maps.double().flatten(1)
    low = torch.quantile(flat, percentile / 100.0, dim=1)[:, None, None]
    high = torch.quantile(flat, 1.0 - percentile / 100.0, dim=1)[:, None, None]
    span = high - low
    scaled = (maps.double() - low) / torch.where(span != 0, span, torch.full_like(span, math.nan))
    return scaled.clamp(0.0, 1.0)


def uniform_ssim(
    a: torch.Tensor, b: torch.Tensor, window: int = SIXT_WINDOW, data_range: float = SIXT_SSIM_DATA_RANGE
) -> np.ndarray:
    """[B, H, W] x [B, H, W] -> [B]: SSIM (Wang et al. 2004) with a uniform ``window``,
    sample covariance, K1 = 0.01, K2 = 0.03, averaged over the positions where the window
    fits (scikit-image's ``structural_similarity`` with those settings).

    Raises:
        InputError: maps smaller than the window (a ValueError).
    """
    if min(a.shape[-2:]) < window:
        raise InputError(
            f"SSIM needs maps of at least {window} x {window} pixels, not {list(a.shape)}: use a larger input size"
        )
    x, y = a.double()[:, None], b.double()[:, None]

    def mean(image: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(image, window, stride=1)

    points = window * window
    sample = points / (points - 1)
    mean_x, mean_y = mean(x), mean(y)
    var_x = sample * (mean(x * x) - mean_x**2)
    var_y = sample * (mean(y * y) - mean_y**2)
    cov = sample * (mean(x * y) - mean_x * mean_y)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    index = ((2 * mean_x * mean_y + c1) * (2 * cov + c2)) / ((mean_x**2 + mean_y**2 + c1) * (var_x + var_y + c2))
    return index.flatten(1).mean(1).cpu().numpy()


def sixt_ssim(variant: torch.Tensor, reference: torch.Tensor, percentile: float = SIXT_PERCENTILE) -> np.ndarray:
    """[B, C, H, W] x [B, C, H, W] -> [B]: the authors' ``ssim_flipped(variant, reference)``
    on ``abs.max`` maps (see the module's docstring); NaN where a map is constant."""
    if variant.shape != reference.shape:
        raise ValueError(f"maps to compare must have one shape, not {list(variant.shape)} and {list(reference.shape)}")
    first, second = abs_max(variant), abs_max(reference)
    normalized = normalize_sanity(first, percentile)
    plain = uniform_ssim(normalized, normalize_sanity(second, percentile))
    flipped = uniform_ssim(normalized, normalize_sanity(-second, percentile))
    return np.maximum(plain, flipped)
