"""Theory study "unit-distance": is a map about the unit it was computed for?

The paper's class distance asked one level down (:mod:`backpropvis.stats.unit_distance`):
in a random VGG-16, for each layer, the distance between the maps of the layer's most
active unit and of a random other channel at the same position, per method, streamed
through the class-distance store.

What the theory predicts (Theorem 1, Eq. 6-8): GBP and DeconvNet back-propagate from any
layer of a random network to (a filtered) image, so once a unit sees the whole image their
maps hardly depend on which unit it is; saliency's map keeps the unit's own random weights
(h is the identity) and stays as different between two units as two unrelated maps
(distance near sqrt 2). The claims state that at the deepest layer of the sweep, and that
GBP's distance falls with depth. What they catch (``tests/test_sabotage.py``): the plain
gradient in place of GBP or DeconvNet makes their distance saliency's; a zero map has
distance 0 but carries no image (input similarity 0), so the image claims fail.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..core.rules import PAPER_METHODS
from ..images.sets import Samples
from ..models import describe_module, vgg16
from ..stats import plot_unit_distance, run_unit_distance, summarize_unit_distance
from ..stats.distributed import World
from .base import Claim, Experiment, FigureData, Measurement, RunContext

__all__ = ["EXPERIMENT", "CLAIMS", "unit_distance_metrics"]

FULL: dict[str, Any] = {
    "input_size": 224,
    "layers": ["conv1_2", "conv2_2", "conv3_3", "conv4_3", "conv5_3", "fc1", "fc2"],
    "crops": 48,
    "batch_size": 8,
}
"""One layer per VGG-16 block and the two hidden dense layers, the six photos and 48 crops."""

QUICK: dict[str, Any] = {**FULL, "input_size": 64, "crops": 6}

HALF_WAY = math.sqrt(2) / 2
"""Half way from identical unit-L2 maps (distance 0) to unrelated ones (sqrt 2)."""

CLAIMS = (
    Claim(
        "saliency_depends_on_the_unit",
        "saliency's maps of two units of the deepest layer stay far apart: the interval of their "
        f"distance lies above sqrt(2)/2 = {HALF_WAY:.3f}, half way to unrelated maps",
        "saliency_distance_deepest_low",
        ">",
        HALF_WAY,
    ),
    Claim(
        "gbp_stops_depending_on_the_unit",
        "at the deepest layer GBP's unit distance lies below saliency's (intervals apart)",
        "saliency_low_minus_gbp_high_deepest",
        ">",
        0.0,
    ),
    Claim(
        "deconvnet_stops_depending_on_the_unit",
        "at the deepest layer DeconvNet's unit distance lies below saliency's (intervals apart)",
        "saliency_low_minus_deconvnet_high_deepest",
        ">",
        0.0,
    ),
    Claim(
        "gbp_falls_with_depth",
        "GBP's unit distance falls with depth: its interval at the deepest layer lies below the shallowest's",
        "gbp_low_shallowest_minus_high_deepest",
        ">",
        0.0,
    ),
    Claim(
        "gbp_carries_the_image",
        "GBP's maps of the deepest units are the image, not nothing: their input similarity exceeds "
        "saliency's by at least 0.1",
        "gbp_minus_saliency_input_similarity_deepest",
        ">=",
        0.1,
    ),
    Claim(
        "deconvnet_carries_the_image",
        "DeconvNet's maps of the deepest units carry the image: their input similarity exceeds "
        "saliency's by at least 0.1",
        "deconvnet_minus_saliency_input_similarity_deepest",
        ">=",
        0.1,
    ),
)


def unit_distance_metrics(summary: Mapping[str, Any]) -> dict[str, float]:
    """The claims' metrics from :func:`~backpropvis.stats.summarize_unit_distance`'s summary
    (the first layer is the shallowest, the last the deepest); NaN where a method is missing."""
    methods = summary["methods"]

    def value(method: str, table: str, key: str, layer: int) -> float:
        return float(methods[method][table][key][layer]) if method in methods else math.nan

    metrics = {
        "saliency_distance_deepest_low": value("saliency", "distance", "low", -1),
        "gbp_low_shallowest_minus_high_deepest": value("gbp", "distance", "low", 0)
        - value("gbp", "distance", "high", -1),
    }
    for method in ("gbp", "deconvnet"):
        metrics[f"saliency_low_minus_{method}_high_deepest"] = value("saliency", "distance", "low", -1) - value(
            method, "distance", "high", -1
        )
        metrics[f"{method}_minus_saliency_input_similarity_deepest"] = value(
            method, "input_similarity", "mean", -1
        ) - value("saliency", "input_similarity", "mean", -1)
    for method in methods:
        for number, layer in enumerate(summary["layers"]):
            metrics[f"{method}_distance_{layer}"] = value(method, "distance", "mean", number)
    return metrics


def measure(settings: Mapping[str, Any], context: RunContext) -> Measurement:
    """The unit distances of the photos and crops through a random VGG-16, stored and summarised."""
    model = vgg16(weights="random", seed=context.seed)
    layers = [model.layer_paths[name] for name in settings["layers"]]
    db = context.out / f"unit-distance-vgg16-{settings['input_size']}-seed{context.seed}.sqlite"
    run_unit_distance(
        Samples(settings["crops"], context.seed),
        db,
        layers=layers,
        model=describe_module(model, "vgg16", "random", settings["input_size"]),
        methods=PAPER_METHODS,
        seed=context.seed,
        batch_size=settings["batch_size"],
        workers=0,
        device=context.device,
        precision=context.precision,
        progress=context.progress,
        world=World(),
    )
    summary = summarize_unit_distance([db], seed=context.seed)
    figure: dict[str, Any] = {"layers": list(settings["layers"]), "images": summary["images"]}
    for method, tables in summary["methods"].items():
        for key in ("mean", "low", "high"):
            figure[f"{method}_{key}"] = np.asarray(tables["distance"][key])
    return Measurement(
        metrics=unit_distance_metrics(summary),
        model="VGG-16",
        weights=f"random (the paper's init, seed {context.seed})",
        notes=tuple(summary["notes"]),
        details={"layers": layers, "images": summary["images"], "photos": summary["photos"]},
        figure=figure,
    )


def draw(data: FigureData, path: Path) -> None:
    layers = data.texts("layers")
    methods = {
        method: {"distance": {key: data.arrays[f"{method}_{key}"] for key in ("mean", "low", "high")}}
        for method in PAPER_METHODS
        if f"{method}_mean" in data.arrays
    }
    summary = {"layers": layers, "methods": methods}
    title = (
        f"unit distance in a random VGG-16 ({data.settings['input_size']} px, {int(data.arrays['images'])} images): "
        "most active unit vs a random other channel at its position"
    )
    plot_unit_distance(summary, path, title)


EXPERIMENT = Experiment(
    name="unit-distance",
    title="Theorem 1 / Eq. 6-8 one level down: GBP's and DeconvNet's maps stop depending on the unit, "
    "saliency's do not",
    full=FULL,
    quick=QUICK,
    claims=CLAIMS,
    measure=measure,
    draw=draw,
    group="theory",
    tiny={**FULL, "input_size": 32, "layers": ["conv1_2", "conv3_3", "conv5_3", "fc2"], "crops": 0},
    catches=("plain-gradient", "zero-gbp", "zero-deconvnet", "zero-saliency"),
)
