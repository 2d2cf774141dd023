"""Adebayo et al. 2018, "Sanity Checks for Saliency Maps" (NeurIPS): does a map depend on
what the model learned?

Three series of steps, each method's map of the trained model's predicted class compared
with the same method's map of a variant (:mod:`.similarity`: Spearman with and without
absolute values, SSIM, HOG; :mod:`.compare`: the controls beside every number):

- ``cascading``: the layers redrawn from the top (the logits) down, one more group at each
  step, until the whole network is random. The order is the *execution* order (a forward
  pass on the images: :func:`~backpropvis.models.randomization.redrawable_layers`), not the
  order in which modules are registered; groups are single layers (``granularity
  "layers"``) or the model's stages (``"stages"``; ``"auto"``: layers up to 12 of them).
- ``independent``: one group redrawn at a time, every other layer trained.
- ``data``: the same architecture trained on permuted labels (the digits VGG only: it is
  trained here, seeded, with :mod:`backpropvis.models.digits_training`), against the
  model under test.

Redrawing is :func:`~backpropvis.models.randomization.redraw`'s (the paper's init, seeded by
(seed, layer name)) with its declared batch-norm policy (default "reestimate": statistics
re-estimated on the images and their mirror images). Each step is redrawn with ``seeds``
seeds; a per-image value is the mean over the seeds, and the "other seed" control compares
two seeds' maps.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass
from typing import Any, Callable, NamedTuple, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from ..core.claims import Claim
from ..core.errors import BackpropvisError
from ..core.rules import PAPER_METHODS, resolve_rules
from ..engine import attribute_many
from ..models import derive_seed
from ..models.digits_training import TrainingSettings, train_digits_vgg
from ..models.digits_vgg import DigitsVGG
from ..models.randomization import (
    BATCH_NORM_POLICIES,
    Stage,
    default_stages,
    layers_from,
    only_redrawn,
    redrawable_layers,
    redrawn_from,
)
from .compare import Controls, compare_variants, step_from_numbers
from .figures import draw_protocol
from .page import default_section
from .protocol import Protocol, SanityResult, SanityRun, StepResult
from .similarity import METRICS, prepare

__all__ = ["AdebayoSettings", "PROTOCOL", "PlannedStep", "groups", "measure", "planned_steps", "redraw_seed"]

AUTO_LAYERS = 12
"""``granularity "auto"``: single layers for models with at most this many, else stages."""


@dataclass(frozen=True)
class AdebayoSettings:
    """What one run of the protocol does.

    Attributes:
        methods: rule names.
        seeds: redraws of every step (the "other seed" control needs 2 or more).
        granularity: "layers", "stages" or "auto" (see the module's docstring).
        batch_norm: the randomisation's batch-norm policy.
        independent: run the independent series too.
        data: run the data-randomisation series where it can (the digits VGG).
        data_seeds: label permutations (each a model trained here).
        data_epochs, data_train_images: the random-label model's training (None: every
            training digit).
        images: how many images ``reproduce`` takes (the command takes what it is given).
    """

    methods: tuple[str, ...] = PAPER_METHODS
    seeds: int = 3
    granularity: str = "auto"
    batch_norm: str = "reestimate"
    independent: bool = True
    data: bool = True
    data_seeds: int = 2
    data_epochs: int = 60
    data_train_images: int | None = None
    images: int = 32

    def __post_init__(self) -> None:
        if self.granularity not in ("layers", "stages", "auto"):
            raise BackpropvisError(f"granularity must be layers, stages or auto, not {self.granularity!r}")
        if self.batch_norm not in BATCH_NORM_POLICIES:
            raise BackpropvisError(
                f"batch_norm must be one of {', '.join(BATCH_NORM_POLICIES)}, not {self.batch_norm!r}"
            )
        for name in ("seeds", "data_seeds", "data_epochs", "images"):
            if getattr(self, name) < 1:
                raise BackpropvisError(f"{name} must be at least 1, not {getattr(self, name)}")
        resolve_rules(self.methods)


Build = Callable[[int], nn.Module]
"""seed index -> a variant of the model."""


def groups(model: nn.Module, granularity: str, example: torch.Tensor) -> list[Stage]:
    """The groups of layers a step redraws, top first (execution order on ``example``)."""
    layers = redrawable_layers(model, example)
    if granularity == "auto":
        granularity = "layers" if len(layers) <= AUTO_LAYERS else "stages"
    if granularity == "layers":
        return [Stage(name, (name,)) for name in reversed(layers)]
    if granularity == "stages":
        return list(reversed(default_stages(model)))
    raise ValueError(f"granularity must be layers, stages or auto, not {granularity!r}")


def _variant_maps(run: SanityRun, settings: AdebayoSettings, build: Build, count: int, predicted: torch.Tensor):
    """method -> ``count`` maps [B, C, H, W] of the variants (one per seed index), and the
    variants' weights in words."""
    maps: dict[str, list[torch.Tensor]] = {method: [] for method in settings.methods}
    descriptions = []
    for index in range(count):
        network = build(index)
        descriptions.append(str(getattr(network, "weights_description", "")))
        found = attribute_many(network, run.inputs, [predicted], settings.methods, precision=run.precision)
        del network
        for method in settings.methods:
            maps[method].append(found[method][0].cpu())
    return maps, descriptions


