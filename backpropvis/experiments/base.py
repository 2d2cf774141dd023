"""What every experiment declares as data, and what it returns.

An experiment (one paper figure, or one theory study) is an :class:`Experiment`:
its name and title, its settings at full (paper) size and at ``--quick`` size, its
claims (id, text, metric, comparison, threshold), a ``measure`` function that computes
the metrics and the arrays its figure needs, and a ``draw`` function that makes the
figure from those alone. :func:`run_experiment` runs the two as separate steps, with
the arrays saved in between (``figure_data.npz`` beside ``metrics.json``), so a figure
can be redrawn from a result folder without computing anything
(:func:`load_figure_data`). Whether a claim holds is decided here, from the declared
threshold, never by the experiment's own code nor by the report.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np
import torch

from ..core.claims import Claim, ClaimResult, Skip, UnknownMetricError
from ..core.errors import BackpropvisError
from ..core.files import read_arrays, write_arrays
from ..engine import Precision, PrecisionLike
from ..engine.receipt import DEFAULT_THRESHOLD, collect_receipt

__all__ = [
    "FIGURE_FILE",
    "METRICS_FILE",
    "FIGURE_DATA_FILE",
    "Claim",
    "ClaimResult",
    "Experiment",
    "ExperimentResult",
    "FigureData",
    "Measurement",
    "RunContext",
    "SABOTAGES",
    "Skip",
    "UnknownMetricError",
    "load_figure_data",
    "run_experiment",
    "run_record",
]

FIGURE_FILE = "figure.png"
"""An experiment's figure, in its result folder."""

METRICS_FILE = "metrics.json"
"""An experiment's result (:meth:`ExperimentResult.to_json`), in its result folder."""

FIGURE_DATA_FILE = "figure_data.npz"
"""The arrays and texts an experiment's figure is drawn from (:attr:`Measurement.figure`), in its result folder."""


@dataclass
class RunContext:
    """What a run gives every experiment.

    Attributes:
        out: the experiment's own folder (``DIR/<experiment>``), where its results are written
            (and anything it keeps between runs, e.g. fig7's databases).
        quick: reduced sizes instead of the paper's.
        device: where to compute.
        seed: the seed of every random draw.
        images: a folder of images (``--images``), or None for the bundled samples.
        vgg16_weights: a trained VGG-16 checkpoint path, or None when not available.
        progress: whether to show progress bars.
        image: the image a single-image study looks at (``--image``: a sample name or a path).
        precision: the engine's arithmetic for every map (default exact IEEE float32, so that
            claims are reproducible whatever PyTorch's global flags say; see
            :mod:`backpropvis.engine.precision`).
        receipt_threshold: at TF32 or bfloat16 the experiment's first engine call is also
            made in float32; its receipt names the methods whose cosine to it falls under this
            (:mod:`backpropvis.engine.receipt`).
    """

    out: Path
    quick: bool = False
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    seed: int = 0
    images: Optional[Path] = None
    vgg16_weights: Optional[Path] = None
    progress: bool = True
    image: str = "tabby"
    precision: PrecisionLike = Precision.FLOAT32
    receipt_threshold: float = DEFAULT_THRESHOLD


