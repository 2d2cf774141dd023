"""What a sanity protocol is: a small declared value, and the typed result it measures.

A *protocol* (:class:`Protocol`) is one published test of saliency methods (Adebayo et
al. 2018, Kindermans et al. 2017, Sixt et al. 2020), declared as data:

- ``name`` ("adebayo2018"), ``title`` (one line), ``reference`` (the paper);
- ``full``, ``quick`` and ``tiny``: three instances of the protocol's own settings
  dataclass (frozen, JSON-ready fields: numbers, strings, tuples), the paper's sizes, the
  ``--quick`` sizes (seconds to a minute) and the test suite's (seconds);
- ``claims``: what the literature found, each a :class:`~backpropvis.experiments.base.Claim`
  on a number of :attr:`SanityResult.claim_values` (able to fail);
- ``catches``: the sabotages (``experiments.base.SABOTAGES``) under which one claim fails;
- ``measure(run, settings) -> SanityResult``: the numbers, per step and method;
- ``section(result) -> str``: the protocol's part of ``index.html`` (self-contained HTML:
  figures embedded as PNG data); :func:`backpropvis.sanity.page.default_section` draws the
  usual curves, control rows and tables, so most protocols pass it;
- ``draw(result, path)``: one PNG figure (the report's figure for ``reproduce``).

How to add a protocol (one file and one line):

1. Write ``backpropvis/sanity/<name>.py`` declaring ``PROTOCOL = Protocol(...)`` (a settings
   dataclass, the claims, ``measure``, ``section``, ``draw``). ``measure`` gets a
   :class:`SanityRun` (the model, the images, the device, the precision, a progress flag
   and a :class:`~backpropvis.sanity.steps.StepStore` that keeps every finished unit of
   work, so a rerun resumes) and returns a :class:`SanityResult`; build its summaries with
   :func:`backpropvis.sanity.summary.summarize_values` (bootstrap intervals and counts).
2. Add the module to ``_MODULES`` in ``backpropvis/sanity/__init__.py`` (the registry).

The command (``backpropvis sanity --protocol NAME``), ``sanity.json``, ``index.html`` and
``reproduce``'s extra experiments are then the framework's.

Vocabulary of a result: a *step* (:class:`StepResult`) is one network or input variant
compared with the reference (a cascading step: the layers redrawn so far; an independent
step: one layer redrawn; the data step: the random-label model; a shifted input...).
Steps belong to a *series* ("cascading", "independent", "data", ...), each drawn as one
curve per method. At each step every *method* (a rule name) has per *metric* (e.g.
"spearman_abs") a :class:`Summary` (per-image values, their mean, a bootstrap 95%
interval, the image count), and per *control* (e.g. "random map", "edge map", "other
seed") the same metrics for the control's comparison, shown beside the method's number.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional, Sequence

import numpy as np
import torch
from torch import nn

from ..core.claims import Claim
from ..core.metrics import small_sample_note
from ..engine import Precision, PrecisionLike

if TYPE_CHECKING:
    from .steps import StepStore

__all__ = [
    "Protocol",
    "SanityRun",
    "SanityResult",
    "StepResult",
    "Summary",
]


@dataclass(frozen=True)
class Summary:
    """One number of a result: a metric's per-image values at one step, for one method
    (or one control), summarised.

    Attributes:
        values: per image (averaged over the redraw's seeds where there are several), in
            the order of the images; NaN where the metric means nothing (a constant map).
        mean: the mean of the finite values (NaN when none is).
        low, high: the bootstrap 95% interval of that mean (NaN with fewer than 2 values).
        count: how many finite values the mean is of.
    """

    values: tuple[float, ...]
    mean: float
    low: float
    high: float
    count: int

    @property
    def small_sample(self) -> Optional[str]:
        """A sentence when the count is below ``metrics.SMALL_SAMPLE``, else None."""
        return small_sample_note(self.count)

    def to_json(self) -> dict[str, Any]:
        return {
            "mean": _number(self.mean),
            "low": _number(self.low),
            "high": _number(self.high),
            "count": self.count,
            "values": [_number(value) for value in self.values],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Summary:
        return cls(
            values=tuple(_float(value) for value in data["values"]),
            mean=_float(data["mean"]),
            low=_float(data["low"]),
            high=_float(data["high"]),
            count=int(data["count"]),
        )


Metrics = dict[str, Summary]
"""metric name -> its summary."""


@dataclass(frozen=True)
class StepResult:
    """One step of a protocol: what was changed and how much each method's maps moved.

    Attributes:
        series: the curve it belongs to ("cascading", "independent", "data", ...).
        label: how figures name it ("trained", "fc2", "up to conv2_1", "random labels").
        redrawn: the layer names redrawn at this step (empty for the reference and for
            steps that redraw nothing).
        methods: method -> metric -> summary (the method's map against its reference).
        controls: method -> control name -> metric -> summary (what the same metric gives
            for a comparison that says what a value means: a random map, an edge map,
            another seed of the redraw).
    """

    series: str
    label: str
    redrawn: tuple[str, ...] = ()
    methods: dict[str, Metrics] = field(default_factory=dict)
    controls: dict[str, dict[str, Metrics]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "series": self.series,
            "label": self.label,
            "redrawn": list(self.redrawn),
            "methods": {method: _metrics_json(metrics) for method, metrics in self.methods.items()},
            "controls": {
                method: {control: _metrics_json(metrics) for control, metrics in controls.items()}
                for method, controls in self.controls.items()
            },
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StepResult:
        return cls(
            series=data["series"],
            label=data["label"],
            redrawn=tuple(data.get("redrawn", ())),
            methods={method: _metrics_from(metrics) for method, metrics in data.get("methods", {}).items()},
            controls={
                method: {control: _metrics_from(metrics) for control, metrics in controls.items()}
                for method, controls in data.get("controls", {}).items()
            },
        )


@dataclass
class SanityResult:
    """What ``measure`` returns, and what ``sanity.json`` holds (plus ``arrays`` in an npz).

    Attributes:
        protocol: the protocol's name.
        settings: the settings it ran with (``dataclasses.asdict`` of the settings value).
        model, weights: what was tested, in words.
        batch_norm: the batch-norm policy of every redraw (None when nothing is redrawn).
        order: how layers were ordered ("execution": by a forward pass; "registration").
        metrics: the metric names, in display order; methods: the methods, in order.
        steps: every step, grouped by series in display order.
        claim_values: the numbers the protocol's claims read (name -> value).
        notes: sentences for the page (what differs from the paper, small samples...).
        arrays: what the figures show beyond the numbers (map grids: name -> array).
        precision_receipt: at TF32 or bfloat16, the run's first engine call against float32
            (:meth:`~backpropvis.engine.receipt.PrecisionReceipt.as_dict`); None otherwise.
    """

    protocol: str
    settings: dict[str, Any]
    model: str
    weights: str
    batch_norm: Optional[str]
    order: str
    metrics: tuple[str, ...]
    methods: tuple[str, ...]
    steps: list[StepResult]
    claim_values: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    precision_receipt: Optional[dict[str, Any]] = None

    def series(self, name: str) -> list[StepResult]:
        """The steps of one series, in order."""
        return [step for step in self.steps if step.series == name]

    def series_names(self) -> list[str]:
        """The series, in the order their first steps appear."""
        return list(dict.fromkeys(step.series for step in self.steps))

    def smallest_count(self) -> int:
        """The fewest images behind any method's number (0 when there is none)."""
        counts = [
            summary.count for step in self.steps for metrics in step.methods.values() for summary in metrics.values()
        ]
        return min(counts) if counts else 0

    def to_json(self) -> dict[str, Any]:
        """JSON-ready (``arrays`` are not included: they go to an npz beside it)."""
        return {
            "protocol": self.protocol,
            "settings": _plain(self.settings),
            "model": self.model,
            "weights": self.weights,
            "batch_norm": self.batch_norm,
            "order": self.order,
            "metrics": list(self.metrics),
            "methods": list(self.methods),
            "steps": [step.to_json() for step in self.steps],
            "claim_values": {name: _number(value) for name, value in self.claim_values.items()},
            "notes": list(self.notes),
            "precision_receipt": self.precision_receipt,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], arrays: Optional[Mapping[str, np.ndarray]] = None) -> SanityResult:
        return cls(
            protocol=data["protocol"],
            settings=dict(data["settings"]),
            model=data["model"],
            weights=data["weights"],
            batch_norm=data.get("batch_norm"),
            order=data.get("order", ""),
            metrics=tuple(data["metrics"]),
            methods=tuple(data["methods"]),
            steps=[StepResult.from_json(step) for step in data["steps"]],
            claim_values={name: _float(value) for name, value in data.get("claim_values", {}).items()},
            notes=list(data.get("notes", [])),
            arrays=dict(arrays or {}),
            precision_receipt=data.get("precision_receipt"),
        )


@dataclass
class SanityRun:
    """What a protocol's ``measure`` is given.

    Attributes:
        model: the trained model, in eval mode, on ``device`` (never modified: variants
            are copies).
        inputs: [B, C, H, W] the images, preprocessed, on ``device``.
        keys: B names of the images (file names or sample names).
        model_name, weights: the model and its weights in words.
        store: keeps each finished unit of work (a step, a seed) and gives it back on a
            rerun (:class:`~backpropvis.sanity.steps.StepStore`).
        device, precision: where and in what arithmetic maps are computed.
        seed: the seed every random draw derives from.
        progress: whether to show progress bars.
    """

    model: nn.Module
    inputs: torch.Tensor
    keys: Sequence[str]
    model_name: str
    weights: str
    store: StepStore
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    precision: PrecisionLike = Precision.FLOAT32
    seed: int = 0
    progress: bool = True


@dataclass(frozen=True)
class Protocol:
    """A sanity protocol, declared as data (see the module's docstring for how to add one).

    Args:
        name: the ``--protocol`` name, e.g. "adebayo2018".
        title: one line for pages and the report.
        reference: the paper, e.g. "Adebayo et al. 2018, Sanity Checks for Saliency Maps (NeurIPS)".
        full, quick, tiny: settings values (instances of one frozen dataclass).
        claims: what the literature found, on ``SanityResult.claim_values``.
        measure: ``(run, settings) -> SanityResult``.
        section: ``(result) -> str``: the protocol's HTML section (self-contained).
        draw: ``(result, path)``: writes one PNG figure.
        catches: sabotage names under which at least one claim fails.
    """

    name: str
    title: str
    reference: str
    full: Any
    quick: Any
    tiny: Any
    claims: tuple[Claim, ...]
    measure: Callable[[SanityRun, Any], SanityResult]
    section: Callable[[SanityResult], str]
    draw: Callable[[SanityResult, Any], None]
    catches: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for settings in (self.full, self.quick, self.tiny):
            if not dataclasses.is_dataclass(settings) or isinstance(settings, type):
                raise TypeError(f"protocol {self.name}: settings must be dataclass instances")

    def settings(self, size: str = "full") -> Any:
        """The settings of a size: "full", "quick" or "tiny"."""
        if size not in ("full", "quick", "tiny"):
            raise ValueError(f"size must be full, quick or tiny, not {size!r}")
        return getattr(self, size)


def _number(value: float) -> Optional[float]:
    value = float(value)
    return None if math.isnan(value) else value


def _float(value: Optional[float]) -> float:
    return math.nan if value is None else float(value)


def _metrics_json(metrics: Metrics) -> dict[str, Any]:
    return {name: summary.to_json() for name, summary in metrics.items()}


def _metrics_from(data: Mapping[str, Any]) -> Metrics:
    return {name: Summary.from_json(summary) for name, summary in data.items()}


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (tuple, list)):
        return [_plain(item) for item in value]
    return value
