"""Figure 8: an FGSM adversarial example changes the trained network's prediction;
saliency's map changes with it, DeconvNet's and GBP's barely do.

The paper shows one image, "panda", misclassified as "busby" by the trained VGG-16
after an FGSM step of a size it does not give. The panda is not among the bundled
images: here every bundled photo (scikit-image's tabby, astronaut, coffee, rocket,
motorcycle, camera) is attacked, and "tabby" (``image``) takes the panda's place in the
figure's panels.

The steps are declared before the run (in units of 1/255 of the pixel range):

- "smallest": for each image, the smallest step of ``ladder`` that changes its
  prediction (images no step of the ladder flips are counted and left out);
- each step of ``fixed`` (1, 2 and 4 / 255): the same step for every image.

:func:`backpropvis.attacks.sweep.fgsm_sweep` perturbs each image in pixel space ([0, 1],
clipped) by one FGSM step up the loss of its predicted class at every step, and
compares each method's map of the original (for its max logit) with its map of the
adversarial image (for that image's max logit) by the class distance. At each step,
over the images whose prediction the step changed (the adversarial examples), the
experiment reports the fraction on which each statement holds: saliency's map changes
at least 3x as much as GBP's (and DeconvNet's), and GBP's map stays close to the
original (class distance below sqrt(2) / 3, a third of that of two unrelated maps).

The claims and what they catch (``tests/test_sabotage.py``): every ratio is 1 when
the methods are the plain gradient, NaN (not holding) for a zero GBP or DeconvNet map
(distance 0) and 0 for a zero saliency map, so the fractions fall to 0; the plain
gradient also moves GBP's map as far as saliency's. "A step of the ladder changes every
image's prediction" is the attack's premise, not true by construction: an image that
no step up to the ladder's largest flips fails it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ..attacks.sweep import AdversarialSweep, fgsm_sweep
from ..core.metrics import ratio
from ..core.rules import METHOD_LABELS, PAPER_METHODS
from ..images.samples import class_name, sample_names
from ..render import CLIP_99, figure_title, pyplot, save_figure, to_display
from .base import Claim, Experiment, FigureData, Measurement, RunContext
from .networks import TrainedNetwork, input_pipeline, model_inputs, trained_network

__all__ = ["EXPERIMENT", "step_key"]

UNCHANGED = math.sqrt(2.0) / 3
"""GBP's map "hardly changes": a class distance below a third of that of two unrelated maps (sqrt 2)."""

STATEMENTS: dict[str, str] = {
    "saliency_3x_gbp": "saliency's map changes at least 3x as much as GBP's",
    "saliency_3x_deconvnet": "saliency's map changes at least 3x as much as DeconvNet's",
    "gbp_unchanged": "GBP's map stays close: class distance below sqrt(2) / 3",
}
"""What is checked on every adversarial example (metrics ``<statement>_fraction_at_<step>``)."""


def step_key(step: float | str) -> str:
    """How a step names its metrics: "smallest", "1", "0p25"."""
    return step if isinstance(step, str) else f"{step:g}".replace(".", "p")


def _holds(distance: Mapping[str, float]) -> dict[str, bool]:
    """Whether each statement holds for one image at one step, from each method's class distance."""
    saliency = distance["saliency"]
    return {
        "saliency_3x_gbp": ratio(saliency, distance["gbp"]) >= 3.0,  # NaN compares False
        "saliency_3x_deconvnet": ratio(saliency, distance["deconvnet"]) >= 3.0,
        "gbp_unchanged": distance["gbp"] < UNCHANGED,
    }


def _sweeps(
    settings: Mapping[str, Any], context: RunContext
) -> tuple[list[AdversarialSweep], list[torch.Tensor], TrainedNetwork]:
    """One :func:`fgsm_sweep` per image (memory stays that of one image's sweep), each
    image's pixels [1, 3, S, S] in [0, 1], and the network."""
    network = trained_network(context)
    model = network.model
    preprocessing = input_pipeline(model, settings.get("size"))
    steps = sorted({float(step) for step in (*settings["ladder"], *settings["fixed"])})
    sweeps, originals = [], []
    for image in tqdm(settings["images"], desc="fig8 images", unit="image", disable=not context.progress):
        pixels = preprocessing.unnormalize(model_inputs(model, [image], context.device, settings.get("size")))
        sweeps.append(
            fgsm_sweep(model, pixels, preprocessing.normalize, steps, PAPER_METHODS, precision=context.precision)
        )
        originals.append(pixels.cpu())
    return sweeps, originals, network


