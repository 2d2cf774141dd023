"""A step's numbers: each method's maps against its reference under every metric, and the
controls beside them (what the same metric gives for comparisons whose answer is known).

Controls, computed on the variant's maps at each step:

- ``random map``: against independent standard normal maps (seeded): the floor;
- ``edge map``: against the Sobel edge magnitude of the input: how much a map is an edge
  detector's (Adebayo et al. showed edge detectors resemble GBP's maps);
- ``other seed``: against the same method's maps with the next seed of the redraw (only
  with several seeds): how much the redraw's own randomness moves a value.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import torch

from ..models import derive_seed
from .protocol import StepResult
from .similarity import edge_maps, random_maps, similarities
from .summary import summarize_values

__all__ = ["CONTROLS", "compare_variants", "step_from_numbers"]

CONTROLS: tuple[str, ...] = ("random map", "edge map", "other seed")
"""The controls, in display order."""

Values = dict[str, list[list[float]]]
"""metric -> [R][B] values (one row per seed of the redraw)."""


def _append(into: Values, values: Mapping[str, np.ndarray]) -> None:
    for metric, row in values.items():
        into.setdefault(metric, []).append([float(value) for value in row])


def compare_variants(
    reference: torch.Tensor, variants: Sequence[torch.Tensor], inputs: torch.Tensor, seed: int
) -> dict[str, Any]:
    """One method's numbers at one step (JSON-ready).

    Args:
        reference: [B, C, H, W] the method's maps on the reference model.
        variants: R tensors [B, C, H, W], the maps on the variant, one per seed of the redraw.
        inputs: [B, C, H, W] the images (for the edge control).
        seed: the seed of the random control maps.

    Returns:
        ``values``: metric -> [R][B]; ``controls``: control -> metric -> [R][B].
    """
    values: Values = {}
    controls: dict[str, Values] = {}
    edges = edge_maps(inputs)
    for index, variant in enumerate(variants):
        _append(values, similarities(reference, variant))
        noise = random_maps(variant.shape, derive_seed(seed, "sanity random map", index))
        _append(controls.setdefault("random map", {}), similarities(variant, noise))
        _append(controls.setdefault("edge map", {}), similarities(variant, edges))
        if len(variants) > 1:
            other = variants[(index + 1) % len(variants)]
            _append(controls.setdefault("other seed", {}), similarities(variant, other))
    return {"values": values, "controls": controls}


def step_from_numbers(
    series: str, label: str, redrawn: Sequence[str], numbers: Mapping[str, Any], seed: int = 0
) -> StepResult:
    """A :class:`StepResult` from ``numbers``: method -> :func:`compare_variants`'s output."""
    methods = {
        method: {metric: summarize_values(rows, seed) for metric, rows in data["values"].items()}
        for method, data in numbers.items()
    }
    controls = {
        method: {
            control: {metric: summarize_values(rows, seed) for metric, rows in by_metric.items()}
            for control, by_metric in data["controls"].items()
        }
        for method, data in numbers.items()
    }
    return StepResult(series, label, tuple(redrawn), methods, controls)
