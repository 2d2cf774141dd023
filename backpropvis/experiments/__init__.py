"""The paper's figures and the theory studies, each declared as an :class:`Experiment`.

``PAPER`` and ``THEORY`` map names to experiments; :func:`run_suite` runs a selection,
writes each ``metrics.json`` as soon as it finishes (a crash later never loses it)
and rebuilds ``index.html``.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Mapping, Optional, Sequence, Union

import torch
from tqdm.auto import tqdm

from ..errors import BackpropvisError
from ..files import make_folder
from .base import Claim, ClaimResult, Experiment, ExperimentResult, Measurement, RunContext, Skip, run_experiment
from .common import check_run_inputs

__all__ = [
    "PAPER",
    "THEORY",
    "run_suite",
    "select",
    "Claim",
    "ClaimResult",
    "Experiment",
    "ExperimentResult",
    "Measurement",
    "RunContext",
    "Skip",
    "run_experiment",
]

PAPER_MODULES: tuple[str, ...] = ("fig2", "fig3", "fig4", "fig5", "fig6", "fig7", "fig8", "fig9")
"""The modules of this package declaring the paper's figures (each an ``EXPERIMENT``), in the paper's order."""


def _registered(modules: Sequence[str]) -> dict[str, Experiment]:
    """name -> EXPERIMENT of each module of ``modules`` present in this package, in order
    (a module not written yet is left out; an import error inside one is raised)."""
    registry = {}
    for module_name in modules:
        qualified = f"{__name__}.{module_name}"
        try:
            module = importlib.import_module(qualified)
        except ModuleNotFoundError as error:
            if error.name != qualified:
                raise
            continue
        registry[module.EXPERIMENT.name] = module.EXPERIMENT
    return registry


PAPER: dict[str, Experiment] = _registered(PAPER_MODULES)
"""The paper's figures by name ("fig2" ... "fig9"), in the paper's order."""

THEORY_MODULES: tuple[str, ...] = (
    "theory_closed_form", "theory_recovery", "theory_gaussianity", "theory_depth", "theory_dead_zones",
)
"""The modules of this package declaring the theory studies (each an ``EXPERIMENT``)."""

THEORY: dict[str, Experiment] = _registered(THEORY_MODULES)
"""The theory studies by name ("closed-form", "recovery", "gaussianity", "depth", "dead-zones")."""


def select(registry: Mapping[str, Experiment], names: Sequence[str]) -> list[Experiment]:
    """The experiments named (``"all"`` or nothing: every one), in registry order."""
    if not names or "all" in names:
        return list(registry.values())
    unknown = [name for name in names if name not in registry]
    if unknown:
        raise BackpropvisError(f"unknown experiment {unknown[0]!r}; choose from {', '.join(registry)} or all")
    return [experiment for experiment in registry.values() if experiment.name in names]


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
) -> list[ExperimentResult]:
    """Run ``experiments`` one after the other, writing ``out/<name>/metrics.json`` after
    each and ``out/index.html`` at the end; returns the results. ``image`` (a sample name
    or a path) is what single-image studies look at."""
    from ..report import write_index, write_result

    check_run_inputs(Path(images) if images else None, Path(vgg16_weights) if vgg16_weights else None)
    out = make_folder(out)  # a file in the way is refused before any work
    results = []
    for experiment in tqdm(experiments, desc="experiments", unit="experiment", disable=not progress):
        context = RunContext(
            out=out / experiment.name, quick=quick, device=torch.device(device), seed=seed,
            images=Path(images) if images else None, vgg16_weights=Path(vgg16_weights) if vgg16_weights else None,
            progress=progress, image=image,
        )
        result = run_experiment(experiment, context)
        write_result(result, out)
        results.append(result)
    write_index(out)
    return results