def _unit(
    run: SanityRun, settings: AdebayoSettings, reference, controls: Controls, predicted, build: Build, count: int
):
    """One step's numbers (method -> values and controls) and its first image's maps [M, C, H, W]."""
    maps, descriptions = _variant_maps(run, settings, build, count, predicted)
    methods = {method: compare_variants(reference[method], maps[method], controls) for method in maps}
    numbers = {"methods": methods, "descriptions": descriptions}
    return numbers, {"first": torch.stack([maps[method][0][0] for method in settings.methods])}


def redraw_seed(seed: int, index: int) -> int:
    """The seed of the ``index``-th redraw of every step (from the run's ``seed``)."""
    return derive_seed(seed, "sanity adebayo2018 redraw", index)


def _random_label_model(run: SanityRun, settings: AdebayoSettings, index: int) -> nn.Module:
    training = TrainingSettings(
        epochs=settings.data_epochs,
        train_images=settings.data_train_images,
        seed=run.seed,
        label_permutation_seed=derive_seed(run.seed, "sanity adebayo2018 labels", index),
    )
    result = train_digits_vgg(training, progress=run.progress)
    result.model.weights_description = (
        f"{result.model.weights_description}: accuracy {result.train_accuracy:.2f} on its permuted training labels "
        f"(memorised), {result.test_accuracy:.2f} on the true test labels"
    )
    return result.model.to(run.device)


class PlannedStep(NamedTuple):
    """A step to run: its series and label, the layers it redraws, how to build its variant
    (seed index -> model) and how many seeds it takes."""

    series: str
    label: str
    redrawn: tuple[str, ...]
    build: Build
    seeds: int


def planned_steps(run: SanityRun, settings: AdebayoSettings) -> list[PlannedStep]:
    """Every step to run, in display order (the reference "trained" step first)."""
    model, inputs = run.model, run.inputs
    calibration = torch.cat([inputs, inputs.flip(-1)])
    options = {"batch_norm": settings.batch_norm, "calibration": calibration}
    steps = [PlannedStep("cascading", "trained", (), lambda _: model, 1)]
    found = groups(model, settings.granularity, inputs)
    for stage in found:
        redrawn = layers_from(model, stage, inputs)

        def cascade(index: int, stage: Stage = stage) -> nn.Module:
            return redrawn_from(model, stage, example=inputs, seed=redraw_seed(run.seed, index), **options)

        steps.append(PlannedStep("cascading", f"down to {stage.label}", redrawn, cascade, settings.seeds))
    if settings.independent:
        for stage in found:

            def alone(index: int, stage: Stage = stage) -> nn.Module:
                return only_redrawn(model, stage, seed=redraw_seed(run.seed, index), **options)

            steps.append(PlannedStep("independent", f"only {stage.label}", stage.layers, alone, settings.seeds))
    if settings.data and isinstance(model, DigitsVGG):

        def relabelled(index: int) -> nn.Module:
            return _random_label_model(run, settings, index)

        steps.append(PlannedStep("data", "random labels", (), relabelled, settings.data_seeds))
    return steps


