"""The audit's page: one self-contained ``DIR/index.html`` (figures embedded as PNG).

The verdicts first (a table: methods x verdicts), then each method's criteria with
their thresholds and values (the report's claims table), then the figures with what
they show, written from the typed record (:class:`~backpropvis.audit.record.AuditRecord`).
It shows the verdicts of :mod:`~backpropvis.audit.verdicts`; it decides nothing.
"""

from __future__ import annotations

import html
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from ..core.files import write_text
from ..core.rules import METHOD_LABELS
from ..report.page import INDEX_FILE, PAGE_STYLE, claims_table, embedded_png, format_value
from .record import AuditRecord
from .verdicts import VERDICTS, MethodVerdicts

__all__ = ["write_page"]

_STYLE = (
    PAGE_STYLE
    + """
td.yes { background: #c8efc8; color: #0a5a0a; font-weight: bold; }
td.no { background: #f7c6c6; color: #8a0b0b; font-weight: bold; }
td.none { background: #f3ead2; color: #8a5a00; font-style: italic; }
figure { margin: 1em 0 2em; } figcaption { font-size: .9em; color: #444; margin-top: .3em; }
"""
)


def _setting(value: Any) -> str:
    return (
        ", ".join(f"{item:g}" if isinstance(item, float) else str(item) for item in value)
        if isinstance(value, list)
        else str(value)
    )


def _cell(value: Optional[bool]) -> str:
    if value is None:
        return "<td class='none'>not measured</td>"
    return f"<td class='{'yes' if value else 'no'}'>{'yes' if value else 'no'}</td>"


def _verdict_table(verdicts: Mapping[str, MethodVerdicts]) -> str:
    header = "".join(f"<th>{html.escape(verdict.yes)}?</th>" for verdict in VERDICTS)
    rows = "".join(
        f"<tr><td><b>{html.escape(METHOD_LABELS.get(method, method))}</b></td>"
        + "".join(_cell(entry.holds(verdict.name)) for verdict in VERDICTS)
        + f"<td>{html.escape(entry.summary)}</td></tr>"
        for method, entry in verdicts.items()
    )
    return (
        f"<table class='verdicts'><thead><tr><th>method</th>{header}<th>in words</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
    )


def _criteria(method: str, entry: MethodVerdicts) -> str:
    claims = [
        {**asdict(claim), "id": f"{verdict.name}: {claim.id}"}
        for verdict in VERDICTS
        for claim in entry.criteria[verdict.name].claims
    ]
    skipped = [
        f"{verdict.name}: {entry.criteria[verdict.name].says}"
        for verdict in VERDICTS
        if entry.criteria[verdict.name].holds is None
    ]
    notes = "".join(f"<p class='note'>{html.escape(line)}</p>" for line in skipped)
    label = html.escape(METHOD_LABELS.get(method, method))
    return f"<h3>{label}</h3>{claims_table(claims)}{notes}"


def _numbers_table(verdicts: Mapping[str, MethodVerdicts]) -> str:
    methods = list(verdicts)
    names = list(dict.fromkeys(name for entry in verdicts.values() for name in entry.numbers))
    header = "".join(f"<th>{html.escape(METHOD_LABELS.get(method, method))}</th>" for method in methods)
    rows = "".join(
        f"<tr><td><code>{html.escape(name)}</code></td>"
        + "".join(
            f"<td class='num'>{format_value(_measured(verdicts[method].numbers.get(name)))}</td>" for method in methods
        )
        + "</tr>"
        for name in names
    )
    return (
        f"<details><summary>every number behind the verdicts</summary><table class='values'><thead><tr>"
        f"<th>number</th>{header}</tr></thead><tbody>{rows}</tbody></table></details>"
    )


def _measured(value: Optional[float]) -> Optional[float]:
    """A number as ``audit.json`` gives it: NaN (not measured) as None."""
    return None if value is None or math.isnan(value) else float(value)


def write_page(record: AuditRecord, figures: Sequence[tuple[Path, str]], folder: Path) -> Path:
    """Write ``folder/index.html`` from ``record`` (what ``audit.json`` is written from) and the
    figures (PNG path, caption), each embedded; returns the page's path."""
    assert record.class_distance is not None
    model, settings, verdicts = record.model, record.settings, record.verdicts()
    title = f"backpropvis audit: {model['title']}"
    meta = [
        f"model <b>{html.escape(model['title'])}</b> ({html.escape(model['source'])}), weights fingerprint "
        f"<code>{html.escape(model['fingerprint'][:19])}...</code>",
        f"preprocessing: {html.escape(model['preprocessing'])}",
        html.escape(model.get("smooth_activations", {}).get("said", "smooth activations: refused")),
        f"images: {html.escape(record.class_distance.images.described)}",
        "settings: "
        + "; ".join(f"{html.escape(str(key))} {html.escape(_setting(value))}" for key, value in settings.items()),
        "seconds: " + ", ".join(f"{html.escape(step)} {seconds:.1f}" for step, seconds in record.seconds.items()),
    ]
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        "<p>The diagnostics of Nie, Zhang &amp; Patel (ICML 2018) on this model: does each method's map change "
        "with the class (Figure 7), show the image, change when the model's top layers are redrawn at random "
        "(Figure 9; Adebayo et al. 2018), and change with an adversarial prediction (Figure 8)? Saliency, the "
        "true gradient, is the reference.</p>",
        "".join(f"<p class='meta'>{line}</p>" for line in meta),
        "".join(f"<p class='note'>{html.escape(note)}</p>" for note in record.notes),
        "<h2>Verdicts</h2>",
        _verdict_table(verdicts),
        "<h2>Criteria, thresholds and values</h2>",
        "".join(_criteria(method, entry) for method, entry in verdicts.items()),
        _numbers_table(verdicts),
        "<h2>Figures</h2>",
    ]
    for path, caption in figures:
        if path.is_file():
            parts.append(
                f"<figure>{embedded_png(path, caption)}<figcaption>{html.escape(caption)}</figcaption></figure>"
            )
    parts.append("</body></html>")
    return write_text("".join(parts), folder / INDEX_FILE)
