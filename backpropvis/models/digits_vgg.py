"""A small VGG-style network trained by this project on scikit-learn's digits.

EfficientNet-Lite0 has no max-pooling, no dense fc1 and skip connections around its
activations, so it cannot test the paper's explanation of DeconvNet (Eq. 6-7, 9).
This network has exactly VGG's ingredients at a size that trains in about a minute on
two CPU cores (:mod:`backpropvis.models.digits_training`): 3 x 3 convolutions with
ReLU in three blocks, each closed by a 2 x 2 max-pool, then a dense fc1 with ReLU and
the logits fc2. Its trained weights ship with the package
(``backpropvis/data/digits_vgg.pt``, state dict, 170 KiB); its random twin is the same
architecture with the paper's init.

Shapes: [B, 3, 32, 32] -> [B, 10]::

    conv1_1 3->8, conv1_2 8->8, pool      32 -> 16
    conv2_1 8->16, conv2_2 16->16, pool   16 -> 8
    conv3_1 16->32, pool                  8 -> 4
    fc1 512->64, fc2 64->10
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import torch
from torch import nn

from ..core.errors import ModelError
from .digits_data import DIGITS_CLASSES, DIGITS_PREPROCESSING
from .init import PAPER_STD, keeps_global_rng
from .randomization import Stage, redraw_layers_
from .weights import load_into

__all__ = ["DIGITS_VGG_LAYERS", "DIGITS_VGG_STAGES", "DigitsVGG", "digits_vgg", "digits_vgg_checkpoint"]

DIGITS_VGG_LAYERS: tuple[str, ...] = ("conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "fc1", "fc2")
"""The layers in forward order; each is also the module's attribute name."""

DIGITS_VGG_STAGES: tuple[Stage, ...] = (
    Stage("Conv1-1", ("conv1_1",)),
    Stage("Conv2-1", ("conv2_1",)),
    Stage("Conv3-1", ("conv3_1",)),
    Stage("FC1", ("fc1",)),
    Stage("FC2", ("fc2",)),
)
"""Figure 9's columns for this network: each block's first convolution and the two dense layers."""

_CHANNELS = {"conv1_1": (3, 8), "conv1_2": (8, 8), "conv2_1": (8, 16), "conv2_2": (16, 16), "conv3_1": (16, 32)}
_BLOCKS = (("conv1_1", "conv1_2"), ("conv2_1", "conv2_2"), ("conv3_1",))
_HIDDEN = 64


class DigitsVGG(nn.Module):
    """The small VGG-style digits classifier. Shapes: [B, 3, 32, 32] -> [B, 10].

    Attributes:
        conv1_1 ... conv3_1: 3 x 3 convolutions (padding 1), each followed by its own
            ``nn.ReLU`` module (relu1_1 ... relu3_1; one module per activation, so hook-based
            tools such as Captum see every one).
        pool: the 2 x 2 max-pool closing each block.
        fc1: dense 512 -> 64, followed by relu_fc1; fc2: dense 64 -> 10, the logits.
        preprocessing: :data:`~backpropvis.models.digits_data.DIGITS_PREPROCESSING`.
        class_names: "0" ... "9".
        weights_description: what the weights are, for reports.
        randomization_stages: :data:`DIGITS_VGG_STAGES`.
    """

    randomization_stages = DIGITS_VGG_STAGES

    def __init__(self) -> None:
        super().__init__()
        for name, (inputs, outputs) in _CHANNELS.items():
            self.add_module(name, nn.Conv2d(inputs, outputs, 3, padding=1))
            self.add_module(name.replace("conv", "relu"), nn.ReLU())
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(32 * 4 * 4, _HIDDEN)
        self.relu_fc1 = nn.ReLU()
        self.fc2 = nn.Linear(_HIDDEN, len(DIGITS_CLASSES))
        self.preprocessing = DIGITS_PREPROCESSING
        self.class_names = DIGITS_CLASSES
        self.weights_description = "untrained"

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 3, 32, 32] -> [B, 32, 4, 4], the last block's pooled ReLU outputs."""
        for block in _BLOCKS:
            for name in block:
                x = self.get_submodule(name.replace("conv", "relu"))(self.get_submodule(name)(x))
            x = self.pool(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.relu_fc1(self.fc1(torch.flatten(self.features(x), 1))))


def digits_vgg_checkpoint() -> Path:
    """The shipped trained weights (written by ``python -m backpropvis.models.digits_training``)."""
    return Path(str(resources.files("backpropvis").joinpath("data/digits_vgg.pt")))


@keeps_global_rng
def digits_vgg(
    weights: str | os.PathLike = "trained", seed: int = 0, std: float = PAPER_STD, bias: float = 0.0
) -> DigitsVGG:
    """The digits VGG in eval mode.

    Args:
        weights: "trained" (the shipped checkpoint), "random" (the paper's init: the
            random twin) or the path of a checkpoint with this network's keys.
        seed: fixes the random weights; a layer's values depend only on (seed, name).
        std, bias: the random init (truncated normal std, constant bias).

    Raises:
        WeightsError: a checkpoint that cannot be read or does not fit.
        ModelError: the shipped checkpoint is missing from the installation.
    """
    model = DigitsVGG()
    if str(weights) == "random":
        redraw_layers_(model, DIGITS_VGG_LAYERS, seed, std, bias)
        model.weights_description = f"random (seed {seed})"
    elif str(weights) == "trained":
        path = digits_vgg_checkpoint()
        if not path.is_file():
            raise ModelError(
                f"the digits VGG's checkpoint {path} is missing; "
                "write it with: python -m backpropvis.models.digits_training"
            )
        load_into(model, path)
        model.weights_description = "trained on scikit-learn's digits (bundled checkpoint)"
    else:
        load_into(model, weights)
        model.weights_description = os.fspath(weights)
    return model.eval()
