"""Redrawing layers of a trained network at random: the paper's partly trained networks
(Figure 9) and Adebayo et al.'s cascading randomisation, for any model.

Vocabulary:

- A *layer* is a module that owns weights a randomisation redraws: every convolution
  (``nn.Conv1d/2d/3d`` and their subclasses) and every ``nn.Linear``. It is known by a
  *layer name*: its module path (``"_blocks.5._expand_conv"``), or, for a model that
  declares ``model.layer_paths`` (name -> module path, e.g. VGG-16's ``"conv3_1"`` ->
  ``"features.10"``), that name. Other parameterised modules (PReLU slopes, LayerNorm,
  GroupNorm, embeddings, custom modules) are never redrawn; batch norm follows the
  ``batch_norm`` policy below.
- A *stage* (:class:`Stage`) is a labelled group of consecutive layers: the columns of
  Figure 9. A model may declare ``model.randomization_stages``; built-in models do
  (VGG-16: the paper's Conv1-1, Conv3-1, Conv5-1, FC3; EfficientNet-Lite0: stem,
  stages 2, 4, 6, head, classifier; the digits VGG: each block's first conv, fc1, fc2);
  any other model gets evenly spaced single layers (:func:`default_stages`).

Three variants, each returning a new model (deep copy; the original is untouched):

- :func:`trained_up_to` (the paper's star row): every layer up to and including the
  stage trained, every later layer redrawn. The last stage gives the trained network.
- :func:`redrawn_from` (cascading randomisation from the top, Adebayo et al. 2018):
  the stage and every later layer redrawn; the same networks as the star row, cut one
  stage lower.
- :func:`only_redrawn` (the paper's diamond row): the stage's layers redrawn, every
  other layer trained.
- :func:`randomized`: every layer redrawn (the random twin of a trained network).

A redrawn layer gets the paper's init (truncated normal, std 0.1, cut at +-2 std,
biases 0) from a generator seeded by (seed, layer name), so it equals the same layer
of the model's fully random twin, whatever else is redrawn.

Batch norm (``batch_norm=``): a batch norm layer right after a redrawn convolution
(the first batch norm met after it with as many features as it has output channels,
before the next layer) normalises features that no longer exist; its trained
statistics are wrong by orders of magnitude. Three policies:

- ``"reestimate"`` (default): those batch norms become fresh ones (scale 1, shift 0),
  and the running mean and variance of every batch norm from the first redrawn layer
  on are re-estimated on calibration images (by default the bundled sample photos and
  their mirror images, through the model's preprocessing). Statistics are data, not
  weights: the trained scales and shifts of trained layers stay, and each layer sees
  inputs of the scale it was trained for.
- ``"identity"``: those batch norms are replaced by the identity (as in a network
  without batch norm, like the paper's VGG-16); the other batch norms keep their
  trained statistics.
- ``"keep"``: every batch norm keeps its trained scale, shift and statistics.

Why "reestimate": ``benchmarks/randomization_batchnorm.py`` measures the three on
EfficientNet-Lite0 (the six bundled photos, 12 partly random networks of Figure 9 and
the random twin; ``benchmarks/results/randomization_batchnorm.json``). Re-estimated,
the logits' standard deviation stays within 0.46-1.18 times the trained network's in
every variant. Kept, it grows 8.6-fold in every star-row network (the trained
statistics no longer match the random filters' outputs) and falls to 0.045 with stage
6 alone redrawn; as identity, it falls to 1.6e-6 in the random twin and 3e-5 with
only the stem trained (nothing rescales the paper's std-0.1 filters, so each layer
shrinks the signal). With either, GBP's map shrinks by up to 6 orders of magnitude
(2e-6 of the trained map's norm), so distances between maps would compare round-off.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Union, cast

import numpy as np
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd

from ..core.errors import ModelError
from ..images.samples import load_image, sample_names
from .init import PAPER_STD, init_layer_
from .preprocessing import Preprocessing

__all__ = [
    "BATCH_NORM_POLICIES",
    "BatchNormPolicy",
    "Stage",
    "calibration_inputs",
    "default_stages",
    "layer_module",
    "layers_after",
    "layers_from",
    "only_redrawn",
    "randomized",
    "redraw",
    "redraw_layers_",
    "redrawable_layers",
    "redrawn_from",
    "resolve_stage",
    "trained_up_to",
]

BatchNormPolicy = Literal["reestimate", "identity", "keep"]
BATCH_NORM_POLICIES: tuple[str, ...] = ("reestimate", "identity", "keep")
"""How batch norm is handled around redrawn layers (see the module's docstring)."""

StageLike = Union["Stage", str]


@dataclass(frozen=True)
class Stage:
    """A labelled group of consecutive layers (a column of Figure 9).

    Attributes:
        label: how figures name it ("Conv3-1", "stage 4").
        layers: its layer names, in forward order.
    """

    label: str
    layers: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.layers:
            raise ModelError(f"stage {self.label!r} has no layer")


def _layer_paths(model: nn.Module) -> dict[str, str]:
    declared: Mapping[str, str] | None = getattr(model, "layer_paths", None)
    if declared is not None:
        return dict(declared)
    return {name: name for name, module in model.named_modules() if isinstance(module, (_ConvNd, nn.Linear))}


def redrawable_layers(model: nn.Module, example: torch.Tensor | None = None) -> tuple[str, ...]:
    """The names of the layers a randomisation can redraw, in forward order.

    Without ``example`` the order is the model's own: its ``layer_paths`` when it
    declares them, else the order in which its modules are registered (for most models
    the forward order). With ``example`` (an input batch) one forward pass records the
    order in which the layers are called, and layers never called are left out.
    """
    paths = _layer_paths(model)
    if example is None:
        return tuple(paths)
    by_module = {id(model.get_submodule(path)): name for name, path in paths.items()}
    called: list[str] = []

    def record(module: nn.Module, _inputs: object) -> None:
        name = by_module.get(id(module))
        if name is not None and name not in called:
            called.append(name)

    handles = [model.get_submodule(path).register_forward_pre_hook(record) for path in paths.values()]
    try:
        with torch.no_grad():
            model(example)
    finally:
        for handle in handles:
            handle.remove()
    return tuple(called)


def layer_module(model: nn.Module, name: str) -> nn.Module:
    """The conv or linear module of a layer name.

    Raises:
        ModelError: for a name that is not one of :func:`redrawable_layers`.
    """
    paths = _layer_paths(model)
    if name not in paths:
        shown = ", ".join(list(paths)[:8]) + (", ..." if len(paths) > 8 else "")
        raise ModelError(f"{type(model).__name__} has no layer {name!r} to redraw (its layers: {shown})")
    return model.get_submodule(paths[name])


def default_stages(model: nn.Module, count: int = 5) -> tuple[Stage, ...]:
    """The model's declared ``randomization_stages``, or else ``count`` single-layer
    stages spread evenly from its first layer to its last (each labelled by its name)."""
    declared = getattr(model, "randomization_stages", None)
    if declared:
        return tuple(declared)
    layers = redrawable_layers(model)
    if not layers:
        raise ModelError(f"{type(model).__name__} has no convolution or linear layer to redraw")
    positions = sorted({round(position) for position in np.linspace(0, len(layers) - 1, min(count, len(layers)))})
    return tuple(Stage(layers[position], (layers[position],)) for position in positions)


def resolve_stage(model: nn.Module, stage: StageLike) -> Stage:
    """A :class:`Stage` from a stage, the label of one of the model's stages, or a layer name.

    Raises:
        ModelError: a label or name the model does not have.
    """
    if isinstance(stage, Stage):
        for name in stage.layers:
            layer_module(model, name)
        return stage
    for declared in default_stages(model):
        if declared.label == stage:
            return declared
    layer_module(model, stage)
    return Stage(stage, (stage,))


@torch.no_grad()
def redraw_layers_(
    model: nn.Module, layers: Sequence[str], seed: int, std: float = PAPER_STD, bias: float = 0.0
) -> None:
    """Redraw the named layers in place with the paper's init, each seeded by (seed, name).

    No batch norm handling: for building random twins and models without batch norm.
    """
    for name in layers:
        init_layer_(layer_module(model, name), seed, name, std, bias)


def calibration_inputs(model: nn.Module, preprocessing: Preprocessing | None = None) -> torch.Tensor:
    """[12, 3, S, S]: the bundled sample photos and their mirror images through
    ``preprocessing`` (default: the model's own), for re-estimating batch norm statistics."""
    if preprocessing is None:
        preprocessing = getattr(model, "preprocessing", None)
    if preprocessing is None:
        raise ModelError("re-estimating batch norm needs calibration inputs, or a model with .preprocessing")
    images = preprocessing.batch([load_image(name) for name in sample_names()])
    return torch.cat([images, images.flip(-1)])


def _ordered_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [
        (name, module) for name, module in model.named_modules() if isinstance(module, (_ConvNd, nn.Linear, _BatchNorm))
    ]


def _paired_batch_norms(model: nn.Module, redrawn_paths: set[str]) -> list[str]:
    """Module paths of the batch norms that normalise a redrawn convolution's output."""
    paired, pending = [], None
    for path, module in _ordered_modules(model):
        if isinstance(module, _BatchNorm):
            if pending is not None and module.num_features == pending:
                paired.append(path)
                pending = None
        else:
            pending = module.out_channels if path in redrawn_paths and isinstance(module, _ConvNd) else None
    return paired


@torch.no_grad()
def _reestimate(model: nn.Module, batch_norms: Sequence[str], inputs: torch.Tensor) -> None:
    """Running mean and variance of the named batch norms from one pass over ``inputs``
    (momentum None: the plain average of that pass); every other module stays in eval mode."""
    modules = [cast(_BatchNorm, model.get_submodule(path)) for path in batch_norms]
    momenta = [module.momentum for module in modules]
    for module in modules:
        module.reset_running_stats()
        module.momentum = None
        module.train()
    try:
        model(inputs)
    finally:
        for module, momentum in zip(modules, momenta):
            module.momentum = momentum
            module.eval()


def _reestimate_downstream(
    model: nn.Module, paired: Sequence[str], redrawn_paths: set[str], inputs: torch.Tensor
) -> None:
    """The "reestimate" policy on a redrawn copy: the ``paired`` batch norms' affine reset
    (weight 1, bias 0), then every batch norm from the first redrawn layer on re-estimated
    from ``inputs`` ([B, C, H, W], moved to the model's device)."""
    for path in paired:
        module = cast(_BatchNorm, model.get_submodule(path))
        if module.affine:
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
    ordered = [path for path, _ in _ordered_modules(model)]
    first = min(ordered.index(path) for path in redrawn_paths)
    downstream = [path for path in ordered[first:] if isinstance(model.get_submodule(path), _BatchNorm)]
    _reestimate(model, downstream, inputs.to(next(model.parameters()).device))


def redraw(
    model: nn.Module,
    layers: Sequence[str],
    *,
    seed: int = 0,
    batch_norm: BatchNormPolicy = "reestimate",
    calibration: torch.Tensor | None = None,
    std: float = PAPER_STD,
    bias: float = 0.0,
    description: str | None = None,
) -> nn.Module:
    """A copy of ``model`` with ``layers`` redrawn from the paper's init and batch norm
    handled by ``batch_norm``; the original is untouched.

    Args:
        model: any model (its layers: :func:`redrawable_layers`).
        layers: the layer names to redraw.
        seed: with each layer's name, fixes its values.
        batch_norm: "reestimate", "identity" or "keep" (see the module's docstring).
        calibration: [B, C, H, W] inputs for "reestimate" (default
            :func:`calibration_inputs`), on the model's device.
        std, bias: the init's truncated-normal std and constant bias.
        description: what replaces "layers ..." in ``weights_description``.

    Returns:
        The new model in eval mode, with ``weights_description`` saying what was redrawn.

    Raises:
        ModelError: an unknown layer name or policy.
    """
    if batch_norm not in BATCH_NORM_POLICIES:
        raise ModelError(f"batch_norm must be one of {', '.join(BATCH_NORM_POLICIES)}, not {batch_norm!r}")
    paths = _layer_paths(model)
    for name in layers:
        layer_module(model, name)
    result = copy.deepcopy(model).eval()
    redraw_layers_(result, layers, seed, std, bias)
    redrawn_paths = {paths[name] for name in layers}
    paired = _paired_batch_norms(result, redrawn_paths)
    if paired and batch_norm == "identity":
        for path in paired:
            parent, _, child = path.rpartition(".")
            setattr(result.get_submodule(parent) if parent else result, child, nn.Identity())
    elif paired and batch_norm == "reestimate":
        inputs = calibration_inputs(model) if calibration is None else calibration
        _reestimate_downstream(result, paired, redrawn_paths, inputs)
    source = getattr(model, "weights_description", "trained")
    if layers:
        what = description or f"layers {', '.join(layers)}"
        norm = f"; batch norm {batch_norm}" if paired else ""
        result.weights_description = f"{source}, {what} redrawn at random (seed {seed}{norm})"  # type: ignore[assignment]
    return result


def randomized(model: nn.Module, **options) -> nn.Module:
    """The model's random twin: every layer redrawn (with ``batch_norm`` handled as in
    :func:`redraw`, whose ``options`` it takes)."""
    return redraw(model, redrawable_layers(model), description="every layer", **options)


def layers_after(model: nn.Module, stage: StageLike, example: torch.Tensor | None = None) -> tuple[str, ...]:
    """The layers after the stage's last one: what :func:`trained_up_to` redraws
    (in the order of :func:`redrawable_layers`, traced on ``example`` when given)."""
    resolved = resolve_stage(model, stage)
    layers = redrawable_layers(model, example)
    return layers[max(_position(layers, name) for name in resolved.layers) + 1 :]


def layers_from(model: nn.Module, stage: StageLike, example: torch.Tensor | None = None) -> tuple[str, ...]:
    """The stage's first layer and every later one: what :func:`redrawn_from` redraws."""
    resolved = resolve_stage(model, stage)
    layers = redrawable_layers(model, example)
    return layers[min(_position(layers, name) for name in resolved.layers) :]


def _position(layers: Sequence[str], name: str) -> int:
    if name not in layers:
        raise ModelError(f"layer {name!r} is not called in the forward pass on the example")
    return layers.index(name)


def trained_up_to(model: nn.Module, stage: StageLike, example: torch.Tensor | None = None, **options) -> nn.Module:
    """The paper's star row: layers up to and including ``stage`` trained, every later
    layer redrawn. ``stage``: a :class:`Stage`, a stage label or a layer name;
    ``example``: an input batch to order the layers by a forward pass (default: the
    model's own order, see :func:`redrawable_layers`); ``options``: those of :func:`redraw`."""
    label = resolve_stage(model, stage).label
    return redraw(model, layers_after(model, stage, example), description=f"every layer after {label}", **options)


def redrawn_from(model: nn.Module, stage: StageLike, example: torch.Tensor | None = None, **options) -> nn.Module:
    """Cascading randomisation from the top down to ``stage``: the stage and every later
    layer redrawn. ``example`` and ``options``: as for :func:`trained_up_to`."""
    label = resolve_stage(model, stage).label
    return redraw(model, layers_from(model, stage, example), description=f"{label} and every later layer", **options)


def only_redrawn(model: nn.Module, stage: StageLike, **options) -> nn.Module:
    """The paper's diamond row: only the stage's layers redrawn, every other layer
    trained. ``options``: those of :func:`redraw`."""
    resolved = resolve_stage(model, stage)
    return redraw(model, resolved.layers, description=f"only {resolved.label}", **options)
