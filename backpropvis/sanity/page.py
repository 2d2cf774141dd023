"""A protocol's page: one self-contained ``DIR/index.html`` (figures embedded as PNG).

:func:`default_section` is the part of the page most protocols share: what was run, the
small-sample warning, the curves and the map grid, then one table per series where every
number (mean, 95% interval, image count) has its controls printed beside it.
:func:`write_page` wraps a section with the claims' verdicts.
"""

from __future__ import annotations

import html
import math
import os
import tempfile
from pathlib import Path
from typing import Iterable, Union

from ..core.files import write_text
from ..render import save_figure
from ..report.page import PAGE_STYLE, claims_table, embedded_png, receipt_notes
from .figures import draw_curves, draw_map_grid, method_label
from .protocol import SanityResult, StepResult, Summary
from .similarity import METRIC_LABELS

__all__ = ["default_section", "format_summary", "section_opening", "small_sample_lines", "write_page"]

_STYLE = (
    PAGE_STYLE
    + """
td .controls { display: block; font-size: .8em; color: #666; white-space: normal; }
td.num { white-space: normal; }
p.small { background: #fff3cd; padding: .4em .6em; border-left: 4px solid #e0a800; }
figure { margin: 1em 0 2em; } figcaption { font-size: .9em; color: #444; margin-top: .3em; }
"""
)

_SHORT = {"random map": "random", "edge map": "edges", "other seed": "other seed"}


def format_summary(summary: Summary) -> str:
    """ "0.83 [0.78, 0.88] (n=32)": a number with its interval and image count."""
    if math.isnan(summary.mean):
        return f"n/a (n={summary.count})"
    interval = "" if math.isnan(summary.low) else f" [{summary.low:.2f}, {summary.high:.2f}]"
    return f"{summary.mean:.2f}{interval} (n={summary.count})"


def small_sample_lines(result: SanityResult) -> list[str]:
    """The small-sample warning of a result (empty when every number has 20 images or more)."""
    count = result.smallest_count()
    note = Summary((), math.nan, math.nan, math.nan, count).small_sample
    return [f"Intervals {note}."] if note else []


def _cell(step: StepResult, method: str, metric: str) -> str:
    summary = step.methods.get(method, {}).get(metric)
    if summary is None:
        return "<td></td>"
    controls = step.controls.get(method, {})
    beside = " · ".join(
        f"{_SHORT.get(name, name)} {values[metric].mean:.2f}"
        for name, values in controls.items()
        if metric in values and not math.isnan(values[metric].mean)
    )
    shown = f"<span class='controls'>{html.escape(beside)}</span>" if beside else ""
    return f"<td class='num'>{html.escape(format_summary(summary))}{shown}</td>"


def _table(result: SanityResult, series: str) -> str:
    header = "".join(f"<th>{html.escape(METRIC_LABELS.get(metric, metric))}</th>" for metric in result.metrics)
    rows = []
    for step in result.series(series):
        for method in result.methods:
            redrawn = ", ".join(step.redrawn) or "nothing"
            rows.append(
                f"<tr><td title='redrawn: {html.escape(redrawn, quote=True)}'>{html.escape(step.label)}</td>"
                f"<td>{html.escape(method_label(method))}</td>"
                + "".join(_cell(step, method, metric) for metric in result.metrics)
                + "</tr>"
            )
    return (
        f"<h3>{html.escape(series)}</h3><table><thead><tr><th>step</th><th>method</th>{header}</tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _embedded(figure, name: str, alt: str) -> str:
    with tempfile.TemporaryDirectory() as folder:
        path = save_figure(figure, Path(folder) / name)
        return embedded_png(path, alt)


def section_opening(result: SanityResult) -> list[str]:
    """A section's first parts: its opening tag, what was run, the small-sample warning, the notes."""
    parts = [f"<section id='{html.escape(result.protocol, quote=True)}'>"]
    parts.append(
        f"<p>Model: {html.escape(result.model)} ({html.escape(result.weights)}); batch norm: "
        f"{html.escape(str(result.batch_norm))}; layer order: {html.escape(result.order)}.</p>"
    )
    parts += [f"<p class='small'>{html.escape(line)}</p>" for line in small_sample_lines(result)]
    parts.append(receipt_notes(result.precision_receipt))
    return parts + [f"<p>{html.escape(note)}</p>" for note in result.notes]


def default_section(result: SanityResult) -> str:
    """The protocol's HTML section (see the module's docstring); figures embedded."""
    parts = section_opening(result)
    parts.append(
        "<figure>"
        + _embedded(draw_curves(result), "curves.png", f"{result.protocol} curves")
        + "<figcaption>Each method's similarity to its reference map per step (mean and 95% bootstrap band); "
        "beside it, the same metric against the input's edge map (dotted), between two seeds of the redraw "
        "(crosses) and against a random map (grey).</figcaption></figure>"
    )
    if "maps" in result.arrays and "image" in result.arrays:
        parts.append(
            "<figure>"
            + _embedded(draw_map_grid(result), "maps.png", f"{result.protocol} maps")
            + "<figcaption>The first image's maps at every step (absolute values, 99th-percentile "
            "grayscale, as the paper shows them).</figcaption></figure>"
        )
    parts.append(
        "<p>Each cell: mean [95% bootstrap interval] (image count); below it, the controls' values for the "
        "same metric (random map, edge map, another seed of the redraw).</p>"
    )
    parts += [_table(result, series) for series in result.series_names()]
    parts.append("</section>")
    return "".join(parts)


def write_page(
    result: SanityResult, title: str, section: str, claims: Iterable[dict], path: Union[str, os.PathLike]
) -> Path:
    """Write the protocol's page: the title, the claims' verdicts, the section."""
    claim_html = claims_table(list(claims))
    body = f"<h1>{html.escape(title)}</h1>" + (f"<h2>Claims</h2>{claim_html}" if claim_html else "") + section
    page = (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(result.protocol)}</title><style>{_STYLE}</style></head><body>{body}</body></html>"
    )
    return write_text(page, path)


def format_result(result: SanityResult) -> str:
    """A plain-text table of every number with its controls, and the small-sample warning:
    what the command prints."""
    lines = [f"{result.protocol}: {result.model}"]
    lines += small_sample_lines(result)
    controls = [name for name in _SHORT if any(name in c for step in result.steps for c in step.controls.values())]
    for series in result.series_names():
        lines.append(f"\n{series}")
        for step in result.series(series):
            for method in result.methods:
                if method not in step.methods:
                    continue
                for metric in (name for name in result.metrics if name in step.methods[method]):
                    beside = [
                        f"{_SHORT[name]} {step.controls[method][name][metric].mean:+.2f}"
                        for name in controls
                        if name in step.controls.get(method, {}) and metric in step.controls[method][name]
                    ]
                    lines.append(
                        f"  {step.label:<22} {method_label(method):<11} "
                        f"{METRIC_LABELS.get(metric, metric):<18} {format_summary(step.methods[method][metric]):<28}"
                        + ("  controls: " + ", ".join(beside) if beside else "")
                    )
    return "\n".join(lines)
