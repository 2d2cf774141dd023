"""Sixt, Granz & Landgraf 2020, "When Explanations Lie: Why Many Modified BP Attributions
Fail" (ICML): the backward passes of GBP and DeconvNet converge to a rank-one map, so
their maps stop depending on the layers above.

Two series (:mod:`.convergence` holds the measures, as in the authors' code):

- ``cascading``: the layers redrawn from the top (the logits) down, one more group at each
  step (:func:`~backpropvis.sanity.adebayo.groups`, execution order; redrawn by
  :func:`~backpropvis.models.randomization.redrawn_from` with its batch-norm policy); per
  step and method the SSIM of the authors' ``ssim_flipped`` between the map of the
  trained model's predicted class on the variant and on the trained model. Controls:
  the same SSIM against a random map, the input's edge map, another seed of the redraw.
- ``csc``: cosine similarity convergence. For each image, ``vectors`` starting vectors at
  the logits (``start "random"``: independent standard normal vectors, as the authors
  inject at the top layer; ``"classes"``: one-hot vectors of the predicted class and
  other classes) are propagated down by each method; at every activation's output (and
  at the input) the median absolute cosine between the signals' channel vectors
  (:func:`~.convergence.cosine_convergence`), one step per layer from the top down. The
  control ``random vectors`` is the same median for independent Gaussian signals of the
  layer's shape: where unrelated directions sit.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..core.claims import Claim
from ..core.errors import BackpropvisError
from ..core.rules import PAPER_METHODS, resolve_rules
from ..engine import attribute_many
from ..engine.signals import backward_signals
from ..models import derive_seed
from ..models.randomization import BATCH_NORM_POLICIES, layers_from, redrawn_from
from .adebayo import groups
from .compare import step_from_numbers
from .convergence import cosine_convergence, sixt_ssim
from .protocol import Protocol, SanityResult, SanityRun, StepResult
from .similarity import edge_maps, random_maps
from .sixt_page import draw_sixt, sixt_section
from .summary import summarize_values

__all__ = ["PROTOCOL", "SixtSettings", "claim_values", "csc_numbers", "measure", "start_vectors"]

CONVERGED = 0.9
"""A median absolute cosine at or above this: the signals point one way (rank one)."""

APART = 0.5
"""A median absolute cosine at or below this: the signals still depend on where they started."""


@dataclass(frozen=True)
class SixtSettings:
    """What one run does.

    Attributes:
        methods: rule names.
        vectors: starting vectors per image for the CSC (the authors: 5).
        start: "random" (standard normal vectors at the logits) or "classes" (one-hot).
        granularity: the cascading groups: "layers", "stages" or "auto" (as adebayo2018).
        seeds: redraws of every cascading step (the "other seed" control needs 2).
        batch_norm: the randomisation's batch-norm policy.
        batch: images per backward pass of the CSC (its memory: vectors x activations x batch).
        images: how many images ``reproduce`` takes.
    """

    methods: tuple[str, ...] = PAPER_METHODS
    vectors: int = 5
    start: str = "random"
    granularity: str = "auto"
    seeds: int = 2
    batch_norm: str = "reestimate"
    batch: int = 2
    images: int = 32

    def __post_init__(self) -> None:
        if self.start not in ("random", "classes"):
            raise BackpropvisError(f"start must be random or classes, not {self.start!r}")
        if self.granularity not in ("layers", "stages", "auto"):
            raise BackpropvisError(f"granularity must be layers, stages or auto, not {self.granularity!r}")
        if self.batch_norm not in BATCH_NORM_POLICIES:
            raise BackpropvisError(
                f"batch_norm must be one of {', '.join(BATCH_NORM_POLICIES)}, not {self.batch_norm!r}"
            )
        if self.vectors < 2:
            raise BackpropvisError(f"vectors must be at least 2 (the CSC compares pairs), not {self.vectors}")
        for name in ("seeds", "batch", "images"):
            if getattr(self, name) < 1:
                raise BackpropvisError(f"{name} must be at least 1, not {getattr(self, name)}")
        resolve_rules(self.methods)


def start_vectors(logits: torch.Tensor, count: int, start: str, seed: int) -> torch.Tensor:
    """[S, B, K] the vectors the CSC's backward passes start from, for logits [B, K].

    ``"random"``: standard normal (seeded); ``"classes"``: one-hot vectors of the
    predicted class, then ``count - 1`` other classes drawn without repetition (seeded).
    """
    generator = torch.Generator().manual_seed(seed)
    batch, classes = logits.shape
    if start == "random":
        return torch.randn((count, batch, classes), generator=generator, dtype=torch.float64)
    if start != "classes":
        raise ValueError(f"start must be 'random' or 'classes', not {start!r}")
    if count > classes:
        raise ValueError(f"{count} distinct classes asked of a model with {classes}")
    predicted = logits.argmax(1).cpu()
    chosen = torch.empty((count, batch), dtype=torch.long)
    for image in range(batch):
        others = torch.randperm(classes - 1, generator=generator)[: count - 1]
        others = others + (others >= predicted[image]).long()  # skip the predicted class
        chosen[:, image] = torch.cat([predicted[image : image + 1], others])
    return torch.zeros((count, batch, classes), dtype=torch.float64).scatter_(2, chosen.unsqueeze(-1), 1.0)


def _with_baseline(generator: torch.Generator) -> Callable[[torch.Tensor], torch.Tensor]:
    """reduce: a layer's signals [S, B, ...] -> [2, B]: their CSC, and that of Gaussian signals of that shape."""

    def reduce(signals: torch.Tensor) -> torch.Tensor:
        noise = torch.randn(signals.shape, generator=generator, dtype=torch.float64)
        return torch.from_numpy(np.stack([cosine_convergence(signals), cosine_convergence(noise)]))

    return reduce


