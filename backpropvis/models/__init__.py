"""The paper's networks, EfficientNet-Lite0, and building any of them by name.

Every model returned here is in eval mode and carries ``model.preprocessing`` (its
input pipeline) and ``model.weights_description`` (what its weights are).
:func:`load_model` also takes any user model (``MODULE:CALLABLE``, ``PATH.py:CALLABLE``,
see :mod:`~backpropvis.models.spec`).
"""

from __future__ import annotations

import os
from typing import Any, Callable, Mapping, Optional, Union

from torch import nn

from ..core.errors import ModelError
from .digits_data import DigitsSet, load_digits_split
from .digits_vgg import DigitsVGG, digits_vgg
from .efficientnet import EfficientNetLite0, efficientnet_lite0
from .fingerprint import weights_fingerprint
from .init import PAPER_STD, derive_seed, generator_for, truncated_normal_
from .output import SelectOutput, select_output
from .preprocessing import IMAGENET, TF_LITE, Preprocessing
from .probe import checked_model
from .seeded_dense import SeededDense
from .shallow import ThreeLayerCNN, ThreeLayerFCN, three_layer_cnn, three_layer_fcn
from .spec import LoadedModel, ModelSpec, describe_module, resolve_model
from .vgg import VGG16, VGG16_LAYERS, vgg16

__all__ = [
    "TRAINED_WEIGHTS",
    "default_weights",
    "MODEL_NAMES",
    "build_model",
    "load_model",
    "as_loaded",
    "ModelLike",
    "ModelSpec",
    "LoadedModel",
    "describe_module",
    "select_output",
    "SelectOutput",
    "weights_fingerprint",
    "three_layer_cnn",
    "three_layer_fcn",
    "vgg16",
    "efficientnet_lite0",
    "digits_vgg",
    "DigitsVGG",
    "load_digits_split",
    "DigitsSet",
    "ThreeLayerCNN",
    "ThreeLayerFCN",
    "VGG16",
    "VGG16_LAYERS",
    "EfficientNetLite0",
    "SeededDense",
    "Preprocessing",
    "IMAGENET",
    "TF_LITE",
    "PAPER_STD",
    "derive_seed",
    "generator_for",
    "truncated_normal_",
]


def _random_only(name: str, build: Callable[[int], nn.Module]) -> Callable[[str, int], nn.Module]:
    def builder(weights: str, seed: int) -> nn.Module:
        if weights != "random":
            raise ModelError(f"{name} exists only with random weights, not {weights!r}")
        model = build(seed)
        setattr(model, "weights_description", f"random (seed {seed})")  # noqa: B010 - not a parameter
        return model

    return builder


def _efficientnet(weights: str, seed: int) -> nn.Module:
    if weights == "random":
        raise ModelError("efficientnet-lite0 is the trained model; use `weights` imagenet or a checkpoint path")
    return efficientnet_lite0(weights)


_BUILDERS: dict[str, Callable[[str, int], nn.Module]] = {
    "vgg16": lambda weights, seed: vgg16(weights, seed=seed),
    "cnn3": _random_only("cnn3", lambda seed: three_layer_cnn(seed=seed)),
    "cnn3-pool": _random_only("cnn3-pool", lambda seed: three_layer_cnn(pool=2, seed=seed)),
    "fcn3": _random_only("fcn3", lambda seed: three_layer_fcn(seed=seed)),
    "efficientnet-lite0": _efficientnet,
    "digits-vgg": lambda weights, seed: digits_vgg(weights, seed=seed),  # weights "trained", "random" or a path
}

MODEL_NAMES: tuple[str, ...] = tuple(_BUILDERS)
"""Names accepted by :func:`build_model` and the CLI's ``--model``."""

TRAINED_WEIGHTS: dict[str, str] = {"efficientnet-lite0": "imagenet", "digits-vgg": "trained"}
"""The built-in models that ship trained weights, and those weights' name."""


def default_weights(model: str) -> str:
    """The weights a model gets when none are named: its bundled trained weights
    (:data:`TRAINED_WEIGHTS`: a first picture from a trained network), else "random"."""
    return TRAINED_WEIGHTS.get(model, "random")


def build_model(name: str, weights: str = "random", seed: int = 0) -> nn.Module:
    """A model by name: "vgg16", "cnn3", "cnn3-pool", "fcn3" or "efficientnet-lite0".

    Args:
        name: the model's name.
        weights: "random", "imagenet" or a checkpoint path (what the model accepts).
        seed: the seed of every random weight.

    Raises:
        ModelError: unknown name or weights the model does not take.
        WeightsError: weights that cannot be read or do not fit.
    """
    if name not in _BUILDERS:
        raise ModelError(f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}")
    return _BUILDERS[name](str(weights), seed)


def load_model(
    model: str,
    *,
    model_args: Union[str, Mapping[str, Any], None] = None,
    weights: Union[str, os.PathLike] = "random",
    seed: int = 0,
    input_size: Optional[int] = None,
    output: Union[str, int, None] = None,
) -> LoadedModel:
    """Any model by its ``--model`` text: a built-in name, ``MODULE:CALLABLE`` or
    ``PATH.py:CALLABLE`` (the other arguments as in :class:`~backpropvis.models.spec.ModelSpec`;
    ``seed`` as in :func:`~backpropvis.models.spec.resolve_model`), in eval mode, with its
    preprocessing, source and weights' fingerprint.
    """
    return resolve_model(ModelSpec(model, weights, model_args, output, input_size), _BUILDERS, seed)


ModelLike = Union[str, ModelSpec, LoadedModel, nn.Module]
"""What every API call taking a model accepts: a name, a :class:`ModelSpec`, a loaded model or a module."""


def as_loaded(model: ModelLike, seed: int = 0) -> LoadedModel:
    """The one resolver of a model at the API's edge: a name (with :func:`default_weights`: its
    bundled trained weights, else random) or a :class:`ModelSpec` is built (``seed``: its random
    weights), a :class:`LoadedModel` passes as it is, and an ``nn.Module`` is described as it is
    (:func:`describe_module`: its mode kept).

    Raises:
        ModelError, WeightsError: as :func:`load_model`.
    """
    if isinstance(model, LoadedModel):
        return model
    if isinstance(model, str):
        model = ModelSpec(model, default_weights(model))
    if isinstance(model, ModelSpec):
        return checked_model(resolve_model(model, _BUILDERS, seed), model.smooth)
    return describe_module(model)
