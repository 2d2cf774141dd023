"""Figure 2: every method's map in the trained network for the max logit and two
other logits (482, 560) of "tabby".

Saliency is class-sensitive: its map changes with the logit. DeconvNet and GBP
hardly change (class-insensitive "image recovery", Eq. 9). Measured as the class
distance (:func:`backpropvis.metrics.class_distance`) between each other logit's map
and the max logit's map, averaged over the two other logits.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch

from ..engine import attribute_many
from ..images import class_name
from ..metrics import class_distance, class_distance_minmax, input_similarity, ratio
from ..render import figure_title, save_grid, to_display
from ..rules import METHOD_LABELS, PAPER_METHODS
from .base import Claim, Experiment, FigureData, Measurement, RunContext
from .networks import input_pipeline, model_inputs, trained_network

__all__ = ["EXPERIMENT"]


def measure(settings: Mapping[str, Any], context: RunContext) -> Measurement:
    """Maps of ``settings["image"]`` for ``settings["targets"]`` (the first must be "max")."""
    network = trained_network(context)
    targets = list(settings["targets"])
    inputs = model_inputs(network.model, [settings["image"]], context.device, settings.get("size"))
    # one forward pass for everything
    maps = attribute_many(network.model, inputs, targets, PAPER_METHODS, precision=context.precision)
    indices = [int(index) for index in maps.targets[:, 0]]

    metrics: dict[str, float] = {}
    distances, similarities = [], []
    for method in PAPER_METHODS:
        method_maps = maps[method][:, 0].cpu()  # [T, 3, S, S]
        reference = method_maps[0]
        others = method_maps[1:]
        distance = class_distance(reference.expand_as(others), others)
        distance_minmax = class_distance_minmax(reference.expand_as(others), others)
        similarity = input_similarity(method_maps, inputs[0].cpu())
        for number, index in enumerate(indices[1:]):
            metrics[f"distance_{method}_{index}"] = float(distance[number])
            metrics[f"distance_minmax_{method}_{index}"] = float(distance_minmax[number])
        metrics[f"distance_{method}"] = float(distance.mean())
        metrics[f"distance_minmax_{method}"] = float(distance_minmax.mean())
        for target, value in zip(targets, similarity):
            metrics[f"similarity_{method}_{target}"] = float(value)
        distances.append(distance)
        similarities.append(similarity)
    for other in ("gbp", "deconvnet"):
        metrics[f"saliency_over_{other}"] = ratio(metrics["distance_saliency"], metrics[f"distance_{other}"])
        metrics[f"saliency_over_{other}_minmax"] = ratio(
            metrics["distance_minmax_saliency"], metrics[f"distance_minmax_{other}"]
        )
    return Measurement(
        metrics=metrics,
        model=network.name,
        weights=network.weights,
        notes=(network.note,) if network.note else (),
        details={
            "targets": indices,
            "target_names": [class_name(index) for index in indices],
            "input_size": list(inputs.shape),
        },
        figure={
            "methods": list(PAPER_METHODS),
            "maps": torch.stack([maps[method][:, 0] for method in PAPER_METHODS]).cpu(),  # [M, T, 3, S, S]
            "picture": input_pipeline(network.model).unnormalize(inputs[0].cpu()),  # [3, S, S] in [0, 1]
            "distances": torch.stack(distances),  # [M, T - 1]: each other logit's map against the max logit's
            "similarities": torch.stack(similarities),  # [M, T]
            "note": network.note or "",
        },
    )


def draw(data: FigureData, path: Path) -> None:
    """Rows: the methods; columns: the input, then the map of each target."""
    maps, distances, similarities = data.tensor("maps"), data.tensor("distances"), data.tensor("similarities")
    targets, indices = data.settings["targets"], data.details["targets"]
    predicted = indices[0]
    rows, captions = [], []
    for row in range(len(data.texts("methods"))):
        rows.append([data.tensor("picture") if row == 0 else None] + [to_display(map_) for map_ in maps[row]])
        captions.append(
            [f"predicted {predicted}\n{class_name(predicted)}" if row == 0 else ""]
            + [f"input similarity {float(similarities[row, 0]):+.2f}"]
            + [
                f"distance {float(d):.3f}, similarity {float(s):+.2f}"
                for d, s in zip(distances[row], similarities[row, 1:])
            ]
        )
    save_grid(
        rows,
        path,
        row_labels=[METHOD_LABELS[method] for method in data.texts("methods")],
        column_labels=[f"input '{data.settings['image']}'"]
        + [
            f"{'max logit (' + str(index) + ')' if target == 'max' else f'logit {index}'}\n{class_name(index)}"
            for target, index in zip(targets, indices)
        ],
        panel_labels=captions,
        title=figure_title(
            "Figure 2: each method for the max logit and two other logits (caption: class distance to the max map)",
            data.model,
            data.weights,
            data.text("note"),
        ),
        panel_size=2.8,
    )


EXPERIMENT = Experiment(
    name="fig2",
    title="Trained network, 'tabby': saliency changes with the logit, DeconvNet and GBP do not",
    full={"image": "tabby", "targets": ("max", 482, 560), "size": None},
    quick={"image": "tabby", "targets": ("max", 482, 560), "size": None},
    claims=(
        Claim(
            "saliency_5x_gbp",
            "Saliency's class distance (max logit vs logits 482 and 560, mean) is at least 5x GBP's",
            "saliency_over_gbp",
            ">=",
            5.0,
        ),
        Claim(
            "saliency_2x_deconvnet",
            "Saliency's class distance (max logit vs logits 482 and 560, mean) is at least 2x DeconvNet's",
            "saliency_over_deconvnet",
            ">=",
            2.0,
        ),
    ),
    measure=measure,
    draw=draw,
)
