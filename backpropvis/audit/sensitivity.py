"""The class-distance step: class sensitivity and image recovery over the whole image set.

Every image goes through :func:`backpropvis.stats.run_class_distance` into the
audit's database (``DIR/class-distance.sqlite``, resumable: rerunning the audit
continues with the images not yet done), which stores per image and method the class
distance between the maps of two logits (the paper's Figure 7 statistic) and each
map's input similarity. :func:`backpropvis.stats.summarize` then gives the means,
their bootstrap 95 % intervals and each method's ratio to saliency with its
paired-bootstrap interval; :func:`method_numbers` picks out what the verdicts read.
The step's result is :class:`ClassDistanceResult` (the summary as ``audit.json``'s
``class_distance``, and the images as its ``images``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..core.errors import ImageError
from ..images.sets import ImageSource, Samples
from ..stats import run_class_distance, summarize
from ..stats.distributed import World
from .step import AuditContext

__all__ = [
    "CLASS_DISTANCE_DB",
    "REFERENCE",
    "ClassDistanceResult",
    "ImagesMeasured",
    "class_sensitivity",
    "method_numbers",
]

CLASS_DISTANCE_DB = "class-distance.sqlite"
"""The audit's class-distance database, in its folder."""

REFERENCE = "saliency"
"""The method every other one is compared with (the true gradient)."""


@dataclass(frozen=True)
class ImagesMeasured:
    """The images of the class-distance step (``audit.json``'s ``images``).

    Attributes:
        source: the image source, as the database records it.
        listed, measured, failed: how many images were listed, measured, could not be read.
        described: the images in words ("6 of the 6 bundled sample images").
        database: the path of the class-distance database.
        resumed_with: how many images were in the database before this run.
    """

    source: str
    listed: int
    measured: int
    failed: int
    described: str
    database: str
    resumed_with: int


@dataclass(frozen=True)
class ClassDistanceResult:
    """The class-distance step's result.

    Attributes:
        summary: :func:`~backpropvis.stats.summarize` of the database, with ``ratios``
            "METHOD/saliency" for every method (``audit.json``'s ``class_distance``).
        images: the images measured.
    """

    summary: dict[str, Any]
    images: ImagesMeasured

    def numbers(self, method: str) -> dict[str, float]:
        """What the verdicts read of ``method`` (:func:`method_numbers`)."""
        return method_numbers(self.summary, method)

    @property
    def notes(self) -> list[str]:
        """What the user should know of this step, one sentence each."""
        notes = []
        if self.images.resumed_with:
            notes.append(f"{self.images.resumed_with} images were already in {CLASS_DISTANCE_DB} (a resumed audit)")
        notes += [f"class distance: {note}" for note in self.summary["notes"]]
        if self.summary.get("small_sample"):
            notes.append(f"class distance: the 95% intervals are {self.summary['small_sample']}")
        return notes


def class_sensitivity(context: AuditContext) -> ClassDistanceResult:
    """Run (or resume) the class-distance database of the audit and summarise it.

    Raises:
        BackpropvisError: as :func:`~backpropvis.stats.run_class_distance` (a database of
            another audit in the folder is refused, naming the setting that differs).
        ImageError: none of the images could be read.
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
    if not summary["images"]:
        failed = next(iter(summary["failure_reasons"].items()), ("", "no image"))
        raise ImageError(f"none of the {len(context.keys)} images could be read, e.g. {failed[0]}: {failed[1]}")
    images = ImagesMeasured(
        source=summary["settings"]["images"],
        listed=len(context.keys),
        measured=summary["images"],
        failed=summary["failures"],
        described=_described(context.images, summary),
        database=str(db),
        resumed_with=report.already_done,
    )
    return ClassDistanceResult(summary, images)


def _described(images: ImageSource, summary: dict) -> str:
    measured, failed = summary["images"], summary["failures"]
    where = (
        images.describe()
        if isinstance(images, Samples)
        else ("the bundled sample images" if images is None else f"the images under {summary['settings']['images']}")
    )
    return f"{measured} of {where}" + (f" ({failed} could not be read)" if failed else "")


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
