"""The input side: several inputs with extra forward arguments (as Captum), and one image
without its batch dimension.

- A two-input model (an image branch with convolutions and a vector branch, the vector
  also joining at the logits, so no activation cuts every input's path; an extra forward
  argument scales the logits): every method's maps equal Captum 0.9's ``Saliency(abs=False)``,
  ``Deconvolution`` and ``GuidedBackprop`` to 1e-5 relative, in float32 and float64,
  through ``attribute``, ``attribute_many`` and the explainer classes.
- One image [3, H, W] is a batch of one: its maps are shaped like it and equal the
  batched call's; a sequence model's 3-D input [B, L, D] stays a batch.
"""

from __future__ import annotations

import pytest
import torch
from tiny_nets import seeded_
from torch import nn

import backpropvis
from backpropvis.core.errors import InputError

captum_attr = pytest.importorskip("captum.attr")

METHODS = ("saliency", "deconvnet", "gbp")


class TwoInputs(nn.Module):
    """image [B, 3, 8, 8] -> conv -> ReLU -> max-pool -> flatten; vector [B, 5] -> dense
    -> ReLU; both -> dense -> ReLU -> dense, plus dense(vector), times ``scale``: [B, 4]."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.relu1, self.pool = nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)
        self.vector, self.relu2 = nn.Linear(5, 6), nn.ReLU()
        self.fc, self.relu3, self.head, self.skip = (
            nn.Linear(4 * 16 + 6, 8),
            nn.ReLU(),
            nn.Linear(8, 4),
            nn.Linear(5, 4),
        )
        seeded_(self, 9)

    def forward(self, image: torch.Tensor, vector: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        seen = self.pool(self.relu1(self.conv(image))).flatten(1)
        joined = torch.cat([seen, self.relu2(self.vector(vector))], dim=1)
        return (self.head(self.relu3(self.fc(joined))) + self.skip(vector)) * scale


def _captum(method: str, model: nn.Module, inputs: tuple, target: int, extra: tuple) -> tuple:
    explainer = {"saliency": captum_attr.Saliency, "deconvnet": captum_attr.Deconvolution}.get(
        method, captum_attr.GuidedBackprop
    )(model)
    options = {"abs": False} if method == "saliency" else {}
    leaves = tuple(x.clone().requires_grad_(True) for x in inputs)
    return explainer.attribute(leaves, target=target, additional_forward_args=extra, **options)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_two_inputs_equal_captum(dtype: torch.dtype) -> None:
    model = TwoInputs().to(dtype)
    generator = torch.Generator().manual_seed(4)
    inputs = (
        torch.randn(3, 3, 8, 8, generator=generator, dtype=dtype),
        torch.randn(3, 5, generator=generator, dtype=dtype),
    )
    maps = backpropvis.attribute_many(model, inputs, [0, 2], METHODS, additional_forward_args=(1.5,), max_batch=6)
    explainers = {
        "saliency": backpropvis.Saliency,
        "deconvnet": backpropvis.DeconvNet,
        "gbp": backpropvis.GuidedBackprop,
    }
    for method in METHODS:
        assert isinstance(maps[method], tuple) and len(maps[method]) == 2
        assert [tuple(part.shape) for part in maps[method]] == [(2, 3, 3, 8, 8), (2, 3, 5)]
        for number, target in enumerate((0, 2)):
            expected = _captum(method, model, inputs, target, (1.5,))
            one = backpropvis.attribute(model, inputs, target, method, additional_forward_args=1.5)
            explained = explainers[method](model).attribute(inputs, target, additional_forward_args=(1.5,))
            for part, (reference, single, from_class) in enumerate(zip(expected, one, explained)):
                assert reference.abs().max() > 0, (method, part)  # both inputs' paths count
                for got in (maps[method][part][number], single, from_class):
                    torch.testing.assert_close(got, reference.detach(), rtol=1e-5, atol=1e-5 * reference.abs().max())


def test_several_inputs_must_share_a_batch_and_be_tensors() -> None:
    model = TwoInputs()
    with pytest.raises(InputError, match="batch size"):
        backpropvis.attribute(model, (torch.randn(2, 3, 8, 8), torch.randn(3, 5)), 0)
    with pytest.raises(InputError, match=r"inputs\[1\] must be a Tensor"):
        backpropvis.attribute(model, (torch.randn(2, 3, 8, 8), [1.0] * 5), 0)


def _conv_net() -> nn.Module:
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    return seeded_(net, 3)


def test_one_image_without_its_batch_dimension_is_a_batch_of_one() -> None:
    model = _conv_net()
    image = torch.randn(3, 10, 10, generator=torch.Generator().manual_seed(2))
    for method in METHODS:
        single = backpropvis.attribute(model, image, 1, method)
        assert single.shape == image.shape
        torch.testing.assert_close(single, backpropvis.attribute(model, image[None], 1, method)[0], rtol=0, atol=0)
    maps = backpropvis.attribute_many(model, image, [0, 2], METHODS)
    assert maps["gbp"].shape == (2, 3, 10, 10) and maps.logits.shape == (1, 3)
    batched = backpropvis.attribute_many(model, image[None], [0, 2], METHODS)
    assert torch.equal(maps["gbp"], batched["gbp"][:, 0])


def test_a_sequence_models_3d_input_stays_a_batch() -> None:
    model = nn.Sequential(nn.Conv1d(4, 5, 3), nn.ReLU(), nn.Flatten(), nn.Linear(5 * 6, 2))
    seeded_(model, 1)
    x = torch.randn(3, 4, 8, generator=torch.Generator().manual_seed(0))
    maps = backpropvis.attribute_many(model, x, [0], ["gbp"])
    assert maps["gbp"].shape == (1, 3, 4, 8) and maps.logits.shape == (3, 2)
