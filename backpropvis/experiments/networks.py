"""The networks experiments run on, and their inputs: the run's trained network (VGG-16
where its checkpoint is present, else a stand-in, with the note that says so), the digits
VGG (trained here, with max-pooling and a dense fc1) and its random twin, and images
through a model's own preprocessing (the held-out digits for the digits VGG)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import torch
from torch import nn

from ..images.samples import load_image
from ..models import Preprocessing, digits_vgg, efficientnet_lite0, load_digits_split, vgg16
from ..models.digits_data import DIGITS_PREPROCESSING
from ..models.preprocessing import preprocessing_of
from ..models.vgg import VGG16_FILE
from .base import RunContext

__all__ = [
    "DIGITS_NOTE",
    "NEARLY_SAME_DISTANCE",
    "MeasuredNetwork",
    "TrainedNetwork",
    "digits_network",
    "digits_testbed",
    "imagenet_testbed",
    "vgg16_checkpoint",
    "trained_network",
    "input_pipeline",
    "model_inputs",
    "vgg16_note",
    "STAND_IN_NOTE",
]

DIGITS_NOTE = (
    "The digits VGG (3x3 conv-ReLU blocks with 2x2 max-pooling, a dense fc1 and fc2, trained by this project on "
    "scikit-learn's digits; its random twin has the paper's init) is measured too: it has the max-pooling and the "
    "dense fc1 that the paper's explanation (Eq. 6-7, 9) is about, which EfficientNet-Lite0 lacks."
)
"""What the reports say about the digits VGG next to the ImageNet-trained network."""

STAND_IN_NOTE = (
    "No trained VGG-16 weights were found (--vgg16-weights, or vgg16-397923af.pth in the torch hub cache): "
    "the ImageNet-trained EfficientNet-Lite0 (ReLU6) stands in for the paper's trained VGG-16."
)
"""What the reports say when EfficientNet-Lite0 stands in for the paper's trained VGG-16."""


@dataclass
class TrainedNetwork:
    """A classifier (ImageNet-trained, or the digits VGG) and how to describe it in a report.

    Attributes:
        model: the network, in eval mode, on the run's device.
        name: "vgg16", "efficientnet-lite0" or "digits-vgg".
        weights: what its weights are.
        note: why a stand-in is used (or a caution about the VGG-16 file), or None when
            it is the paper's VGG-16.
    """

    model: nn.Module
    name: str
    weights: str
    note: Optional[str]


def vgg16_checkpoint(context: RunContext) -> Optional[Path]:
    """The trained VGG-16 checkpoint: ``--vgg16-weights``, else torchvision's file in the
    torch hub cache, else None (no network is tried)."""
    if context.vgg16_weights is not None:
        return context.vgg16_weights
    cached = Path(torch.hub.get_dir()) / "checkpoints" / VGG16_FILE
    return cached if cached.is_file() else None


def vgg16_note(checkpoint: Path) -> Optional[str]:
    """A caution for reports when the VGG-16 checkpoint is not torchvision's file by name
    (its claims are about the ImageNet-trained weights), else None."""
    if Path(checkpoint).name == VGG16_FILE:
        return None
    return (
        f"The VGG-16 weights are {checkpoint}, not torchvision's {VGG16_FILE}: the claims about the trained "
        "VGG-16 mean something only with the ImageNet-trained checkpoint."
    )


def trained_network(context: RunContext) -> TrainedNetwork:
    """The paper's trained VGG-16 where its weights are present, else EfficientNet-Lite0."""
    checkpoint = vgg16_checkpoint(context)
    if checkpoint is not None:
        vgg = vgg16(checkpoint, seed=context.seed).to(context.device)
        return TrainedNetwork(vgg, "vgg16", vgg.weights_description, vgg16_note(checkpoint))
    stand_in = efficientnet_lite0().to(context.device)
    return TrainedNetwork(stand_in, "efficientnet-lite0", stand_in.weights_description, STAND_IN_NOTE)


def input_pipeline(model: nn.Module, size: Optional[int] = None) -> Preprocessing:
    """The model's own preprocessing, cropping to ``size`` x ``size`` when given (else the model's own crop)."""
    pipeline = preprocessing_of(model)
    return pipeline if size is None else pipeline.resized(size)


def model_inputs(
    model: nn.Module, sources: Sequence[str], device: torch.device, size: Optional[int] = None
) -> torch.Tensor:
    """[B, 3, S, S]: images (sample names or paths) through :func:`input_pipeline`."""
    return input_pipeline(model, size).batch([load_image(source) for source in sources]).to(device)


def digits_network(context: RunContext, weights: str = "trained") -> TrainedNetwork:
    """The digits VGG on the run's device: "trained" (the shipped checkpoint) or "random"
    (its random twin, the paper's init seeded by ``context.seed``)."""
    model = digits_vgg(weights, seed=context.seed).to(context.device)
    return TrainedNetwork(model, "digits-vgg", model.weights_description, None)


@dataclass
class MeasuredNetwork:
    """A network and the images an experiment measures it on.

    Attributes:
        key: the prefix of its metrics: "imagenet" (the run's ImageNet-trained network,
            :func:`trained_network`) or "digits" (the digits VGG).
        network: the network.
        inputs: [B, 3, S, S] the model's inputs, on the run's device.
        pictures: [B, 3, S, S] the same images as pixels in [0, 1], on the CPU (for display).
        image_names: B names ("tabby", "test digit #1: 3").
    """

    key: str
    network: TrainedNetwork
    inputs: torch.Tensor
    pictures: torch.Tensor
    image_names: list[str]


def imagenet_testbed(context: RunContext, images: Sequence[str], size: Optional[int] = None) -> MeasuredNetwork:
    """The run's trained network (:func:`trained_network`) on ``images`` (sample names or
    paths) cropped to ``size`` (None: the model's own crop)."""
    network = trained_network(context)
    inputs = model_inputs(network.model, images, context.device, size)
    pictures = input_pipeline(network.model, size).unnormalize(inputs.cpu())
    return MeasuredNetwork("imagenet", network, inputs, pictures, [str(image) for image in images])


def digits_testbed(context: RunContext, count: int, first: int = 0) -> MeasuredNetwork:
    """The trained digits VGG on ``count`` held-out test digits from position ``first``
    (:func:`backpropvis.models.load_digits_split`, in its fixed order)."""
    digits = load_digits_split("test")
    chosen = slice(first, first + count)
    inputs, labels = digits.inputs[chosen], digits.labels[chosen]
    names = [f"test digit #{first + number}: {int(label)}" for number, label in enumerate(labels)]
    return MeasuredNetwork(
        "digits", digits_network(context), inputs.to(context.device), DIGITS_PREPROCESSING.unnormalize(inputs), names
    )


NEARLY_SAME_DISTANCE = 0.5
"""The class distance (:func:`backpropvis.core.metrics.class_distance`, the L2 distance of the
unit-norm maps, in [0, 2]) below which two maps count as "nearly the same" in the
claims of Figures 2, 3 and 9: a cosine above 1 - 0.5**2 / 2 = 0.875, a third of the
distance sqrt(2) of two unrelated (orthogonal) maps. Declared once, before any result
was looked at, for every claim that says "hardly changes"."""