def csc_numbers(run: SanityRun, settings: SixtSettings) -> tuple[dict[str, Any], dict[str, Any]]:
    """The CSC unit: ``layers`` (top first) and per method ``values`` / ``baseline``: [L][B]."""
    layers: tuple[str, ...] = ()
    collected: dict[str, list[torch.Tensor]] = {}
    starts = range(0, len(run.inputs), settings.batch)
    for chunk, start in enumerate(tqdm(starts, desc="sixt2020 csc", unit="batch", disable=not run.progress)):
        inputs = run.inputs[start : start + settings.batch]
        vector_seed = derive_seed(run.seed, "sanity sixt2020 vectors", chunk)
        generator = torch.Generator().manual_seed(derive_seed(run.seed, "sanity sixt2020 baseline", chunk))
        found = backward_signals(
            run.model,
            inputs,
            functools.partial(start_vectors, count=settings.vectors, start=settings.start, seed=vector_seed),
            settings.methods,
            _with_baseline(generator),
            precision=run.precision,
            with_input=True,
        )
        layers = found.layers
        for method, per_layer in found.values.items():
            collected.setdefault(method, []).append(torch.stack(per_layer))  # [L, 2, B]
    order = [*reversed(range(len(layers) - 1)), len(layers) - 1]  # hidden layers top first, then the input
    numbers: dict[str, Any] = {"layers": [layers[index] for index in order]}
    for method, chunks in collected.items():
        joined = torch.cat(chunks, dim=2)[order]  # [L, 2, B]
        numbers[method] = {"values": joined[:, 0].tolist(), "baseline": joined[:, 1].tolist()}
    return numbers, {}


Build = Callable[[int], nn.Module]


