"""Running experiments as a suite: inputs checked first, each result written as soon as it
finishes (a crash later never loses it), the report rebuilt at the end; and redrawing a
result's figure from its saved data, without computing anything.

A suite resumes per experiment: one whose ``metrics.json`` was made with the same settings,
seed, device, precision, inputs and package version, and whose figure is there, is kept, not
rerun (said in one line). Ctrl-C writes the page of what finished and raises
:class:`~backpropvis.core.errors.Interrupted` saying how to resume.

It sits above both :mod:`backpropvis.experiments` (what runs) and
:mod:`backpropvis.report.page` (what is written), which know nothing of each other's callers.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import torch
from tqdm.auto import tqdm

from ..core.errors import Interrupted
from ..core.files import make_folder
from ..engine import Precision, PrecisionLike
from ..engine.receipt import DEFAULT_THRESHOLD, PrecisionReceipt, check_threshold
from ..experiments import Experiment, ExperimentResult, RunContext, find, load_figure_data, run_experiment
from ..experiments.base import FIGURE_FILE, METRICS_FILE, UnknownMetricError, run_record
from ..images.sets import list_images
from ..models import VGG16
from ..models.weights import check_fits, read_state_dict
from ..report.page import INDEX_FILE, write_index, write_result
from ..sanity.experiments import SANITY

__all__ = ["run_suite", "check_run_inputs", "redraw", "kept_result"]


def check_run_inputs(images: Optional[Path], vgg16_weights: Optional[Path]) -> None:
    """Refuse, before anything runs, an ``--images`` folder that does not exist and a
    ``--vgg16-weights`` file that cannot be read or does not fit VGG-16.

    Raises:
        ImageError: naming the folder; WeightsError: naming the file and the mismatch.
    """
    if images is not None:
        list_images(images, limit=1)  # raises ImageError for a missing folder or one with no images
    if vgg16_weights is not None:
        with torch.device("meta"):  # shapes only: no memory, no random init
            shapes = VGG16()
        check_fits(shapes, read_state_dict(vgg16_weights), f"weights file {vgg16_weights}")


def run_suite(
    experiments: Sequence[Experiment],
    out: Union[str, os.PathLike],
    *,
    quick: bool = False,
    device: Union[str, torch.device] = "cpu",
    seed: int = 0,
    images: Optional[Union[str, os.PathLike]] = None,
    vgg16_weights: Optional[Union[str, os.PathLike]] = None,
    progress: bool = True,
    image: str = "tabby",
    precision: PrecisionLike = Precision.FLOAT32,
    resume: bool = True,
    say: Optional[Callable[[str], None]] = None,
    receipt_threshold: float = DEFAULT_THRESHOLD,
) -> list[ExperimentResult]:
    """Run ``experiments`` one after the other, writing ``out/<name>/metrics.json`` after
    each and ``out/index.html`` at the end; returns the results. ``image`` (a sample name
    or a path) is what single-image studies look at; ``precision`` is the engine's
    arithmetic for every map (default exact float32). With ``resume``, an experiment whose
    result in ``out`` was made the same way (:func:`kept_result`) is kept and not rerun;
    ``say`` receives one line for each kept one. At TF32 or bfloat16 each experiment's
    first engine call is also made in float32: its precision receipt (methods under
    ``receipt_threshold`` named) is stored with the result (:mod:`backpropvis.engine.receipt`).

    Raises:
        Interrupted: on Ctrl-C, after writing ``out/index.html`` of what finished; the
            message says what was kept and how to resume.
    """
    images_folder = Path(images) if images else None
    weights_file = Path(vgg16_weights) if vgg16_weights else None
    check_run_inputs(images_folder, weights_file)
    folder = make_folder(out)  # a file in the way is refused before any work
    inputs = _inputs(image, images_folder, weights_file)
    results: list[ExperimentResult] = []
    bar = tqdm(experiments, desc="experiments", unit="experiment", disable=not progress)
    for experiment in bar:
        context = RunContext(
            out=folder / experiment.name,
            quick=quick,
            device=torch.device(device),
            seed=seed,
            images=images_folder,
            vgg16_weights=weights_file,
            progress=progress,
            image=image,
            precision=precision,
            receipt_threshold=check_threshold(receipt_threshold),
        )
        kept = kept_result(experiment, context, inputs) if resume else None
        if kept is not None:
            (say or bar.write)(f"{experiment.name}: kept from {context.out / METRICS_FILE} (made the same way)")
            write_result(kept, folder)  # its verdicts as the current claims judge them
            results.append(kept)
            continue
        try:
            result = run_experiment(experiment, context)
        except KeyboardInterrupt:
            write_index(folder)
            raise Interrupted(_interrupted(experiment.name, results, folder)) from None
        result.run["inputs"] = inputs
        write_result(result, folder)
        results.append(result)
    write_index(folder)
    return results


def _inputs(image: str, images: Optional[Path], vgg16_weights: Optional[Path]) -> dict:
    """What a run read besides its settings, and the code that ran: part of what a kept result must match."""
    from .. import __version__

    return {
        "image": image,
        "images": str(images.resolve()) if images else None,
        "vgg16_weights": str(vgg16_weights.resolve()) if vgg16_weights else None,
        "backpropvis": __version__,
    }


def _interrupted(name: str, finished: Sequence[ExperimentResult], folder: Path) -> str:
    done = ", ".join(result.experiment for result in finished) or "none"
    return (
        f"{name} was stopped; finished and kept: {done} ({folder / INDEX_FILE} shows them). "
        f"Run the same command again to resume from {name}."
    )


def kept_result(experiment: Experiment, context: RunContext, inputs: dict) -> Optional[ExperimentResult]:
    """The result already in ``context.out`` if it was made exactly as this run would make it
    (same settings, seed, device, precision, quick, inputs and package version, not skipped,
    figure present), else None: a damaged or foreign metrics.json is simply rerun."""
    try:
        stored = json.loads((context.out / METRICS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    settings = json.loads(json.dumps(dict(experiment.quick if context.quick else experiment.full)))
    expected_run = {**run_record(context), "inputs": inputs}
    if not isinstance(stored, dict) or stored.get("experiment") != experiment.name or stored.get("skipped"):
        return None
    if stored.get("settings") != settings or stored.get("run") != expected_run:
        return None
    if not stored.get("figure") or not (context.out / stored["figure"]).is_file():
        return None
    try:  # the verdicts are the current claims' on the kept values (a changed threshold is judged anew)
        claims = [claim.evaluate(stored["metrics"]) for claim in experiment.claims]
        fields = {key: stored[key] for key in ExperimentResult.__dataclass_fields__ if key in stored}
        receipt = stored.get("precision_receipt")
        if receipt is not None:  # judged again at this run's threshold, like the claims
            fields["precision_receipt"] = (
                PrecisionReceipt.from_dict(receipt).at_threshold(context.receipt_threshold).as_dict()
            )
        return ExperimentResult(**{**fields, "claims": claims})
    except (KeyError, TypeError, ValueError, UnknownMetricError):
        return None


def redraw(result_dir: Union[str, os.PathLike]) -> Path:
    """Redraw ``result_dir/figure.png`` from ``metrics.json`` and ``figure_data.npz`` alone
    (no model is built, no map computed), e.g. after a change to a figure's layout; the
    report beside it (``../index.html``), if any, is rebuilt to show the new figure.

    Returns:
        The figure's path.

    Raises:
        BackpropvisError: a folder without an experiment's result and figure data, or a
            result of an experiment this version does not know.
    """
    folder = Path(result_dir)
    data = load_figure_data(folder)
    figure = folder / FIGURE_FILE
    (SANITY.get(data.experiment) or find(data.experiment)).draw(data, figure)
    if (folder.parent / INDEX_FILE).is_file():
        write_index(folder.parent)
    return figure
