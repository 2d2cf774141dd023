"""Layer randomisation (models/randomization.py): which layers, which stages, the three
variants of Figure 9 and cascading randomisation, the paper's init on redrawn layers,
and the batch norm policies."""

from __future__ import annotations

import pytest
import torch
from scipy import stats
from torch import nn

from backpropvis.core.errors import ModelError
from backpropvis.models import digits_vgg, efficientnet_lite0
from backpropvis.models.digits_vgg import DIGITS_VGG_LAYERS
from backpropvis.models.randomization import (
    Stage,
    default_stages,
    layers_after,
    layers_from,
    only_redrawn,
    randomized,
    redraw,
    redrawable_layers,
    redrawn_from,
    resolve_stage,
    trained_up_to,
)

TRUNCATED = stats.truncnorm(-2.0, 2.0, scale=0.1)
"""The paper's init, N(0, 0.1^2) cut at +-2 std, as scipy states it (std 0.0880)."""


class NormNet(nn.Module):
    """conv1 -> bn1 -> ReLU -> conv2 -> bn2 -> ReLU -> pool -> fc: batch norm around two convs."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(6)
        self.conv2 = nn.Conv2d(6, 8, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        return self.fc(x.mean((2, 3)))


@pytest.fixture
def norm_net() -> NormNet:
    """A 'trained' NormNet: weights and batch norm statistics far from any init."""
    generator = torch.Generator().manual_seed(5)
    model = NormNet()
    with torch.no_grad():
        for tensor in list(model.parameters()) + [model.bn1.running_mean, model.bn2.running_mean]:
            tensor.copy_(torch.randn(tensor.shape, generator=generator) + 3.0)
        for variance in (model.bn1.running_var, model.bn2.running_var):
            variance.copy_(torch.rand(variance.shape, generator=generator) + 5.0)
    model.weights_description = "trained"
    return model.eval()


def calibration() -> torch.Tensor:
    return torch.randn(10, 3, 8, 8, generator=torch.Generator().manual_seed(1))


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.clone() for key, value in model.state_dict().items()}


def assert_same(state: dict[str, torch.Tensor], model: nn.Module, keys) -> None:
    current = model.state_dict()
    for key in keys:
        assert torch.equal(current[key], state[key]), key


# --- layers and stages ------------------------------------------------------------------


def test_redrawable_layers_are_convs_and_linears_in_forward_order():
    class Reversed(nn.Module):  # registered fc, conv; called conv, fc
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 2)
            self.norm = nn.LayerNorm(4)
            self.conv = nn.Conv2d(3, 4, 1)
            self.slope = nn.PReLU()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.norm(self.slope(self.conv(x)).mean((2, 3))))

    model = Reversed()
    example = torch.zeros(1, 3, 2, 2)
    assert redrawable_layers(model) == ("fc", "conv")  # registration order, parameterised non-layers left out
    assert redrawable_layers(model, example) == ("conv", "fc")
    assert not model._forward_pre_hooks and not model.conv._forward_pre_hooks  # the trace left no hook
    assert layers_after(model, "conv", example) == ("fc",) and layers_after(model, "conv") == ()
    star = trained_up_to(model, "conv", example, seed=0)
    assert torch.equal(star.conv.weight, model.conv.weight) and not torch.equal(star.fc.weight, model.fc.weight)


def test_built_in_models_declare_their_stages():
    digits = digits_vgg("random")
    assert [stage.label for stage in default_stages(digits)] == ["Conv1-1", "Conv2-1", "Conv3-1", "FC1", "FC2"]
    assert redrawable_layers(digits) == DIGITS_VGG_LAYERS
    network = efficientnet_lite0()
    stages = default_stages(network)
    assert [stage.label for stage in stages] == ["stem", "stage 2", "stage 4", "stage 6", "head", "classifier"]
    order = redrawable_layers(network)
    assert len(order) == 50 and order[0] == "_conv_stem" and order[-1] == "_fc"
    positions = [[order.index(name) for name in stage.layers] for stage in stages]
    for layers in positions:  # each stage is a run of consecutive layers, stages in forward order
        assert layers == list(range(layers[0], layers[0] + len(layers)))
    assert all(before[-1] < after[0] for before, after in zip(positions, positions[1:]))
    assert len(stages[1].layers) == 6 and stages[1].layers[0] == "_blocks.1._expand_conv"  # blocks 1-2 (24 ch)


def test_generic_stages_spread_from_first_to_last_layer(norm_net):
    layers = nn.Sequential(*[nn.Linear(3, 3) for _ in range(9)])
    stages = default_stages(layers, count=5)
    assert [stage.layers for stage in stages] == [("0",), ("2",), ("4",), ("6",), ("8",)]
    assert [stage.label for stage in default_stages(norm_net)] == ["conv1", "conv2", "fc"]


def test_stages_resolve_by_label_or_layer_name_and_unknown_names_fail(norm_net):
    digits = digits_vgg("random")
    assert resolve_stage(digits, "Conv2-1") == Stage("Conv2-1", ("conv2_1",))
    assert resolve_stage(digits, "conv2_2") == Stage("conv2_2", ("conv2_2",))
    assert layers_after(digits, "Conv2-1") == ("conv2_2", "conv3_1", "fc1", "fc2")
    assert layers_from(digits, "Conv2-1") == ("conv2_1", "conv2_2", "conv3_1", "fc1", "fc2")
    assert layers_after(digits, "FC2") == ()
    for wrong in ("conv9_9", "Conv9-9", Stage("made up", ("nowhere",))):
        with pytest.raises(ModelError, match="no layer"):
            trained_up_to(norm_net, wrong)
    with pytest.raises(ModelError, match="batch_norm"):
        redraw(norm_net, ["conv1"], batch_norm="average")


# --- the variants --------------------------------------------------------------------------


def test_star_diamond_and_cascade_redraw_exactly_their_layers():
    trained = digits_vgg("trained")
    before = snapshot(trained)
    twin = digits_vgg("random", seed=3)
    cases = {
        "star": (trained_up_to(trained, "Conv2-1", seed=3), {"conv2_2", "conv3_1", "fc1", "fc2"}),
        "cascade": (redrawn_from(trained, "Conv2-1", seed=3), {"conv2_1", "conv2_2", "conv3_1", "fc1", "fc2"}),
        "diamond": (only_redrawn(trained, "Conv2-1", seed=3), {"conv2_1"}),
        "twin": (randomized(trained, seed=3), set(DIGITS_VGG_LAYERS)),
        "fully trained": (trained_up_to(trained, "FC2", seed=3), set()),
    }
    assert_same(before, trained, before)  # the original is untouched
    for case, (model, redrawn) in cases.items():
        assert model is not trained and not model.training
        for name in DIGITS_VGG_LAYERS:
            source = twin if name in redrawn else trained  # a redrawn layer is the random twin's, by (seed, name)
            for kind in ("weight", "bias"):
                assert torch.equal(
                    getattr(model.get_submodule(name), kind), getattr(source.get_submodule(name), kind)
                ), (case, name, kind)
        assert ("redrawn" in model.weights_description) == bool(redrawn), case
    assert cases["star"][0].preprocessing == trained.preprocessing


def test_redrawn_layers_follow_the_paper_init_and_the_seed():
    trained = efficientnet_lite0()
    first = only_redrawn(trained, "classifier", seed=0)
    again = only_redrawn(trained, "classifier", seed=0)
    other = only_redrawn(trained, "classifier", seed=1)
    weight = first._fc.weight.detach().double().flatten()  # 1.28 M values
    assert torch.equal(first._fc.weight, again._fc.weight)
    assert not torch.equal(first._fc.weight, other._fc.weight)
    assert torch.count_nonzero(first._fc.bias) == 0
    assert abs(float(weight.mean())) < 4 * TRUNCATED.std() / weight.numel() ** 0.5
    assert float(weight.std()) == pytest.approx(TRUNCATED.std(), rel=5e-3)
    assert float(weight.abs().max()) <= 0.2 + 1e-7 and float(weight.abs().max()) > 0.199  # cut at 2 std, reached
    inner = float((weight.abs() < 0.1).double().mean())  # P(|w| < 1 std) under the truncated normal
    assert inner == pytest.approx(TRUNCATED.cdf(0.1) - TRUNCATED.cdf(-0.1), abs=3e-3)
    for name in ("_conv_stem", "_blocks.7._depthwise_conv", "_conv_head"):
        assert torch.equal(first.get_submodule(name).weight, trained.get_submodule(name).weight), name


# --- batch norm --------------------------------------------------------------------------


def test_batch_norm_keep_leaves_every_norm_as_trained(norm_net):
    before = snapshot(norm_net)
    model = only_redrawn(norm_net, "conv2", seed=0, batch_norm="keep")
    assert_same(before, model, [key for key in before if not key.startswith("conv2")])
    assert not torch.equal(model.conv2.weight, before["conv2.weight"])


def test_batch_norm_identity_replaces_the_norm_after_a_redrawn_conv(norm_net):
    before = snapshot(norm_net)
    model = only_redrawn(norm_net, "conv2", seed=0, batch_norm="identity")
    assert isinstance(model.bn2, nn.Identity) and isinstance(model.bn1, nn.BatchNorm2d)
    assert_same(before, model, [key for key in before if key.startswith(("conv1.", "bn1.", "fc."))])
    x = calibration()
    features = torch.relu(model.conv2(torch.relu(model.bn1(model.conv1(x)))))  # no normalisation after conv2
    assert torch.allclose(model(x), model.fc(features.mean((2, 3))))
    assert isinstance(norm_net.bn2, nn.BatchNorm2d)


def test_batch_norm_reestimate_gives_the_calibration_statistics(norm_net):
    before = snapshot(norm_net)
    x = calibration()
    model = only_redrawn(norm_net, "conv2", seed=0, calibration=x)
    assert_same(before, model, [key for key in before if key.startswith(("conv1.", "bn1.", "fc."))])
    assert torch.equal(model.bn2.weight, torch.ones(8)) and torch.equal(model.bn2.bias, torch.zeros(8))
    with torch.no_grad():
        conv2_out = model.conv2(torch.relu(model.bn1(model.conv1(x))))  # [10, 8, 8, 8]: what bn2 normalises
    assert torch.allclose(model.bn2.running_mean, conv2_out.mean((0, 2, 3)), rtol=1e-5, atol=1e-6)
    assert torch.allclose(model.bn2.running_var, conv2_out.var((0, 2, 3), unbiased=True), rtol=1e-4)
    assert model.bn2.momentum == norm_net.bn2.momentum and not model.bn2.training
    with torch.no_grad():
        normalised = model.bn2(conv2_out)
    assert torch.allclose(normalised.mean((0, 2, 3)), torch.zeros(8), atol=1e-4)


def test_batch_norm_reestimate_reaches_every_later_norm(norm_net):
    """Redrawing conv1 re-estimates bn1 (fresh scale and shift) and bn2 (trained scale
    and shift kept, statistics recomputed for its new inputs)."""
    before = snapshot(norm_net)
    model = only_redrawn(norm_net, "conv1", seed=0, calibration=calibration())
    assert torch.equal(model.bn1.weight, torch.ones(6))
    assert torch.equal(model.bn2.weight, before["bn2.weight"]) and torch.equal(model.bn2.bias, before["bn2.bias"])
    assert not torch.allclose(model.bn2.running_mean, before["bn2.running_mean"])
    assert torch.equal(model.conv2.weight, before["conv2.weight"])


def test_batch_norm_reestimate_keeps_efficientnet_logit_scale():
    """EfficientNet-Lite0 trained up to stage 2, everything later redrawn: re-estimated, the
    logits keep the trained network's scale within a factor of 3; with the trained statistics
    kept they grow about 8-fold, with identity in place of the norms they all but vanish."""
    from backpropvis.images.samples import load_image

    trained = efficientnet_lite0()
    x = trained.preprocessing.batch([load_image("tabby"), load_image("coffee")])
    with torch.no_grad():
        reference = float(trained(x).std())
        scales = {
            policy: float(trained_up_to(trained, "stage 2", batch_norm=policy)(x).std()) / reference
            for policy in ("reestimate", "keep", "identity")
        }
    assert 1 / 3 < scales["reestimate"] < 3
    assert scales["keep"] > 3 and scales["identity"] < 1 / 3
