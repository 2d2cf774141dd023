"""Unit distance: the paper's class distance asked of units inside the network.

For each image and each named layer, two units: the layer's most active one (the channel
with the largest spatial maximum, at that maximum) and a random other channel AT THE SAME
POSITION (uniform over the C - 1 others, drawn from (seed, image key) alone), so the two
maps differ by the channel only. Their distance is the class distance
``|| s_a / ||s_a|| - s_b / ||s_b|| ||_2`` (:func:`~backpropvis.core.metrics.class_distance`):
0 when the map does not depend on the unit, about sqrt(2) for unrelated maps.

It runs through the class-distance machinery (:func:`~backpropvis.stats.run_class_distance`:
the same store, resumable, bad-file proof, sharded under torchrun): the pair of targets
per image is ``pairs = "units max-random: a,b,c"`` (:func:`unit_pairs_setting`), and each
stored row's method is a label ``METHOD@LAYER``, so every (method, layer) is a column of
the summary, with its bootstrap interval over images.

What the theory predicts (Theorem 1, Eq. 6-8): in a random network, GBP and DeconvNet
back-propagate from any layer to (a filtered) image, so once a unit's receptive field
covers the image their maps stop depending on the unit; saliency's map keeps the
unit's own random weights and keeps depending on it.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

from ..core.errors import BackpropvisError
from ..core.files import replacing
from ..core.metrics import class_distance, class_distance_minmax, input_similarity, small_sample_note
from ..core.rules import METHOD_LABELS, Rule
from ..core.targets import ResolvedUnit, Unit
from ..engine import attribute_many
from ..images.sets import source_photo
from ..models.init import generator_for
from ..render import fit_text, pyplot
from .decoding import Batch
from .store import ResultRow, RunSettings
from .summary import bootstrap_means, collect, first_receipt_notes, percentile_interval, stored_receipts

__all__ = [
    "UNIT_PAIRS",
    "unit_pairs_setting",
    "unit_pair_layers",
    "unit_labels",
    "split_label",
    "unit_pair_targets",
    "UnitPairs",
    "unit_pair_distances",
    "measure_unit_pairs",
    "interval_curves",
    "method_curves",
    "summarize_unit_distance",
    "format_unit_distance",
    "plot_unit_distance",
]

UNIT_PAIRS = "units max-random"
"""The pairs setting's kind for unit distance (followed by ``": LAYER,LAYER,..."``)."""


def unit_pairs_setting(layers: Sequence[str]) -> str:
    """``["features.3", "features.8"]`` -> ``"units max-random: features.3,features.8"``.

    Raises:
        BackpropvisError: no layer, an empty name or one given twice.
    """
    layers = [layer.strip() for layer in layers]
    if not layers or not all(layers):
        raise BackpropvisError("unit distance needs at least one name in `layers` (e.g. features.3,features.8)")
    if len(set(layers)) != len(layers):
        raise BackpropvisError(f"a layer is named twice in `layers` ({','.join(layers)})")
    return f"{UNIT_PAIRS}: {','.join(layers)}"


def unit_pair_layers(pairs: str) -> Optional[list[str]]:
    """The layers of a unit-distance pairs setting, or None for logit pairs."""
    if not pairs.startswith(UNIT_PAIRS + ":"):
        return None
    return pairs[len(UNIT_PAIRS) + 1 :].strip().split(",")


def unit_labels(methods: Sequence[str], layers: Sequence[str]) -> tuple[str, ...]:
    """The stored rows' labels, ``METHOD@LAYER``, layer by layer (depth order), methods within."""
    return tuple(f"{method}@{layer}" for layer in layers for method in methods)


def split_label(label: str) -> tuple[str, str]:
    """``"gbp@features.3"`` -> ``("gbp", "features.3")``."""
    method, _, layer = label.partition("@")
    return method, layer


def unit_pair_targets(layers: Sequence[str]) -> list[Unit]:
    """Per layer (in order) the most active unit, then a random other channel at its position."""
    return [unit for layer in layers for unit in (Unit(layer, "max"), Unit(layer, "random", "peak"))]


@dataclass(frozen=True)
class UnitPairs:
    """The maps of each layer's two units compared, for a batch of B images.

    Attributes:
        layers: the layers, in depth order.
        values: (method, layer) -> ``distance`` [B] and ``minmax`` [B] (the class distance
            of the unit-L2 and min-max maps), ``similarity`` [2, B] (each map's input similarity).
        units: layer -> the two :class:`~backpropvis.core.targets.ResolvedUnit` (most active, random other).
        logits: [B, K] the model's output.
    """

    layers: list[str]
    values: dict[tuple[str, str], dict[str, torch.Tensor]]
    units: dict[str, tuple[ResolvedUnit, ResolvedUnit]]
    logits: torch.Tensor


