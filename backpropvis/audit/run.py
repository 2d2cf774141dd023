"""The audit as one call: :func:`run_audit` checks its inputs, runs the four steps, judges
every method and writes ``DIR/audit.json``, the figures and ``DIR/index.html``.

Nothing already written is lost: the class-distance database keeps every finished
batch (rerunning the same audit continues it), each later step is kept as soon as it
finishes (:mod:`~backpropvis.audit.saved`; a rerun reads it back), and ``audit.json``
is rewritten after every step with the verdicts known so far (a step not reached yet
reads "not measured"). Every error the user can cause (the output folder, the images,
the model, its weights, the methods) is raised before the first map is computed.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import torch

from .. import __version__
from ..claims import Skip
from ..devices import resolve_device
from ..engine import Precision, PrecisionLike
from ..errors import BackpropvisError, ImageError, Interrupted
from ..files import make_folder, write_json
from ..image_sets import ImageSource, Samples, list_images
from ..metrics import ratio
from ..models import LoadedModel, ModelLike, as_loaded
from ..rules import PAPER_METHODS, resolve_rules
from ..stats import PAIRS, plot_summary
from .adversarial_test import ADVERSARIAL_STEPS, adversarial_test
from .cascade import cascading_randomization, example_maps
from .figures import draw_adversarial, draw_maps, draw_randomization
from .page import write_page
from .probes import Probes, load_probes
from .saved import StepData, load_step, save_step
from .sensitivity import CLASS_DISTANCE_DB, REFERENCE, class_sensitivity, method_numbers
from .verdicts import STEPS, judge_method, verdicts_as_data

__all__ = ["AUDIT_FILE", "FIGURES_FOLDER", "run_audit"]

AUDIT_FILE = "audit.json"
"""The audit's result, in its folder."""

FIGURES_FOLDER = "figures"
"""The audit's figures (PNG), in its folder; the page embeds them."""

MAPS_SHOWN = 3
"""Images in the maps figure (at most; noise maps make large PNGs, and the page embeds them)."""

NOT_REACHED = "the audit stopped before this step; run the same command again to finish it"


