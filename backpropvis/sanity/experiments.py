"""The protocols as extra experiments of ``reproduce`` (group "sanity": the report shows
them under their own heading, after the paper's figures and the theory studies).

Each protocol of :data:`~backpropvis.sanity.PROTOCOLS` is run on the two bundled trained
models (:data:`MODELS`): the digits VGG on held-out digits and EfficientNet-Lite0 on the
bundled photos. An experiment's folder holds the protocol's own ``sanity.json`` and kept
steps (a rerun resumes), beside the report's ``metrics.json`` and figure (the report's page
shows it; the protocol's own page is the ``sanity`` command's).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping

from ..experiments.base import Experiment, FigureData, Measurement, RunContext
from ..models import ModelSpec, as_loaded
from . import PROTOCOLS
from .protocol import Protocol, SanityResult
from .run import SanityOptions, run_sanity

__all__ = ["MODELS", "SANITY", "sanity_experiment"]


@dataclasses.dataclass(frozen=True)
class BundledModel:
    """A trained model the protocols run on in ``reproduce``.

    Attributes:
        short: its part of the experiment's name; name, weights: as ``load_model`` takes them;
        quick, tiny: setting overrides for the two reduced sizes (a large model takes fewer images).
    """

    short: str
    name: str
    weights: str
    quick: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    tiny: Mapping[str, Any] = dataclasses.field(default_factory=dict)


MODELS: tuple[BundledModel, ...] = (
    BundledModel("digits", "digits-vgg", "trained"),
    BundledModel(
        "efficientnet",
        "efficientnet-lite0",
        "imagenet",
        quick={"images": 4, "independent": False},
        tiny={"images": 2, "independent": False, "seeds": 2},
    ),
)


def _overrides(protocol: Protocol, wanted: Mapping[str, Any]) -> dict[str, Any]:
    """The overrides a protocol's settings have fields for (others are left out)."""
    names = {field.name for field in dataclasses.fields(protocol.full)}
    return {name: value for name, value in wanted.items() if name in names}


def _measure(protocol: Protocol, model: BundledModel):
    def measure(settings: Mapping[str, Any], context: RunContext) -> Measurement:
        loaded = as_loaded(ModelSpec(model.name, weights=model.weights), context.seed)
        result, _ = run_sanity(
            protocol,
            context.out,
            model=loaded,
            options=SanityOptions(
                size=settings["size"],
                settings=_overrides(protocol, settings.get("settings", {})),
                device=str(context.device),
                precision=context.precision,
                seed=context.seed,
                progress=context.progress,
                page=False,
                receipt_threshold=context.receipt_threshold,
            ),
        )
        return Measurement(
            metrics=result.claim_values,
            model=model.name,
            weights=loaded.weights_description,
            notes=tuple(result.notes),
            details={"sanity": result.to_json()},
            figure=result.arrays,
        )

    return measure


def _draw(protocol: Protocol):
    def draw(data: FigureData, path: Path) -> None:
        protocol.draw(SanityResult.from_json(data.details["sanity"], data.arrays), path)

    return draw


def sanity_experiment(protocol: Protocol, model: BundledModel) -> Experiment:
    """The experiment running ``protocol`` on ``model`` (named "<protocol>-<model>")."""
    return Experiment(
        name=f"{protocol.name}-{model.short}",
        title=f"{protocol.title} ({model.name})",
        full={"size": "full"},
        quick={"size": "quick", "settings": dict(model.quick)},
        tiny={"size": "tiny", "settings": dict(model.tiny)},
        claims=protocol.claims,
        measure=_measure(protocol, model),
        draw=_draw(protocol),
        group="sanity",
        catches=protocol.catches,
    )


SANITY: dict[str, Experiment] = {
    experiment.name: experiment
    for experiment in (sanity_experiment(protocol, model) for protocol in PROTOCOLS.values() for model in MODELS)
}
"""Every protocol on every bundled model, by experiment name."""
