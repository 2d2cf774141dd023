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
from .similarity import PreparedMaps, compare_prepared, edge_maps, prepare, random_maps
from .summary import summarize_values

__all__ = ["CONTROLS", "Controls", "compare_variants", "step_from_numbers"]

CONTROLS: tuple[str, ...] = ("random map", "edge map", "other seed")
"""The controls, in display order."""

Values = dict[str, list[list[float]]]
"""metric -> [R][B] values (one row per seed of the redraw)."""


def _append(into: Values, values: Mapping[str, np.ndarray]) -> None:
    for metric, row in values.items():
        into.setdefault(metric, []).append([float(value) for value in row])


class Controls:
    """The controls' prepared maps, made once per run and shared by every step and method:
    the input's edge maps and, per seed index, a random map of the maps' shape."""

    def __init__(self, inputs: torch.Tensor, seed: int):
        self.edges = prepare(edge_maps(inputs))
        self.shape = inputs.shape
        self.seed = seed
        self._random: dict[int, PreparedMaps] = {}

    def random(self, index: int) -> PreparedMaps:
        """The prepared random map of seed index ``index``."""
        if index not in self._random:
            self._random[index] = prepare(random_maps(self.shape, derive_seed(self.seed, "sanity random map", index)))
        return self._random[index]


def compare_variants(reference: PreparedMaps, variants: Sequence[torch.Tensor], controls: Controls) -> dict[str, Any]:
    """One method's numbers at one step (JSON-ready).

    Args:
        reference: the method's maps on the reference model, prepared (:func:`~.similarity.prepare`).
        variants: R tensors [B, C, H, W], the maps on the variant, one per seed of the redraw.
        controls: the edge and random maps.

    Returns:
        ``values``: metric -> [R][B]; ``controls``: control -> metric -> [R][B].
    """
    values: Values = {}
    found: dict[str, Values] = {}
    prepared = [prepare(variant) for variant in variants]
    for index, variant in enumerate(prepared):
        _append(values, compare_prepared(reference, variant))
        _append(found.setdefault("random map", {}), compare_prepared(variant, controls.random(index)))
        _append(found.setdefault("edge map", {}), compare_prepared(variant, controls.edges))
        if len(prepared) > 1:
            other = prepared[(index + 1) % len(prepared)]
            _append(found.setdefault("other seed", {}), compare_prepared(variant, other))
    return {"values": values, "controls": found}


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
