"""Figure 8: an FGSM adversarial example changes the trained network's prediction;
saliency's map changes with it, DeconvNet's and GBP's barely do.

The image is perturbed in pixel space ([0, 1], clipped) by one FGSM step up the loss
of the predicted class (:func:`backpropvis.attacks.fgsm`). ``epsilon`` (in units of
1/255) is a setting; left at None it is the smallest step of ``epsilons`` that changes
the prediction. Every step of ``epsilons`` is also measured and plotted, so the figure
shows how each method's change grows with the step. Each map is for its own image's
max logit; a method's change is the class distance between the two maps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch

from ..attacks import fgsm
from ..engine import attribute_many
from ..images import class_name
from ..metrics import class_distance, class_distance_minmax, ratio
from ..render import figure_title, pyplot, save_figure, to_display
from ..rules import METHOD_LABELS, PAPER_METHODS
from .base import Claim, Experiment, FigureData, Measurement, RunContext
from .networks import input_pipeline, model_inputs, trained_network

__all__ = ["EXPERIMENT"]


def measure(settings: Mapping[str, Any], context: RunContext) -> Measurement:
    """FGSM at every step of ``settings["epsilons"]`` (and ``settings["epsilon"]``), maps
    of the original and of each adversarial image, one forward pass for all of them."""
    network = trained_network(context)
    model = network.model
    preprocessing = input_pipeline(model, settings.get("size"))
    inputs = model_inputs(model, [settings["image"]], context.device, settings.get("size"))
    pixels = preprocessing.unnormalize(inputs)  # [1, 3, S, S] in [0, 1]

    def on_pixels(batch: torch.Tensor) -> torch.Tensor:
        return model(preprocessing.normalize(batch))

    with torch.no_grad():
        original = int(on_pixels(pixels).argmax(dim=1))
    steps = sorted(
        set(float(step) for step in settings["epsilons"])
        | ({float(settings["epsilon"])} if settings.get("epsilon") is not None else set())
    )
    adversarial = torch.cat([fgsm(on_pixels, pixels, original, step / 255.0, bounds=(0.0, 1.0)) for step in steps])
    with torch.no_grad():
        predictions = [int(index) for index in on_pixels(adversarial).argmax(dim=1)]
    changed = [number for number, prediction in enumerate(predictions) if prediction != original]
    if settings.get("epsilon") is not None:
        chosen, why = steps.index(float(settings["epsilon"])), "the setting"
    elif changed:
        chosen, why = changed[0], "the smallest step tried that changes the prediction"
    else:
        chosen, why = len(steps) - 1, "no step tried changes the prediction: the largest"

    batch = preprocessing.normalize(torch.cat([pixels, adversarial]))
    # [1, 1 + steps, 3, S, S] per method
    maps = attribute_many(model, batch, ["max"], PAPER_METHODS, precision=context.precision)
    sweep: dict[str, list[float]] = {}
    metrics: dict[str, float] = {
        "prediction_changed": float(predictions[chosen] != original),
        "epsilon_255": steps[chosen],
        "linf_255": float((adversarial[chosen] - pixels[0]).abs().max()) * 255.0,
    }
    for method in PAPER_METHODS:
        method_maps = maps[method][0].cpu()
        reference = method_maps[0].expand_as(method_maps[1:])
        distances = class_distance(reference, method_maps[1:])
        sweep[method] = [float(distance) for distance in distances]
        metrics[f"distance_{method}"] = float(distances[chosen])
        metrics[f"distance_minmax_{method}"] = float(class_distance_minmax(reference, method_maps[1:])[chosen])
    for other in ("gbp", "deconvnet"):
        metrics[f"saliency_over_{other}"] = ratio(metrics["distance_saliency"], metrics[f"distance_{other}"])
        metrics[f"saliency_over_{other}_minmax"] = ratio(
            metrics["distance_minmax_saliency"], metrics[f"distance_minmax_{other}"]
        )

    return Measurement(
        metrics=metrics,
        model=network.name,
        weights=network.weights,
        notes=((network.note,) if network.note else ())
        + (
            f"FGSM step {steps[chosen]:g}/255 in pixel space ({why}): "
            f"{original} {class_name(original)} -> {predictions[chosen]} {class_name(predictions[chosen])}.",
        ),
        details={
            "original_class": [original, class_name(original)],
            "adversarial_class": [predictions[chosen], class_name(predictions[chosen])],
            "sweep_epsilon_255": steps,
            "sweep_predicted": predictions,
            "sweep_distance": sweep,
        },
        figure={
            "methods": list(PAPER_METHODS),
            "pictures": torch.stack([pixels[0], adversarial[chosen]]).cpu(),  # [2, 3, S, S]: original, adversarial
            "maps": torch.stack(
                [maps[method][0, [0, 1 + chosen]] for method in PAPER_METHODS]
            ).cpu(),  # [M, 2, 3, S, S]
            "note": network.note or "",
        },
    )


def draw(data: FigureData, path: Path) -> None:
    """Two rows (original, adversarial) x (image, saliency, DeconvNet, GBP), and the
    class distance of each method against the FGSM step."""
    details, methods, maps = data.details, data.texts("methods"), data.tensor("maps")
    steps, predictions, sweep = details["sweep_epsilon_255"], details["sweep_predicted"], details["sweep_distance"]
    original, chosen = details["original_class"][0], steps.index(data.metrics["epsilon_255"])
    picture, adversarial = data.tensor("pictures")
    plt = pyplot()
    figure = plt.figure(figsize=(15.5, 6.6))
    grid = figure.add_gridspec(2, 5, width_ratios=[1, 1, 1, 1, 1.5])
    rows = [
        (picture, f"'{data.settings['image']}': {original}\n{class_name(original)}"),
        (adversarial, f"FGSM {steps[chosen]:g}/255: {predictions[chosen]}\n{class_name(predictions[chosen])}"),
    ]
    for row, (shown, label) in enumerate(rows):
        axis = figure.add_subplot(grid[row, 0])
        axis.imshow(shown.permute(1, 2, 0).clamp(0, 1).numpy())
        axis.set_xticks([]), axis.set_yticks([])
        axis.set_ylabel(label, fontsize=9)
        for column, method in enumerate(methods, start=1):
            axis = figure.add_subplot(grid[row, column])
            axis.imshow(to_display(maps[column - 1, row]))
            axis.set_xticks([]), axis.set_yticks([])
            if row == 0:
                axis.set_title(METHOD_LABELS[method], fontsize=10)
            else:
                axis.set_xlabel(f"distance to original map {data.metrics[f'distance_{method}']:.3f}", fontsize=8)
    axis = figure.add_subplot(grid[:, 4])
    for method in methods:
        axis.plot(steps, sweep[method], marker="o", label=METHOD_LABELS[method])
    for step, prediction in zip(steps, predictions):
        if prediction != original:
            axis.axvline(step, color="0.85", linewidth=6, zorder=0)
    axis.axvline(steps[chosen], color="black", linestyle="--", linewidth=1, label=f"used: {steps[chosen]:g}/255")
    axis.set_xscale("log", base=2)
    axis.set_xticks(steps, [f"{step:g}" for step in steps])
    axis.set_xlabel("FGSM step (x 1/255); grey: prediction changed", fontsize=8)
    axis.set_ylabel("class distance, original vs adversarial map", fontsize=8)
    axis.set_ylim(0, 2)
    axis.legend(fontsize=8)
    title = figure_title(
        "Figure 8: maps of an image and of its FGSM adversarial example (each for its max logit)",
        data.model,
        data.weights,
        data.text("note"),
        width=150,
    )
    save_figure(figure, path, title)


EXPERIMENT = Experiment(
    name="fig8",
    title="FGSM adversarial example: saliency changes with the prediction, DeconvNet and GBP barely",
    full={"image": "tabby", "epsilon": None, "epsilons": (0.25, 0.5, 1, 2, 4, 8), "size": None},
    quick={"image": "tabby", "epsilon": None, "epsilons": (0.25, 0.5, 1, 2, 4, 8), "size": None},
    claims=(
        Claim("prediction_changed", "The FGSM example changes the predicted class", "prediction_changed", ">=", 1.0),
        Claim(
            "saliency_3x_gbp",
            "Saliency's distance between the original and adversarial maps is at least 3x GBP's",
            "saliency_over_gbp",
            ">=",
            3.0,
        ),
        Claim(
            "saliency_3x_deconvnet",
            "Saliency's distance between the original and adversarial maps is at least 3x DeconvNet's",
            "saliency_over_deconvnet",
            ">=",
            3.0,
        ),
    ),
    measure=measure,
    draw=draw,
)
