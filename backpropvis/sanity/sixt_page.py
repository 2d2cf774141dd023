"""sixt2020's figure and page section: the SSIM over the cascading randomisation and the
cosine similarity convergence over depth, side by side (the two measures of Sixt et al.'s
Figures 3 and 5), each method with its controls, then the map grid and the tables."""

from __future__ import annotations

import math
import os
from typing import Any, Union

import numpy as np

from ..render import pyplot
from .figures import method_label
from .protocol import SanityResult, StepResult
from .tables import figure_section, method_table, save_with_maps

__all__ = ["draw_sixt", "draw_sixt_curves", "sixt_section"]

_COLOURS = ("tab:red", "tab:blue", "tab:green", "tab:purple", "tab:orange")
_PANELS = (("cascading", "ssim", "SSIM with the trained model's map"), ("csc", "csc", "median |cos| of the signals"))


def _means(steps: list[StepResult], method: str, metric: str, control: str = "") -> list[float]:
    values = []
    for step in steps:
        source = step.controls.get(method, {}).get(control, {}) if control else step.methods.get(method, {})
        values.append(source[metric].mean if metric in source else math.nan)
    return values


def draw_sixt_curves(result: SanityResult, into: Any = None) -> Any:
    """Two panels: per cascading step the SSIM (controls: edge map dotted, random map grey),
    and per layer from the logits down the CSC (control: Gaussian signals, grey); in a new
    figure or ``into`` (a figure or subfigure)."""
    figure = pyplot().figure(figsize=(11, 4)) if into is None else into
    axes = figure.subplots(1, 2)
    for axis, (series, metric, title) in zip(axes, _PANELS):
        steps = result.series(series)
        x = np.arange(len(steps))
        control = "random map" if series == "cascading" else "random vectors"
        for colour, method in zip(_COLOURS, result.methods):
            label = method_label(method)
            summaries = [step.methods[method][metric] for step in steps if metric in step.methods.get(method, {})]
            if len(summaries) != len(steps):
                continue
            axis.plot(x, [s.mean for s in summaries], "o-", color=colour, label=label, markersize=3)
            axis.fill_between(x, [s.low for s in summaries], [s.high for s in summaries], color=colour, alpha=0.15)
            if series == "cascading":
                axis.plot(x, _means(steps, method, metric, "edge map"), ":", color=colour, label=f"{label} vs edges")
        noise = np.nanmean([_means(steps, method, metric, control) for method in result.methods], axis=0)
        axis.plot(x, noise, "-.", color="grey", label=control)
        axis.set_xticks(x)
        axis.set_xticklabels([step.label for step in steps], rotation=70, ha="right", fontsize=6)
        axis.set_ylim(-0.05, 1.05)
        axis.set_title(f"{series}: {title}", fontsize=9)
        axis.legend(fontsize=7)
    return figure


def draw_sixt(result: SanityResult, path: Union[str, os.PathLike]) -> None:
    """The curves (``path``) and the map grid beside it (``<stem>-maps.png``)."""
    save_with_maps(draw_sixt_curves(result), result, path)


def sixt_section(result: SanityResult) -> str:
    """The protocol's HTML section (self-contained: figures embedded)."""
    return figure_section(
        result,
        draw_sixt_curves(result),
        "Left: each method's SSIM with its trained map as the layers are redrawn from the top (mean and 95% "
        "bootstrap band; dotted: against the input's edge map; grey: against a random map). Right: the median "
        "|cos| between backward signals started from different vectors at the logits, per layer from the top "
        "down (grey: independent Gaussian signals of the layer's shape).",
        "The first image's maps at every cascading step (absolute values).",
        [method_table(result, series, metric) for series, metric, _ in _PANELS],
    )
