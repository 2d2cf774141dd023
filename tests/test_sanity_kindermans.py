"""kindermans2017: the shift-absorbing copy (closed forms, the border, grouped and "SAME"
convolutions, refusals) and the protocol's claims, which hold on the digits VGG and fail
under a zero map or a rule that reads the input."""

from __future__ import annotations

import contextlib
import dataclasses

import pytest
import torch
import torch.nn.functional as F
from browser import CHROMIUM, screenshot
from sabotage import sabotaged
from torch import nn

import backpropvis.engine.attribution as attribution
from backpropvis.core.errors import BackpropvisError, ModelError
from backpropvis.engine import attribute_many
from backpropvis.models.efficientnet import Conv2dSame
from backpropvis.sanity import find_protocol
from backpropvis.sanity.input_shift import absorb_shift, channel_shift, naive_absorb_shift, shifted_bias
from backpropvis.sanity.kindermans import relative_difference
from backpropvis.sanity.kindermans_page import draw_kindermans
from backpropvis.sanity.protocol import SanityResult
from backpropvis.sanity.run import SanityOptions, run_sanity


def seeded(module: nn.Module, seed: int) -> nn.Module:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype))
    return module.double().eval()


def test_dense_network_closed_form() -> None:
    """f(x) = V relu(W x + b): b2 = b - W m; f2's saliency at x + m equals W^T (v_k * 1[Wx + b > 0])
    computed by hand, and gradient x input moves by exactly saliency * m."""
    f1 = seeded(nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2)), 1)  # no zero map on either input
    W, b, V = f1[0].weight.detach(), f1[0].bias.detach(), f1[2].weight.detach()
    x = torch.tensor([[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]], dtype=torch.float64)
    m = torch.tensor([-1.0, 0.5, 2.0], dtype=torch.float64)
    f2 = absorb_shift(f1, m, x)
    assert torch.allclose(f2[0].bias.detach(), b - W @ m, atol=1e-12)
    assert torch.allclose(f2(x + m), f1(x), atol=1e-12)
    target = f1(x).argmax(1)
    by_hand = torch.stack([W.T @ (V[k] * ((W @ xi + b) > 0)) for xi, k in zip(x, target)])
    maps1 = attribute_many(f1, x, [target], ["saliency", "gbp", "deconvnet"])
    maps2 = attribute_many(f2, x + m, [target], ["saliency", "gbp", "deconvnet"])
    assert torch.allclose(maps2["saliency"][0], by_hand, atol=1e-12)
    for method in ("saliency", "gbp", "deconvnet"):
        assert relative_difference(maps1[method][0], maps2[method][0]).max() < 1e-12
    moved = maps2["saliency"][0] * (x + m) - maps1["saliency"][0] * x
    assert torch.allclose(moved, by_hand * m, atol=1e-12)


def activations(model: nn.Module, inputs: torch.Tensor) -> list[torch.Tensor]:
    seen: list[torch.Tensor] = []
    hooks = [
        module.register_forward_hook(lambda _m, _a, out: seen.append(out.detach().clone()))
        for module in model.modules()
        if isinstance(module, nn.ReLU)
    ]
    with torch.no_grad():
        model(inputs)
    for hook in hooks:
        hook.remove()
    return seen


def padded_net() -> nn.Module:
    return seeded(nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 36, 4)), 1)


def test_border_is_padded_with_the_shift_so_every_activation_is_equal() -> None:
    """A zero-padded convolution: the bias change alone breaks f2(x + m) = f1(x) along the
    border and only there; padding with m keeps every activation equal."""
    f1 = padded_net()
    x = torch.randn(2, 2, 6, 6, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    m = torch.tensor([-3.0, 1.5], dtype=torch.float64)
    shifted = x + m.view(1, 2, 1, 1)
    for first, second in zip(activations(f1, x), activations(absorb_shift(f1, m, x), shifted)):
        assert torch.allclose(first, second, atol=1e-12)
    conv1 = f1[0](x)
    naive = naive_absorb_shift(f1, m, x)[0](shifted)
    wrong = (naive - conv1).abs() > 1e-9
    assert wrong.any() and not wrong[..., 1:-1, 1:-1].any()  # the border only


def test_grouped_convolution_bias_sums_each_groups_taps() -> None:
    """b2 = b1 - (W * m) summed over the taps of each output's own group, checked as the
    convolution of a constant image of m (no padding) with the layer."""
    conv = seeded(nn.Conv2d(4, 6, 3, groups=2), 3)
    m = torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=torch.float64)
    constant = m.view(1, 4, 1, 1).expand(1, 4, 3, 3)
    reference = conv.bias.detach() - F.conv2d(constant, conv.weight.detach(), groups=2).flatten()
    assert torch.allclose(shifted_bias(conv, m), reference, atol=1e-12)


