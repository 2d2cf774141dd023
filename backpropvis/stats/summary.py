"""Summaries of class-distance databases: means, bootstrap intervals, ratios, a chart.

Several databases (every rank's file of a torchrun run, or a glob) are merged after
checking that they come from one run configuration and share no image. Values are
taken in the images' sorted order, so a merged run and a one-process run give the
same numbers to the last bit.
"""

from __future__ import annotations

import glob
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np

from ..core.errors import StoreError
from ..core.files import replacing
from ..core.metrics import ratio, small_sample_note
from ..engine.receipt import PrecisionReceipt
from ..render import pyplot
from .store import RunSettings, StoredRun, read_database

__all__ = [
    "expand_databases",
    "bootstrap_means",
    "percentile_interval",
    "ratio_samples",
    "Collected",
    "collect",
    "summarize",
    "format_summary",
    "plot_summary",
    "RATIOS",
]

RATIOS: tuple[tuple[str, str], ...] = (("saliency", "gbp"), ("saliency", "deconvnet"))
"""Method pairs whose ratio of mean class distances is reported (the paper: saliency far above both)."""

_GLOB_CHARACTERS = set("*?[")


def expand_databases(sources: Sequence[Union[str, os.PathLike]]) -> list[Path]:
    """Database files from paths and globs.

    A path that does not exist but has rank files beside it (``results.sqlite`` ->
    ``results.rank-*.sqlite``) stands for those, so the ``--db`` given to a torchrun
    run also names its merged result.

    Raises:
        StoreError: a glob that matches nothing, or a missing file without rank files.
    """
    found: list[Path] = []
    for source in map(str, sources):
        if _GLOB_CHARACTERS & set(source):
            matches = sorted(glob.glob(source))
            if not matches:
                raise StoreError(f"no database matches {source}")
            found += [Path(match) for match in matches]
            continue
        path = Path(source)
        ranks = sorted(path.parent.glob(f"{glob.escape(path.stem)}.rank-*{glob.escape(path.suffix)}"))
        if not path.exists() and ranks:
            found += ranks
        else:
            found.append(path)
    unique = list(dict.fromkeys(path.resolve() for path in found))
    if not unique:
        raise StoreError("no database given")
    return unique