@dataclass(frozen=True)
class Measurement:
    """What ``measure`` returns.

    Attributes:
        metrics: name -> value; every claim's metric must be among them.
        model, weights: what was measured, for the report.
        notes: sentences for the report (e.g. why a stand-in network was used).
        details: anything else worth keeping in metrics.json (JSON-ready after tensors
            become lists), e.g. the resolved targets.
        figure: what ``draw`` needs beyond the result itself: name -> a tensor, a numpy
            array, a number, a string or a list of strings (saved as ``figure_data.npz``).
    """

    metrics: Mapping[str, float]
    model: str
    weights: str
    notes: tuple[str, ...] = ()
    details: Mapping[str, Any] = field(default_factory=dict)
    figure: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class FigureData:
    """What an experiment's ``draw`` reads: its result as written to metrics.json (settings
    after a JSON round trip: tuples are lists) and the arrays of ``figure_data.npz``.

    Attributes:
        experiment, settings, metrics, details, notes, model, weights: as in metrics.json.
        arrays: :attr:`Measurement.figure` as numpy arrays.
    """

    experiment: str
    settings: Mapping[str, Any]
    metrics: Mapping[str, float]
    details: Mapping[str, Any]
    notes: Sequence[str]
    model: str
    weights: str
    arrays: Mapping[str, np.ndarray]

    def tensor(self, name: str) -> torch.Tensor:
        """The array ``name`` as a CPU tensor."""
        return torch.from_numpy(np.array(self.arrays[name]))

    def text(self, name: str) -> str:
        """The string ``name``."""
        return str(self.arrays[name])

    def texts(self, name: str) -> list[str]:
        """The list of strings ``name``."""
        return [str(item) for item in self.arrays[name]]

    @classmethod
    def from_result(cls, result: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> FigureData:
        """From a result as metrics.json holds it and the saved arrays."""
        return cls(
            experiment=result["experiment"],
            settings=result["settings"],
            metrics=result["metrics"],
            details=result.get("details", {}),
            notes=result.get("notes", []),
            model=result["model"],
            weights=result["weights"],
            arrays=arrays,
        )


SABOTAGES: dict[str, str] = {
    "plain-gradient": "every method computes the plain gradient (saliency) under its own name",
    "zero-gbp": "GBP's map is all zeros",
    "zero-deconvnet": "DeconvNet's map is all zeros",
    "zero-saliency": "saliency's map is all zeros",
}
"""Deliberately broken methods an experiment's claims may be declared to catch
(``tests/test_sabotage.py`` breaks the engine each way and checks that a claim fails)."""


@dataclass(frozen=True)
class Experiment:
    """One experiment, declared as data.

    Args:
        name: "fig4", "recovery", ...
        title: one line for the report.
        full: the paper's settings.
        quick: the reduced settings of ``--quick``.
        claims: what the run tests.
        measure: ``(settings, context) -> Measurement``: the numbers and the figure's
            arrays; raises :class:`Skip` when it cannot run here. It draws nothing.
        draw: ``(figure_data, path)``: writes the figure, a PNG at ``path``, from a
            :class:`FigureData` alone (no model, no image, no computation of maps).
        group: "paper" (a figure of the paper) or "theory" (a theory study).
        tiny: the smallest settings that still exercise every claim (seconds on a CPU),
            for the test suite; empty: the quick ones.
        catches: the sabotages (names in :data:`SABOTAGES`) under which at least one of
            the claims fails: what a broken method cannot get past this experiment.
    """

    name: str
    title: str
    full: Mapping[str, Any]
    quick: Mapping[str, Any]
    claims: tuple[Claim, ...]
    measure: Callable[[Mapping[str, Any], RunContext], Measurement]
    draw: Callable[[FigureData, Path], None]
    group: str = "paper"
    tiny: Mapping[str, Any] = field(default_factory=dict)
    catches: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        unknown = [name for name in self.catches if name not in SABOTAGES]
        if unknown:
            raise ValueError(f"experiment {self.name}: unknown sabotage {unknown[0]!r}; known: {', '.join(SABOTAGES)}")


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
    run: dict = field(default_factory=dict)
    """How it was run: seed, device, precision, quick (so results over seeds can be pooled)."""
    precision_receipt: Optional[dict] = None
    """At TF32 or bfloat16: the first engine call's maps against float32
    (:meth:`~backpropvis.engine.receipt.PrecisionReceipt.as_dict`); None otherwise."""

    def to_json(self) -> dict:
        data = asdict(self)
        data["claims"] = [asdict(claim) for claim in self.claims]
        return data


def run_record(context: RunContext) -> dict:
    """How a run was made, as metrics.json keeps it (``run``): seed, device, precision, quick."""
    return {
        "seed": context.seed,
        "device": str(context.device),
        "precision": Precision.parse(context.precision).value,
        "quick": context.quick,
    }


def run_experiment(experiment: Experiment, context: RunContext) -> ExperimentResult:
    """Run one experiment with the settings ``context.quick`` selects, judge its claims,
    save its figure's data (``figure_data.npz``) and draw the figure from that data.

    A :class:`Skip` becomes a skipped result with its reason; a claim that does not
    hold is a finding, not an error.

    Raises:
        UnknownMetricError: a claim names a metric that ``measure`` did not return.
    """
    settings = dict(experiment.quick if context.quick else experiment.full)
    run = run_record(context)
    context.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    try:
        with collect_receipt(context.receipt_threshold) as receipts:
            measured = experiment.measure(settings, context)
    except Skip as reason:
        return ExperimentResult(
            experiment.name,
            experiment.title,
            experiment.group,
            "-",
            "-",
            settings,
            time.perf_counter() - start,
            [],
            {},
            skipped=str(reason),
            run=run,
        )
    claims = [claim.evaluate(measured.metrics) for claim in experiment.claims]
    result = ExperimentResult(
        experiment=experiment.name,
        title=experiment.title,
        group=experiment.group,
        model=measured.model,
        weights=measured.weights,
        settings=settings,
        seconds=time.perf_counter() - start,
        claims=claims,
        metrics={key: _plain(value) for key, value in measured.metrics.items()},
        notes=list(measured.notes),
        details={key: _plain(value) for key, value in measured.details.items()},
        run=run,
        precision_receipt=receipts.receipt.as_dict() if receipts.receipt is not None else None,
    )
    data_file = write_arrays(
        {name: _array(name, value) for name, value in measured.figure.items()}, context.out / FIGURE_DATA_FILE
    )
    arrays = read_arrays(data_file)
    experiment.draw(FigureData.from_result(json.loads(json.dumps(result.to_json())), arrays), context.out / FIGURE_FILE)
    result.figure = FIGURE_FILE if (context.out / FIGURE_FILE).is_file() else None
    return result


def load_figure_data(result_dir: Path) -> FigureData:
    """The :class:`FigureData` of a result folder (``metrics.json`` and ``figure_data.npz``).

    Raises:
        BackpropvisError: a folder without both files, or with unreadable ones.
    """
    result_dir = Path(result_dir)
    try:
        result = json.loads((result_dir / METRICS_FILE).read_text(encoding="utf-8"))
        arrays = read_arrays(result_dir / FIGURE_DATA_FILE)
    except (OSError, ValueError) as error:
        message = f"{result_dir} is not an experiment's result folder with its figure data: {error}"
        raise BackpropvisError(message) from None
    return FigureData.from_result(result, arrays)


def _array(name: str, value: Any) -> np.ndarray:
    """A figure's value as a numpy array that loads without pickle."""
    array = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    if array.dtype == object:
        raise TypeError(f"figure data {name!r} must be numbers or strings, not {type(value).__name__}")
    return array


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