def _ssim_unit(run: SanityRun, settings: SixtSettings, reference, predicted, build: Build, count: int):
    """One cascading step: per method ``values`` and ``controls`` ([R][B]) and the first image's maps."""
    inputs = run.inputs.cpu()
    edges = edge_maps(inputs)
    numbers: dict[str, Any] = {method: {"values": {"ssim": []}, "controls": {}} for method in settings.methods}
    found = [
        attribute_many(build(index), run.inputs, [predicted], settings.methods, precision=run.precision)
        for index in range(count)
    ]  # one variant alive at a time: each is dropped once its maps are made
    variants = {method: [maps[method][0].cpu() for maps in found] for method in settings.methods}
    first = torch.stack([variants[method][0][0] for method in settings.methods])
    for method, maps in variants.items():
        controls = numbers[method]["controls"]
        for index, variant in enumerate(maps):
            numbers[method]["values"]["ssim"].append(sixt_ssim(variant, reference[method]).tolist())
            noise = random_maps(variant.shape, derive_seed(run.seed, "sanity sixt2020 random map", index))
            controls.setdefault("random map", {"ssim": []})["ssim"].append(sixt_ssim(variant, noise).tolist())
            controls.setdefault("edge map", {"ssim": []})["ssim"].append(sixt_ssim(variant, edges).tolist())
            if len(maps) > 1:
                other = maps[(index + 1) % len(maps)]
                controls.setdefault("other seed", {"ssim": []})["ssim"].append(sixt_ssim(variant, other).tolist())
    return numbers, {"first": first}


def _cascading_builds(run: SanityRun, settings: SixtSettings) -> list[tuple[str, tuple[str, ...], Build, int]]:
    """(label, redrawn layers, seed index -> variant, seeds) per cascading step, the trained model first."""
    model, inputs = run.model, run.inputs
    options = {"batch_norm": settings.batch_norm, "calibration": torch.cat([inputs, inputs.flip(-1)])}
    builds: list[tuple[str, tuple[str, ...], Build, int]] = [("trained", (), lambda _: model, 1)]
    for stage in groups(model, settings.granularity, inputs):

        def cascade(index: int, stage=stage) -> nn.Module:
            seed = derive_seed(run.seed, "sanity sixt2020 redraw", index)
            return redrawn_from(model, stage, example=inputs, seed=seed, **options)

        builds.append((f"down to {stage.label}", layers_from(model, stage, inputs), cascade, settings.seeds))
    return builds


def measure(run: SanityRun, settings: SixtSettings) -> SanityResult:
    """Both series on ``run``'s model and images (see the module's docstring)."""
    trained = attribute_many(run.model, run.inputs, ["max"], settings.methods, precision=run.precision)
    predicted = trained.targets[0]
    reference = {method: trained[method][0].cpu() for method in settings.methods}
    steps: list[StepResult] = []
    first: list[torch.Tensor] = []
    builds = _cascading_builds(run, settings)
    for index, (label, redrawn, build, count) in enumerate(
        tqdm(builds, desc="sixt2020 cascading", unit="step", disable=not run.progress)
    ):
        unit = functools.partial(_ssim_unit, run, settings, reference, predicted, build, count)
        kept = run.store.run(f"{index:03d}-cascading", unit)
        steps.append(step_from_numbers("cascading", label, redrawn, kept.numbers, run.seed))
        first.append(kept.tensor("first"))
    csc = run.store.run("csc", functools.partial(csc_numbers, run, settings)).numbers
    steps += _csc_steps(dict(csc), settings.methods, run.seed)
    arrays = {"maps": torch.stack(first).numpy(), "image": run.inputs[0].cpu().numpy()}
    return SanityResult(
        PROTOCOL.name,
        asdict(settings),
        run.model_name,
        run.weights,
        batch_norm=settings.batch_norm,
        order="execution",
        metrics=("ssim", "csc"),
        methods=tuple(settings.methods),
        steps=steps,
        claim_values=claim_values(steps),
        notes=_notes(settings),
        arrays=arrays,
    )