def _chosen_steps(
    sweeps: Sequence[AdversarialSweep], steps: list[float], ladder: list[int], fixed: Sequence[float], count: int
) -> dict[str, list[Optional[int]]]:
    """Category -> per image the step index it uses (None: the ladder never flips it):
    "smallest" (the smallest flipping step of the ladder), then each fixed step."""
    chosen: dict[str, list[Optional[int]]] = {"smallest": []}
    for sweep in sweeps:
        flipped = sweep.flipped[:, 0]
        chosen["smallest"].append(next((index for index in ladder if bool(flipped[index])), None))
    for step in fixed:
        chosen[step_key(float(step))] = [steps.index(float(step))] * count
    return chosen


def _per_category(
    key: str,
    indices: Sequence[Optional[int]],
    images: list[str],
    sweeps: Sequence[AdversarialSweep],
    steps: list[float],
) -> tuple[list[dict], dict[str, float]]:
    """One category's rows (per image: its step, whether it flipped, the distances, the
    statements that hold) and its metrics over the adversarial examples among them."""
    rows: list[dict[str, Any]] = []
    for image, sweep, index in zip(images, sweeps, indices):
        if index is None:
            continue
        distance = {method: float(sweep.distance[method][index, 0]) for method in PAPER_METHODS}
        changed = bool(sweep.flipped[index, 0])
        rows.append(
            {
                "image": image,
                "step": steps[index],
                "flipped": changed,
                "predicted": int(sweep.predicted[index, 0]),
                "distance": distance,
                "holds": _holds(distance) if changed else {},
            }
        )
    metrics: dict[str, float] = {}
    examples = [row for row in rows if row["flipped"]]
    metrics[f"flipped_fraction_at_{key}"] = len(examples) / len(images)
    metrics[f"adversarial_examples_at_{key}"] = float(len(examples))
    for statement in STATEMENTS:  # NaN without an adversarial example: the claim cannot hold
        held = [row["holds"][statement] for row in examples]
        metrics[f"{statement}_fraction_at_{key}"] = float(np.mean(held)) if held else math.nan
    for method in PAPER_METHODS:
        values = [row["distance"][method] for row in examples]
        metrics[f"median_distance_{method}_at_{key}"] = float(np.median(values)) if values else math.nan
    return rows, metrics


def _notes(
    shown: str,
    images: list[str],
    steps: list[float],
    smallest: Sequence[Optional[int]],
    largest: float,
    network_note: Optional[str],
) -> list[str]:
    """The figure's notes: the shown photo, and each image's smallest flipping step."""
    notes = [
        f"'{shown}' replaces the paper's 'panda' (not bundled) in the panels; all {len(images)} bundled "
        f"photos are attacked ({', '.join(images)}).",
        "Smallest flipping step per image: "
        + ", ".join(
            f"{image} {steps[index]:g}/255" if index is not None else f"{image} none up to {largest:g}/255"
            for image, index in zip(images, smallest)
        )
        + ".",
    ]
    if network_note:
        notes.insert(0, network_note)
    return notes


