"""Units inside the network as targets, against Captum's neuron attributions.

- ``Unit(layer, channel, position)`` equals Captum 0.9's ``NeuronGuidedBackprop``,
  ``NeuronDeconvolution`` and ``NeuronGradient`` (float32 and float64, 1e-5 relative) on a
  small VGG-like net with in-place ReLUs, at layers below the engine's graph cut and above.
- ``position=None`` (the channel's spatial maximum) equals Captum with a selector taking
  that maximum; ``"max"`` / ``"random"`` channels are the hand-computed ones.
- Many units of several layers and logits come from ONE forward pass and equal one call each.
- Bad units fail with one line; parsing ``LAYER:CHANNEL[@Y,X]``; nothing outlives the call.
"""

from __future__ import annotations

import gc
import warnings
import weakref

import pytest
import torch
from tiny_nets import seeded_
from torch import nn

import backpropvis
from backpropvis.core.errors import TargetError
from backpropvis.core.rules import SALIENCY
from backpropvis.core.targets import Unit, parse_targets, resolve_targets
from backpropvis.engine.planning import plan_backward
from backpropvis.engine.recording import ForwardRecord, RecordedForward
from backpropvis.engine.ruled import RuleSlot
from backpropvis.theory.receptive_fields import receptive_field

captum_attr = pytest.importorskip("captum.attr")

METHODS = ("saliency", "deconvnet", "gbp")
CAPTUM = {"saliency": "NeuronGradient", "deconvnet": "NeuronDeconvolution", "gbp": "NeuronGuidedBackprop"}


def small_vgg(dtype: torch.dtype = torch.float32) -> nn.Module:
    """VGG's layout at 32 px: [conv-ReLU(inplace)] x2, pool, conv-ReLU, pool, dense-ReLU-dense.

    Shapes: [B, 3, 32, 32] -> features.7 [B, 16, 8, 8] -> [B, 10].
    """
    net = nn.Sequential()
    net.features = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )
    net.flatten = nn.Flatten()
    net.classifier = nn.Sequential(nn.Linear(16 * 8 * 8, 32), nn.ReLU(inplace=True), nn.Linear(32, 10))
    return seeded_(net, 5, scale=0.3).to(dtype).eval()


def inputs(dtype: torch.dtype = torch.float32, batch: int = 3) -> torch.Tensor:
    return torch.randn((batch, 3, 32, 32), generator=torch.Generator().manual_seed(2)).to(dtype)


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    assert expected.norm() > 0, "the reference map is zero: the comparison would say nothing"
    return float((actual - expected).norm() / expected.norm())


def captum_neuron(model: nn.Module, layer: str, x: torch.Tensor, selector, method: str) -> torch.Tensor:
    explainer = getattr(captum_attr, CAPTUM[method])(model, dict(model.named_modules())[layer])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Captum warns about requires_grad and its hooks
        return explainer.attribute(x.clone(), neuron_selector=selector).detach()