def _csc_steps(csc: dict[str, Any], methods: Sequence[str], seed: int) -> list[StepResult]:
    steps = []
    for position, layer in enumerate(csc["layers"]):
        values = {method: {"csc": summarize_values(csc[method]["values"][position], seed)} for method in methods}
        controls = {
            method: {"random vectors": {"csc": summarize_values(csc[method]["baseline"][position], seed)}}
            for method in methods
        }
        steps.append(StepResult("csc", layer, (), values, controls))
    return steps


def _notes(settings: SixtSettings) -> list[str]:
    return [
        "cascading: SSIM as the authors' ssim_flipped (max |map| over channels, 99.5th-percentile normalisation, "
        "uniform 5 x 5 window, data range 2; the better of the map and its negation), maps of the trained model's "
        "predicted class; layers redrawn in execution order with the paper's init, "
        f"batch norm {settings.batch_norm!r}, {settings.seeds} seed(s) per step. "
        "Means over images (the authors plot medians).",
        f"csc: {settings.vectors} {'standard normal' if settings.start == 'random' else 'one-hot class'} vectors "
        "started at the logits per image; per layer (activation outputs, then the input) the median |cosine| "
        "between their channel vectors over pairs and positions, per image; the control is the same for "
        "independent Gaussian signals of the layer's shape.",
    ]


def _mean(steps: Sequence[StepResult], series: str, position: int, method: str, metric: str) -> float:
    chosen = [step for step in steps if step.series == series]
    if len(chosen) <= abs(position) or method not in chosen[position].methods:
        return float("nan")
    return chosen[position].methods[method][metric].mean


def claim_values(steps: Sequence[StepResult]) -> dict[str, float]:
    """Per method: ``<method>_csc_bottom`` (the CSC at the activation nearest the input),
    ``<method>_csc_top`` (nearest the logits) and ``<method>_ssim_top`` (the SSIM with the
    top group redrawn)."""
    values: dict[str, float] = {}
    for method in PAPER_METHODS:
        values[f"{method}_csc_bottom"] = _mean(steps, "csc", -2, method, "csc")  # the last step is the input
        values[f"{method}_csc_top"] = _mean(steps, "csc", 0, method, "csc")
        values[f"{method}_ssim_top"] = _mean(steps, "cascading", 1, method, "ssim")
    return values


CLAIMS: tuple[Claim, ...] = (
    Claim(
        "gbp_converges",
        f"GBP's backward signals from different starts collapse onto one direction: median |cos| >= {CONVERGED} "
        "at the activation nearest the input",
        "gbp_csc_bottom",
        ">=",
        CONVERGED,
    ),
    Claim(
        "deconvnet_converges",
        f"DeconvNet's backward signals collapse onto one direction: median |cos| >= {CONVERGED} at the activation "
        "nearest the input",
        "deconvnet_csc_bottom",
        ">=",
        CONVERGED,
    ),
    Claim(
        "saliency_does_not_converge",
        f"Saliency's backward signals keep apart: median |cos| <= {APART} at the activation nearest the input",
        "saliency_csc_bottom",
        "<=",
        APART,
    ),
    Claim(
        "gbp_ignores_the_top_layer",
        "With the top layer redrawn, GBP's map keeps an SSIM of 0.5 or more with the trained map",
        "gbp_ssim_top",
        ">=",
        0.5,
    ),
)


PROTOCOL = Protocol(
    name="sixt2020",
    title="Convergence of the backward pass (Sixt et al. 2020): do maps forget the layers above?",
    reference="Sixt, Granz & Landgraf 2020, When Explanations Lie: Why Many Modified BP Attributions Fail (ICML)",
    full=SixtSettings(),
    quick=SixtSettings(seeds=1, images=8),
    tiny=SixtSettings(seeds=1, images=4, granularity="stages"),
    claims=CLAIMS,
    measure=measure,
    section=sixt_section,
    draw=draw_sixt,
    catches=("plain-gradient", "zero-gbp"),
)
