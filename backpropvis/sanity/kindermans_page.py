"""kindermans2017's figure and page section: per method the largest relative change of its map
under each input shift, beside what another class's map changes by (a real change), then
the map grid and the table."""

from __future__ import annotations

import math
import os
from typing import Any, Union

import numpy as np

from ..render import pyplot
from .figures import method_label
from .protocol import SanityResult
from .tables import figure_section, method_table, save_with_maps

__all__ = ["draw_kindermans", "draw_kindermans_bars", "kindermans_section"]

METRIC = "max_rel_diff"
_COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:purple")


def _largest(values: tuple[float, ...]) -> float:
    finite = [value for value in values if not math.isnan(value)]
    return max(finite) if finite and len(finite) == len(values) else math.nan


def draw_kindermans_bars(result: SanityResult, into: Any = None) -> Any:
    """Grouped bars: per method, per shifted step the largest ``max_rel_diff`` over images
    (labelled with its value; NaN for a zero map is drawn as 'n/a'), and a grey diamond at
    the mean change between the maps of two classes; in a new figure or ``into`` (a figure
    or subfigure)."""
    figure = pyplot().figure(figsize=(10, 3.8)) if into is None else into
    axis = figure.subplots()
    steps = [step for step in result.steps if not step.label.startswith("no shift")]
    x = np.arange(len(result.methods))
    width = 0.8 / max(1, len(steps))
    for index, (colour, step) in enumerate(zip(_COLOURS, steps)):
        heights = [_largest(step.methods[method][METRIC].values) for method in result.methods]
        positions = x + (index - (len(steps) - 1) / 2) * width
        axis.bar(positions, np.nan_to_num(heights), width, color=colour, label=f"shift: {step.label}")
        for position, height in zip(positions, heights):
            axis.text(
                position,
                np.nan_to_num(height),
                "n/a" if math.isnan(height) else f"{height:.2g}",
                ha="center",
                va="bottom",
                fontsize=7,
            )
    if steps:
        controls = [steps[0].controls.get(method, {}).get("other class", {}) for method in result.methods]
        axis.plot(
            x,
            [c[METRIC].mean if METRIC in c else math.nan for c in controls],
            "D",
            color="grey",
            label="another class's map (mean)",
        )
    axis.set_xticks(x)
    axis.set_xticklabels([method_label(method) for method in result.methods], fontsize=8)
    axis.set_ylabel("max |map2 - map1| / max |map1|", fontsize=8)
    axis.set_title("kindermans2017: how far each map moves when the first layer absorbs the shift", fontsize=9)
    axis.legend(fontsize=7)
    return figure


def draw_kindermans(result: SanityResult, path: Union[str, os.PathLike]) -> None:
    """The bars (``path``) and the map grid beside it (``<stem>-maps.png``)."""
    save_with_maps(draw_kindermans_bars(result), result, path)


def kindermans_section(result: SanityResult) -> str:
    """The protocol's HTML section (self-contained: figures embedded)."""
    return figure_section(
        result,
        draw_kindermans_bars(result),
        "Per method and shift, the largest relative change of its map over the images (0: the map of (f2, x + m) "
        "equals that of (f1, x)); grey: how much the map of another class differs, a real change.",
        "The first image's maps of f2 at every shift (absolute values).",
        [method_table(result, series, METRIC) for series in result.series_names()],
    )
