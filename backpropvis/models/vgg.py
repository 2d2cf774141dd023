"""VGG-16 with torchvision's state-dict key names, random, trained or partly trained.

The module tree is torchvision's (``features.0`` ... ``features.28``, ``avgpool``,
``classifier.0`` ... ``classifier.6``), so torchvision's ImageNet checkpoint
(vgg16-397923af.pth) loads as it is, with no torchvision installed. Layers are also
known by the paper's names, conv1_1 ... conv5_3, fc1, fc2, fc3 (Figure 9's rows).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
from torch import nn

from ..core.errors import WeightsError
from .init import PAPER_STD, keeps_global_rng
from .preprocessing import IMAGENET
from .randomization import Stage, layers_after, redraw_layers_
from .weights import check_fits, hub_checkpoint, read_state_dict

__all__ = ["VGG16", "VGG16_LAYERS", "VGG16_STAGES", "VGG16_URL", "vgg16"]

VGG16_URL = "https://download.pytorch.org/models/vgg16-397923af.pth"
VGG16_FILE = "vgg16-397923af.pth"

_CONFIG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


def _layer_keys() -> dict[str, str]:
    keys, block, number, index = {}, 1, 1, 0
    for entry in _CONFIG:
        if entry == "M":
            block, number, index = block + 1, 1, index + 1
        else:
            keys[f"conv{block}_{number}"] = f"features.{index}"
            number, index = number + 1, index + 2
    keys.update(fc1="classifier.0", fc2="classifier.3", fc3="classifier.6")
    return keys


LAYER_KEYS: dict[str, str] = _layer_keys()
"""Paper layer name -> module path, e.g. "conv3_1" -> "features.10"."""

VGG16_LAYERS: tuple[str, ...] = tuple(LAYER_KEYS)
"""conv1_1, conv1_2, conv2_1, ..., conv5_3, fc1, fc2, fc3, in forward order."""

VGG16_STAGES: tuple[Stage, ...] = (
    Stage("Conv1-1", ("conv1_1",)),
    Stage("Conv3-1", ("conv3_1",)),
    Stage("Conv5-1", ("conv5_1",)),
    Stage("FC3", ("fc3",)),
)
"""Figure 9's columns: the paper's Conv1-1, Conv3-1, Conv5-1 and FC3 (any other layer
name, e.g. "conv5_3" for "every dense layer random", is a one-layer stage too)."""


class VGG16(nn.Module):
    """torchvision's VGG-16 (no batch norm). Shapes: [B, 3, H, W] -> [B, 1000].

    Attributes:
        weights_description: what the weights are, for reports.
        preprocessing: the ImageNet pipeline.
        layer_paths: paper layer name -> module path (the names
            :mod:`~backpropvis.models.randomization` uses and seeds with).
        randomization_stages: :data:`VGG16_STAGES`.
    """

    layer_paths = LAYER_KEYS
    randomization_stages = VGG16_STAGES

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for entry in _CONFIG:
            if isinstance(entry, int):
                layers += [nn.Conv2d(channels, entry, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
                channels = entry
            else:  # "M"
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096),
            nn.ReLU(True),
            nn.Dropout(),
            nn.Linear(4096, 4096),
            nn.ReLU(True),
            nn.Dropout(),
            nn.Linear(4096, num_classes),
        )
        self.weights_description = "untrained"
        self.preprocessing = IMAGENET

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))

    def layer(self, name: str) -> nn.Module:
        """The conv or linear module of a paper layer name ("conv3_1", "fc1", ...)."""
        return self.get_submodule(LAYER_KEYS[_check_layer(name)])


def _check_layer(name: str) -> str:
    if name not in LAYER_KEYS:
        raise WeightsError(f"unknown VGG-16 layer {name!r}; layers are {', '.join(VGG16_LAYERS)}")
    return name


@keeps_global_rng
def vgg16(
    weights: str | os.PathLike = "random",
    seed: int = 0,
    trained_upto: str | None = None,
    random_layers: Sequence[str] | None = None,
    std: float = PAPER_STD,
    bias: float = 0.0,
) -> VGG16:
    """VGG-16 in eval mode.

    Args:
        weights: "random" (the paper's init), "imagenet" (torchvision's checkpoint from
            the torch hub cache, downloaded where a network is available) or the path
            of a checkpoint with torchvision's keys.
        seed: fixes every random layer; a layer's values depend only on (seed, name).
        trained_upto: keep trained weights up to and including this layer and draw
            the rest at random (the paper's "Conv3-1*" rows).
        random_layers: draw only these layers at random (the paper's "Conv3-1<>" rows).
            Both redraw in place, as :mod:`~backpropvis.models.randomization` does on a
            copy of any model (``trained_up_to``, ``only_redrawn``) with the same values.
        std, bias: the random init (truncated normal std, constant bias).

    Raises:
        WeightsError: unreadable or unfitting weights, an unknown layer name, or
            partial training asked of random weights.
    """
    model = VGG16()
    if (trained_upto or random_layers) and str(weights) == "random":
        raise WeightsError("trained_upto and random_layers need trained weights (weights='imagenet' or a path)")
    if trained_upto and random_layers:
        raise WeightsError("give trained_upto or random_layers, not both")
    if str(weights) == "random":
        redraw = list(VGG16_LAYERS)
        model.weights_description = f"random (seed {seed})"
    else:
        path = hub_checkpoint(VGG16_FILE, VGG16_URL) if str(weights) == "imagenet" else weights
        state_dict = read_state_dict(path)
        check_fits(model, state_dict, f"weights file {path}")
        model.load_state_dict(state_dict)
        source = "imagenet" if str(weights) == "imagenet" else os.fspath(weights)
        if trained_upto:
            redraw = list(layers_after(model, _check_layer(trained_upto)))
            model.weights_description = f"{source} up to {trained_upto}, random after (seed {seed})"
        elif random_layers:
            redraw = [_check_layer(name) for name in random_layers]
            model.weights_description = f"{source} except {', '.join(redraw)} random (seed {seed})"
        else:
            redraw = []
            model.weights_description = source
    redraw_layers_(model, redraw, seed, std, bias)
    return model.eval()
