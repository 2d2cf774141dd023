"""The paper's theory as computations: Theorem 1's limit image, the recovery law, Theorem 2.

Computed from the image and the weights alone, with no backward pass (the independent
check of the engine, as :mod:`.closed_forms`), for the random three-layer CNN of Eq. 3.

- :func:`limit_image`: Theorem 1's limit, sum_j D_j^T y_j / ||y_j||.
- :func:`recovery`: a map's cosine similarity with the limit image.
- :func:`fit_power_law`: the recovery law, log(1 - recovery) against log N;
  :func:`law_amplitude` and :func:`filters_needed`: N needed for a given recovery;
  :func:`gbp_amplitude` and :func:`expected_gbp_recovery`: the law's amplitude and the
  recovery it predicts, from the paper's init alone (no network).
- :func:`gaussianity`: Theorem 2's test statistics of a map's values.
- :func:`effective_dimension`: how much of patch space a filter bank spans (Eq. 9).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..core.metrics import cosine_similarity
from .closed_forms import fold_patches, patches

__all__ = [
    "PowerLaw",
    "effective_dimension",
    "expected_gbp_recovery",
    "filters_needed",
    "fit_power_law",
    "gaussianity",
    "gbp_amplitude",
    "law_amplitude",
    "limit_image",
    "recovery",
    "tangent_squared",
]


def limit_image(image: torch.Tensor, kernel_size: int, stride: int, padding: int) -> torch.Tensor:
    """Theorem 1's limit of GBP as N grows: x_lim = sum_j D_j^T y_j / ||y_j||.

    E[w 1(w . y > 0)] points along y for a rotation-invariant w, and its length does
    not depend on ||y||: each patch is normalised, then folded back. A patch of zeros
    contributes nothing. With one patch covering the whole image (the FCN, or
    ``kernel_size`` = image side, no padding) x_lim = x / ||x||.

    Shapes: image [C, H, W] -> [C, H, W].
    """
    columns = patches(image, kernel_size, stride, padding)
    norms = columns.norm(dim=0, keepdim=True)
    unit = torch.where(norms > 0, columns / norms.clamp_min(torch.finfo(columns.dtype).tiny), torch.zeros_like(columns))
    return fold_patches(unit, image.shape[1:], kernel_size, stride, padding)


def recovery(maps: torch.Tensor, limit: torch.Tensor) -> torch.Tensor:
    """How much of the limit image a map recovers: cos(map, x_lim) over C x H x W.

    Shapes: maps [..., C, H, W], limit [C, H, W] (broadcast) -> [...] float64.
    """
    return cosine_similarity(maps, limit.expand_as(maps))


def tangent_squared(recoveries: torch.Tensor | np.ndarray | Sequence[float] | float) -> np.ndarray:
    """tan^2 of the angle between map and limit, 1 / recovery^2 - 1: the squared ratio of
    the map's error across the limit to its part along it, which falls like 1 / N at
    every N (1 - recovery ~ tan^2 / 2 only once recovery is near 1)."""
    values = np.asarray(recoveries, dtype=np.float64)
    return 1.0 / np.square(values) - 1.0


@dataclass(frozen=True)
class PowerLaw:
    """A fitted line log y = intercept + slope log x.

    Attributes:
        slope, intercept: least-squares estimates (natural logs).
        slope_low, slope_high: the slope's two-sided confidence interval.
        confidence: its level (e.g. 0.95).
        points: how many (x, y) pairs were fitted.
        r_squared: the fit's coefficient of determination.
    """

    slope: float
    intercept: float
    slope_low: float
    slope_high: float
    confidence: float
    points: int
    r_squared: float

    def predict(self, x: float | np.ndarray) -> np.ndarray:
        """y at ``x`` on the fitted line."""
        return np.exp(self.intercept) * np.power(np.asarray(x, dtype=np.float64), self.slope)


def fit_power_law(x: Sequence[float], y: Sequence[float], confidence: float = 0.95) -> PowerLaw:
    """Least-squares line through (log x, log y) with a Student-t interval on the slope.

    The recovery law (Theorem 1, eps^2 = O~(p / N)): x = the number of filters N,
    y = 1 - recovery; the slope should be close to -1. Every (N, seed) pair is one point.

    Raises:
        ValueError: fewer than three points, or a non-positive value.
    """
    from scipy import stats

    xs, ys = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if xs.size < 3 or xs.size != ys.size:
        raise ValueError("a power-law fit needs at least three (x, y) pairs of equal length")
    if (xs <= 0).any() or (ys <= 0).any():
        raise ValueError("a power-law fit needs positive x and y")
    fit = stats.linregress(np.log(xs), np.log(ys))
    half = stats.t.ppf(0.5 + confidence / 2, xs.size - 2) * fit.stderr
    return PowerLaw(
        float(fit.slope),
        float(fit.intercept),
        float(fit.slope - half),
        float(fit.slope + half),
        confidence,
        int(xs.size),
        float(fit.rvalue**2),
    )


def law_amplitude(num_filters: Sequence[float], recoveries: Sequence[float]) -> float:
    """A in the recovery law tan^2 = A / N, from measured (N, recovery) pairs: the
    geometric mean of N tan^2 (the least-squares intercept with the slope held at -1).

    For a single patch per pixel (stride = filter side) A is close to pi^2 p for GBP
    (E[h(V)^2] / E[h(V)]^2 = pi for h = ReLU, and |E[w 1(w.y > 0)]|^2 / Var = 1 / (pi p)
    for Gaussian w), so N needed for a given recovery grows linearly with p;
    :func:`gbp_amplitude` gives it for the paper's truncated init.
    """
    n = np.asarray(num_filters, dtype=np.float64)
    return float(np.exp(np.mean(np.log(n * tangent_squared(recoveries)))))


def gbp_amplitude(patch_dimension: float, truncation: float = 2.0) -> float:
    """The amplitude A of GBP's recovery law tan^2 = A / N for one patch of p values,
    predicted from the init alone: A = pi p E[h(v)^2] / E[h(v)]^2.

    GBP's map of one patch is sum_i h(v_i) w_i 1(w_i . y > 0) (Eq. 4). For filters w of
    i.i.d. zero-mean entries of variance s^2, w . y / ||y|| is close to N(0, s^2), so the
    part of each term along y has mean h(v) s / sqrt(2 pi), and its part across y carries
    E[h(v)^2] p s^2 / 2 of energy; over N filters tan^2 = pi p E[h^2] / (N E[h]^2). With
    v a normal truncated at +-``truncation`` standard deviations (the paper's init: 2)
    and h = ReLU (DeconvNet's and GBP's h), E[h^2] / E[h]^2 = 2.962 (pi without the
    truncation), so A = 9.305 p. It holds for the FCN (p = d, its whole input) and for a
    CNN whose patches do not overlap (stride = filter side).

    Args:
        patch_dimension: p, the values in one patch (3 k^2; the FCN's d = 3 S^2).
        truncation: where the readout's normal is cut, in standard deviations.
    """
    from scipy import stats

    mass = stats.norm.cdf(truncation) - stats.norm.cdf(-truncation)
    first = (stats.norm.pdf(0.0) - stats.norm.pdf(truncation)) / mass  # E[h(v)] / std
    second = (stats.norm.cdf(truncation) - 0.5 - truncation * stats.norm.pdf(truncation)) / mass  # E[h(v)^2] / std^2
    return float(np.pi * patch_dimension * second / first**2)


def expected_gbp_recovery(units: float, patch_dimension: float, truncation: float = 2.0) -> float:
    """GBP's recovery (cosine with the limit image) that the law predicts for ``units``
    filters (or FCN hidden units) of ``patch_dimension`` values: 1 / sqrt(1 + A / N),
    A = :func:`gbp_amplitude`. The FCN at Nh = 4096 on 112 x 112 x 3 (d = 37632): 0.10."""
    return float(1.0 / np.sqrt(1.0 + gbp_amplitude(patch_dimension, truncation) / units))


def filters_needed(amplitude: float, target_recovery: float) -> float:
    """N reaching ``target_recovery`` under tan^2 = amplitude / N (the recovery law).

    ``amplitude`` is N tan^2 measured at some N; returns amplitude / tan^2(arccos r).
    """
    return amplitude / float(tangent_squared(target_recovery))


def effective_dimension(filters: torch.Tensor) -> float:
    """How many directions of patch space a set of filters spans: the participation ratio
    (sum s^2)^2 / sum s^4 of the singular values s of the filter matrix [N, p] (p for
    isotropic filters, 1 for filters along one line). Eq. 9's "dead zones" come from
    trained filters occupying a small subspace.

    Shapes: filters [N, C, k, k] (or [N, p]) -> float.
    """
    values = torch.linalg.svdvals(filters.detach().reshape(filters.shape[0], -1).double().cpu())
    energy = values.square()
    return float(energy.sum().square() / energy.square().sum())


def gaussianity(values: torch.Tensor) -> dict[str, float]:
    """Theorem 2's statistics of a map's values against the normal fitted to them.

    Returns "ks" (Kolmogorov-Smirnov distance to N(mean, std^2) of the values),
    "skewness" and "excess_kurtosis" (0 and 0 for a Gaussian).
    """
    from scipy import stats

    flat = values.detach().double().flatten().cpu().numpy()
    mean, std = float(flat.mean()), float(flat.std())
    ks = stats.kstest(flat, "norm", args=(mean, std)).statistic if std > 0 else 1.0
    return {
        "ks": float(ks),
        "skewness": float(stats.skew(flat)),
        "excess_kurtosis": float(stats.kurtosis(flat, fisher=True)),
    }