def bootstrap_means(
    values: np.ndarray,
    resamples: int = 2000,
    seed: int = 0,
    chunk_elements: int = 4_000_000,
    groups: Optional[Sequence[str]] = None,
) -> np.ndarray:
    """Means of ``resamples`` bootstrap resamples of the rows of ``values``.

    Args:
        values: [N, M] one row per image, one column per method; a resample draws N
            rows with replacement, the same rows for every column (a paired bootstrap,
            so ratios between columns get intervals too).
        resamples: how many resamples.
        seed: seed of the resampling (numpy's PCG64).
        chunk_elements: at most this many values gathered at once (memory stays flat).
        groups: N labels, one per row, naming rows that are not independent (crops of
            one photo: :func:`backpropvis.images.sets.source_photo`). Given, a resample
            draws G of the G groups with replacement and averages all the rows of the
            groups drawn (a cluster bootstrap): the interval then reflects how many
            independent photos there are, not how many crops were cut from them.

    Returns:
        [resamples, M] float64.
    """
    values = np.asarray(values, dtype=np.float64)
    count, columns = values.shape
    if count == 0:
        raise ValueError("no values to resample")
    generator = np.random.default_rng(seed)
    means = np.empty((resamples, columns))
    if groups is None:
        per_chunk = max(1, chunk_elements // max(1, count * columns))
        for start in range(0, resamples, per_chunk):
            stop = min(start + per_chunk, resamples)
            rows = generator.integers(0, count, size=(stop - start, count))
            means[start:stop] = values[rows].mean(axis=1)
        return means
    if len(groups) != count:
        raise ValueError(f"{len(groups)} group labels for {count} rows")
    names, member = np.unique(np.asarray(groups, dtype=str), return_inverse=True)
    sums = np.zeros((len(names), columns))
    np.add.at(sums, member, values)  # [G, M] each group's sum of rows
    sizes = np.bincount(member, minlength=len(names)).astype(np.float64)  # [G] rows per group
    per_chunk = max(1, chunk_elements // max(1, len(names) * columns))
    for start in range(0, resamples, per_chunk):
        stop = min(start + per_chunk, resamples)
        chosen = generator.integers(0, len(names), size=(stop - start, len(names)))
        means[start:stop] = sums[chosen].sum(axis=1) / sizes[chosen].sum(axis=1)[:, None]
    return means


def percentile_interval(samples: np.ndarray, confidence: float) -> tuple[float, float]:
    """The central ``confidence`` interval of 1-D ``samples`` (both ends NaN when a sample is NaN)."""
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(samples, [tail, 100.0 - tail])
    return float(low), float(high)


def ratio_samples(numerators: np.ndarray, denominators: np.ndarray) -> np.ndarray:
    """:func:`backpropvis.core.metrics.ratio` of every pair, at once: NaN where the denominator is 0,
    negative or not finite."""
    numerators, denominators = np.asarray(numerators, dtype=float), np.asarray(denominators, dtype=float)
    usable = np.isfinite(denominators) & (denominators > 0)
    return np.divide(numerators, denominators, out=np.full_like(numerators, np.nan), where=usable)


def _merge(runs: list[StoredRun]) -> list[str]:
    """Check that ``runs`` are parts of one run; returns notes on what is missing."""
    first = runs[0]
    for run in runs[1:]:
        differences = run.settings.differences(first.settings, ignore=("rank",))
        if differences:
            raise StoreError(
                f"{run.path} and {first.path} come from different runs ({'; '.join(differences)}); "
                "summarize each on its own"
            )
    ranks = [run.settings.rank for run in runs]
    if len(set(ranks)) != len(ranks):
        raise StoreError(f"two databases hold the same rank of one run: {', '.join(str(run.path) for run in runs)}")
    seen: dict[str, Path] = {}
    for run in runs:
        for image in {row["image"] for row in run.results} | {row["image"] for row in run.failures}:
            if image in seen:
                raise StoreError(f"image {image} appears in both {seen[image]} and {run.path}")
            seen[image] = run.path
    notes = []
    missing = sorted(set(range(first.settings.world_size)) - set(ranks))
    if missing:
        notes.append(
            f"ranks {', '.join(map(str, missing))} of {first.settings.world_size} are missing: "
            "their images are not included"
        )
    return notes


@dataclass
class Collected:
    """One run's values, merged from its databases, one row per image in sorted order.

    Attributes:
        runs: the databases read, by rank.
        settings: the run's settings (rank 0's).
        methods: method names, the columns of every table.
        images: image keys with results, sorted: the rows of every table.
        tables: "class_distance" and "class_distance_minmax" -> [N, M] float64.
        input_similarity: [N, M, 2] of the two maps.
        failures: ``failures`` rows, sorted by image.
        expected: how many images the run (all its ranks present) has to do.
        notes: what is missing (ranks, unfinished images).
    """

    runs: list[StoredRun]
    settings: RunSettings
    methods: list[str]
    images: list[str]
    tables: dict[str, np.ndarray]
    input_similarity: np.ndarray
    failures: list[dict]
    expected: int
    notes: list[str]

    @property
    def complete(self) -> bool:
        return len(self.images) + len(self.failures) >= self.expected and not self.notes


def collect(databases: Sequence[Union[str, os.PathLike]]) -> Collected:
    """Read and merge one run's databases (paths or globs, see :func:`expand_databases`).

    Raises:
        StoreError: unreadable databases, databases of different runs, an image found
            twice, or an image lacking a method's row.
    """
    runs = [read_database(path) for path in expand_databases(databases)]
    runs.sort(key=lambda run: run.settings.rank)
    notes = _merge(runs)
    methods = list(runs[0].settings.methods)
    rows = [row for run in runs for row in run.results]
    failures = sorted((row for run in runs for row in run.failures), key=lambda row: row["image"])
    images = sorted({row["image"] for row in rows})
    expected = sum(run.run["images_total"] or 0 for run in runs)
    if len(images) + len(failures) < expected:
        notes.append(
            f"incomplete: {len(images) + len(failures)} of {expected} images gone through ({len(images)} measured, "
            f"{len(failures)} failed); run the same command again to finish"
        )
    index = {image: number for number, image in enumerate(images)}
    tables = {
        name: np.full((len(images), len(methods)), np.nan) for name in ("class_distance", "class_distance_minmax")
    }
    similarity = np.full((len(images), len(methods), 2), np.nan)
    for row in rows:
        at = (index[row["image"]], methods.index(row["method"]))
        for name in tables:
            tables[name][at] = row[name]
        similarity[at] = (row["input_similarity_first"], row["input_similarity_second"])
    if np.isnan(tables["class_distance"]).any():
        raise StoreError("some images lack a method's row; the database was not written by one run")
    return Collected(runs, runs[0].settings, methods, images, tables, similarity, failures, expected, notes)


def stored_receipts(runs: Sequence[StoredRun]) -> list[dict]:
    """Every session's precision receipt, in the order the runs were read (none at float32)."""
    return [receipt for stored in runs for receipt in stored.receipts]


def first_receipt_notes(runs: Sequence[StoredRun]) -> list[str]:
    """The first session's precision receipt in one line, and a line naming each method under its
    threshold (every rank's and session's first batch tell much the same)."""
    receipts = stored_receipts(runs)
    return PrecisionReceipt.from_dict(receipts[0]).notes() if receipts else []


def _settings_section(run: Collected) -> dict[str, Any]:
    """The summary's ``settings``: the run's identity as its databases store it."""
    settings = run.settings
    return {
        "model": settings.model,
        "weights": settings.weights,
        "weights_description": run.runs[0].run["weights_description"],
        "methods": run.methods,
        "pairs": settings.pairs,
        "seed": settings.seed,
        "input_size": settings.input_size,
        "images": settings.images,
        "world_size": settings.world_size,
        "model_args": settings.model_args,
        "model_source": settings.model_source,
        "weights_fingerprint": settings.weights_fingerprint,
        "output": settings.output,
        "precision": settings.precision,
        "smooth_activations": json.loads(run.runs[0].run["settings"]).get("smooth_activations", {"mode": "refuse"}),
    }


def summarize(
    databases: Sequence[Union[str, os.PathLike]],
    resamples: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
    ratios: Sequence[tuple[str, str]] = RATIOS,
) -> dict:
    """Per-method statistics of one run, from one or several databases.

    Returns a JSON-ready dict: ``databases``, ``settings``, ``images`` (with results),
    ``images_expected``, ``complete``, ``failures`` (count) and ``failure_reasons``
    (image -> reason), ``methods`` (name -> ``images``, ``class_distance`` and
    ``class_distance_minmax`` as ``{mean, low, high}``, ``input_similarity`` mean over
    both maps), ``ratios`` ("saliency/gbp" -> ``{mean, low, high}``, the ratio of the
    means and its paired-bootstrap interval, for each pair of ``ratios`` whose two methods
    the run has), ``bootstrap``, ``notes`` (what is missing, the first precision receipt in one
    line and its warnings), ``small_sample`` (the flag of intervals from fewer than
    :data:`~backpropvis.core.metrics.SMALL_SAMPLE` images, or None) and ``precision_receipts`` (at TF32
    or bfloat16: every session's receipt, :mod:`backpropvis.engine.receipt`).

    Raises:
        StoreError: as :func:`collect`.
    """
    run = collect(databases)
    methods = run.methods
    summary: dict[str, Any] = {
        "databases": [str(stored.path) for stored in run.runs],
        "settings": _settings_section(run),
        "images": len(run.images),
        "images_expected": run.expected,
        "complete": run.complete,
        "failures": len(run.failures),
        "failure_reasons": {row["image"]: row["reason"] for row in run.failures},
        "methods": {},
        "ratios": {},
        "bootstrap": {"resamples": resamples, "seed": seed, "confidence": confidence},
        "notes": run.notes + first_receipt_notes(run.runs),
        "small_sample": small_sample_note(len(run.images)) if run.images else None,
        "precision_receipts": stored_receipts(run.runs),
    }
    if not run.images:
        return summary
    samples = {name: bootstrap_means(values, resamples, seed) for name, values in run.tables.items()}
    for column, method in enumerate(methods):
        entry: dict[str, Any] = {"images": len(run.images)}
        for name, values in run.tables.items():
            low, high = percentile_interval(samples[name][:, column], confidence)
            entry[name] = {"mean": float(values[:, column].mean()), "low": low, "high": high}
        entry["input_similarity"] = float(run.input_similarity[:, column].mean())
        summary["methods"][method] = entry
    for top, bottom in ratios:
        if top in methods and bottom in methods:
            a, b = methods.index(top), methods.index(bottom)
            values = run.tables["class_distance"]
            resampled = samples["class_distance"]
            low, high = percentile_interval(ratio_samples(resampled[:, a], resampled[:, b]), confidence)
            mean = ratio(values[:, a].mean(), values[:, b].mean())
            summary["ratios"][f"{top}/{bottom}"] = {"mean": mean, "low": low, "high": high}
    return summary


def format_summary(summary: dict) -> str:
    """The summary as a few lines of text for a terminal."""
    settings = summary["settings"]
    confidence = round(summary["bootstrap"]["confidence"] * 100)
    lines = [
        f"{settings['model']} ({settings['weights_description']}), pairs {settings['pairs']}, seed {settings['seed']}: "
        f"{summary['images']} images, {summary['failures']} failed, from {len(summary['databases'])} database(s)",
        f"{'method':>10}  {'class distance (unit L2)':>30}  {'min-max variant':>28}  {'input sim.':>10}",
    ]
    for method, entry in summary["methods"].items():
        unit, minmax = entry["class_distance"], entry["class_distance_minmax"]
        lines.append(
            f"{method:>10}  {unit['mean']:8.4f} [{unit['low']:.4f}, {unit['high']:.4f}] ({confidence}% CI)"
            f"  {minmax['mean']:8.4f} [{minmax['low']:.4f}, {minmax['high']:.4f}]  {entry['input_similarity']:+10.3f}"
        )
    for name, interval in summary["ratios"].items():
        lines.append(f"ratio {name}: {interval['mean']:.2f} [{interval['low']:.2f}, {interval['high']:.2f}]")
    for image, reason in list(summary["failure_reasons"].items())[:10]:
        lines.append(f"failed: {image}: {reason}")
    if summary["failures"] > 10:
        lines.append(f"... and {summary['failures'] - 10} more failures (see the failures table)")
    lines += [f"note: {note}" for note in summary["notes"]]
    if summary.get("small_sample"):
        lines.append(f"note: the {confidence}% intervals are {summary['small_sample']}")
    return "\n".join(lines)


def plot_summary(summary: dict, path: Union[str, os.PathLike], title: Optional[str] = None) -> Path:
    """A bar chart like the paper's Figure 7: mean class distance per method with its
    bootstrap interval, unit-L2 and min-max variants side by side. Returns the path."""
    plt = pyplot()
    methods = list(summary["methods"])
    if not methods:
        raise StoreError("no results to plot yet")
    settings = summary["settings"]
    figure, axes = plt.subplots(1, 2, figsize=(8, 3.4), constrained_layout=True)
    for axis, name, label in zip(axes, ("class_distance", "class_distance_minmax"), ("unit-L2 maps", "min-max maps")):
        entries = [summary["methods"][method][name] for method in methods]
        means = np.array([entry["mean"] for entry in entries])
        errors = np.array(
            [[entry["mean"] - entry["low"] for entry in entries], [entry["high"] - entry["mean"] for entry in entries]]
        )
        colours = ["tab:red", "tab:blue", "tab:green", "tab:gray"][: len(methods)]
        axis.bar(methods, means, yerr=errors, capsize=4, color=colours)
        axis.set_title(f"class distance, {label}", fontsize=10)
        axis.set_ylabel("mean L2 distance (95% CI)")
    small = small_sample_note(summary["images"])
    figure.suptitle(
        (title or f"{settings['model']} ({settings['weights']}), {summary['images']} images, pairs {settings['pairs']}")
        + (f"\nintervals {small}" if small else ""),
        fontsize=10,
    )
    with replacing(path) as partial:
        figure.savefig(partial, dpi=120)
    plt.close(figure)
    return Path(path)