def unit_pair_distances(
    network: nn.Module,
    inputs: torch.Tensor,
    keys: Sequence[str],
    layers: Sequence[str],
    rules: Sequence[Rule],
    seed: int,
    precision: Any,
) -> UnitPairs:
    """ONE :func:`~backpropvis.engine.attribute_many` call for both units of every layer and
    every method on ``inputs`` [B, C, H, W]; the random channels from one generator per
    image, seeded by (``seed``, its key in ``keys``), so a draw does not depend on the batch."""
    generators = [generator_for(seed, "unit pairs", key) for key in keys]
    maps = attribute_many(network, inputs, unit_pair_targets(layers), rules, generator=generators, precision=precision)
    values, units = {}, {}
    for number, layer in enumerate(layers):
        units[layer] = (maps.units[2 * number], maps.units[2 * number + 1])
        for rule in rules:
            pair = maps[rule.name][2 * number : 2 * number + 2]  # [2, B, 3, S, S]
            values[rule.name, layer] = {
                "distance": class_distance(pair[0], pair[1]).cpu(),
                "minmax": class_distance_minmax(pair[0], pair[1]).cpu(),
                "similarity": input_similarity(pair, inputs).cpu(),
            }
    return UnitPairs(list(layers), values, units, maps.logits.detach().cpu())


def measure_unit_pairs(
    network: nn.Module, batch: Batch, inputs: torch.Tensor, rules: Sequence[Rule], settings: RunSettings
) -> tuple[list[ResultRow], int]:
    """Rows (one per image, method and layer) for a batch's good images, from ``inputs``
    [N, 3, S, S]: the batch on the run's device, padded to the run's batch size (so an
    image is computed in the same company whatever happened)."""
    count = len(batch.keys)
    keys = list(batch.keys) + [f"padding {column}" for column in range(count, len(inputs))]
    layers = unit_pair_layers(settings.pairs) or []
    pairs = unit_pair_distances(network, inputs, keys, layers, rules, settings.seed, settings.precision)
    predicted = pairs.logits.argmax(dim=1)
    rows = []
    for layer in layers:
        for rule in rules:
            values = pairs.values[rule.name, layer]
            rows += [
                _row(batch, column, f"{rule.name}@{layer}", pairs.units[layer], int(predicted[column]), values)
                for column in range(count)
            ]
    return rows, pairs.logits.shape[1]


def _row(batch: Batch, column: int, label: str, units: tuple, predicted: int, values: dict) -> ResultRow:
    """One stored row: the two units' channels in the logit columns, named ``LAYER:CHANNEL@Y,X``."""
    return ResultRow(
        image=batch.keys[column],
        content_hash=batch.hashes[column],
        method=label,
        first_logit=int(units[0].channel[column]),
        first_name=units[0].name(column),
        second_logit=int(units[1].channel[column]),
        second_name=units[1].name(column),
        predicted=predicted,
        predicted_name=str(predicted),
        class_distance=float(values["distance"][column]),
        class_distance_minmax=float(values["minmax"][column]),
        input_similarity_first=float(values["similarity"][0, column]),
        input_similarity_second=float(values["similarity"][1, column]),
    )


def summarize_unit_distance(
    databases: Sequence[Union[str, os.PathLike]], resamples: int = 2000, seed: int = 0, confidence: float = 0.95
) -> dict:
    """Per method, the unit distance at each layer (depth order) with its bootstrap interval.

    Crops of one bundled photo are not independent: the interval is a cluster bootstrap
    over photos (:func:`~backpropvis.images.sets.source_photo`; any other image is its own).

    Returns a JSON-ready dict: ``layers`` (names, depth order), ``methods`` (name ->
    ``distance`` and ``input_similarity``, each ``{mean, low, high}`` lists with one
    entry per layer), ``images``, ``photos``, ``settings`` (model, weights, seed,
    input_size, images, precision), ``complete``, ``failures``, ``notes`` (the first
    precision receipt among them), ``bootstrap`` and ``precision_receipts`` (at TF32 or
    bfloat16: every session's, :mod:`backpropvis.engine.receipt`).

    Raises:
        StoreError: as :func:`~.summary.collect`; BackpropvisError: a class-distance database.
    """
    run = collect(databases)
    layers = unit_pair_layers(run.settings.pairs)
    if layers is None:
        raise BackpropvisError(f"{run.runs[0].path} holds a class-distance run, not a unit-distance run")
    photos = [source_photo(key) for key in run.images]
    tables = {"distance": run.tables["class_distance"], "input_similarity": run.input_similarity.mean(axis=2)}
    methods = method_curves(tables, run.methods, photos, resamples, seed, confidence)
    settings = run.settings
    return {
        "databases": [str(stored.path) for stored in run.runs],
        "settings": {
            "model": settings.model,
            "weights": settings.weights,
            "seed": settings.seed,
            "input_size": settings.input_size,
            "images": settings.images,
            "precision": settings.precision,
        },
        "layers": layers,
        "methods": methods,
        "images": len(run.images),
        "photos": len(set(photos)),
        "complete": run.complete,
        "failures": len(run.failures),
        "notes": run.notes
        + ([small] if (small := small_sample_note(len(set(photos)))) else [])
        + first_receipt_notes(run.runs),
        "bootstrap": {"resamples": resamples, "seed": seed, "confidence": confidence, "clusters": "photos"},
        "precision_receipts": stored_receipts(run.runs),
    }