def measure(settings: Mapping[str, Any], context: RunContext) -> Measurement:
    """Every image at every declared step; per step, the fraction of adversarial examples
    on which each statement holds."""
    sweeps, originals, network = _sweeps(settings, context)
    steps = list(sweeps[0].steps)
    ladder = [steps.index(float(step)) for step in sorted(settings["ladder"])]
    images = list(settings["images"])
    chosen = _chosen_steps(sweeps, steps, ladder, settings["fixed"], len(images))
    metrics: dict[str, float] = {}
    per_image: dict[str, list[dict]] = {}
    for key, indices in chosen.items():
        per_image[key], found = _per_category(key, indices, images, sweeps, steps)
        metrics.update(found)

    shown = images.index(settings["image"])
    shown_index = chosen["smallest"][shown]
    shown_step = shown_index if shown_index is not None else len(steps) - 1
    sweep = sweeps[shown]
    original = int(sweep.original[0])
    notes = _notes(settings["image"], images, steps, chosen["smallest"], steps[ladder[-1]], network.note)
    return Measurement(
        metrics=metrics,
        model=network.name,
        weights=network.weights,
        notes=tuple(notes),
        details={
            "steps_255": steps,
            "categories": list(chosen),
            "per_image": per_image,
            "original_classes": {
                image: [int(s.original[0]), class_name(int(s.original[0]))] for image, s in zip(images, sweeps)
            },
            "shown": {
                "image": settings["image"],
                "step_255": steps[shown_step],
                "original": original,
                "adversarial": int(sweep.predicted[shown_step, 0]),
            },
        },
        figure={
            "methods": list(PAPER_METHODS),
            # [2, 3, S, S]: the shown image and its adversarial example at its smallest flipping step
            "pictures": torch.stack([originals[shown][0], sweep.adversarial[shown_step, 0].cpu()]),
            # [M, 2, 3, S, S]: each method's map of the original and of the adversarial example
            "maps": torch.stack([sweep.maps[method][[0, 1 + shown_step], 0] for method in PAPER_METHODS]).cpu(),
            "note": network.note or "",
        },
    )


def draw(data: FigureData, path: Path) -> None:
    """Left: the shown image and its adversarial example at its smallest flipping step,
    with each method's maps; right: per declared step, the fraction of adversarial
    examples on which each statement holds, and every image's saliency / GBP ratio."""
    details, metrics, methods, maps = data.details, data.metrics, data.texts("methods"), data.tensor("maps")
    shown, categories = details["shown"], details["categories"]
    picture, adversarial = data.tensor("pictures")
    plt = pyplot()
    figure = plt.figure(figsize=(17, 7.6), layout="constrained")
    grid = figure.add_gridspec(2, 6, width_ratios=[1, 1, 1, 1, 1.6, 1.6])
    rows = [
        (picture, f"'{shown['image']}' (for the paper's panda)\n{shown['original']} {class_name(shown['original'])}"),
        (adversarial, f"FGSM {shown['step_255']:g}/255: {shown['adversarial']}\n{class_name(shown['adversarial'])}"),
    ]
    for row, (pixels, label) in enumerate(rows):
        axis = figure.add_subplot(grid[row, 0])
        axis.imshow(pixels.permute(1, 2, 0).clamp(0, 1).numpy())
        axis.set_xticks([]), axis.set_yticks([])
        axis.set_ylabel(label, fontsize=9)
        for column, method in enumerate(methods, start=1):
            axis = figure.add_subplot(grid[row, column])
            axis.imshow(to_display(maps[column - 1, row]))
            axis.set_xticks([]), axis.set_yticks([])
            if row == 0:
                axis.set_title(METHOD_LABELS[method], fontsize=10)
            else:
                entry = next(item for item in details["per_image"]["smallest"] if item["image"] == shown["image"])
                axis.set_xlabel(f"class distance to the original's map\n{entry['distance'][method]:.3f}", fontsize=8)

    labels = [
        ("smallest flipping\nstep per image" if key == "smallest" else f"{key.replace('p', '.')}/255")
        + f"\n({int(metrics[f'adversarial_examples_at_{key}'])} flipped)"
        for key in categories
    ]
    axis = figure.add_subplot(grid[:, 4])
    width = 0.8 / len(STATEMENTS)
    for number, (statement, words) in enumerate(STATEMENTS.items()):
        values = [metrics[f"{statement}_fraction_at_{key}"] for key in categories]
        positions = np.arange(len(categories)) + (number - (len(STATEMENTS) - 1) / 2) * width
        bars = axis.bar(positions, np.nan_to_num(values), width, label=words)
        axis.bar_label(bars, labels=[f"{value:.2f}" for value in values], fontsize=6, padding=1, rotation=90)
    axis.axhline(0.5, color="black", linestyle="--", linewidth=1, label="claims: at least half")
    axis.set_xticks(range(len(categories)), labels, fontsize=8)
    axis.set_ylim(0, 1.6)
    axis.set_yticks([0, 0.25, 0.5, 0.75, 1.0])
    axis.set_ylabel("fraction of the adversarial examples", fontsize=9)
    axis.set_title("per declared FGSM step", fontsize=10)
    axis.legend(fontsize=7, loc="upper right")

    axis = figure.add_subplot(grid[:, 5])
    shown_ratios = [1.0, 3.0]  # the y range: the threshold, 1 and every finite ratio
    for number, key in enumerate(categories):
        for entry in details["per_image"][key]:
            if not entry["flipped"]:
                continue
            value = ratio(entry["distance"]["saliency"], entry["distance"]["gbp"])
            colour = f"C{_image_colour(details, entry)}"
            if math.isfinite(value) and value > 0:
                shown_ratios.append(value)
            axis.scatter(number, value if math.isfinite(value) else 1e-2, s=18, color=colour)
            if number == 0:
                axis.annotate(entry["image"], (number, value), fontsize=6, xytext=(4, 0), textcoords="offset points")
    axis.axhline(3.0, color="black", linestyle="--", linewidth=1, label="3x")
    axis.set_yscale("log")
    low, high = min(shown_ratios) / 1.3, max(shown_ratios) * 1.3
    ticks = [tick for tick in (0.1, 0.2, 0.5, 1, 2, 3, 5, 10, 20, 50, 100) if low <= tick <= high]
    axis.set_yticks(ticks, [f"{tick:g}" for tick in ticks])
    axis.minorticks_off()
    axis.set_ylim(low, high)
    axis.set_xticks(range(len(categories)), [label.split("\n(")[0] for label in labels], fontsize=8)
    axis.set_ylabel("saliency's class distance / GBP's (each adversarial example)", fontsize=9)
    axis.set_title("each image", fontsize=10)
    axis.legend(fontsize=7)
    title = figure_title(
        f"Figure 8: FGSM adversarial examples of the {len(details['original_classes'])} bundled photos; "
        f"'{shown['image']}' takes the place of the paper's 'panda' (classified 'busby' after the attack); maps for "
        "each image's max logit",
        data.model,
        data.weights,
    )
    save_figure(figure, path, title, CLIP_99)


