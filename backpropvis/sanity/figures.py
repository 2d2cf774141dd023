"""A protocol's figures, drawn from its :class:`~.protocol.SanityResult` alone.

- :func:`draw_curves`: one row per series, one column per metric; each method's mean over
  the steps with its 95% band, and beside it its controls: the edge map (dotted, the
  method's colour), another seed of the redraw (crosses) and a random map (grey dash-dot),
  as in Adebayo et al.'s Figures 2-4 with the controls added.
- :func:`draw_map_grid`: the first image's maps, one row per method, one column per step
  (abs-value grayscale, as the papers show them).
- :func:`draw_protocol`: both, as two PNGs (the report's figure).
- :func:`draw_with_maps`: a protocol's figure above its map grid, in one PNG (the README's).

Each drawing function draws into a new figure, or into ``into`` (a matplotlib figure or
subfigure) when given, so that one PNG can hold several of them.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np
import torch

from ..core.rules import METHOD_LABELS
from ..render import figure_title, pyplot, save_figure
from .protocol import SanityResult, StepResult
from .similarity import METRIC_LABELS, abs_grayscale

__all__ = ["draw_curves", "draw_map_grid", "draw_protocol", "draw_with_maps", "series_positions"]

_COLOURS = ("tab:red", "tab:blue", "tab:green", "tab:purple", "tab:orange", "tab:brown", "tab:olive")


_PROTOCOL_METHOD_LABELS = {"gradient_x_input": "Gradient x Input"}
"""Labels of the methods a protocol adds beside the engine's rules (Kindermans's gradient x input)."""


def method_label(method: str) -> str:
    """How a figure names a method: the rule's label ("GBP"), a protocol's own method's, else its name."""
    return METHOD_LABELS.get(method, _PROTOCOL_METHOD_LABELS.get(method, method))


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
        label = method_label(method)
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


def draw_curves(
    result: SanityResult,
    series: Optional[Sequence[str]] = None,
    metrics: Optional[Sequence[str]] = None,
    into: Any = None,
) -> Any:
    """A matplotlib figure: series x metrics panels (see the module's docstring).

    Args:
        result: the protocol's result.
        series, metrics: the rows and the columns drawn (default: every series, every metric).
        into: a figure or subfigure to draw into (default: a new figure).
    """
    rows = list(series) if series is not None else result.series_names()
    columns = list(metrics) if metrics is not None else list(result.metrics)
    size = (3.2 * len(columns), 3.2 * len(rows))
    figure = pyplot().figure(figsize=size) if into is None else into
    axes = figure.subplots(len(rows), len(columns), squeeze=False)
    for row, name in enumerate(rows):
        for column, metric in enumerate(columns):
            _panel(axes[row][column], result, result.series(name), metric)
        axes[row][0].set_ylabel(f"{name}\nsimilarity to reference", fontsize=9)
    handles, labels = axes[0][0].get_legend_handles_labels()
    where = "lower center" if into is None else "outside lower center"  # "outside": a constrained layout's
    figure.legend(handles, labels, loc=where, ncol=min(len(labels), 5), fontsize=7)
    if into is None:
        figure.subplots_adjust(bottom=0.2)
    return figure


def series_positions(result: SanityResult, series: Optional[Sequence[str]] = None) -> list[int]:
    """The positions in ``result.steps`` of the steps of ``series`` (default: every step) that
    the result's map grid holds (``arrays["maps"]`` keeps the first steps' maps, in order)."""
    held = int(np.asarray(result.arrays["maps"]).shape[0])
    return [index for index, step in enumerate(result.steps[:held]) if series is None or step.series in series]


def draw_map_grid(result: SanityResult, series: Optional[Sequence[str]] = None, into: Any = None) -> Any:
    """A matplotlib figure of the first image's maps (rows: methods; columns: the steps of
    ``series``, default every step), in a new figure or ``into`` (a figure or subfigure)."""
    positions = series_positions(result, series)
    maps = torch.as_tensor(np.asarray(result.arrays["maps"]))[positions]  # [S, M, C, H, W]
    steps, methods = maps.shape[:2]
    size = (1.3 * (steps + 1), 1.4 * methods)
    figure = pyplot().figure(figsize=size) if into is None else into
    axes = figure.subplots(methods, steps + 1, squeeze=False)
    image = torch.as_tensor(np.asarray(result.arrays["image"]))
    shown = (image - image.min()) / (image.max() - image.min()).clamp_min(1e-12)
    for row, method in enumerate(result.methods):
        axes[row][0].imshow(shown.permute(1, 2, 0).numpy())
        axes[row][0].set_ylabel(method_label(method), fontsize=8)
        grey = abs_grayscale(maps[:, row])  # [S, H, W]
        for column in range(steps):
            axes[row][column + 1].imshow(grey[column].numpy(), cmap="gray", vmin=0, vmax=1)
            if row == 0:
                axes[row][column + 1].set_title(result.steps[positions[column]].label, fontsize=6, rotation=30)
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


def draw_with_maps(
    result: SanityResult,
    draw: Callable[[Any], Any],
    path: Union[str, os.PathLike],
    series: Optional[Sequence[str]] = None,
    beside: bool = False,
) -> Path:
    """One PNG: a protocol's figure (``draw(into)``, e.g. ``lambda into: draw_curves(result,
    into=into)``) above the first image's map grid of the steps of ``series`` (``beside``: to
    the grid's left), titled with the model."""
    columns, rows = len(series_positions(result, series)) + 1, len(result.methods)
    if beside:
        grid = (1.3 * columns, 1.4 * rows + 0.6)
        figure = pyplot().figure(figsize=(7.0 + grid[0], max(4.5, grid[1])), layout="constrained")
        parts = figure.subfigures(1, 2, width_ratios=[7.0, grid[0]])
    else:
        grid = (max(10.0, 1.1 * columns), 1.2 * rows)
        figure = pyplot().figure(figsize=(grid[0], 4.2 + grid[1]), layout="constrained")
        parts = figure.subfigures(2, 1, height_ratios=[4.2, grid[1]])
    draw(parts[0])
    draw_map_grid(result, series, into=parts[1])
    return save_figure(figure, path, figure_title(result.protocol, result.model, result.weights))
