"""The class-distance step: class sensitivity and image recovery over the whole image set.

Every image goes through :func:`backpropvis.stats.run_class_distance` into the
audit's database (``DIR/class-distance.sqlite``, resumable: rerunning the audit
continues with the images not yet done), which stores per image and method the class
distance between the maps of two logits (the paper's Figure 7 statistic) and each
map's input similarity. :func:`backpropvis.stats.summarize` then gives the means,
their bootstrap 95 % intervals and each method's ratio to saliency with its
paired-bootstrap interval; :func:`method_numbers` picks out what the verdicts read.
"""

from __future__ import annotations

from ..stats import RunReport, run_class_distance, summarize
from ..stats.distributed import World
from .step import AuditContext

__all__ = ["CLASS_DISTANCE_DB", "REFERENCE", "class_sensitivity", "method_numbers"]

CLASS_DISTANCE_DB = "class-distance.sqlite"
"""The audit's class-distance database, in its folder."""

REFERENCE = "saliency"
"""The method every other one is compared with (the true gradient)."""


def class_sensitivity(context: AuditContext) -> tuple[RunReport, dict]:
    """Run (or resume) the class-distance database of the audit and summarise it.

    Returns:
        The run's :class:`~backpropvis.stats.RunReport` and its
        :func:`~backpropvis.stats.summarize` (with ``ratios`` "METHOD/saliency" for every method).

    Raises:
        BackpropvisError: as :func:`~backpropvis.stats.run_class_distance` (a database of
            another audit in the folder is refused, naming the setting that differs).
    """
    db, settings = context.folder / CLASS_DISTANCE_DB, context.settings
    report = run_class_distance(
        context.images,
        db,
        model=context.loaded,
        methods=context.methods,
        pairs=settings.pairs,
        seed=settings.seed,
        limit=settings.limit,
        batch_size=settings.batch_size,
        workers=settings.workers,
        device=context.device,
        precision=settings.precision,
        receipt_threshold=settings.receipt_threshold,
        progress=context.progress,
        world=World(),
        elsewhere="another `out`",
    )
    summary = summarize([db], seed=settings.seed, ratios=[(method, REFERENCE) for method in context.methods])
    return report, summary


def method_numbers(summary: dict, method: str) -> dict[str, float]:
    """What the verdicts read of one method in ``summary`` (names of
    :data:`~backpropvis.audit.verdicts.METRICS`): class distance with its interval, its
    ratio to saliency's with the ratio's interval, and the input similarity."""
    entry, ratio = summary["methods"][method], summary["ratios"][f"{method}/{REFERENCE}"]
    distance = entry["class_distance"]
    return {
        "class_distance": distance["mean"],
        "class_distance_low": distance["low"],
        "class_distance_high": distance["high"],
        "class_distance_over_saliency": ratio["mean"],
        "class_distance_over_saliency_low": ratio["low"],
        "class_distance_over_saliency_high": ratio["high"],
        "input_similarity": entry["input_similarity"],
    }
