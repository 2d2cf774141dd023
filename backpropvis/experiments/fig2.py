"""Figure 2: every method's map in a trained network for the max logit and two other
logits: "tabby" with logits 482 and 560 in the ImageNet-trained network (the paper's
VGG-16 where its checkpoint is present, else the bundled EfficientNet-Lite0 standing
in), and a held-out digit in the digits VGG trained by this project (max-pooling and a
dense fc1, as VGG-16 has).

Saliency is class-sensitive: its map changes with the logit. DeconvNet and GBP hardly
change (class-insensitive "image recovery", Eq. 9). Measured as the class distance
(:func:`backpropvis.core.metrics.class_distance`, the L2 distance of the unit-norm maps)
between each other logit's map and the max logit's map, averaged over the two other
logits.

Claims, per network: saliency's class distance is at least 5x GBP's and 2x DeconvNet's
(ratios by :func:`backpropvis.core.metrics.ratio`, NaN, so failing, for a zero denominator),
and, as an absolute bound, GBP's class distance is below
:data:`~backpropvis.experiments.networks.NEARLY_SAME_DISTANCE` (0.5, declared before the
results were seen: "nearly the same" in Figures 2, 3 and 9).

What they catch: the plain gradient in every method's place (``plain-gradient``) makes
both ratios 1; a zero GBP or DeconvNet map (``zero-gbp``, ``zero-deconvnet``) has class
distance 0, so its ratio is NaN; a zero saliency map (``zero-saliency``) has class distance
0, so both ratios are 0.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from ..core.metrics import class_distance, class_distance_minmax, input_similarity, ratio
from ..core.rules import METHOD_LABELS, PAPER_METHODS
from ..core.targets import Target
from ..engine import attribute_many
from ..images.samples import class_name
from ..render import CLIP_99, figure_title, map_panel, pyplot, save_figure
from .base import Claim, Experiment, FigureData, Measurement, RunContext
from .networks import DIGITS_NOTE, NEARLY_SAME_DISTANCE, MeasuredNetwork, digits_testbed, imagenet_testbed

__all__ = ["EXPERIMENT"]


def _label(key: str, index: int) -> str:
    """A logit's name: the ImageNet class, or the digit."""
    return class_name(index) if key == "imagenet" else f"digit {index}"


def network_maps(testbed: MeasuredNetwork, targets: Sequence[Target], context: RunContext) -> dict[str, Any]:
    """Every method's maps of the testbed's first image for ``targets`` (the first "max"),
    from one forward pass, with their class distances to the max logit's map.

    Returns:
        metrics (``{key}_distance_{method}`` and per logit, ``{key}_saliency_over_{method}``, ...),
        the resolved logits, and the figure's arrays.
    """
    key, inputs = testbed.key, testbed.inputs[:1]
    maps = attribute_many(testbed.network.model, inputs, list(targets), PAPER_METHODS, precision=context.precision)
    indices = [int(index) for index in maps.targets[:, 0]]
    metrics: dict[str, float] = {}
    distances, similarities = [], []
    for method in PAPER_METHODS:
        method_maps = maps[method][:, 0].cpu()  # [T, 3, S, S]
        others = method_maps[1:]
        distance = class_distance(method_maps[0].expand_as(others), others)  # [T - 1]
        distance_minmax = class_distance_minmax(method_maps[0].expand_as(others), others)
        for number, index in enumerate(indices[1:]):
            metrics[f"{key}_distance_{method}_{index}"] = float(distance[number])
        metrics[f"{key}_distance_{method}"] = float(distance.mean())
        metrics[f"{key}_distance_minmax_{method}"] = float(distance_minmax.mean())
        distances.append(distance)
        similarities.append(input_similarity(method_maps, inputs[0].cpu()))
    for other in ("gbp", "deconvnet"):
        metrics[f"{key}_saliency_over_{other}"] = ratio(
            metrics[f"{key}_distance_saliency"], metrics[f"{key}_distance_{other}"]
        )
        metrics[f"{key}_saliency_over_{other}_minmax"] = ratio(
            metrics[f"{key}_distance_minmax_saliency"], metrics[f"{key}_distance_minmax_{other}"]
        )
    figure = {
        f"{key}_maps": torch.stack([maps[method][:, 0] for method in PAPER_METHODS]).cpu(),  # [M, T, 3, S, S]
        f"{key}_picture": testbed.pictures[0],  # [3, S, S] in [0, 1]
        f"{key}_distances": torch.stack(distances),  # [M, T - 1]: each other logit's map against the max logit's
        f"{key}_similarities": torch.stack(similarities),  # [M, T]
        f"{key}_targets": indices,
        f"{key}_target_names": [_label(key, index) for index in indices],
        f"{key}_name": testbed.network.name,
        f"{key}_image": testbed.image_names[0],
    }
    return {"metrics": metrics, "targets": indices, "figure": figure}


