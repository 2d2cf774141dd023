"""Several runs side by side: databases grouped by run, each run summarised, one table.

A user comparing a random and a trained model (or two seeds, two precisions) gives
``summarize`` the databases of both; they are grouped by their run settings (the
ranks of one torchrun run stay together and are merged as
:func:`~backpropvis.stats.summary.summarize` does), each run is summarised on its own,
and the runs are printed column by column, with the settings that tell them apart.
"""

from __future__ import annotations

import os
import string
from dataclasses import replace
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from ..core.errors import StoreError, first_few
from ..render import pyplot, save_figure
from .store import RunSettings, read_database, show_setting
from .summary import expand_databases, format_summary, plot_summary, summarize

__all__ = ["group_by_run", "summarize_runs", "format_runs", "plot_runs"]

_COLUMNS = (
    ("class_distance", "class distance (unit L2)"),
    ("class_distance_minmax", "class distance (min-max variant)"),
)


def group_by_run(databases: Sequence[Union[str, os.PathLike]]) -> list[list[Path]]:
    """The database files (paths or globs, see :func:`expand_databases`) grouped by run:
    files whose settings differ only in their rank form one group, in first-seen order.

    Raises:
        StoreError: a file that is not a results database.
    """
    return list(_runs(databases).values())


def _runs(databases: Sequence[Union[str, os.PathLike]]) -> dict[RunSettings, list[Path]]:
    """Each run's settings (rank 0's) -> its files, in first-seen order."""
    groups: dict[RunSettings, list[Path]] = {}
    for path in expand_databases(databases):
        settings = read_database(path, rows=False).settings
        groups.setdefault(replace(settings, rank=0), []).append(path)
    return groups


def summarize_runs(
    databases: Sequence[Union[str, os.PathLike]], resamples: int = 2000, seed: int = 0, confidence: float = 0.95
) -> dict:
    """One :func:`~backpropvis.stats.summary.summarize` per run among ``databases``.

    Returns:
        The single run's summary when there is one run (as :func:`summarize`); else
        ``{"runs": [summary, ...], "labels": ["A", "B", ...], "differences":
        [{"setting": label, "values": [per run]}, ...]}`` (labels as :meth:`RunSettings.label`).

    Raises:
        StoreError: as :func:`summarize`, for any one run.
    """
    runs = _runs(databases)
    summaries = [summarize(group, resamples=resamples, seed=seed, confidence=confidence) for group in runs.values()]
    if len(summaries) == 1:
        return summaries[0]
    settings = list(runs)  # the differences leave the rank out
    differences = [
        {"setting": RunSettings.label(name), "values": [show_setting(getattr(run, name)) for run in settings]}
        for name in RunSettings.names()
        if name != "rank" and len({getattr(run, name) for run in settings}) > 1
    ]
    return {"runs": summaries, "labels": _labels(len(summaries)), "differences": differences}


def _labels(count: int) -> list[str]:
    letters = string.ascii_uppercase
    return [letters[number] if count <= len(letters) else f"R{number + 1}" for number in range(count)]


def format_runs(summary: dict) -> str:
    """The text of :func:`summarize_runs`: one run as :func:`format_summary`, several side by side."""
    if "runs" not in summary:
        return format_summary(summary)
    runs, labels = summary["runs"], summary["labels"]
    confidence = round(runs[0]["bootstrap"]["confidence"] * 100)
    lines = [f"{len(runs)} runs, side by side:"]
    for label, run in zip(labels, runs):
        settings = run["settings"]
        lines.append(
            f"  {label}: {settings['model']} ({settings['weights_description']}), pairs {settings['pairs']}, "
            f"seed {settings['seed']}: {run['images']} images, {run['failures']} failed, "
            f"from {', '.join(Path(path).name for path in run['databases'])}"
        )
    for difference in summary["differences"]:
        values = ", ".join(f"{label} {value}" for label, value in zip(labels, difference["values"]))
        lines.append(f"  they differ in {difference['setting']}: {values}")
    methods = list(dict.fromkeys(method for run in runs for method in run["methods"]))
    width, first = 26, max(10, max((len("ratio " + name) for run in runs for name in run["ratios"]), default=0))
    header = f"{'method':>{first}}  " + "  ".join(f"{label:>{width}}" for label in labels)
    for name, title in _COLUMNS:
        lines += [f"{title}, mean [{confidence}% CI]", header]
        for method in methods:
            cells = [_cell(run["methods"].get(method, {}).get(name)) for run in runs]
            lines.append(f"{method:>{first}}  " + "  ".join(f"{cell:>{width}}" for cell in cells))
    lines += ["input similarity (mean of both maps)", header]
    for method in methods:
        cells = [
            f"{run['methods'][method]['input_similarity']:+.3f}" if method in run["methods"] else "-" for run in runs
        ]
        lines.append(f"{method:>{first}}  " + "  ".join(f"{cell:>{width}}" for cell in cells))
    ratios = list(dict.fromkeys(name for run in runs for name in run["ratios"]))
    for ratio in ratios:
        cells = [_cell(run["ratios"].get(ratio), digits=2) for run in runs]
        lines.append(f"{'ratio ' + ratio:>{first}}  " + "  ".join(f"{cell:>{width}}" for cell in cells))
    for label, run in zip(labels, runs):
        failed = list(run["failure_reasons"])
        if failed:
            lines.append(f"{label} failed: {first_few(failed, 3)}")
        lines += [f"{label} note: {note}" for note in run["notes"]]
        if run.get("small_sample"):
            lines.append(f"{label} note: the intervals are {run['small_sample']}")
    return "\n".join(lines)


def _cell(entry: Optional[dict], digits: int = 4) -> str:
    if not entry:
        return "-"
    return f"{entry['mean']:.{digits}f} [{entry['low']:.{digits}f}, {entry['high']:.{digits}f}]"


def plot_runs(summary: dict, path: Union[str, os.PathLike]) -> Path:
    """A Figure-7-like chart of several runs: per method one bar per run (mean class
    distance, unit L2 and min-max panels, bootstrap intervals). One run: its own chart."""
    if "runs" not in summary:
        return plot_summary(summary, path)
    runs, labels = summary["runs"], summary["labels"]
    methods = list(dict.fromkeys(method for run in runs for method in run["methods"]))
    if not methods:
        raise StoreError("no results to plot yet")
    figure, axes = pyplot().subplots(1, 2, figsize=(9, 3.6))
    width = 0.8 / len(runs)
    for axis, (name, title) in zip(axes, _COLUMNS):
        for number, (label, run) in enumerate(zip(labels, runs)):
            entries = [run["methods"].get(method, {}).get(name) for method in methods]
            means = np.array([entry["mean"] if entry else np.nan for entry in entries])
            errors = np.array(
                [
                    [entry["mean"] - entry["low"] if entry else 0.0 for entry in entries],
                    [entry["high"] - entry["mean"] if entry else 0.0 for entry in entries],
                ]
            )
            settings = run["settings"]
            axis.bar(
                np.arange(len(methods)) + (number - (len(runs) - 1) / 2) * width,
                means,
                width,
                yerr=errors,
                capsize=3,
                label=f"{label}: {settings['model']} ({settings['weights_description']})"[:60],
            )
        axis.set_xticks(np.arange(len(methods)), methods)
        axis.set_title(title, fontsize=10)
        axis.set_ylabel("mean L2 distance (95% CI)")
    axes[0].legend(fontsize=7)
    return save_figure(figure, path, f"{len(runs)} runs side by side")
