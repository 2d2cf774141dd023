"""The paper's figures and the theory studies, each declared as an :class:`Experiment`.

``PAPER`` and ``THEORY`` map names to experiments, in order; :func:`select` picks some
by name. Running a selection and writing the report is :func:`backpropvis.jobs.suite.run_suite`.
"""

from __future__ import annotations

from types import ModuleType
from typing import Mapping, Sequence

from ..core.errors import BackpropvisError
from . import (
    fig2,
    fig3,
    fig4,
    fig5,
    fig6,
    fig7,
    fig8,
    fig9,
    theory_closed_form,
    theory_dead_zones,
    theory_depth,
    theory_gaussianity,
    theory_recovery,
    theory_unit_distance,
)
from .base import (
    Claim,
    ClaimResult,
    Experiment,
    ExperimentResult,
    FigureData,
    Measurement,
    RunContext,
    Skip,
    UnknownMetricError,
    load_figure_data,
    run_experiment,
)

__all__ = [
    "PAPER",
    "THEORY",
    "PAPER_MODULES",
    "THEORY_MODULES",
    "collect_experiments",
    "select",
    "find",
    "Claim",
    "ClaimResult",
    "Experiment",
    "ExperimentResult",
    "FigureData",
    "Measurement",
    "RunContext",
    "Skip",
    "UnknownMetricError",
    "load_figure_data",
    "run_experiment",
]


def collect_experiments(modules: Sequence[ModuleType], group: str) -> dict[str, Experiment]:
    """name -> the ``EXPERIMENT`` each module of ``modules`` declares, in order.

    Raises:
        TypeError: a module without an :class:`Experiment` named ``EXPERIMENT``, or one
            of another group; ValueError: two experiments with one name.
    """
    found: dict[str, Experiment] = {}
    for module in modules:
        experiment = getattr(module, "EXPERIMENT", None)
        if not isinstance(experiment, Experiment) or experiment.group != group:
            raise TypeError(f"{module.__name__} must declare EXPERIMENT, an Experiment of group {group!r}")
        if experiment.name in found:
            raise ValueError(f"two experiments are named {experiment.name!r} ({module.__name__})")
        found[experiment.name] = experiment
    return found


_PAPER_MODULES = (fig2, fig3, fig4, fig5, fig6, fig7, fig8, fig9)
_THEORY_MODULES = (
    theory_closed_form,
    theory_recovery,
    theory_gaussianity,
    theory_depth,
    theory_dead_zones,
    theory_unit_distance,
)

PAPER_MODULES: tuple[str, ...] = tuple(module.__name__.rsplit(".", 1)[1] for module in _PAPER_MODULES)
"""The modules of this package declaring the paper's figures (each an ``EXPERIMENT``), in the paper's order."""

THEORY_MODULES: tuple[str, ...] = tuple(module.__name__.rsplit(".", 1)[1] for module in _THEORY_MODULES)
"""The modules of this package declaring the theory studies (each an ``EXPERIMENT``)."""

PAPER: dict[str, Experiment] = collect_experiments(_PAPER_MODULES, "paper")
"""The paper's figures by name ("fig2" ... "fig9"), in the paper's order."""

THEORY: dict[str, Experiment] = collect_experiments(_THEORY_MODULES, "theory")
"""The theory studies by name ("closed-form", "recovery", "gaussianity", "depth", "dead-zones")."""


def select(registry: Mapping[str, Experiment], names: Sequence[str]) -> list[Experiment]:
    """The experiments named (``"all"`` or nothing: every one), in registry order."""
    if not names or "all" in names:
        return list(registry.values())
    unknown = [name for name in names if name not in registry]
    if unknown:
        raise BackpropvisError(f"unknown experiment {unknown[0]!r}; choose from {', '.join(registry)} or all")
    return [experiment for experiment in registry.values() if experiment.name in names]


def find(name: str) -> Experiment:
    """The paper figure or theory study named ``name``.

    Raises:
        BackpropvisError: for a name neither registry knows.
    """
    for experiments in (PAPER, THEORY):
        if name in experiments:
            return experiments[name]
    raise BackpropvisError(f"unknown experiment {name!r}; choose from {', '.join([*PAPER, *THEORY])}")