def _step_words(key: str) -> str:
    return "each image's smallest flipping step" if key == "smallest" else f"{key.replace('p', '.')}/255"


def _image_colour(details: Mapping[str, Any], entry: Mapping[str, Any]) -> int:
    """A fixed colour per image across the steps."""
    return list(details["original_classes"]).index(entry["image"]) % 10


FULL: dict[str, Any] = {
    "image": "tabby",
    "images": tuple(sample_names()),
    "ladder": (0.25, 0.5, 1, 2, 4, 8),
    "fixed": (1, 2, 4),
    "size": None,
}
"""Every bundled photo; the smallest flipping step from 0.25/255 to 8/255 by doubling, and 1, 2 and 4/255; the
trained network's own input size."""

EXPERIMENT = Experiment(
    name="fig8",
    title="FGSM adversarial examples: saliency changes with the prediction, DeconvNet and GBP barely",
    full=FULL,
    quick=FULL,
    tiny={**FULL, "images": ("tabby", "coffee"), "ladder": (0.25, 0.5, 1, 2, 4), "size": 96},
    catches=("plain-gradient", "zero-gbp", "zero-deconvnet", "zero-saliency"),
    claims=(
        Claim(
            "every_image_flips",
            "a step of the ladder changes the prediction of every image (the attack's premise)",
            "flipped_fraction_at_smallest",
            ">=",
            1.0,
        ),
        Claim(
            "gbp_unchanged_at_smallest",
            "at each image's smallest flipping step, GBP's map stays close (class distance below sqrt(2) / 3) on "
            "at least half of the adversarial examples",
            "gbp_unchanged_fraction_at_smallest",
            ">=",
            0.5,
        ),
        *(
            Claim(
                f"saliency_3x_{other}_at_{key}",
                f"at {_step_words(key)}, saliency's map changes at least 3x as much as {METHOD_LABELS[other]}'s "
                "on at least half of the adversarial examples",
                f"saliency_3x_{other}_fraction_at_{key}",
                ">=",
                0.5,
            )
            for key in ("smallest", *(step_key(float(step)) for step in FULL["fixed"]))
            for other in ("gbp", "deconvnet")
        ),
    ),
    measure=measure,
    draw=draw,
)