def test_same_padded_strided_stem() -> None:
    """EfficientNet's bias-free "SAME" stem (stride 2, odd size): f2 gets a bias, pads with m."""
    f1 = seeded(nn.Sequential(Conv2dSame(3, 4, 3, stride=2, bias=False), nn.ReLU(), nn.Flatten()), 4)
    x = torch.randn(1, 3, 7, 7, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    m = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    assert torch.allclose(absorb_shift(f1, m, x)(x + m.view(1, 3, 1, 1)), f1(x), atol=1e-12)


def test_channel_shift_divides_by_the_preprocessing_std() -> None:
    model = nn.Identity()
    model.preprocessing = type("P", (), {"std": (0.5, 0.25, 2.0)})()  # type: ignore[assignment]
    assert channel_shift(model, -1.0, 3).tolist() == [-2.0, -4.0, -0.5]
    assert channel_shift(nn.Identity(), -1.0, 2).tolist() == [-1.0, -1.0]


class Normalising(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = padded_net()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x * 2.0)


def test_a_first_layer_that_does_not_read_the_input_is_refused() -> None:
    x = torch.randn(1, 2, 6, 6, dtype=torch.float64)
    with pytest.raises(ModelError, match="does not read the model's input unchanged"):
        absorb_shift(Normalising(), torch.tensor([1.0, 1.0], dtype=torch.float64), x)


def test_relative_difference_is_nan_for_a_zero_reference() -> None:
    zero, ones = torch.zeros(2, 3), torch.ones(2, 3)
    assert torch.isnan(torch.from_numpy(relative_difference(zero, zero))).all()
    assert relative_difference(ones, 3 * ones).tolist() == [2.0, 2.0]


def tiny_run(out):
    protocol = find_protocol("kindermans2017")
    options = SanityOptions(size="tiny", count=3, progress=False)
    return run_sanity(protocol, out, options=options)  # the trained digits VGG


def test_claims_hold_on_the_digits_vgg(tmp_path) -> None:
    result, claims = tiny_run(tmp_path / "run")
    assert all(claim["holds"] for claim in claims), claims
    assert (tmp_path / "run" / "sanity.json").exists()
    assert [step.label for step in result.steps] == ["no shift (m = 0)", "pixels -1"]
    assert result.claim_values["gradient_x_input_smallest"] > 0.1
    again = SanityResult.from_json(result.to_json(), result.arrays)
    draw_kindermans(again, tmp_path / "figure.png")
    assert (tmp_path / "figure.png").stat().st_size > 10_000 and (tmp_path / "figure-maps.png").is_file()
    page = (tmp_path / "run" / "index.html").read_text()
    assert "another class" in page and "from 3 images only" in page
    if CHROMIUM is not None:
        alone = tmp_path / "alone.html"  # the page alone: every figure is inside it
        alone.write_text(page)
        assert float(screenshot(alone, tmp_path, height=2400)[300:1500].std()) > 30.0  # bars and maps drawn


@contextlib.contextmanager
def gbp_reads_the_input():
    """GBP's map multiplied by the input: a rule that reads the input."""
    original = attribution._maps_of

    def broken(rule, slot, plan, logits, leaves, *targets):
        maps = original(rule, slot, plan, logits, leaves, *targets)
        if rule.name != "gbp":
            return maps
        return tuple(map_ * x.detach() for map_, x in zip(maps, leaves))

    attribution._maps_of = broken
    try:
        yield
    finally:
        attribution._maps_of = original


CASES = {
    "zero-gbp": (lambda: sabotaged("zero-gbp"), {"gbp_invariant"}),
    "zero-deconvnet": (lambda: sabotaged("zero-deconvnet"), {"deconvnet_invariant"}),
    "zero-saliency": (lambda: sabotaged("zero-saliency"), {"saliency_invariant", "gradient_x_input_not_invariant"}),
    "gbp-reads-input": (gbp_reads_the_input, {"gbp_invariant"}),
}


@pytest.mark.parametrize("kind", list(CASES))
def test_claims_fail_under_sabotage(kind: str, tmp_path) -> None:
    """A zero map passes neither 'invariant' (0/0 is NaN) nor 'not invariant'; an
    input-reading GBP is not invariant."""
    breaking, expected = CASES[kind]
    with breaking():
        _, claims = tiny_run(tmp_path)
    failing = {claim["id"] for claim in claims if not claim["holds"]}
    assert failing == expected


def test_declared_catches_are_tested() -> None:
    protocol = find_protocol("kindermans2017")
    assert set(protocol.catches) <= set(CASES)
    assert dataclasses.is_dataclass(protocol.tiny)


@pytest.mark.parametrize(
    "settings, message", [({"dtype": "float16"}, "dtype"), ({"pixel_shifts": (0.0,)}, "pixel_shifts")]
)
def test_bad_settings_are_refused(settings, message, tmp_path) -> None:
    with pytest.raises(BackpropvisError, match=message):
        run_sanity("kindermans2017", tmp_path, options=SanityOptions(size="tiny", settings=settings, progress=False))