def run_audit(
    images: ImageSource,
    out: Union[str, os.PathLike],
    *,
    model: ModelLike = "vgg16",
    precision: PrecisionLike = Precision.DEFAULT,
    methods: Sequence[str] = PAPER_METHODS,
    pairs: str = "random-random",
    seed: int = 0,
    limit: Optional[int] = None,
    few_images: int = 4,
    adversarial_steps: Sequence[float] = ADVERSARIAL_STEPS,
    batch_size: int = 8,
    workers: int = 2,
    device: Union[str, torch.device] = "cpu",
    progress: bool = True,
) -> dict:
    """Audit a model's maps on a set of images: the paper's diagnostics and a verdict per method.

    Args:
        images: a folder (searched recursively), a :class:`~backpropvis.image_sets.Samples`,
            or None for the bundled samples.
        out: the audit's folder (``audit.json``, ``index.html``, ``figures/``,
            ``class-distance.sqlite``, ``steps/``).
        model: a name, a :class:`~backpropvis.models.ModelSpec` (built with ``seed``), a
            loaded model or a module (:func:`backpropvis.models.as_loaded`).
        precision: the engine's arithmetic, a :class:`~backpropvis.engine.Precision` or its name.
        methods: rule names; saliency, the reference of every verdict, is added when missing.
        pairs: the two logits per image of the class-distance step (default: two random
            ones, as the paper's Figure 7).
        seed: the seed of every random draw (random logits, redrawn layers, bootstrap).
        limit: only the first ``limit`` images of the sorted list.
        few_images: how many images (the first readable ones) the randomisation and
            adversarial steps look at.
        adversarial_steps: FGSM steps in units of 1/255.
        batch_size, workers: images per forward pass and decoding processes of the class-distance step.
        device: "cpu", "cuda", ...
        progress: show progress bars.

    Returns:
        The content of ``audit.json``: ``model``, ``settings``, ``images``, ``class_distance``
        (:func:`~backpropvis.stats.summarize`), ``maps``, ``randomization``, ``adversarial``
        (each step's numbers, or ``{"skipped": reason}``), ``verdicts`` (method ->
        :func:`~backpropvis.audit.verdicts.judge_method`), ``thresholds``, ``notes``, ``seconds``.

    Raises:
        BackpropvisError: bad settings, output folder, images, model or weights (before any
            map is computed), or a class-distance database of another audit in ``out``.
    """
    names = [rule.name for rule in resolve_rules(methods)]
    precision = Precision.parse(precision)
    notes: list[str] = []
    if REFERENCE not in names:
        names.insert(0, REFERENCE)
        notes.append("saliency was added to the methods: every verdict compares a method with it")
    if few_images < 1:
        raise BackpropvisError(f"`few_images` must be at least 1, not {few_images}")
    if not adversarial_steps or not all(math.isfinite(step) and step > 0 for step in adversarial_steps):
        shown = ", ".join(f"{step:g}" for step in adversarial_steps) or "none"
        raise BackpropvisError(f"`adversarial_steps` must be positive numbers (units of 1/255), not {shown}")
    if pairs not in PAIRS:
        raise BackpropvisError(f"unknown `pairs` {pairs!r}; choose one of {', '.join(PAIRS)}")
    folder = make_folder(out)
    keys = list_images(images, limit)
    torch_device = resolve_device(str(device))
    loaded = as_loaded(model, seed)
    module = loaded.module.to(torch_device)
    audit: dict[str, Any] = {
        "backpropvis": __version__,
        "model": {
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
        },
        "settings": {
            "methods": names,
            "pairs": pairs,
            "seed": seed,
            "input_size": loaded.input_size,
            "precision": precision.value,
            "device": str(torch_device),
            "limit": limit,
            "few_images": few_images,
            "adversarial_steps": [float(step) for step in adversarial_steps],
        },
        "notes": notes,
        "seconds": {},
    }
    results: dict[str, Optional[StepData]] = {}
    skipped: dict[str, str] = {}

    started = time.perf_counter()
    report, summary = class_sensitivity(
        images,
        folder,
        loaded,
        methods=names,
        pairs=pairs,
        seed=seed,
        limit=limit,
        batch_size=batch_size,
        workers=workers,
        device=torch_device,
        precision=precision,
        progress=progress,
    )
    audit["seconds"]["class_distance"] = time.perf_counter() - started
    if not summary["images"]:
        failed = next(iter(summary["failure_reasons"].items()), ("", "no image"))
        raise ImageError(f"none of the {len(keys)} images could be read, e.g. {failed[0]}: {failed[1]}")
    audit["class_distance"] = summary
    audit["images"] = {
        "source": summary["settings"]["images"],
        "listed": len(keys),
        "measured": summary["images"],
        "failed": summary["failures"],
        "described": _described(images, summary),
        "database": str(folder / CLASS_DISTANCE_DB),
        "resumed_with": report.already_done,
    }
    if report.already_done:
        notes.append(f"{report.already_done} images were already in {CLASS_DISTANCE_DB} (a resumed audit)")
    notes += [f"class distance: {note}" for note in summary["notes"]]
    _write(folder, audit, names, summary, results, skipped)

    probes = load_probes(images, keys, loaded.preprocessing, few_images)
    inputs = probes.inputs.to(torch_device)
    identity = _identity(loaded, probes, audit["settings"])
    steps: list[tuple[str, Callable[[], tuple[dict, dict]]]] = [
        ("maps", lambda: example_maps(module, inputs, probes.keys, names, pairs=pairs, seed=seed, precision=precision)),
        (
            "randomization",
            lambda: cascading_randomization(module, inputs, names, seed=seed, precision=precision, progress=progress),
        ),
        (
            "adversarial",
            lambda: adversarial_test(
                module, inputs, loaded.preprocessing, names, steps=adversarial_steps, precision=precision
            ),
        ),
    ]
    for step, measure in steps:
        started = time.perf_counter()
        step_identity = (
            {**identity, "adversarial_steps": audit["settings"]["adversarial_steps"]}
            if (step == "adversarial")
            else identity
        )
        kept = load_step(folder, step, step_identity)
        try:
            results[step] = kept or save_step(folder, step, step_identity, *measure())
        except Skip as reason:
            results[step], skipped[step] = None, str(reason)
        except KeyboardInterrupt:
            finished = ", ".join(results) or "none"
            raise Interrupted(
                f"during the {step} step; kept in {folder}: the class-distance database ({summary['images']} "
                f"images), the finished steps ({finished}) and audit.json; run the same command again to go on"
            ) from None
        audit["seconds"][step] = time.perf_counter() - started
        _write(folder, audit, names, summary, results, skipped)
    reused = [step for step, data in results.items() if data is not None and data.reused]
    if reused:
        notes.append(f"kept from an earlier run with the same model, images and settings: {', '.join(reused)}")

    started = time.perf_counter()
    figures = _draw(folder, audit, names, summary, results, probes)
    audit["seconds"]["figures"] = time.perf_counter() - started
    _write(folder, audit, names, summary, results, skipped)
    write_page(audit, figures, folder)
    return audit


def _described(images: ImageSource, summary: dict) -> str:
    measured, failed = summary["images"], summary["failures"]
    where = (
        images.describe()
        if isinstance(images, Samples)
        else ("the bundled sample images" if images is None else f"the images under {summary['settings']['images']}")
    )
    return f"{measured} of {where}" + (f" ({failed} could not be read)" if failed else "")


