"""The report: ``DIR/<experiment>/metrics.json`` and one page, ``DIR/index.html``.

The page is rebuilt from every ``metrics.json`` found under ``DIR``, so the paper's
figures (``backpropvis reproduce``) and the theory studies (``backpropvis theory``)
written to the same folder end up on one page. Its first screen: what stands in for the
paper's trained network and data (said once), then every claim that does not hold, each
linked to its figure and to the finding's explanation. Figures are the PNG files beside
the page (``<experiment>/figure.png``, linked, never inlined: the page stays small and
needs no network); beside each trained-network figure, how to read it
(:mod:`backpropvis.report.readings`). The report shows verdicts; it never decides them (that is
:meth:`backpropvis.experiments.base.Claim.evaluate`).
"""

from __future__ import annotations

import base64
import html
import json
import os
from pathlib import Path
from typing import Iterable, Optional, Sequence, Union

from ..core.files import write_json, write_text
from ..engine.receipt import PrecisionReceipt
from ..experiments.base import METRICS_FILE, ExperimentResult
from ..experiments.networks import STAND_IN_NOTE
from .readings import finding, readings_for

__all__ = [
    "receipt_notes",
    "INDEX_FILE",
    "PAGE_STYLE",
    "write_result",
    "collect_results",
    "write_index",
    "summary_table",
    "claims_table",
    "embedded_png",
    "format_value",
    "failing_claims_table",
    "shared_notes",
]

INDEX_FILE = "index.html"
"""The report's page, in the output folder."""

_GROUP_ORDER = {"paper": 0, "theory": 1, "sanity": 2}

_GROUP_HEADINGS = {
    "sanity": "Sanity protocols of the field (Adebayo et al. 2018 and others): extra experiments, "
    "not figures of the paper",
}
"""A heading shown before the first section of a group (groups without one run on)."""


def write_result(result: ExperimentResult, out: Union[str, os.PathLike]) -> Path:
    """Write ``out/<experiment>/metrics.json`` atomically; returns its path."""
    return write_json(result.to_json(), Path(out) / result.experiment / METRICS_FILE)


def collect_results(out: Union[str, os.PathLike]) -> list[dict]:
    """Every ``metrics.json`` under ``out``, paper figures first, then theory studies."""
    results = []
    for path in sorted(Path(out).glob(f"*/{METRICS_FILE}")):
        try:
            results.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, json.JSONDecodeError):
            continue  # a foreign or damaged file is left out, never fatal
    return sorted(
        results, key=lambda result: (_GROUP_ORDER.get(result.get("group"), 2), _natural(result["experiment"]))
    )


def _natural(name: str) -> tuple:
    digits = "".join(character for character in name if character.isdigit())
    return (name.rstrip("0123456789"), int(digits) if digits else 0, name)