def method_curves(
    tables: dict[str, np.ndarray],
    labels: Sequence[str],
    groups: Sequence[str],
    resamples: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, dict[str, dict[str, list[float]]]]:
    """Curves over depth per method: ``tables`` name -> [N images, M] values whose columns are
    ``labels`` (``METHOD@LAYER``, layers in depth order) -> method -> name -> ``{mean, low,
    high}`` lists (one entry per layer; intervals by :func:`interval_curves`)."""
    methods: dict[str, dict[str, dict[str, list[float]]]] = {}
    for name, values in tables.items():
        for label, curve in zip(labels, interval_curves(values, groups, resamples, seed, confidence)):
            method, _ = split_label(label)
            entry = methods.setdefault(method, {}).setdefault(name, {key: [] for key in curve})
            for key, value in curve.items():
                entry[key].append(value)
    return methods


def interval_curves(
    values: np.ndarray, groups: Sequence[str], resamples: int = 2000, seed: int = 0, confidence: float = 0.95
) -> list[dict[str, float]]:
    """Per column of ``values`` [N images, M], its mean and bootstrap interval over the images
    (a cluster bootstrap over ``groups``, N labels): ``{mean, low, high}``, NaN without images."""
    if len(values) == 0:
        return [{"mean": math.nan, "low": math.nan, "high": math.nan} for _ in range(values.shape[1])]
    resampled = bootstrap_means(values, resamples, seed, groups=groups)
    curves = []
    for column in range(values.shape[1]):
        low, high = percentile_interval(resampled[:, column], confidence)
        curves.append({"mean": float(values[:, column].mean()), "low": low, "high": high})
    return curves


def format_unit_distance(summary: dict) -> str:
    """The curves as a table: one line per layer, one column per method (mean [low, high])."""
    methods = list(summary["methods"])
    settings = summary["settings"]
    lines = [
        f"unit distance, {settings['model']} ({settings['weights']}), {summary['images']} images "
        f"({summary['photos']} photos), {summary['failures']} failed",
        f"{'layer':>16}  " + "  ".join(f"{method:>26}" for method in methods),
    ]
    for number, layer in enumerate(summary["layers"]):
        cells = []
        for method in methods:
            curve = summary["methods"][method]["distance"]
            cells.append(f"{curve['mean'][number]:8.4f} [{curve['low'][number]:.4f}, {curve['high'][number]:.4f}]")
        lines.append(f"{layer:>16}  " + "  ".join(f"{cell:>26}" for cell in cells))
    lines += [f"note: {note}" for note in summary["notes"]]
    return "\n".join(lines)


COLOURS = {"saliency": "tab:red", "deconvnet": "tab:blue", "gbp": "tab:green"}


def plot_unit_distance(summary: dict, path: Union[str, os.PathLike], title: Optional[str] = None) -> None:
    """Per method a curve of the mean unit distance over depth with its bootstrap interval."""
    plt = pyplot()
    layers = summary["layers"]
    figure, axis = plt.subplots(figsize=(max(4.5, 0.7 * len(layers) + 2), 3.4), constrained_layout=True)
    depth = np.arange(len(layers))
    for method, curves in summary["methods"].items():
        curve = curves["distance"]
        colour = COLOURS.get(method, "tab:gray")
        axis.plot(depth, curve["mean"], marker="o", color=colour, label=METHOD_LABELS.get(method, method))
        axis.fill_between(depth, curve["low"], curve["high"], color=colour, alpha=0.2)
    axis.axhline(np.sqrt(2), color="black", linewidth=0.6, linestyle=":", label="unrelated maps (sqrt 2)")
    axis.set_xticks(depth, layers, rotation=30, ha="right", fontsize=8)
    axis.set_ylim(0, 2.05)
    axis.set_ylabel("unit distance (95% CI)")
    axis.legend(fontsize=7)
    if title is None:
        title = f"most active vs random channel, {summary['settings']['model']}, {summary['images']} images"
    axis.set_title(fit_text(title, figure.get_figwidth(), 9), fontsize=9)
    with replacing(path) as partial:
        figure.savefig(partial, dpi=120)
    plt.close(figure)
