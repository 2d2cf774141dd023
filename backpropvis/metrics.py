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
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "cosine_similarity", "pairwise_cosine_similarity",
    "class_distance", "class_distance_minmax", "input_similarity", "minmax_normalize",
    "ks_statistic", "ratio",
]

_EPS = 1e-12


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
