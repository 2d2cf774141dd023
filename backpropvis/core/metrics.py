"""What a map says, as numbers: pure tensor functions, batch-first, no I/O.

- :func:`pairwise_cosine_similarity`: the cosine between every two maps of a set (the
  maps of many logits of one image: how alike a method's maps are across classes).
- :func:`class_distance`: how much a map changes when the target logit changes
  (the paper's Figure 7 and 8): both maps scaled to unit L2 norm, then the L2 norm
  of their difference: 0 for identical maps, 2 for opposite ones.
- :func:`class_distance_minmax`: the same after the paper's display normalisation
  (global min-max), since the paper does not say which one it used.
- :func:`input_similarity`: cosine similarity between a map and the input image,
  each with its own per-channel mean removed (a global mean would leave colour
  offsets that fake similarity for DeconvNet's tiled patterns).
- :func:`ks_statistic`: how different two samples' distributions are (Figure 3's
  fc1 weight histograms): the two-sample Kolmogorov-Smirnov statistic.
- :func:`ratio`: "a is k times b", the quotient the claims compare (NaN where it means nothing).
- :data:`SMALL_SAMPLE` and :func:`small_sample_note`: intervals from fewer images than
  this are flagged wherever they are printed (a rough guide, not a measurement).
- :func:`noise_similarity_std`: the spread of a noise map's input similarity
  (Theorem 2's maps are noise: this is what "noise" means at a given image size), and
  :func:`expected_normal_maximum`: how far above it choosing the largest logit moves a map.
"""

from __future__ import annotations

import functools
import math
from typing import Optional

import torch

__all__ = [
    "SMALL_SAMPLE",
    "small_sample_note",
    "cosine_similarity",
    "pairwise_cosine_similarity",
    "class_distance",
    "class_distance_minmax",
    "input_similarity",
    "minmax_normalize",
    "ks_statistic",
    "ratio",
    "noise_similarity_std",
    "expected_normal_maximum",
    "SMALL_SAMPLE",
    "small_sample_note",
]

_EPS = 1e-12

SMALL_SAMPLE = 20
"""Fewer images than this make an interval (bootstrap over images, or a spread) a rough
guide: a percentile bootstrap over n < 20 values covers far less than its nominal 95%
(Efron & Tibshirani 1993, ch. 13), so every printed interval from fewer is flagged."""


def small_sample_note(count: int, unit: str = "images") -> Optional[str]:
    """The flag for an interval computed from ``count`` independent ``unit`` (images, or
    photos when crops of one photo are resampled together), or None when ``count`` is at
    least :data:`SMALL_SAMPLE`: "from 3 images only (fewer than 20): read the interval
    as a rough guide"."""
    if count >= SMALL_SAMPLE:
        return None
    noun = unit[:-1] if count == 1 and unit.endswith("s") else unit
    return f"from {count} {noun} only (fewer than {SMALL_SAMPLE}): read the interval as a rough guide"


def _flat(maps: torch.Tensor, sample_dims: int) -> torch.Tensor:
    return maps.reshape(*maps.shape[: maps.dim() - sample_dims], -1).double()


def cosine_similarity(a: torch.Tensor, b: torch.Tensor, sample_dims: int = 3) -> torch.Tensor:
    """Cosine of the angle between ``a`` and ``b`` over their last ``sample_dims`` dims.

    Shapes: [..., C, H, W] x [..., C, H, W] -> [...] (float64); 0 where either is zero.
    """
    a, b = _flat(a, sample_dims), _flat(b, sample_dims)
    return (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1)).clamp_min(_EPS)


def pairwise_cosine_similarity(maps: torch.Tensor, sample_dims: int = 3) -> torch.Tensor:
    """The cosine between every two maps of each set, over their last ``sample_dims`` dims.

    Shapes: [..., L, C, H, W] -> [..., L, L] (float64); entry [i, j] is
    :func:`cosine_similarity` of maps i and j (1 on the diagonal, 0 where either is zero),
    computed as one Gram matrix of the unit maps (never L x L copies of the maps).
    """
    flat = _flat(maps, sample_dims)  # [..., L, D]
    unit = flat / flat.norm(dim=-1, keepdim=True).clamp_min(_EPS)
    return unit @ unit.transpose(-1, -2)


def class_distance(a: torch.Tensor, b: torch.Tensor, sample_dims: int = 3) -> torch.Tensor:
    """|| a / ||a|| - b / ||b|| ||_2 over the last ``sample_dims`` dims, in [0, 2].

    Shapes: [..., C, H, W] x [..., C, H, W] -> [...] (float64).
    """
    a, b = _flat(a, sample_dims), _flat(b, sample_dims)
    unit_a = a / a.norm(dim=-1, keepdim=True).clamp_min(_EPS)
    unit_b = b / b.norm(dim=-1, keepdim=True).clamp_min(_EPS)
    return (unit_a - unit_b).norm(dim=-1)


def minmax_normalize(maps: torch.Tensor, sample_dims: int = 3) -> torch.Tensor:
    """The paper's display normalisation: subtract the global min, divide by the new
    global max, over each sample's last ``sample_dims`` dims (H x W x 3, no abs).

    Shapes: [..., C, H, W] -> same, float64 in [0, 1] (0 for a constant map).
    """
    flat = _flat(maps, sample_dims)
    shifted = flat - flat.min(dim=-1, keepdim=True).values
    scaled = shifted / shifted.max(dim=-1, keepdim=True).values.clamp_min(_EPS)
    return scaled.reshape(maps.shape)


