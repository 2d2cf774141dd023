"""The audit as one call: :func:`run_audit` checks its inputs, runs the class-distance step
and then the steps of :data:`~backpropvis.audit.steps.STEPS` in a loop, judges every method
and writes ``DIR/audit.json``, the figures and ``DIR/index.html`` from the typed record
(:class:`~backpropvis.audit.record.AuditRecord`: each step's result is a dataclass of its own).

Nothing already written is lost: the class-distance database keeps every finished
batch (rerunning the same audit continues it), each later step is kept as soon as it
finishes (:mod:`~backpropvis.audit.saved`; a rerun reads it back), and ``audit.json``
is rewritten after every step with the verdicts known so far (a step not reached yet
reads "not measured"). Every error the user can cause (the output folder, the images,
the model, its weights, the methods) is raised before the first map is computed.
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Optional, Union

import torch

from ..core.claims import Skip
from ..core.devices import resolve_device
from ..core.errors import Interrupted
from ..core.files import make_folder
from ..core.rules import resolve_rules
from ..engine import Precision
from ..images.sets import ImageSource, list_images
from ..models import LoadedModel, ModelLike, as_loaded
from ..stats import plot_summary
from .page import write_page
from .probes import load_probes
from .record import AUDIT_FILE, AuditRecord
from .results import StepResult
from .saved import load_result, save_result
from .sensitivity import REFERENCE, class_sensitivity
from .step import AuditContext, AuditSettings, AuditStep
from .steps import STEPS

__all__ = ["AUDIT_FILE", "FIGURES_FOLDER", "AuditRecord", "run_audit"]

FIGURES_FOLDER = "figures"
"""The audit's figures (PNG), in its folder; the page embeds them."""


def run_audit(
    images: ImageSource,
    out: Union[str, os.PathLike],
    *,
    model: ModelLike = "vgg16",
    device: Union[str, torch.device] = "cpu",
    progress: bool = True,
    on_model: Optional[Callable[[LoadedModel], None]] = None,
    **settings: Any,
) -> dict:
    """Audit a model's maps on a set of images: the paper's diagnostics and a verdict per method.

    Args:
        images: a folder (searched recursively), a :class:`~backpropvis.images.sets.Samples`,
            or None for the bundled samples.
        out: the audit's folder (``audit.json``, ``index.html``, ``figures/``,
            ``class-distance.sqlite``, ``steps/``).
        model: a name, a :class:`~backpropvis.models.ModelSpec` (built with ``seed``), a
            loaded model or a module (:func:`backpropvis.models.as_loaded`).
        device: "cpu", "cuda", ...
        progress: show progress bars.
        on_model: called with the model once it is built, before the first image is read.
        settings: the fields of :class:`~backpropvis.audit.step.AuditSettings` (``methods``,
            ``pairs``, ``seed``, ``limit``, ``few_images``, ``adversarial_steps``,
            ``batch_size``, ``workers``, ``precision``).

    Returns:
        The content of ``audit.json``: ``model``, ``settings``, ``images``, ``class_distance``
        (:func:`~backpropvis.stats.summarize`), one entry per step (its numbers, or
        ``{"skipped": reason}``), ``verdicts`` (method ->
        :func:`~backpropvis.audit.verdicts.judge_method`), ``thresholds``, ``notes``, ``seconds``.

    Raises:
        BackpropvisError: bad settings, output folder, images, model or weights (before any
            map is computed), or a class-distance database of another audit in ``out``.
    """
    context, record = _prepare(images, out, model, AuditSettings(**settings), device, progress, on_model)
    _measure_class_distance(context, record)
    context.probes = load_probes(images, context.keys, context.loaded.preprocessing, context.settings.few_images)
    context.inputs = context.probes.inputs.to(context.device)
    context.identity = _identity(context)
    for step in STEPS:
        started = time.perf_counter()
        record.results[step.name] = _run_step(step, context, record)
        record.seconds[step.name] = time.perf_counter() - started
        record.write(context.folder)
    if record.reused:
        kept = ", ".join(record.reused)
        record.notes.append(f"kept from an earlier run with the same model, images and settings: {kept}")
    started = time.perf_counter()
    figures = _draw(context, record)
    record.seconds["figures"] = time.perf_counter() - started
    record.write(context.folder)
    write_page(record, figures, context.folder)
    return record.as_json()


