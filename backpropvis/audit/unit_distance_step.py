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
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core.metrics import small_sample_note
from ..core.rules import resolve_rules
from ..experiments.theory_unit_distance import CLAIMS, unit_distance_metrics
from ..images.sets import source_photo
from ..stats.unit_distance import method_curves, plot_unit_distance, split_label, unit_labels, unit_pair_distances
from ..theory.receptive_fields import layers_over_depth
from .saved import StepData
from .step import AuditContext, AuditStep

__all__ = ["UnitDistanceStep"]


class UnitDistanceStep(AuditStep):
    """Unit distance over depth on the few images, with the theory's claims judged on the model."""

    name = "unit_distance"

    def identity(self, context: AuditContext) -> dict[str, Any]:
        return {**context.identity, "unit_layers": list(context.settings.unit_layers or [])}

    def measure(self, context: AuditContext) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
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
        numbers = {
            "layers": layers,
            "images": len(keys),
            "methods": curves,
            "claims": [{"id": c.id, "text": c.text, "value": c.value, "holds": c.holds} for c in judged],
            "note": small_sample_note(len({source_photo(key) for key in keys})),
        }
        return numbers, {"distance": torch.from_numpy(tables["distance"])}  # [images, methods x layers]

    def figures(self, data: StepData, context: AuditContext, folder: Path) -> list[tuple[Path, str]]:
        numbers = data.numbers
        path = folder / "unit-distance.png"
        title = f"unit distance over depth: {context.title}"[:110]
        plot_unit_distance({"layers": numbers["layers"], "methods": numbers["methods"]}, path, title)
        claims = "; ".join(
            f"{claim['text']}: {'holds' if claim['holds'] else 'does not hold'}" for claim in numbers["claims"]
        )
        caption = (
            "Is the map about the unit? Per layer, the distance between the maps of its most active unit and of a "
            f"random other channel at the same position, over {numbers['images']} images (shaded: 95% bootstrap "
            "interval; dotted: sqrt 2, unrelated maps). The theory (Theorem 1, Eq. 6-8) predicts for random "
            "networks that GBP's and DeconvNet's maps stop depending on the unit while saliency's do not; on this "
            f"model: {claims}." + (f" Note: {numbers['note']}." if numbers.get("note") else "")
        )
        return [(path, caption)]
