"""What every experiment declares as data, and what it returns.

An experiment (one paper figure, or one theory study) is an :class:`Experiment`:
its name and title, its settings at full (paper) size and at ``--quick`` size, its
claims (id, text, metric, comparison, threshold), and a ``measure`` function that
computes the metrics and draws the figure. Whether a claim holds is decided here,
from the declared threshold, never by the experiment's own code nor by the report.
"""

from __future__ import annotations

import math
import operator
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import torch

from ..errors import BackpropvisError

__all__ = [
    "Claim",
    "ClaimResult",
    "Experiment",
    "ExperimentResult",
    "Measurement",
    "RunContext",
    "Skip",
    "run_experiment",
]

_COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
}


@dataclass(frozen=True)
class Claim:
    """A statement a run can pass or fail: ``metrics[metric] <comparison> threshold``.

    Args:
        id: a stable identifier, e.g. "gbp_cnn_recovers".
        text: the statement in words, as the report shows it.
        metric: the key of the measured value in the experiment's metrics.
        comparison: one of ">=", ">", "<=", "<".
        threshold: the bound the value is compared with.
    """

    id: str
    text: str
    metric: str
    comparison: str
    threshold: float

    def __post_init__(self) -> None:
        if self.comparison not in _COMPARISONS:
            raise ValueError(f"claim {self.id}: comparison must be one of {list(_COMPARISONS)}")

    def evaluate(self, metrics: Mapping[str, float]) -> "ClaimResult":
        """The claim's verdict on ``metrics`` (a missing or NaN value does not hold)."""
        value = metrics.get(self.metric)
        value = float(value) if value is not None else float("nan")
        holds = not math.isnan(value) and _COMPARISONS[self.comparison](value, self.threshold)
        return ClaimResult(self.id, self.text, self.metric, self.comparison, self.threshold, value, bool(holds))


@dataclass(frozen=True)
class ClaimResult:
    """A claim with its measured value and verdict."""

    id: str
    text: str
    metric: str
    comparison: str
    threshold: float
    value: float
    holds: bool


class Skip(BackpropvisError):
    """Raised by ``measure`` when an experiment cannot run here; the message says why."""


@dataclass
class RunContext:
    """What a run gives every experiment.

    Attributes:
        out: the experiment's own folder (``DIR/<experiment>``), to write figure.png in.
        quick: reduced sizes instead of the paper's.
        device: where to compute.
        seed: the seed of every random draw.
        images: a folder of images (``--images``), or None for the bundled samples.
        vgg16_weights: a trained VGG-16 checkpoint path, or None when not available.
        progress: whether to show progress bars.
        image: the image a single-image study looks at (``--image``: a sample name or a path).
    """

    out: Path
    quick: bool = False
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    seed: int = 0
    images: Optional[Path] = None
    vgg16_weights: Optional[Path] = None
    progress: bool = True
    image: str = "tabby"


@dataclass(frozen=True)
class Measurement:
    """What ``measure`` returns: the metrics, the model and weights used, and any
    settings it resolved at run time (e.g. which trained model stood in)."""

    metrics: Mapping[str, float]
    model: str
    weights: str
    notes: tuple[str, ...] = ()
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Experiment:
    """One experiment, declared as data.

    Args:
        name: "fig4", "recovery", ...
        title: one line for the report.
        full: the paper's settings.
        quick: the reduced settings of ``--quick``.
        claims: what the run tests.
        measure: ``(settings, context) -> Measurement``; writes ``context.out/figure.png``
            and raises :class:`Skip` when it cannot run here.
        group: "paper" (a figure of the paper) or "theory" (a theory study).
    """

    name: str
    title: str
    full: Mapping[str, Any]
    quick: Mapping[str, Any]
    claims: tuple[Claim, ...]
    measure: Callable[[Mapping[str, Any], RunContext], Measurement]
    group: str = "paper"


@dataclass
class ExperimentResult:
    """A finished (or skipped) experiment, as written to metrics.json."""

    experiment: str
    title: str
    group: str
    model: str
    weights: str
    settings: dict
    seconds: float
    claims: list[ClaimResult]
    metrics: dict
    notes: list[str] = field(default_factory=list)
    details: dict = field(default_factory=dict)
    figure: Optional[str] = None
    skipped: Optional[str] = None

    def to_json(self) -> dict:
        data = asdict(self)
        data["claims"] = [asdict(claim) for claim in self.claims]
        return data


def run_experiment(experiment: Experiment, context: RunContext) -> ExperimentResult:
    """Run one experiment with the settings ``context.quick`` selects and judge its claims.

    A :class:`Skip` becomes a skipped result with its reason; a claim that does not
    hold is a finding, not an error.
    """
    settings = dict(experiment.quick if context.quick else experiment.full)
    context.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    try:
        measured = experiment.measure(settings, context)
    except Skip as reason:
        return ExperimentResult(
            experiment.name, experiment.title, experiment.group, "-", "-", settings,
            time.perf_counter() - start, [], {}, skipped=str(reason),
        )
    seconds = time.perf_counter() - start
    figure = context.out / "figure.png"
    return ExperimentResult(
        experiment=experiment.name,
        title=experiment.title,
        group=experiment.group,
        model=measured.model,
        weights=measured.weights,
        settings=settings,
        seconds=seconds,
        claims=[claim.evaluate(measured.metrics) for claim in experiment.claims],
        metrics={key: _plain(value) for key, value in measured.metrics.items()},
        notes=list(measured.notes),
        details={key: _plain(value) for key, value in measured.details.items()},
        figure=figure.name if figure.is_file() else None,
    )


def _plain(value: Any) -> Any:
    """JSON-friendly numbers (tensors and numpy scalars to floats, lists recursively)."""
    if isinstance(value, torch.Tensor):
        return value.tolist() if value.dim() else float(value)
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    return value