def measure(run: SanityRun, settings: AdebayoSettings) -> SanityResult:
    """The three series on ``run``'s model and images (see the module's docstring)."""
    trained = attribute_many(run.model, run.inputs, ["max"], settings.methods, precision=run.precision)
    predicted = trained.targets[0]  # [B]
    reference = {method: prepare(trained[method][0].cpu()) for method in settings.methods}
    controls = Controls(run.inputs.cpu(), run.seed)
    steps: list[StepResult] = []
    first: list[torch.Tensor] = []
    described: list[str] = []
    planned = planned_steps(run, settings)
    for index, (series, label, redrawn, build, count) in enumerate(
        tqdm(planned, desc="adebayo2018", unit="step", disable=not run.progress)
    ):
        kept = run.store.run(
            f"{index:03d}-{series}",
            functools.partial(_unit, run, settings, reference, controls, predicted, build, count),
        )
        steps.append(step_from_numbers(series, label, redrawn, kept.numbers["methods"], run.seed))
        if series == "data":
            described.extend(kept.numbers["descriptions"])
        first.append(kept.tensor("first"))
    notes = _notes(run, settings, steps) + [f"Random-label model: {text}." for text in described]
    return SanityResult(
        protocol=PROTOCOL.name,
        settings=asdict(settings),
        model=run.model_name,
        weights=run.weights,
        batch_norm=settings.batch_norm,
        order="execution",
        metrics=tuple(METRICS),
        methods=tuple(settings.methods),
        steps=steps,
        claim_values=claim_values(steps),
        notes=notes,
        arrays={
            "maps": torch.stack(first).numpy(),  # [steps, M, C, H, W]: the first image
            "image": run.inputs[0].cpu().numpy(),
        },
    )


def _notes(run: SanityRun, settings: AdebayoSettings, steps: Sequence[StepResult]) -> list[str]:
    notes = [
        "Maps of the trained model's predicted class; the same class index in every variant.",
        f"Layers redrawn in execution order (a forward pass), {settings.seeds} seeds per step, "
        f"batch norm {settings.batch_norm!r} (no effect on a model without batch norm).",
    ]
    if settings.data and not isinstance(run.model, DigitsVGG):
        notes.append("Data randomisation needs a model trained on permuted labels: run here for the digits VGG only.")
    return notes


def _value(steps: Sequence[StepResult], series: str, position: int, method: str, metric: str) -> float:
    chosen = [step for step in steps if step.series == series]
    if not chosen or method not in chosen[position].methods:
        return float("nan")
    return chosen[position].methods[method][metric].mean


def claim_values(steps: Sequence[StepResult]) -> dict[str, float]:
    """The numbers the claims read: GBP's and saliency's |Spearman| with the top group
    redrawn (cascading step 1) and with the whole network random (the last step), and
    under data randomisation."""
    values: dict[str, float] = {}
    for method in ("gbp", "saliency"):
        values[f"{method}_top_spearman_abs"] = _value(steps, "cascading", 1, method, "spearman_abs")
        values[f"{method}_all_spearman_abs"] = _value(steps, "cascading", -1, method, "spearman_abs")
        values[f"{method}_data_spearman_abs"] = _value(steps, "data", 0, method, "spearman_abs")
    values["gbp_minus_saliency_top"] = values["gbp_top_spearman_abs"] - values["saliency_top_spearman_abs"]
    return values


CLAIMS: tuple[Claim, ...] = (
    Claim(
        "gbp_survives_top_randomisation",
        "With the top layer redrawn, GBP's map keeps its ranks: |Spearman| with the trained map stays at 0.5 or more",
        "gbp_top_spearman_abs",
        ">=",
        0.5,
    ),
    Claim(
        "saliency_falls_below_gbp",
        "With the top layer redrawn, saliency's |Spearman| falls at least 0.1 below GBP's",
        "gbp_minus_saliency_top",
        ">=",
        0.1,
    ),
)


def _draw(result: SanityResult, path: Any) -> None:
    draw_protocol(result, path)


PROTOCOL = Protocol(
    name="adebayo2018",
    title="Model and data randomisation (Adebayo et al. 2018): do the maps depend on what the model learned?",
    reference="Adebayo, Gilmer, Muelly, Goodfellow, Hardt & Kim 2018, Sanity Checks for Saliency Maps (NeurIPS)",
    full=AdebayoSettings(),
    quick=AdebayoSettings(seeds=2, data_seeds=1, data_epochs=40, data_train_images=300, images=8),
    tiny=AdebayoSettings(
        seeds=1, granularity="stages", independent=False, data_seeds=1, data_epochs=3, data_train_images=64, images=4
    ),
    claims=CLAIMS,
    measure=measure,
    section=default_section,
    draw=_draw,
    catches=("plain-gradient", "zero-gbp", "zero-saliency"),
)
