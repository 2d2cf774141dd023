"""The networks experiments run on, and their inputs: the run's trained network (VGG-16
where its checkpoint is present, else a stand-in, with the note that says so), and
images through a model's own preprocessing."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import torch
from torch import nn

from ..images import load_image
from ..models import Preprocessing, efficientnet_lite0, vgg16
from ..models.preprocessing import preprocessing_of
from ..models.vgg import VGG16_FILE
from .base import RunContext

__all__ = ["TrainedNetwork", "vgg16_checkpoint", "trained_network", "input_pipeline", "model_inputs", "vgg16_note"]


@dataclass
class TrainedNetwork:
    """An ImageNet-trained classifier and how to describe it in a report.

    Attributes:
        model: the network, in eval mode, on the run's device.
        name: "vgg16" or "efficientnet-lite0".
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
    note = (
        "No trained VGG-16 weights were found (--vgg16-weights, or vgg16-397923af.pth in the torch hub cache): "
        "the ImageNet-trained EfficientNet-Lite0 (ReLU6) stands in for the paper's trained VGG-16."
    )
    return TrainedNetwork(stand_in, "efficientnet-lite0", stand_in.weights_description, note)


def input_pipeline(model: nn.Module, size: Optional[int] = None) -> Preprocessing:
    """The model's own preprocessing, cropping to ``size`` x ``size`` when given (else the model's own crop)."""
    pipeline = preprocessing_of(model)
    return pipeline if size is None else pipeline.resized(size)


def model_inputs(
    model: nn.Module, sources: Sequence[str], device: torch.device, size: Optional[int] = None
) -> torch.Tensor:
    """[B, 3, S, S]: images (sample names or paths) through :func:`input_pipeline`."""
    return input_pipeline(model, size).batch([load_image(source) for source in sources]).to(device)