def format_value(value) -> str:
    """A value for a page's table: a float to 4 significant digits, anything else escaped."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape(str(value))


def summary_table(results: Sequence[ExperimentResult]) -> str:
    """A plain-text table of every claim (experiment, claim, value, threshold, verdict)
    and skipped experiment, then the count of claims that hold: what the CLI prints last."""
    rows = [("experiment", "claim", "value", "threshold", "holds")]
    for result in results:
        if result.skipped:
            rows.append((result.experiment, "skipped: " + result.skipped, "", "", ""))
        for claim in result.claims:
            rows.append(
                (
                    result.experiment,
                    claim.id,
                    f"{claim.value:.4g}",
                    f"{claim.comparison} {claim.threshold:g}",
                    "yes" if claim.holds else "NO",
                )
            )
    widths = [max(len(row[column]) for row in rows if not row[1].startswith("skipped: ")) for column in range(5)]
    lines = []
    for row in rows:
        if row[1].startswith("skipped: "):
            lines.append(f"{row[0]:<{widths[0]}}  {row[1]}")
        else:
            lines.append(
                "  ".join(
                    f"{cell:<{width}}" if column < 2 else f"{cell:>{width}}"
                    for column, (cell, width) in enumerate(zip(row, widths))
                )
            )
    claims = [claim for result in results for claim in result.claims]
    lines.append(
        f"{sum(claim.holds for claim in claims)} of {len(claims)} claims hold"
        + (
            f"; {sum(bool(result.skipped) for result in results)} experiment(s) skipped"
            if any(result.skipped for result in results)
            else ""
        )
        + f"; {sum(result.seconds for result in results):.0f} s"
    )
    return "\n".join(lines)


def claims_table(claims: Iterable[dict]) -> str:
    """An HTML table of claims as :class:`~backpropvis.experiments.base.ClaimResult` dicts (id, text, metric, value,
    comparison, threshold, holds), each verdict cell green or red ("" for none)."""
    rows = []
    for claim in claims:
        verdict = "holds" if claim["holds"] else "does not hold"
        css = "pass" if claim["holds"] else "fail"
        rows.append(
            f"<tr class='{css}'><td><code>{html.escape(claim['id'])}</code></td><td>{html.escape(claim['text'])}</td>"
            f"<td><code>{html.escape(claim['metric'])}</code></td><td class='num'>{format_value(claim['value'])}</td>"
            f"<td class='num'>{html.escape(claim['comparison'])} {format_value(claim['threshold'])}</td>"
            f"<td class='verdict'>{verdict}</td></tr>"
        )
    if not rows:
        return ""
    return (
        "<table class='claims'><thead><tr><th>claim</th><th>statement</th><th>metric</th><th>value</th>"
        "<th>threshold</th><th>verdict</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
    )


def _section(result: dict, folder: Path, said_above: set[str]) -> str:
    name = html.escape(result["experiment"])
    parts = [f"<section id='{name}'><h2>{name}: {html.escape(result['title'])}</h2>"]
    if result.get("skipped"):
        parts.append(f"<p class='skipped'>Skipped: {html.escape(result['skipped'])}</p></section>")
        return "".join(parts)
    held = sum(claim["holds"] for claim in result["claims"])
    parts.append(
        f"<p class='meta'>model <b>{html.escape(result['model'])}</b>, "
        f"weights <b>{html.escape(result['weights'])}</b>, "
        + "".join(
            f"{html.escape(str(key))} {html.escape(str(value))}, "
            for key, value in result.get("run", {}).items()
            if key not in ("quick", "inputs")
        )
        + f"{result['seconds']:.1f} s; {held} of {len(result['claims'])} claims hold</p>"
    )
    for note in result.get("notes", []):
        if note not in said_above:
            parts.append(f"<p class='note'>{html.escape(note)}</p>")
    parts.append(receipt_notes(result.get("precision_receipt")))
    figure = folder / result["experiment"] / result["figure"] if result.get("figure") else None
    if figure is not None and figure.is_file():
        parts.append(_figure(result, figure.relative_to(folder)))
    parts.append(claims_table(result["claims"]))
    parts.append(_findings(result))
    settings = ", ".join(f"{html.escape(str(key))}={format_value(value)}" for key, value in result["settings"].items())
    parts.append(f"<p class='settings'><b>settings</b>: {settings}</p>")
    parts.append(_values_table(result.get("metrics", {})))
    parts.append("</section>")
    return "".join(parts)


def receipt_notes(receipt: Optional[dict]) -> str:
    """A stored precision receipt (:meth:`~backpropvis.engine.receipt.PrecisionReceipt.as_dict`) as
    the page's notes: its line, then a warning per method under the threshold; "" for None."""
    if receipt is None:
        return ""
    lines = PrecisionReceipt.from_dict(receipt).notes()
    warned = [f"<p class='note warning'>{html.escape(line)}</p>" for line in lines[1:]]
    return f"<p class='note receipt'>{html.escape(lines[0])}</p>" + "".join(warned)


def _figure(result: dict, relative: Path) -> str:
    """The figure file, linked (click: full size), with how to read it beside it."""
    name = result["experiment"]
    source = html.escape(relative.as_posix(), quote=True)
    readings = "".join(f"<p>{html.escape(text)}</p>" for text in readings_for(result))
    aside = f"<aside class='reading'><b>How to read it</b>{readings}</aside>" if readings else ""
    return (
        f"<div class='figure' id='{html.escape(name)}-figure'><a href='{source}'>"
        f"<img alt='{html.escape(name)} figure' src='{source}' loading='lazy'></a>{aside}</div>"
    )


