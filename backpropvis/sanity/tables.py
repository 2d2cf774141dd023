"""A protocol page's shared pieces beyond :mod:`.page`: a figure embedded as PNG data, one
table per series with a column per method (each cell: the summary and its controls), a
section of one figure, the map grid and tables, and a protocol's report figure written with
its map grid beside it (kindermans2017 and sixt2020 draw their own figures; the others use
:func:`~.page.default_section`)."""

from __future__ import annotations

import html
import math
import os
import tempfile
from pathlib import Path
from typing import Union

from ..render import figure_title, save_figure
from ..report.page import embedded_png
from .figures import draw_map_grid, method_label
from .page import format_summary, section_opening
from .protocol import SanityResult

__all__ = ["embedded_figure", "figure_section", "method_table", "save_with_maps"]


def embedded_figure(figure: object, name: str, alt: str) -> str:
    """An ``<img>`` holding ``figure`` (a matplotlib figure, closed) as PNG data."""
    with tempfile.TemporaryDirectory() as folder:
        return embedded_png(save_figure(figure, Path(folder) / name), alt)


def method_table(result: SanityResult, series: str, metric: str) -> str:
    """The steps of ``series`` as rows, the methods as columns: ``metric``'s summary and its controls."""
    rows = []
    for step in result.series(series):
        cells = []
        for method in result.methods:
            summary = step.methods.get(method, {}).get(metric)
            controls = " · ".join(
                f"{name} {values[metric].mean:.2f}"
                for name, values in step.controls.get(method, {}).items()
                if metric in values and not math.isnan(values[metric].mean)
            )
            shown = f"<span class='controls'>{html.escape(controls)}</span>" if controls else ""
            text = format_summary(summary) if summary is not None else ""
            cells.append(f"<td class='num'>{html.escape(text)}{shown}</td>")
        redrawn = html.escape(", ".join(step.redrawn) or "nothing", quote=True)
        rows.append(f"<tr><td title='redrawn: {redrawn}'>{html.escape(step.label)}</td>{''.join(cells)}</tr>")
    header = "".join(f"<th>{html.escape(method_label(m))}</th>" for m in result.methods)
    return (
        f"<h3>{html.escape(series)} ({html.escape(metric)})</h3><table><thead><tr><th>step</th>{header}</tr>"
        f"</thead><tbody>{''.join(rows)}</tbody></table>"
    )


def save_with_maps(figure: object, result: SanityResult, path: Union[str, os.PathLike]) -> None:
    """``figure`` at ``path`` (titled with the model) and the map grid beside it (``<stem>-maps.png``)."""
    save_figure(figure, path, figure_title(result.protocol, result.model, result.weights))
    maps_path = os.fspath(path)
    maps_path = maps_path[:-4] + "-maps.png" if maps_path.endswith(".png") else maps_path + "-maps.png"
    save_figure(draw_map_grid(result), maps_path)


def figure_section(result: SanityResult, figure: object, caption: str, maps_caption: str, tables: list[str]) -> str:
    """A protocol's HTML section: what was run and the notes, ``figure`` with ``caption``, the
    map grid (when the result has maps), then ``tables``."""
    name = html.escape(result.protocol)
    parts = section_opening(result)
    parts.append(
        f"<figure>{embedded_figure(figure, 'figure.png', f'{name} figure')}"
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )
    if "maps" in result.arrays and "image" in result.arrays:
        parts.append(
            f"<figure>{embedded_figure(draw_map_grid(result), 'maps.png', f'{name} maps')}"
            f"<figcaption>{html.escape(maps_caption)}</figcaption></figure>"
        )
    parts.append("<p>Each cell: mean [95% bootstrap interval] (image count); below it, the controls.</p>")
    return "".join([*parts, *tables, "</section>"])