def class_distance_minmax(a: torch.Tensor, b: torch.Tensor, sample_dims: int = 3) -> torch.Tensor:
    """:func:`class_distance` of the min-max normalised maps (the displayed pictures).

    Shapes: [..., C, H, W] x [..., C, H, W] -> [...] (float64).
    """
    return class_distance(minmax_normalize(a, sample_dims), minmax_normalize(b, sample_dims), sample_dims)


def input_similarity(maps: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """Cosine similarity between maps and the input, both per-channel centred.

    Args:
        maps: [..., C, H, W] raw maps.
        image: [C, H, W] or broadcastable to ``maps`` (e.g. [B, C, H, W] against
            maps [T, B, C, H, W]).

    Returns:
        [...] float64 in [-1, 1].
    """
    centred_maps = maps.double() - maps.double().mean(dim=(-2, -1), keepdim=True)
    centred_image = image.double() - image.double().mean(dim=(-2, -1), keepdim=True)
    return cosine_similarity(centred_maps, centred_image.expand_as(centred_maps))


def ks_statistic(a: torch.Tensor, b: torch.Tensor) -> float:
    """The two-sample Kolmogorov-Smirnov statistic: the largest gap between the two
    empirical distribution functions, sup_t |F_a(t) - F_b(t)|, in [0, 1].

    Shapes: any x any (flattened; the sizes may differ).
    """
    a, b = torch.sort(a.detach().flatten().double()).values, torch.sort(b.detach().flatten().double()).values
    points = torch.cat([a, b])
    cdf_a = torch.searchsorted(a, points, right=True).double() / len(a)
    cdf_b = torch.searchsorted(b, points, right=True).double() / len(b)
    return float((cdf_a - cdf_b).abs().max())


def ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator``, or NaN where the denominator is 0, negative or not finite.

    Claims of the form "a is at least k times b" (saliency's class distance over GBP's)
    read it. There is no epsilon floor: a GBP map of zeros has class distance 0, and
    "saliency / GBP >= 5" must then fail, not pass with a quotient of 1e12; a claim on
    NaN does not hold (:meth:`backpropvis.experiments.base.Claim.evaluate`).
    """
    numerator, denominator = float(numerator), float(denominator)
    if not (math.isfinite(denominator) and denominator > 0.0):
        return math.nan
    return numerator / denominator


def noise_similarity_std(image: torch.Tensor, map_: torch.Tensor | None = None) -> float:
    """The standard deviation of the input similarity of noise: what "noise" means for
    :func:`input_similarity` at this image size (Theorem 2's maps are noise).

    Without ``map_``: white noise. For a map of i.i.d. zero-mean values (Theorem 2:
    saliency and DeconvNet in a random three-layer CNN or FCN are N(0, I)) the cosine
    with any fixed image of n values has mean 0 and standard deviation 1 / sqrt(n);
    centring each channel leaves n = C (H W - 1): 0.0026 at 224 x 224 x 3, 0.0052 at
    112 x 112 x 3.

    With ``map_``: noise with that map's power spectrum. A deep network's noise is not
    white (the gradient reaching the first layer is correlated between neighbouring
    positions, so the map is smooth noise), and smooth noise meets a smooth image by
    chance more often. Giving every frequency of the map a random phase keeps its
    spectrum |M_c(f)|^2 and makes it independent of the image; the cosine of such a
    map with the image x has standard deviation

        sqrt( sum_c sum_f |M_c(f)|^2 |X_c(f)|^2 / (sum_c sum_f |M_c(f)|^2 * sum_c sum_f |X_c(f)|^2) )

    (both per-channel centred, DFT over H x W), which is 1 / sqrt(n) for a white map.

    An |input similarity| of 5 of these is what noise exceeds with probability 6e-7,
    far below what an image-recovering map gives (GBP: 0.5 - 0.8).

    Shapes: image [C, H, W], map_ [C, H, W] or None -> float.
    """
    channels, height, width = image.shape[-3:]
    if map_ is None:
        return 1.0 / math.sqrt(channels * (height * width - 1))

    def power(values: torch.Tensor) -> torch.Tensor:  # [C, H, W] -> |DFT|^2 of each centred channel
        values = values.detach().double().cpu()
        return torch.fft.fft2(values - values.mean(dim=(-2, -1), keepdim=True)).abs().square()

    map_power, image_power = power(map_), power(image)
    denominator = float(map_power.sum() * image_power.sum())
    return math.sqrt(float((map_power * image_power).sum()) / denominator) if denominator > 0 else math.nan


@functools.cache  # a numerical integral (tens of ms) that depends on count alone
def expected_normal_maximum(count: int) -> float:
    """E[max of ``count`` i.i.d. standard normals]: 3.24 for 1000, 1.54 for 10, 0 for 1.

    Why it matters for "noise": in a ReLU network without biases (the paper's random
    networks) every logit is positively homogeneous, so Euler's identity gives
    saliency . x = f_k(x). Over a random readout column f_k / (||s_k|| ||x||) is the
    cosine of noise (standard deviation :func:`noise_similarity_std`), so the map of
    the LARGEST of K logits sits E[max of K normals] of those standard deviations
    above zero, from the choice of the logit alone.
    """
    from scipy import integrate, stats

    if count < 1:
        raise ValueError(f"count must be at least 1, not {count}")

    def density(z: float) -> float:  # z times the density of the maximum
        return z * count * stats.norm.pdf(z) * stats.norm.cdf(z) ** (count - 1)

    value, _ = integrate.quad(density, -12.0, 12.0, limit=200)
    return float(value)