def _findings(result: dict) -> str:
    """Why each claim that does not hold fails, where that is written down (anchors of the top table)."""
    items = []
    for claim in result["claims"]:
        if not claim["holds"]:
            text = finding(result["experiment"], claim["id"]) or "Not explained yet: a finding of this run."
            anchor = html.escape(f"finding-{result['experiment']}-{claim['id']}", quote=True)
            items.append(f"<li id='{anchor}'><code>{html.escape(claim['id'])}</code>: {html.escape(text)}</li>")
    return f"<div class='findings'><b>Findings</b><ul>{''.join(items)}</ul></div>" if items else ""


def embedded_png(path: Union[str, os.PathLike], alt: str) -> str:
    """An ``<img>`` holding the PNG file ``path`` itself (base64), so the page needs no other file."""
    encoded = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f"<img alt='{html.escape(alt, quote=True)}' src='data:image/png;base64,{encoded}'>"


def _values_table(metrics: dict) -> str:
    """Every measured value (claims' metrics and the rest, e.g. min-max variants), folded."""
    if not metrics:
        return ""
    rows = "".join(
        f"<tr><td><code>{html.escape(str(key))}</code></td><td class='num'>{format_value(value)}</td></tr>"
        for key, value in metrics.items()
    )
    return (
        f"<details><summary>all {len(metrics)} measured values</summary>"
        "<table class='values'><thead><tr><th>metric</th>"
        f"<th>value</th></tr></thead><tbody>{rows}</tbody></table></details>"
    )


def _overview_row(result: dict) -> str:
    name = html.escape(result["experiment"])
    if result.get("skipped"):
        verdict, css, model, seconds = "skipped", "skip", "-", ""
    else:
        held, total = sum(claim["holds"] for claim in result["claims"]), len(result["claims"])
        verdict, css = f"{held} / {total}", "pass" if held == total else "fail"
        model, seconds = html.escape(result["model"]), f"{result['seconds']:.1f}"
    return (
        f"<tr class='{css}'><td><a href='#{name}'>{name}</a></td><td>{html.escape(result['title'])}</td>"
        f"<td>{model}</td><td class='num'>{seconds}</td><td class='verdict'>{verdict}</td></tr>"
    )