CASES = [
    ("features.5", (12, 5, 7)),  # a convolution whose output an in-place ReLU overwrites next
    ("features.2", (3, 4, 9)),  # early, before the first max-pool
    ("features.6", (11, 2, 6)),  # a ReLU(inplace=True) itself
    ("classifier.0", (7,)),  # a dense layer above the graph cut
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("layer, selector", CASES)
def test_a_unit_equals_captums_neuron_attribution(dtype, layer: str, selector: tuple) -> None:
    model, x = small_vgg(dtype), inputs(dtype)
    unit = Unit(layer, selector[0], selector[1:] or None)
    for method in METHODS:
        ours = backpropvis.attribute(model, x, target=unit, method=method)
        assert relative_error(ours, captum_neuron(model, layer, x, selector, method)) < 1e-5, (layer, method)


def test_the_small_vgg_has_a_graph_cut_above_the_units_below_it() -> None:
    """The cut the engine plans for logits is the last ReLU's output (features.6, below
    the dense layers): the Captum cases above have units below it (features.2, .5), at it
    (features.6) and above it (classifier.0)."""
    model, x = small_vgg(), inputs()
    record, slot = ForwardRecord(True, "net"), RuleSlot(SALIENCY)
    with torch.enable_grad(), RecordedForward(model, record, slot):
        logits = model(x.requires_grad_(True))
    plan = plan_backward(record, logits, x, 2)
    assert plan.cut is not None and plan.cut.shape == (3, 16, 16, 16)  # features.6's output


def test_position_none_is_the_channels_spatial_maximum_in_each_sample() -> None:
    model, x = small_vgg(), inputs()
    result = backpropvis.attribute_many(model, x, [Unit("features.5", 4)], METHODS)
    with torch.no_grad():
        activation = model.features[:6](x)[:, 4]  # [B, 16, 16], conv output before the ReLU
    flat = activation.flatten(1).argmax(dim=1)
    resolved = result.units[0]
    assert torch.equal(resolved.position, torch.stack([flat // 16, flat % 16], dim=1))
    assert torch.allclose(resolved.activation, activation.flatten(1).amax(dim=1))
    for method in METHODS:
        expected = captum_neuron(model, "features.5", x, lambda out: out[:, 4].flatten(1).amax(dim=1), method)
        assert relative_error(result[method][0], expected) < 1e-5, method


def test_max_and_random_channels_are_the_most_active_and_another_drawn_from_the_generator() -> None:
    model, x = small_vgg(), inputs(batch=4)
    generators = [torch.Generator().manual_seed(10 + i) for i in range(4)]
    result = backpropvis.attribute_many(
        model, x, [Unit("features.2", "max"), Unit("features.2", "random")], "gbp", generator=generators
    )
    with torch.no_grad():
        peaks = model.features[:3](x).flatten(2).amax(dim=2)  # [B, 8]
    most_active = peaks.argmax(dim=1)
    assert torch.equal(result.units[0].channel, most_active)
    offsets = [int(torch.randint(0, 7, (1,), generator=torch.Generator().manual_seed(10 + i))) for i in range(4)]
    expected = torch.tensor([o + (o >= int(m)) for o, m in zip(offsets, most_active)])
    assert torch.equal(result.units[1].channel, expected)
    assert not torch.equal(result.units[1].channel, most_active)


def test_units_of_several_layers_and_logits_come_from_one_forward_pass_and_equal_single_calls() -> None:
    model, x = small_vgg(), inputs()
    calls = []
    handle = model.register_forward_pre_hook(lambda module, args: calls.append(1))
    targets = [
        "max",
        Unit("features.5", 12, (5, 7)),
        Unit("features.2", 3),
        7,
        Unit("features.5", 0, (0, 0)),
        Unit("classifier.0", 7),
        Unit("features.5", 15),
    ]
    try:
        together = backpropvis.attribute_many(model, x, targets, METHODS, max_batch=6)
    finally:
        handle.remove()
    assert len(calls) == 1
    assert together.targets[0].tolist() == together.logits.argmax(1).tolist()
    assert together.targets[3].tolist() == [7] * 3
    assert together.targets[1].tolist() == [-1, -1, -1] and sorted(together.units) == [1, 2, 4, 5, 6]
    for method in METHODS:
        for row, target in enumerate(targets):
            alone = backpropvis.attribute(model, x, target=target, method=method)
            assert relative_error(together[method][row], alone) < 1e-5, (method, target)


def test_unknown_layers_and_bad_channels_or_positions_fail_in_one_line() -> None:
    model, x = small_vgg(), inputs()
    bad = {
        Unit("features.55", 0): "no layer named 'features.55'; its layers include features.5",
        Unit("features.5", 16): "channel 16 is outside layer 'features.5''s 16 channels (0 to 15)",
        Unit("features.5", 0, (16, 0)): "position (16, 0) is outside layer 'features.5''s spatial shape [16, 16]",
        Unit("features.5", 0, (1,)): "spatial shape [16, 16]",
        Unit("flatten", 0, (1, 2)): "spatial shape []",
    }
    for unit, message in bad.items():
        with pytest.raises(TargetError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
            backpropvis.attribute(model, x, target=unit)
    with pytest.raises(TargetError, match="channel must be 0 or more"):
        Unit("features.5", -1)
    with pytest.raises(TargetError, match="need an nn.Module"):
        backpropvis.attribute(lambda t: model(t), x, target=Unit("features.5", 0))


def test_a_layer_that_runs_twice_is_refused() -> None:
    relu = nn.ReLU()
    model = nn.Sequential(nn.Conv2d(3, 4, 3), relu, nn.Conv2d(4, 4, 3), relu, nn.Flatten(), nn.LazyLinear(3))
    model(torch.zeros(1, 3, 8, 8))
    with pytest.raises(TargetError, match="ran 2 times"):
        backpropvis.attribute(model.eval(), torch.zeros(1, 3, 8, 8), target=Unit("1", 0))


def test_targets_text_accepts_units_beside_logits() -> None:
    parsed = parse_targets("max, features.28:12@5,7 ,281,features.28:max,classifier.0:3,random")
    assert parsed == [
        "max",
        Unit("features.28", 12, (5, 7)),
        281,
        Unit("features.28", "max"),
        Unit("classifier.0", 3),
        "random",
    ]
    for text, message in {
        "features.28:x": "must be an index, 'max' or 'random'",
        "features.28:3@5": "two integers Y,X",
        "features.28:3@a,b": "two integers Y,X",
        ":3": "module name",
    }.items():
        with pytest.raises(TargetError, match=message):
            parse_targets(text)


def test_nothing_of_a_unit_call_outlives_it() -> None:
    model, x = small_vgg(), inputs()
    kept: list[weakref.ref] = []
    handle = model.features[5].register_forward_hook(lambda module, args, output: kept.append(weakref.ref(output)))
    gc.disable()
    try:
        backpropvis.attribute_many(model, x, [Unit("features.5", 1), "max"], METHODS)
        assert kept and all(reference() is None for reference in kept)
    finally:
        gc.enable()
        handle.remove()
    assert not model.features[5]._forward_hooks and not nn.modules.module._global_forward_hooks


def test_random_logits_from_one_generator_per_sample_do_not_depend_on_the_batch() -> None:
    logits = torch.randn((3, 10), generator=torch.Generator().manual_seed(4))
    together = resolve_targets(["random"], logits, [torch.Generator().manual_seed(20 + i) for i in range(3)])[0]
    for i in range(3):
        alone = resolve_targets(["random"], logits[i : i + 1], [torch.Generator().manual_seed(20 + i)])[0]
        assert int(together[i]) == int(alone[0]) != int(logits[i].argmax())
    with pytest.raises(TargetError, match="2 generators for a batch of 3"):
        resolve_targets(["random"], logits, [torch.Generator(), torch.Generator()])


class DictOutput(nn.Module):
    """A model returning {"logits": ...}, as Hugging Face-style models do."""

    def __init__(self) -> None:
        super().__init__()
        self.net = small_vgg()

    def forward(self, x: torch.Tensor) -> dict:
        return {"logits": self.net(x)}


def test_a_model_behind_an_output_selector_takes_its_own_layer_names() -> None:
    """``--output logits`` wraps the model (its layers gain the prefix "model."); a unit may
    name the layer as the user's model does, or with the prefix."""
    wrapped, x = backpropvis.models.select_output(DictOutput().eval(), "logits"), inputs()
    plain = backpropvis.attribute(small_vgg(), x, target=Unit("features.5", 12, (5, 7)), method="gbp")
    for name in ("net.features.5", "model.net.features.5"):
        assert torch.equal(backpropvis.attribute(wrapped, x, target=Unit(name, 12, (5, 7)), method="gbp"), plain)
    field = receptive_field(wrapped, x, "net.features.5")
    assert (field.size, field.jump) == ((10, 10), (2, 2))
