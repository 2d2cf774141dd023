"""The two-stage backward pass: batched over targets above a graph cut, one target per
pass below it. Checked against closed forms on models where the split is and is not
possible, and on where the engine chooses to split VGG-16."""

from __future__ import annotations

import pytest
import torch
from tiny_nets import seeded_
from torch import nn

import backpropvis
from backpropvis.core.rules import SALIENCY
from backpropvis.engine import planning
from backpropvis.engine.planning import BackwardPlan, plan_backward, region_above
from backpropvis.engine.recording import ForwardRecord, RecordedForward
from backpropvis.engine.ruled import RuleSlot

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
            torch.testing.assert_close(
                maps[method][target], closed_form(model, x, target, method), rtol=1e-5, atol=1e-6
            )


def recorded(model: nn.Module, x: torch.Tensor) -> tuple[ForwardRecord, torch.Tensor]:
    """One forward pass under the engine's recorder: (the record, the logits)."""
    record = ForwardRecord("refuse", type(model).__name__)
    with RecordedForward(model, record, RuleSlot(SALIENCY)):
        logits = model(x)
    return record, logits


def test_the_skip_model_has_no_cut_but_a_chain_does() -> None:
    x = torch.randn(2, 6).requires_grad_()
    record, logits = recorded(SkipToLogits(), x)
    assert region_above(logits, record.activation_outputs()[-1], x) is None
    assert plan_backward(record, logits, x, num_targets=4).cut is None

    chain = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 4))
    record, logits = recorded(chain, x)
    region = region_above(logits, record.activation_outputs()[-1], x)
    assert region is not None and any("Addmm" in type(node).__name__ for node in region)
    plan = plan_backward(record, logits, x, num_targets=4)
    assert plan.cut is record.activation_outputs()[-1] and plan.targets_above_cut >= 4


def test_vgg16_splits_below_its_dense_layers_and_above_every_convolution(vgg16_random: nn.Module) -> None:
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1)).requires_grad_()
    record, logits = recorded(vgg16_random, x)
    outputs = record.activation_outputs()
    assert len(outputs) == 15 and record.activation_count == 15  # 13 conv ReLUs, then fc1's and fc2's
    plan = plan_backward(record, logits, x, num_targets=2)
    assert plan.cut is outputs[12]  # conv5_3's ReLU
    assert plan.cut.shape == (2, 512, 4, 4)
    assert plan.targets_above_cut >= 2 and plan.targets_per_pass == 1
    # a layer that cannot batch over targets (weights drawn on the fly) makes one pass per target
    assert plan_backward(record, logits, x, num_targets=2, batchable=False) == BackwardPlan(None, 1, 1)


def test_an_output_nothing_keeps_is_not_kept_alive_by_the_record() -> None:
    """ReLU -> padding copy -> conv: the conv saves the padded copy, so the ReLU's own output
    dies after the forward pass; the record must not keep it (it would cost a whole
    activation's memory per layer, as it did for EfficientNet-Lite0's ReLU6 before the
    depthwise convolution's "SAME" padding)."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.ZeroPad2d(1), nn.Conv2d(4, 2, 3), nn.Flatten())
    record, _ = recorded(model, torch.randn(1, 3, 8, 8).requires_grad_())
    assert record.activation_count == 1 and record.activation_outputs() == []


def relative_errors(actual: torch.Tensor, expected: torch.Tensor) -> torch.Tensor:
    """||actual - expected|| / ||expected|| of each map [T, B, ...] -> [T, B]."""
    return (actual - expected).flatten(2).norm(dim=-1) / expected.flatten(2).norm(dim=-1)


def test_split_and_unsplit_backward_passes_agree_on_vgg16(vgg16_random: nn.Module, monkeypatch) -> None:
    """Two stages sum in another order than one: equal to float32 rounding, map by map (an
    element-wise relative tolerance is not a property of the code: elements near zero
    differ relatively by far more than the map does)."""
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    targets = ["max", 3, 7, "random"]
    split = backpropvis.attribute_many(vgg16_random, x, targets, METHODS, precision="float32")
    asked = []
    monkeypatch.setattr(planning, "region_above", lambda *args: asked.append(args) or None)  # no cut anywhere
    unsplit = backpropvis.attribute_many(vgg16_random, x, targets, METHODS, precision="float32")
    assert asked  # the planner looked for a cut and found none
    for method in METHODS:
        assert float(relative_errors(split[method], unsplit[method]).max()) < 1e-5
