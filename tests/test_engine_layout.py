"""Convolutions of a channels_last input (an image permuted from H x W x C pixels): the
engine lays the weight out once per call, so the backward passes copy no weight, and
the maps are those of Captum and of the same input laid out contiguously."""

from __future__ import annotations

import pytest
import torch
from tiny_nets import seeded_
from torch import nn
from torch.profiler import profile

import backpropvis


def conv_net() -> nn.Module:
    """Two 3x3 convolutions (one grouped) with ReLUs and a max-pool, then a dense layer: [B, 3, 16, 16] -> [B, 5]."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, padding=1, groups=2),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(8 * 8 * 8, 5),
    )
    return seeded_(net, 3).eval()


def channels_last_input() -> torch.Tensor:
    pixels = torch.rand((2, 16, 16, 3), generator=torch.Generator().manual_seed(1))
    return pixels.permute(0, 3, 1, 2)  # as the preprocessing permutes decoded images


def weight_copies(events, shapes: set) -> int:
    """Copies (aten::copy_) into tensors shaped like a convolution weight, among profiler
    events: the kernels' own layout copies happen inside the convolution ops, where only
    the profiler sees them."""
    return sum(1 for event in events if event.name == "aten::copy_" and tuple(event.input_shapes[0]) in shapes)


def test_channels_last_input_maps_match_captum_and_contiguous_input() -> None:
    captum = pytest.importorskip("captum.attr")
    net, x = conv_net(), channels_last_input()
    assert not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
    ours = backpropvis.attribute_many(net, x, [0, 3], ["saliency", "gbp"], precision="float32")
    plain = backpropvis.attribute_many(net, x.contiguous(), [0, 3], ["saliency", "gbp"], precision="float32")
    for index, target in enumerate((0, 3)):
        expected = {
            "saliency": captum.Saliency(net).attribute(x.contiguous(), target=target, abs=False),
            "gbp": captum.GuidedBackprop(net).attribute(x.contiguous(), target=target),
        }
        for name, reference in expected.items():
            torch.testing.assert_close(ours[name][index], reference, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(ours[name][index], plain[name][index], rtol=1e-5, atol=1e-6)
    assert net[0].weight.is_contiguous(), "the model's own weights are left as they were"


def test_backward_passes_copy_no_weight() -> None:
    net, x = conv_net(), channels_last_input()
    shapes = {tuple(module.weight.shape) for module in net if isinstance(module, nn.Conv2d)}
    with profile(record_shapes=True) as profiler:
        backpropvis.attribute_many(net, x, [0, 1, 2, 3], ["saliency", "deconvnet", "gbp"], precision="float32")
    # one copy per convolution in the forward pass; the 12 maps' backward passes copy none
    # (without the layout: one per convolution per pass, 2 + 12 x 2)
    assert weight_copies(profiler.events(), shapes) <= len(shapes)
