"""Running experiments as a suite: inputs checked first, each result written as soon as it
finishes (a crash later never loses it), the report rebuilt at the end; and redrawing a
result's figure from its saved data, without computing anything.

It sits above both :mod:`backpropvis.experiments` (what runs) and
:mod:`backpropvis.report` (what is written), which know nothing of each other's callers.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence, Union

import torch
from tqdm.auto import tqdm

from .engine import Precision, PrecisionLike
from .experiments import Experiment, ExperimentResult, RunContext, find, load_figure_data, run_experiment
from .experiments.base import FIGURE_FILE
from .files import make_folder
from .image_sets import list_images
from .models import VGG16
from .models.weights import check_fits, read_state_dict
from .report import INDEX_FILE, write_index, write_result
from .sanity.experiments import SANITY

__all__ = ["run_suite", "check_run_inputs", "redraw"]


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
) -> list[ExperimentResult]:
    """Run ``experiments`` one after the other, writing ``out/<name>/metrics.json`` after
    each and ``out/index.html`` at the end; returns the results. ``image`` (a sample name
    or a path) is what single-image studies look at; ``precision`` is the engine's
    arithmetic for every map (default exact float32)."""
    images_folder = Path(images) if images else None
    weights_file = Path(vgg16_weights) if vgg16_weights else None
    check_run_inputs(images_folder, weights_file)
    folder = make_folder(out)  # a file in the way is refused before any work
    results = []
    for experiment in tqdm(experiments, desc="experiments", unit="experiment", disable=not progress):
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
        )
        result = run_experiment(experiment, context)
        write_result(result, folder)
        results.append(result)
    write_index(folder)
    return results


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
