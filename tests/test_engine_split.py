"""The two-stage backward pass: batched over targets above a graph cut, one target per
pass below it. Checked against closed forms on models where the split is and is not
possible, and on where the engine chooses to split VGG-16."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import backpropvis
import backpropvis.engine as engine
from tiny_nets import seeded_

METHODS = ("saliency", "deconvnet", "gbp")


class SkipToLogits(nn.Module):
    """logits = fc2(relu(fc1(x))) + skip(x): the ReLU's output is not a graph cut.

    Shapes: [B, 6] -> [B, 4].
    """

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2, self.skip = nn.Linear(6, 5), nn.Linear(5, 4), nn.Linear(6, 4)
        seeded_(self, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x))) + self.skip(x)


def closed_form(model: SkipToLogits, x: torch.Tensor, target: int, method: str) -> torch.Tensor:
    """d logit / d x under the rule: skip.weight[k] + fc1.weight^T (h(fc2.weight[k]) * g'(y))."""
    with torch.no_grad():
        pre = model.fc1(x)  # [B, 5]
        arriving = model.fc2.weight[target].expand_as(pre)  # R at the ReLU's output
        if method in ("deconvnet", "gbp"):
            arriving = arriving.clamp_min(0)
        if method in ("saliency", "gbp"):
            arriving = arriving * (pre > 0)
        return arriving @ model.fc1.weight + model.skip.weight[target]


@pytest.mark.parametrize("max_batch", [1, 64])
def test_a_skip_around_the_last_activation_prevents_the_split_and_stays_exact(max_batch: int) -> None:
    model = SkipToLogits()
    x = torch.randn(3, 6, generator=torch.Generator().manual_seed(0))
    maps = backpropvis.attribute_many(model, x, [0, 1, 2, 3], METHODS, max_batch=max_batch)
    for method in METHODS:
        for target in range(4):
            torch.testing.assert_close(maps[method][target], closed_form(model, x, target, method), rtol=1e-5, atol=1e-6)


def test_the_skip_model_has_no_cut_but_a_chain_does() -> None:
    model = SkipToLogits()
    x = torch.randn(2, 6).requires_grad_()
    session = engine._Session(True, "SkipToLogits")
    with engine._intercepted(model, session):
        logits = model(x)
    assert engine._region_above(logits, session.activation_outputs[-1], x) is None

    chain = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 4))
    session = engine._Session(True, "Sequential")
    with engine._intercepted(chain, session):
        logits = chain(x)
    region = engine._region_above(logits, session.activation_outputs[-1], x)
    assert region is not None and any("Addmm" in name for name in region)


def test_vgg16_splits_below_its_dense_layers_and_above_every_convolution(vgg16_random: nn.Module) -> None:
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1)).requires_grad_()
    session = engine._Session(True, "VGG16")
    with engine._intercepted(vgg16_random, session):
        logits = vgg16_random(x)
    cut, per_batch = engine._choose_cut(session.activation_outputs, logits, x, num_targets=2, targets_per_pass=1)
    assert cut is session.activation_outputs[12]  # conv5_3's ReLU: 13 conv ReLUs, then fc1, fc2
    assert cut.shape == (2, 512, 4, 4)
    assert per_batch >= 2


def test_split_and_unsplit_backward_passes_agree_on_vgg16(vgg16_random: nn.Module, monkeypatch) -> None:
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    targets = ["max", 3, 7, "random"]
    split = backpropvis.attribute_many(vgg16_random, x, targets, METHODS)
    monkeypatch.setattr(engine, "_region_above", lambda *args: None)
    unsplit = backpropvis.attribute_many(vgg16_random, x, targets, METHODS)
    for method in METHODS:
        torch.testing.assert_close(split[method], unsplit[method], rtol=1e-5, atol=0)
