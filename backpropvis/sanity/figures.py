"""A protocol's figures, drawn from its :class:`~.protocol.SanityResult` alone.

- :func:`draw_curves`: one row per series, one column per metric; each method's mean over
  the steps with its 95% band, and beside it its controls: the edge map (dotted, the
  method's colour), another seed of the redraw (crosses) and a random map (grey dash-dot),
  as in Adebayo et al.'s Figures 2-4 with the controls added.
- :func:`draw_map_grid`: the first image's maps, one row per method, one column per step
  (abs-value grayscale, as the papers show them).
- :func:`draw_protocol`: both in one PNG (the report's figure).
"""

from __future__ import annotations

import math
import os
from typing import Union

import numpy as np
import torch

from ..core.rules import METHOD_LABELS
from ..render import figure_title, pyplot, save_figure
from .protocol import SanityResult, StepResult
from .similarity import METRIC_LABELS, abs_grayscale

__all__ = ["draw_curves", "draw_map_grid", "draw_protocol"]

_COLOURS = ("tab:red", "tab:blue", "tab:green", "tab:purple", "tab:orange", "tab:brown", "tab:olive")


def _control_mean(steps: list[StepResult], method: str, control: str, metric: str) -> list[float]:
    return [
        step.controls.get(method, {}).get(control, {}).get(metric).mean  # type: ignore[union-attr]
        if metric in step.controls.get(method, {}).get(control, {})
        else math.nan
        for step in steps
    ]


def _panel(axis, result: SanityResult, steps: list[StepResult], metric: str) -> None:
    x = np.arange(len(steps))
    for colour, method in zip(_COLOURS, result.methods):
        summaries = [step.methods[method][metric] for step in steps if method in step.methods]
        if len(summaries) != len(steps):
            continue
        label = METHOD_LABELS.get(method, method)
        axis.plot(x, [s.mean for s in summaries], "o-", color=colour, label=label)
        axis.fill_between(x, [s.low for s in summaries], [s.high for s in summaries], color=colour, alpha=0.15)
        axis.plot(x, _control_mean(steps, method, "edge map", metric), ":", color=colour, label=f"{label} vs edges")
        axis.plot(x, _control_mean(steps, method, "other seed", metric), "x", color=colour, label=f"{label} 2 seeds")
    noise = np.nanmean([_control_mean(steps, method, "random map", metric) for method in result.methods], axis=0)
    axis.plot(x, noise, "-.", color="grey", label="vs random map")
    axis.axhline(0.0, color="black", linewidth=0.5)
    axis.set_xticks(x)
    axis.set_xticklabels([step.label for step in steps], rotation=60, ha="right", fontsize=7)
    axis.set_ylim(-0.3, 1.05)
    axis.set_title(METRIC_LABELS.get(metric, metric), fontsize=9)


def draw_curves(result: SanityResult) -> object:
    """A matplotlib figure: series x metrics panels (see the module's docstring)."""
    plt = pyplot()
    series = result.series_names()
    figure, axes = plt.subplots(
        len(series), len(result.metrics), figsize=(3.2 * len(result.metrics), 3.2 * len(series)), squeeze=False
    )
    for row, name in enumerate(series):
        for column, metric in enumerate(result.metrics):
            _panel(axes[row][column], result, result.series(name), metric)
        axes[row][0].set_ylabel(f"{name}\nsimilarity to reference", fontsize=9)
    handles, labels = axes[0][0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=min(len(labels), 5), fontsize=7)
    figure.subplots_adjust(bottom=0.2)
    return figure


def draw_map_grid(result: SanityResult) -> object:
    """A matplotlib figure of the first image's maps (rows: methods; columns: steps)."""
    plt = pyplot()
    maps = torch.as_tensor(np.asarray(result.arrays["maps"]))  # [S, M, C, H, W]
    steps, methods = maps.shape[:2]
    figure, axes = plt.subplots(methods, steps + 1, figsize=(1.3 * (steps + 1), 1.4 * methods), squeeze=False)
    image = torch.as_tensor(np.asarray(result.arrays["image"]))
    shown = (image - image.min()) / (image.max() - image.min()).clamp_min(1e-12)
    for row, method in enumerate(result.methods):
        axes[row][0].imshow(shown.permute(1, 2, 0).numpy())
        axes[row][0].set_ylabel(METHOD_LABELS.get(method, method), fontsize=8)
        grey = abs_grayscale(maps[:, row])  # [S, H, W]
        for column in range(steps):
            axes[row][column + 1].imshow(grey[column].numpy(), cmap="gray", vmin=0, vmax=1)
            if row == 0:
                axes[row][column + 1].set_title(result.steps[column].label, fontsize=6, rotation=30)
    for axis in axes.flat:
        axis.set_xticks([])
        axis.set_yticks([])
    return figure


def draw_protocol(result: SanityResult, path: Union[str, os.PathLike]) -> None:
    """The curves (top) and the map grid (a second PNG beside it: ``<path stem>-maps.png``)."""
    title = figure_title(result.protocol, result.model, result.weights)
    save_figure(draw_curves(result), path, title)
    if "maps" in result.arrays:
        maps_path = os.fspath(path)
        maps_path = maps_path[:-4] + "-maps.png" if maps_path.endswith(".png") else maps_path + "-maps.png"
        save_figure(draw_map_grid(result), maps_path)