def _identity(loaded: LoadedModel, probes: Probes, settings: Mapping[str, Any]) -> dict[str, Any]:
    """What a kept step must have been measured with to be read back instead of computed."""
    return {
        "model": loaded.name,
        "model_args": loaded.args_json,
        "model_source": loaded.source,
        "weights_fingerprint": loaded.fingerprint,
        "output": loaded.output,
        "preprocessing": loaded.preprocessing_description,
        "images": [list(pair) for pair in zip(probes.keys, probes.hashes)],
        **{key: settings[key] for key in ("methods", "pairs", "seed", "input_size", "precision")},
    }


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def _numbers(method: str, summary: dict, results: Mapping[str, Optional[StepData]]) -> dict[str, float]:
    """Everything one method's verdicts read (:data:`~backpropvis.audit.verdicts.METRICS`) that is measured."""
    numbers = method_numbers(summary, method)
    randomization = results.get("randomization")
    if randomization is not None:
        top = {name: _mean(values[0]) for name, values in randomization.numbers["distance"].items()}
        numbers["top_redrawn_distance"] = top[method]
        numbers["top_redrawn_over_saliency"] = ratio(top[method], top[REFERENCE])
    adversarial = results.get("adversarial")
    if adversarial is not None:
        at_flip = {
            name: math.nan if value is None else value for name, value in adversarial.numbers["mean_at_flip"].items()
        }
        numbers["adversarial_distance"] = at_flip[method]
        numbers["adversarial_over_saliency"] = ratio(at_flip[method], at_flip[REFERENCE])
    return numbers


def _write(
    folder: Path,
    audit: dict,
    methods: Sequence[str],
    summary: dict,
    results: Mapping[str, Optional[StepData]],
    skipped: Mapping[str, str],
) -> None:
    """Judge every method with what is measured so far and (re)write ``audit.json``."""
    not_measured = {step: NOT_REACHED for step in STEPS if step != "class_distance" and step not in results}
    not_measured.update(skipped)
    adversarial = results.get("adversarial")
    if adversarial is not None and all(value is None for value in adversarial.numbers["mean_at_flip"].values()):
        not_measured["adversarial"] = "no FGSM step tried changed the prediction of any of the images"
    for step in ("maps", "randomization", "adversarial"):
        data = results.get(step)
        audit[step] = (
            {"skipped": skipped.get(step, NOT_REACHED)} if data is None else {**data.numbers, "reused": data.reused}
        )
    audit["verdicts"] = {method: judge_method(_numbers(method, summary, results), not_measured) for method in methods}
    audit["thresholds"] = verdicts_as_data()
    write_json(_json_ready(audit), folder / AUDIT_FILE)


def _json_ready(value: Any) -> Any:
    """NaN and infinities become null (strict JSON), recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(item) for item in value]
    return value


def _draw(
    folder: Path,
    audit: dict,
    methods: Sequence[str],
    summary: dict,
    results: Mapping[str, Optional[StepData]],
    probes: Probes,
) -> list[tuple[Path, str]]:
    """Every figure the measured steps allow; returns (path, caption) pairs for the page."""
    figures = folder / FIGURES_FOLDER
    title = audit["model"]["title"]
    drawn = [
        (
            plot_summary(
                summary,
                figures / "class-distance.png",
                title=f"class distance, {summary['images']} images: {title}"[:110],
            ),
            "Class sensitivity (the paper's Figure 7 statistic): the mean class distance between each method's maps "
            "of two logits per image, with bootstrap 95% intervals; left the unit-L2 distance the verdicts read, "
            "right the "
            "min-max display variant.",
        )
    ]
    maps = results.get("maps")
    if maps is not None:
        drawn.append(
            (
                draw_maps(maps, probes.pixels, probes.keys[:MAPS_SHOWN], methods, figures / "maps.png", title[:110]),
                "Each method's maps of the first images for the two logits the class-distance step uses, shown as the "
                "paper shows them (min-max over the whole map); under the second, the class distance of the two.",
            )
        )
    randomization = results.get("randomization")
    if randomization is not None:
        draw_randomization(
            randomization,
            methods,
            figures / "randomization.png",
            figures / "randomization-maps.png",
            f"cascading randomisation: {title}"[:110],
        )
        drawn += [
            (
                figures / "randomization.png",
                "Cascading randomisation (Figure 9 read from the top; Adebayo et al. 2018): the class distance between "
                "each method's map in the trained model and with the stages redrawn at random from the top down, for "
                "the trained model's predicted class (thick: mean over the images; thin: each image; dotted: sqrt 2, "
                "unrelated maps).",
            ),
            (
                figures / "randomization-maps.png",
                "The first image's maps along the cascade, with each map's distance to the trained one and its input "
                "similarity.",
            ),
        ]
    adversarial = results.get("adversarial")
    if adversarial is not None:
        drawn.append(
            (
                draw_adversarial(
                    adversarial, methods, figures / "adversarial.png", f"FGSM adversarial test: {title}"[:110]
                ),
                "The adversarial test (Figure 8): each method's class distance between its map of an image (its max "
                "logit) and of its FGSM example (that one's max logit) against the step; the maps of one image at its "
                "smallest step that changes the prediction.",
            )
        )
    return drawn
