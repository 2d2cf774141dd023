"""The unit-distance step: is a method's map about the unit it was computed for?

On the few images, per layer spread over the model's depth
(:func:`~backpropvis.theory.receptive_fields.layers_over_depth`, or ``unit_layers``), the distance
between the maps of the layer's most active unit and of a random other channel at its
position (:func:`~backpropvis.stats.unit_distance.unit_pair_distances`), per method, with
bootstrap intervals over the images. The theory study's claims (Theorem 1, Eq. 6-8:
GBP and DeconvNet stop depending on the unit, saliency does not;
:mod:`backpropvis.experiments.theory_unit_distance`) are judged on the model as findings:
the theory is about random networks. No verdict reads it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..core.metrics import small_sample_note
from ..core.rules import resolve_rules
from ..experiments.theory_unit_distance import CLAIMS, unit_distance_metrics
from ..images.sets import source_photo
from ..stats.unit_distance import method_curves, plot_unit_distance, split_label, unit_labels, unit_pair_distances
from ..theory.receptive_fields import layers_over_depth
from .results import StepResult
from .step import AuditContext, AuditStep

__all__ = ["UnitDistanceStep", "UnitDistanceResult", "TheoryClaim"]


@dataclass(frozen=True)
class TheoryClaim:
    """A claim of the theory study judged on the model: its id, its text, the value and whether it holds."""

    id: str
    text: str
    value: float
    holds: bool


@dataclass(frozen=True)
class UnitDistanceResult(StepResult):
    """Unit distance over depth on the few images.

    Attributes:
        layers: the layers measured, input side first.
        images: how many images.
        methods: method -> its curves over the layers (:func:`~backpropvis.stats.unit_distance.method_curves`).
        claims: the theory's claims judged on these curves.
        note: the small-sample note, or None.
        distance: [images, methods x layers] each image's unit distance (columns method by method, layer by layer).
    """

    layers: list[str]
    images: int
    methods: dict[str, Any]
    claims: list[TheoryClaim]
    note: Optional[str]
    distance: np.ndarray


class UnitDistanceStep(AuditStep[UnitDistanceResult]):
    """Unit distance over depth on the few images, with the theory's claims judged on the model."""

    name = "unit_distance"
    result_type = UnitDistanceResult

    def identity(self, context: AuditContext) -> dict[str, Any]:
        return {**context.identity, "unit_layers": list(context.settings.unit_layers or [])}

    def measure(self, context: AuditContext) -> UnitDistanceResult:
        assert context.probes is not None and context.inputs is not None
        settings = context.settings
        layers = list(settings.unit_layers or layers_over_depth(context.module, context.inputs))
        rules = resolve_rules(context.methods)
        keys = list(context.probes.keys)
        pairs = unit_pair_distances(
            context.module, context.inputs, keys, layers, rules, settings.seed, settings.precision
        )
        labels = unit_labels([rule.name for rule in rules], layers)
        columns = [split_label(label) for label in labels]  # (method, layer), layer by layer
        tables = {
            "distance": np.stack([pairs.values[column]["distance"].numpy() for column in columns], axis=1),
            "input_similarity": np.stack(
                [pairs.values[column]["similarity"].mean(dim=0).numpy() for column in columns], axis=1
            ),
        }
        curves = method_curves(tables, labels, [source_photo(key) for key in keys], seed=settings.seed)
        summary = {"layers": layers, "methods": curves}
        metrics = unit_distance_metrics(summary)
        judged = [claim.evaluate(metrics) for claim in CLAIMS if not math.isnan(metrics[claim.metric])]
        return UnitDistanceResult(
            layers=layers,
            images=len(keys),
            methods=curves,
            claims=[TheoryClaim(c.id, c.text, c.value, c.holds) for c in judged],
            note=small_sample_note(len({source_photo(key) for key in keys})),
            distance=tables["distance"],  # [images, methods x layers]
        )

    def figures(self, result: UnitDistanceResult, context: AuditContext, folder: Path) -> list[tuple[Path, str]]:
        path = folder / "unit-distance.png"
        title = f"unit distance over depth: {context.title}"[:110]
        plot_unit_distance({"layers": result.layers, "methods": result.methods}, path, title)
        claims = "; ".join(f"{claim.text}: {'holds' if claim.holds else 'does not hold'}" for claim in result.claims)
        caption = (
            "Is the map about the unit? Per layer, the distance between the maps of its most active unit and of a "
            f"random other channel at the same position, over {result.images} images (shaded: 95% bootstrap "
            "interval; dotted: sqrt 2, unrelated maps). The theory (Theorem 1, Eq. 6-8) predicts for random "
            "networks that GBP's and DeconvNet's maps stop depending on the unit while saliency's do not; on this "
            f"model: {claims}." + (f" Note: {result.note}." if result.note else "")
        )
        return [(path, caption)]
