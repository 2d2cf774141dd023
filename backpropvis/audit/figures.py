"""The audit's figures, each drawn from a step's kept numbers and arrays alone (no model).

- :func:`draw_maps`: each method's maps of the few images for the database's two logits;
- :func:`draw_randomization`: each method's change as stages are redrawn from the top
  down (mean and every image), and the first image's maps along the way;
- :func:`draw_adversarial`: each method's change against the FGSM step, and the maps
  of an image and its adversarial example.

The class distance chart is :func:`backpropvis.stats.plot_summary` (the Figure 7 bars).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from ..core.metrics import class_distance
from ..core.rules import METHOD_LABELS
from ..render import CLIP_99, Picture, pyplot, save_figure, save_grid, to_display
from .saved import StepData

__all__ = ["draw_maps", "draw_randomization", "draw_adversarial"]


def _label(method: str) -> str:
    return METHOD_LABELS.get(method, method)


def draw_maps(
    step: StepData, pixels: torch.Tensor, keys: Sequence[str], methods: Sequence[str], path: Path, title: str
) -> Path:
    """Rows: each image for its first logit, then its second; columns: the image, then each
    method's map (the paper's min-max display), captioned with the class distance of the two."""
    maps = step.tensor("maps")  # [M, 2, B, C, H, W]
    names = step.numbers["target_names"]
    rows: list[list[Optional[Picture]]] = []
    row_labels, captions = [], []
    for image, key in enumerate(keys):
        for logit in range(2):
            rows.append(
                [pixels[image] if logit == 0 else None]
                + [to_display(maps[number, logit, image]) for number in range(len(methods))]
            )
            row_labels.append(f"{key}\nlogit {step.numbers['targets'][logit][image]}: {names[logit][image]}"[:60])
            if logit == 0:
                captions.append([""] * (1 + len(methods)))
            else:
                distances = [
                    float(class_distance(maps[number, 0, image], maps[number, 1, image]))
                    for number in range(len(methods))
                ]
                captions.append([""] + [f"class distance {value:.3f}" for value in distances])
    return save_grid(
        rows,
        path,
        row_labels=row_labels,
        column_labels=["image"] + [_label(m) for m in methods],
        panel_labels=captions,
        title=title,
        panel_size=1.9,
        display=CLIP_99,
    )


def draw_randomization(step: StepData, methods: Sequence[str], path: Path, maps_path: Path, title: str) -> None:
    """The change of each method's map (class distance to the trained map, mean over the
    images and each image) as the stages are redrawn from the top down; and a grid of the
    first image's maps (rows: methods; columns: trained, then each partly random network)."""
    numbers = step.numbers
    stages = numbers["stages"]
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(7.5, 4.2))
    positions = np.arange(len(stages))
    for method in methods:
        values = np.array(numbers["distance"][method])  # [S, B]
        line = axis.plot(positions, values.mean(axis=1), marker="o", label=_label(method))[0]
        for image in range(values.shape[1]):
            axis.plot(positions, values[:, image], color=line.get_color(), alpha=0.25, linewidth=0.8)
    axis.set_xticks(
        positions, [f"{label}\nand above" if number else f"{label}" for number, label in enumerate(stages)], fontsize=8
    )
    axis.set_xlabel("redrawn at random, from the top down", fontsize=9)
    axis.set_ylabel("class distance to the trained model's map", fontsize=9)
    axis.set_ylim(0, 2)
    axis.axhline(np.sqrt(2), color="0.7", linestyle=":", linewidth=1)
    axis.legend(fontsize=8)
    save_figure(figure, path, title)
    maps = step.tensor("maps")  # [1 + S, M, C, H, W]
    similarity = numbers["input_similarity"]
    rows = [[to_display(maps[column, number]) for column in range(maps.shape[0])] for number in range(len(methods))]
    captions = [
        [f"input sim. {numbers['trained_input_similarity'][method][0]:+.2f}"]
        + [
            f"dist. {numbers['distance'][method][stage][0]:.2f}, sim. {similarity[method][stage][0]:+.2f}"
            for stage in range(len(stages))
        ]
        for method in methods
    ]
    save_grid(
        rows,
        maps_path,
        row_labels=[_label(method) for method in methods],
        column_labels=["trained"] + [f"{label} and above" if number else label for number, label in enumerate(stages)],
        panel_labels=captions,
        title=f"{title}\nthe first image, for the trained model's predicted class ({numbers['predicted_names'][0]})",
        panel_size=1.9,
        display=CLIP_99,
    )


def draw_adversarial(step: StepData, methods: Sequence[str], path: Path, title: str) -> Path:
    """Left: an image and its adversarial example with each method's maps; right: each
    method's change (mean over the images, and each image) against the FGSM step."""
    numbers = step.numbers
    steps, shown = numbers["steps"], numbers["shown"]
    pictures, maps = step.tensor("pictures"), step.tensor("maps")  # [2, 3, H, W], [M, 2, C, H, W]
    image, at = shown["image"], shown["step"]
    plt = pyplot()
    figure = plt.figure(figsize=(3.0 * (len(methods) + 1) + 5.5, 5.6))
    grid = figure.add_gridspec(2, len(methods) + 2, width_ratios=[1] * (len(methods) + 1) + [2.2])
    labels = [
        f"original: {numbers['original_names'][image]}"[:40],
        f"FGSM {steps[at]:g}/255: {numbers['predicted_names'][at][image]}"[:40],
    ]
    for row in range(2):
        axis = figure.add_subplot(grid[row, 0])
        axis.imshow(pictures[row].permute(1, 2, 0).clamp(0, 1).numpy())
        axis.set_xticks([]), axis.set_yticks([])
        axis.set_ylabel(labels[row], fontsize=8)
        for column, method in enumerate(methods, start=1):
            axis = figure.add_subplot(grid[row, column])
            axis.imshow(to_display(maps[column - 1, row]))
            axis.set_xticks([]), axis.set_yticks([])
            if row == 0:
                axis.set_title(_label(method), fontsize=9)
            else:
                axis.set_xlabel(f"distance {numbers['distance'][method][at][image]:.3f}", fontsize=8)
    axis = figure.add_subplot(grid[:, -1])
    flipped = np.array(numbers["predicted"]) != np.array(numbers["original"])[None, :]  # [S, B]
    for method in methods:
        values = np.array(numbers["distance"][method])  # [S, B]
        line = axis.plot(steps, values.mean(axis=1), marker="o", label=_label(method))[0]
        for index in range(values.shape[1]):
            axis.plot(steps, values[:, index], color=line.get_color(), alpha=0.25, linewidth=0.8)
    for number, step_value in enumerate(steps):
        axis.annotate(f"{int(flipped[number].sum())}/{flipped.shape[1]}", (step_value, 1.9), fontsize=7, ha="center")
    axis.set_xscale("log", base=2)
    axis.set_xticks(steps, [f"{value:g}" for value in steps])
    axis.set_xlabel("FGSM step (x 1/255); top: images whose prediction changed", fontsize=8)
    axis.set_ylabel("class distance, original vs adversarial map", fontsize=8)
    axis.set_ylim(0, 2)
    axis.legend(fontsize=8)
    return save_figure(figure, path, title, CLIP_99)