PAGE_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; border-bottom: 1px solid #ccc; padding-bottom: .2em; }
img { max-width: 100%; border: 1px solid #ddd; }
.figure { display: flex; gap: 1em; align-items: flex-start; } .figure > a { flex: 3 1 0; }
aside.reading { flex: 1 1 0; min-width: 14em; font-size: .9em; background: #f4f7fb; border-left: 3px solid #6a8fc8;
  padding: .4em .8em; } aside.reading p { margin: .4em 0; }
.findings { font-size: .9em; } .findings li { margin: .2em 0; }
table.failing td { background: #fbe3e3; } table.failing td:last-child { white-space: nowrap; }
table { border-collapse: collapse; margin: .6em 0; width: 100%; font-size: .9em; }
th, td { border: 1px solid #ccc; padding: .25em .5em; text-align: left; vertical-align: top; }
td.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
tr.pass td.verdict { background: #c8efc8; color: #0a5a0a; font-weight: bold; }
tr.fail td.verdict { background: #f7c6c6; color: #8a0b0b; font-weight: bold; }
tr.skip td.verdict { background: #f3ead2; color: #8a5a00; font-style: italic; }
table.values { width: auto; } details { margin: .4em 0 1.2em; }
.meta, .note, .settings { font-size: .9em; } .note { color: #654; } .skipped { color: #8a5a00; font-style: italic; }
.note.warning { color: #a00; font-weight: bold; }
.summary td { text-align: right; }
"""


def _sections(results: Sequence[dict], folder: Path, shared: set[str]) -> str:
    """Every result's section, with its group's heading before the group's first one."""
    parts, shown = [], set()
    for result in results:
        group = result.get("group")
        if group in _GROUP_HEADINGS and group not in shown:
            shown.add(group)
            parts.append(f"<h1 id='group-{html.escape(str(group))}'>{html.escape(_GROUP_HEADINGS[group])}</h1>")
        parts.append(_section(result, folder, shared))
    return "".join(parts)


_STAND_IN_MARKS = ("stands in for", "replaces the paper's", "not ImageNet")
"""Words by which a note says something here stands in for the paper's network, image or data."""


def shared_notes(results: Sequence[dict]) -> dict[str, list[str]]:
    """Notes said once at the top of the page: every note of two or more results, and
    every note saying what stands in for the paper's network or data; note -> the
    experiments that made it, in page order."""
    made: dict[str, list[str]] = {}
    for result in results:
        for note in result.get("notes", []):
            made.setdefault(note, []).append(result["experiment"])
    return {
        note: names for note, names in made.items() if len(names) > 1 or any(mark in note for mark in _STAND_IN_MARKS)
    }


def _stand_ins(shared: dict[str, list[str]]) -> str:
    """The notes said once, the trained network's stand-in first, as what stands in for what."""
    rows = []
    for note, names in sorted(shared.items(), key=lambda item: item[0] != STAND_IN_NOTE):
        what = (
            "<b>The paper's trained VGG-16 &rarr; EfficientNet-Lite0</b> (ImageNet-trained, bundled). "
            if note == STAND_IN_NOTE
            else ""
        )
        links = ", ".join(f"<a href='#{html.escape(name)}'>{html.escape(name)}</a>" for name in names)
        rows.append(f"<tr><td>{what}{html.escape(note)}</td><td>{links}</td></tr>")
    if not rows:
        return ""
    return (
        "<h2 id='stand-ins'>What stands in for what (said once for the whole page)</h2><table class='stand-ins'>"
        "<thead><tr><th>note</th><th>figures</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
    )


def failing_claims_table(results: Sequence[dict]) -> str:
    """Every claim that does not hold, each linked to its figure and to its finding's explanation."""
    rows = []
    for result in results:
        name = html.escape(result["experiment"])
        for claim in result.get("claims", []):
            if claim["holds"]:
                continue
            anchor = html.escape(f"finding-{result['experiment']}-{claim['id']}", quote=True)
            figure = f"<a href='#{name}-figure'>figure</a>" if result.get("figure") else ""
            rows.append(
                f"<tr class='fail'><td><a href='#{name}'>{name}</a></td><td>{html.escape(claim['text'])}</td>"
                f"<td class='num'>{format_value(claim['value'])}</td>"
                f"<td class='num'>{html.escape(claim['comparison'])} {format_value(claim['threshold'])}</td>"
                f"<td>{figure} <a href='#{anchor}'>why</a></td></tr>"
            )
    if not rows:
        return "<h2 id='failing'>Claims that do not hold</h2><p>None: every claim holds.</p>"
    return (
        f"<h2 id='failing'>Claims that do not hold ({len(rows)})</h2><table class='failing'><thead><tr>"
        "<th>figure</th><th>claim</th><th>value</th><th>threshold</th><th>see</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
    )


def write_index(out: Union[str, os.PathLike], title: str = "backpropvis report") -> Path:
    """Rebuild ``out/index.html`` from every result under ``out``; returns its path."""
    folder = Path(out)
    results = collect_results(folder)
    total = sum(len(result["claims"]) for result in results)
    held = sum(claim["holds"] for result in results for claim in result["claims"])
    skipped = [result["experiment"] for result in results if result.get("skipped")]
    overview = "".join(_overview_row(result) for result in results)
    seconds = sum(result.get("seconds", 0.0) for result in results)
    shared = shared_notes(results)
    page = (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{PAGE_STYLE}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>"
        "<p>Nie, Zhang &amp; Patel, <i>A Theoretical Explanation for Perplexing Behaviors of "
        "Backpropagation-based Visualizations</i>, ICML 2018: every figure with its measured claims.</p>"
        f"<p class='meta'><b>{held} of {total}</b> claims hold; {seconds:.0f} s of experiments"
        + (f"; skipped: {html.escape(', '.join(skipped))}" if skipped else "")
        + "</p>"
        + failing_claims_table(results)
        + _stand_ins(shared)
        + "<h2>Figures</h2><table class='overview'><thead><tr><th>experiment</th><th>what</th><th>model</th>"
        f"<th>seconds</th><th>claims holding</th></tr></thead><tbody>{overview}</tbody></table>"
        + _sections(results, folder, set(shared))
        + "</body></html>"
    )
    return write_text(page, folder / INDEX_FILE)