def measure(settings: Mapping[str, Any], context: RunContext) -> Measurement:
    """Maps of ``settings["image"]`` for ``settings["targets"]`` in the ImageNet-trained network,
    and of held-out digit ``settings["digits_image"]`` for ``settings["digits_targets"]`` in the
    digits VGG (each list starting with "max")."""
    testbeds = [
        (imagenet_testbed(context, [settings["image"]], settings.get("size")), settings["targets"]),
        (digits_testbed(context, 1, first=int(settings["digits_image"])), settings["digits_targets"]),
    ]
    metrics: dict[str, float] = {}
    figure: dict[str, Any] = {"keys": [testbed.key for testbed, _ in testbeds], "methods": list(PAPER_METHODS)}
    details: dict[str, Any] = {}
    for testbed, targets in testbeds:
        measured = network_maps(testbed, targets, context)
        metrics.update(measured["metrics"])
        figure.update(measured["figure"])
        details[testbed.key] = {
            "model": testbed.network.name,
            "weights": testbed.network.weights,
            "image": testbed.image_names[0],
            "targets": measured["targets"],
            "target_names": [_label(testbed.key, i) for i in measured["targets"]],
            "input_size": list(testbed.inputs.shape),
        }
    metrics["smallest_map_norm"] = min(
        float(figure[f"{key}_maps"].flatten(2).double().norm(dim=-1).min()) for key in figure["keys"]
    )
    notes = [note for testbed, _ in testbeds for note in (testbed.network.note,) if note] + [DIGITS_NOTE]
    figure["note"] = " ".join(notes)
    return Measurement(
        metrics=metrics,
        model=" and ".join(testbed.network.name for testbed, _ in testbeds),
        weights="; ".join(f"{testbed.network.name}: {testbed.network.weights}" for testbed, _ in testbeds),
        notes=tuple(notes),
        details=details,
        figure=figure,
    )


def draw(data: FigureData, path: Path) -> None:
    """Per network, one row per method: the input, then the map of each logit, each caption
    giving the map's input similarity and its class distance to the max logit's map."""
    plt = pyplot()
    keys, methods = data.texts("keys"), data.texts("methods")
    columns = 1 + max(len(data.tensor(f"{key}_targets")) for key in keys)
    rows = len(keys) * len(methods)
    figure, axes = plt.subplots(
        rows, columns, figsize=(2.9 * columns, 2.75 * rows + 1.4), layout="constrained", squeeze=False
    )
    for block, key in enumerate(keys):
        maps, distances = data.tensor(f"{key}_maps"), data.tensor(f"{key}_distances")
        similarities, targets = data.tensor(f"{key}_similarities"), data.tensor(f"{key}_targets").tolist()
        names, network = data.texts(f"{key}_target_names"), data.text(f"{key}_name")
        for number, method in enumerate(methods):
            row = axes[block * len(methods) + number]
            if number == 0:
                map_panel(
                    row[0],
                    data.tensor(f"{key}_picture").permute(1, 2, 0).numpy(),  # a picture in [0, 1], not a map
                    f"{network}\ninput: {data.text(f'{key}_image')}",
                    f"predicted {targets[0]} ({names[0]})",
                )
            else:
                row[0].axis("off")
            for column, (index, name) in enumerate(zip(targets, names), start=1):
                title = f"{METHOD_LABELS[method]}, {'max logit' if column == 1 else 'logit'} {index}\n{name}"
                caption = f"input similarity {float(similarities[number, column - 1]):+.2f}"
                if column > 1:
                    caption = f"distance to max {float(distances[number, column - 2]):.3f}\n{caption}"
                map_panel(row[column], maps[number, column - 1], title, caption)
    title = figure_title(
        "Figure 2: each method for the max logit and two other logits (caption: class distance to the max logit's "
        "map, input similarity)",
        data.model,
        data.weights.replace("; ", ";\n"),
    )
    save_figure(figure, path, title, CLIP_99)


FULL: dict = {
    "image": "tabby",
    "targets": ("max", 482, 560),
    "size": None,
    "digits_image": 1,
    "digits_targets": ("max", 5, 8),
}
"""One photo and one digit, each for its max logit and two others; the trained networks' own input size (the
quick run is the same: a single image costs seconds)."""

EXPERIMENT = Experiment(
    name="fig2",
    title="Trained networks: saliency changes with the logit, DeconvNet and GBP do not",
    full=FULL,
    quick=FULL,
    tiny={**FULL, "size": 96},
    claims=tuple(
        claim
        for key, network, logits in (
            ("imagenet", "the ImageNet-trained network", "logits 482 and 560"),
            ("digits", "the digits VGG", "logits 5 and 8"),
        )
        for claim in (
            Claim(
                f"{key}_saliency_5x_gbp",
                f"In {network}, saliency's class distance (max logit vs {logits}, mean) is at least 5x GBP's",
                f"{key}_saliency_over_gbp",
                ">=",
                5.0,
            ),
            Claim(
                f"{key}_saliency_2x_deconvnet",
                f"In {network}, saliency's class distance (max logit vs {logits}, mean) is at least 2x DeconvNet's",
                f"{key}_saliency_over_deconvnet",
                ">=",
                2.0,
            ),
            Claim(
                f"{key}_gbp_nearly_the_same",
                f"In {network}, GBP's class distance (max logit vs {logits}, mean) is below {NEARLY_SAME_DISTANCE}",
                f"{key}_distance_gbp",
                "<",
                NEARLY_SAME_DISTANCE,
            ),
        )
    )
    + (
        Claim(
            "maps_nonzero",
            "Every map of every method is non-zero (value: the smallest L2 norm)",
            "smallest_map_norm",
            ">",
            0.0,
        ),
    ),
    measure=measure,
    draw=draw,
    catches=("plain-gradient", "zero-gbp", "zero-deconvnet", "zero-saliency"),
)
