"""The paper's theory as computations: closed forms, the limit image, the recovery law.

Everything here is computed from the weights alone, with no backward pass and no
call into :mod:`backpropvis.engine`: it is the independent check of the engine.

The random three-layer CNN (Eq. 3): an image x [C, H, W]; N filters w_i [C, k, k]
(p = C k^2 values each); J patches y_j = D_j x, the k x k windows of the zero-padded
image at stride b (``F.unfold``); the readout column V[:, k] with the feature of
filter i at patch j at index q_ij = i J + j (channel-major, as ``torch.flatten``).

- :func:`closed_form_map`: Lemma 1 (Eq. 4) for saliency, DeconvNet and GBP, and
  with a max-pool between the ReLU and the readout either exactly with the pool's
  switches (Eq. 6) or with the paper's approximation "chosen <=> w.y > 0" (Eq. 7).
- :func:`switch_disagreement`: how often Eq. 7's assumption fails.
- :func:`limit_image`: Theorem 1's limit, sum_j D_j^T y_j / ||y_j||.
- :func:`recovery`: a map's cosine similarity with the limit image.
- :func:`fit_power_law`: the recovery law, log(1 - recovery) against log N;
  :func:`law_amplitude` and :func:`filters_needed`: N needed for a given recovery.
- :func:`gaussianity`: Theorem 2's test statistics of a map's values.
- :func:`effective_dimension`: how much of patch space a filter bank spans (Eq. 9).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F

from .metrics import cosine_similarity
from .rules import Rule, resolve_rule

__all__ = [
    "patches",
    "fold_patches",
    "pool_switches",
    "closed_form_map",
    "switch_disagreement",
    "SwitchDisagreement",
    "limit_image",
    "recovery",
    "tangent_squared",
    "PowerLaw",
    "fit_power_law",
    "law_amplitude",
    "filters_needed",
    "effective_dimension",
    "gaussianity",
]

_FILTER_CHUNK = 256


def patches(image: torch.Tensor, kernel_size: int, stride: int, padding: int) -> torch.Tensor:
    """Every patch y_j = D_j x of the zero-padded image, as columns.

    Shapes: image [C, H, W] -> [p, J] with p = C k^2 and J = H' W' (row-major).
    """
    return F.unfold(image.unsqueeze(0), kernel_size, padding=padding, stride=stride)[0]


def fold_patches(columns: torch.Tensor, image_size: Sequence[int], kernel_size: int, stride: int, padding: int) -> torch.Tensor:
    """sum_j D_j^T u_j: put each patch-shaped vector back where its patch came from and
    add the overlaps; what falls on the zero padding is dropped.

    Shapes: columns [p, J] -> [C, H, W] with ``image_size`` = (H, W).
    """
    return F.fold(columns.unsqueeze(0), tuple(image_size), kernel_size, padding=padding, stride=stride)[0]


def pool_switches(outputs: torch.Tensor, pool: int) -> torch.Tensor:
    """delta'(o_ij) of Eq. 6: which ReLU outputs a max-pool (window = stride = ``pool``,
    floor mode) passes on; ties go to the first maximum in row-major order, as
    PyTorch's max-pool does (it matters where a whole window is 0).

    Shapes: outputs [N, H', W'] -> bool [N, H', W'] (False outside the pooled area).
    """
    channels, height, width = outputs.shape
    rows, cols = height // pool, width // pool
    cropped = outputs[:, : rows * pool, : cols * pool]
    windows = cropped.reshape(channels, rows, pool, cols, pool).permute(0, 1, 3, 2, 4).reshape(channels, rows, cols, -1)
    chosen = F.one_hot(windows.argmax(dim=-1), pool * pool).bool()
    chosen = chosen.reshape(channels, rows, cols, pool, pool).permute(0, 1, 3, 2, 4).reshape(channels, rows * pool, cols * pool)
    switches = torch.zeros_like(outputs, dtype=torch.bool)
    switches[:, : rows * pool, : cols * pool] = chosen
    return switches


def _readout_per_position(readout_column: torch.Tensor, feature_shape: tuple, pool: Optional[int]) -> torch.Tensor:
    """V[q_ij, k] (or V[q~_ij, k] under pooling, Eq. 6) for every filter i and conv output j.

    Shapes: readout_column [N H'' W''] -> [N, H', W'] where (N, H', W') = ``feature_shape``
    and (H'', W'') = (H' // pool, W' // pool); 0 outside the pooled area.
    """
    channels, height, width = feature_shape
    if not pool:
        return readout_column.reshape(channels, height, width)
    rows, cols = height // pool, width // pool
    pooled = readout_column.reshape(channels, rows, cols)
    spread = pooled.repeat_interleave(pool, dim=1).repeat_interleave(pool, dim=2)
    full = readout_column.new_zeros(feature_shape)
    full[:, : rows * pool, : cols * pool] = spread
    return full


def closed_form_map(
    image: torch.Tensor,
    filters: torch.Tensor,
    readout_column: torch.Tensor,
    method: Union[str, Rule],
    *,
    stride: int,
    padding: int,
    pool: Optional[int] = None,
    approximate_pool: bool = False,
) -> torch.Tensor:
    """s_k(x) of Lemma 1 for the random three-layer CNN, with Z_k = 1 (the raw map).

    Without pooling (Eq. 4):  s_k(x) = sum_j D_j^T sum_i h(V[q_ij, k]) w~(i, j), where
    w~(i, j) = w_i for DeconvNet and w_i 1[w_i . y_j > 0] for saliency and GBP.
    With a max-pool of window ``pool`` (Eq. 6): h(delta'(o_ij) V[q~_ij, k]) replaces
    h(V[q_ij, k]), delta' being the pool's switches; with ``approximate_pool`` (Eq. 7)
    delta'(o_ij) is replaced by 1[w_i . y_j > 0].

    Args:
        image: x [C, H, W].
        filters: w [N, C, k, k] (the conv has no bias).
        readout_column: V[:, k] [N H'' W''], the features flattened channel-major
            (H'' W'' = J without pooling, the pooled grid with it).
        method: "saliency", "deconvnet", "gbp" (or any :class:`Rule`: h and g of Eq. 2).
        stride, padding: the convolution's stride b and zero padding.
        pool: the max-pool's window (= stride), or None.
        approximate_pool: use Eq. 7 instead of Eq. 6.

    Returns:
        [C, H, W] in the dtype of ``image``.
    """
    rule = resolve_rule(method)
    channels_out, _, kernel, _ = filters.shape
    columns = patches(image, kernel, stride, padding)  # [p, J]
    side_h = (image.shape[1] + 2 * padding - kernel) // stride + 1
    side_w = (image.shape[2] + 2 * padding - kernel) // stride + 1
    readout = _readout_per_position(readout_column.to(image), (channels_out, side_h, side_w), pool)
    flat_filters = filters.to(image).reshape(channels_out, -1)  # [N, p]
    per_patch = torch.zeros_like(columns)  # [p, J]
    for start in range(0, channels_out, _FILTER_CHUNK):  # Eq. 4 is a sum over filters
        w = flat_filters[start : start + _FILTER_CHUNK]
        pre = w @ columns  # w_i . y_j  [n, J]
        passes = pre > 0
        weight = readout[start : start + _FILTER_CHUNK].reshape(len(w), -1)
        if pool:
            if approximate_pool:
                chosen = passes
            else:
                chosen = pool_switches(pre.clamp_min(0).reshape(len(w), side_h, side_w), pool).reshape(len(w), -1)
            weight = weight * chosen
        coefficient = weight.clamp_min(0) if rule.h == "relu" else weight  # h(.)
        if rule.g == "activation":
            coefficient = coefficient * passes  # the forward mask of w~(i, j)
        per_patch += w.T @ coefficient
    return fold_patches(per_patch, image.shape[1:], kernel, stride, padding)


@dataclass(frozen=True)
class SwitchDisagreement:
    """How often Eq. 7's "chosen by the pool <=> w.y > 0" fails, over the (i, j) of the
    pooled area.

    Attributes:
        total: the fraction of (i, j) where the two disagree.
        chosen_but_inactive: chosen by the pool although w.y <= 0 (a window of zeros).
        active_but_not_chosen: w.y > 0 but another output of the window won.
    """

    total: float
    chosen_but_inactive: float
    active_but_not_chosen: float


def switch_disagreement(image: torch.Tensor, filters: torch.Tensor, *, stride: int, padding: int, pool: int) -> SwitchDisagreement:
    """Eq. 6 vs Eq. 7: compare the pool's switches with 1[w_i . y_j > 0].

    Shapes: image [C, H, W], filters [N, C, k, k].
    """
    channels_out, _, kernel, _ = filters.shape
    columns = patches(image, kernel, stride, padding)
    side_h = (image.shape[1] + 2 * padding - kernel) // stride + 1
    side_w = (image.shape[2] + 2 * padding - kernel) // stride + 1
    rows, cols = side_h // pool * pool, side_w // pool * pool
    counts = np.zeros(2)
    total = 0
    flat_filters = filters.to(image).reshape(channels_out, -1)
    for start in range(0, channels_out, _FILTER_CHUNK):
        pre = (flat_filters[start : start + _FILTER_CHUNK] @ columns).reshape(-1, side_h, side_w)
        chosen = pool_switches(pre.clamp_min(0), pool)[:, :rows, :cols]
        active = (pre > 0)[:, :rows, :cols]
        counts += [float((chosen & ~active).sum()), float((active & ~chosen).sum())]
        total += chosen.numel()
    return SwitchDisagreement(float(counts.sum() / total), float(counts[0] / total), float(counts[1] / total))


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


def tangent_squared(recoveries: Union[torch.Tensor, np.ndarray]) -> np.ndarray:
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

    def predict(self, x: Union[float, np.ndarray]) -> np.ndarray:
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

    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.size < 3 or x.size != y.size:
        raise ValueError("a power-law fit needs at least three (x, y) pairs of equal length")
    if (x <= 0).any() or (y <= 0).any():
        raise ValueError("a power-law fit needs positive x and y")
    fit = stats.linregress(np.log(x), np.log(y))
    half = stats.t.ppf(0.5 + confidence / 2, x.size - 2) * fit.stderr
    return PowerLaw(float(fit.slope), float(fit.intercept), float(fit.slope - half), float(fit.slope + half),
                    confidence, int(x.size), float(fit.rvalue**2))


def law_amplitude(num_filters: Sequence[float], recoveries: Sequence[float]) -> float:
    """A in the recovery law tan^2 = A / N, from measured (N, recovery) pairs: the
    geometric mean of N tan^2 (the least-squares intercept with the slope held at -1).

    For a single patch per pixel (stride = filter side) A is close to pi^2 p for GBP
    (E[h(V)^2] / E[h(V)]^2 = pi for h = ReLU, and |E[w 1(w.y > 0)]|^2 / Var = 1 / (pi p)
    for Gaussian w), so N needed for a given recovery grows linearly with p.
    """
    n = np.asarray(num_filters, dtype=np.float64)
    return float(np.exp(np.mean(np.log(n * tangent_squared(recoveries)))))


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

