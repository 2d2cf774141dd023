"""Per-image values to a :class:`~backpropvis.sanity.protocol.Summary`: the mean and its
bootstrap 95% interval (:func:`backpropvis.stats.summary.bootstrap_means`, seeded), with
the image count."""

from __future__ import annotations

import math
from typing import Union

import numpy as np
import torch

from ..stats.summary import bootstrap_means, percentile_interval
from .protocol import Summary

__all__ = ["CONFIDENCE", "RESAMPLES", "summarize_values"]

CONFIDENCE = 0.95
"""The intervals' coverage."""

RESAMPLES = 2000
"""Bootstrap resamples per interval."""


def summarize_values(values: Union[np.ndarray, torch.Tensor, list], seed: int = 0) -> Summary:
    """The summary of per-image values.

    Args:
        values: [N] one value per image, or [R, N] one row per seed of a redraw (each
            image's values are averaged over the rows first, NaNs ignored).
        seed: the bootstrap's seed.

    Returns:
        A :class:`Summary` of the finite per-image values (interval NaN with fewer than 2).
    """
    array = np.asarray(values.detach().cpu() if isinstance(values, torch.Tensor) else values, dtype=np.float64)
    if array.ndim == 2:
        with np.errstate(invalid="ignore"):
            finite_rows = np.isfinite(array).sum(axis=0)
            array = np.where(finite_rows > 0, np.nansum(array, axis=0) / np.maximum(finite_rows, 1), np.nan)
    if array.ndim != 1:
        raise ValueError(f"values must be [N] or [R, N], not {list(array.shape)}")
    finite = array[np.isfinite(array)]
    if finite.size == 0:
        return Summary(tuple(array.tolist()), math.nan, math.nan, math.nan, 0)
    mean = float(finite.mean())
    low = high = math.nan
    if finite.size >= 2:
        low, high = percentile_interval(bootstrap_means(finite[:, None], RESAMPLES, seed)[:, 0], CONFIDENCE)
    return Summary(tuple(array.tolist()), mean, low, high, int(finite.size))