def _prepare(
    images: ImageSource,
    out: Union[str, os.PathLike],
    model: ModelLike,
    settings: AuditSettings,
    device: Union[str, torch.device],
    progress: bool,
    on_model: Optional[Callable[[LoadedModel], None]] = None,
) -> tuple[AuditContext, AuditRecord]:
    """Check everything the user can get wrong, in order, and build the model: before any map."""
    names = [rule.name for rule in resolve_rules(settings.methods)]
    notes: list[str] = []
    if REFERENCE not in names:
        names.insert(0, REFERENCE)
        notes.append("saliency was added to the methods: every verdict compares a method with it")
    settings.check()
    precision = Precision.parse(settings.precision)
    folder = make_folder(out)
    keys = list_images(images, settings.limit)
    torch_device = resolve_device(str(device))
    loaded = as_loaded(model, settings.seed)
    if on_model is not None:
        on_model(loaded)
    recorded = {
        "methods": names,
        "pairs": settings.pairs,
        "seed": settings.seed,
        "input_size": loaded.input_size,
        "smooth_activations": loaded.smooth.mode,
        "precision": precision.value,
        "device": str(torch_device),
        "limit": settings.limit,
        "few_images": settings.few_images,
        "adversarial_steps": [float(step) for step in settings.adversarial_steps],
        "receipt_threshold": settings.receipt_threshold,
    }
    settings = replace(settings, methods=tuple(names), precision=precision)
    module = loaded.module.to(torch_device)
    context = AuditContext(folder, images, keys, loaded, module, torch_device, names, settings, recorded, progress)
    return context, AuditRecord(_model_record(loaded), recorded, names, notes)


def _model_record(loaded: LoadedModel) -> dict[str, Any]:
    return {
        "name": loaded.name,
        "title": loaded.title,
        "args": dict(loaded.args),
        "source": loaded.source,
        "weights": loaded.weights,
        "weights_description": loaded.weights_description,
        "fingerprint": loaded.fingerprint,
        "output": loaded.output,
        "preprocessing": loaded.preprocessing_description,
        "notes": list(loaded.notes),
        "smooth_activations": {**loaded.smooth.as_dict(), "said": loaded.smooth.sentence()},
    }


def _measure_class_distance(context: AuditContext, record: AuditRecord) -> None:
    """The class-distance step over every image (resumable database), into ``record``."""
    started = time.perf_counter()
    record.class_distance = class_sensitivity(context)
    record.seconds["class_distance"] = time.perf_counter() - started
    record.notes += record.class_distance.notes
    record.write(context.folder)


def _run_step(step: AuditStep, context: AuditContext, record: AuditRecord) -> Optional[StepResult]:
    """The step's result: kept from an earlier run with the same identity, else measured and kept (None: skipped)."""
    identity = step.identity(context)
    kept = load_result(context.folder, step.name, identity, step.result_type)
    if kept.unusable is not None:
        record.notes.append(kept.unusable)
    if kept.result is not None:
        record.reused.append(step.name)
        return kept.result
    try:
        return save_result(context.folder, step.name, identity, step.measure(context))
    except Skip as reason:
        record.skipped[step.name] = str(reason)
        return None
    except KeyboardInterrupt:
        finished = ", ".join(record.results) or "none"
        assert record.class_distance is not None
        raise Interrupted(
            f"during the {step.name} step; kept in {context.folder}: the class-distance database "
            f"({record.class_distance.images.measured} images), the finished steps ({finished}) and audit.json; run "
            "the same command again to go on"
        ) from None


def _identity(context: AuditContext) -> dict[str, Any]:
    """What a kept step must have been measured with to be read back instead of computed."""
    loaded, probes = context.loaded, context.probes
    assert probes is not None
    return {
        "model": loaded.name,
        "model_args": loaded.args_json,
        "model_source": loaded.source,
        "weights_fingerprint": loaded.fingerprint,
        "output": loaded.output,
        "preprocessing": loaded.preprocessing_description,
        "images": [list(pair) for pair in zip(probes.keys, probes.hashes)],
        **{key: context.recorded[key] for key in ("methods", "pairs", "seed", "input_size", "precision")},
    }


def _draw(context: AuditContext, record: AuditRecord) -> list[tuple[Path, str]]:
    """Every figure the measured steps allow; returns (path, caption) pairs for the page."""
    figures = context.folder / FIGURES_FOLDER
    assert record.class_distance is not None
    summary = record.class_distance.summary
    drawn = [
        (
            plot_summary(
                summary,
                figures / "class-distance.png",
                title=f"class distance, {summary['images']} images: {context.title}"[:110],
            ),
            "Class sensitivity (the paper's Figure 7 statistic): the mean class distance between each method's maps "
            "of two logits per image, with bootstrap 95% intervals; left the unit-L2 distance the verdicts read, "
            "right the "
            "min-max display variant.",
        )
    ]
    for step in STEPS:
        result = record.results.get(step.name)
        if result is not None:
            drawn += step.figures(result, context, figures)
    return drawn
