"""The smooth mode: what the engine does at SiLU, GELU, Mish, ... (docs/smooth-activations.md).

Each elementwise smooth activation's rule (``smooth="rule"``: ``T = h(R) * f'(x)``, Eq. 1
with g' = f') is checked against a hand-written ``torch.autograd.Function`` whose
backward pass writes f' out in closed form (never autograd's derivative), on a tiny net
dense -> f -> dense -> ReLU -> dense, for the three methods, in float64. The ReLU of the
reference is hand-written too. Then: gates keep their true gradient; the mode is
recorded; ``strict=`` still works and a clash is an error; the paper's piecewise-linear
activations are computed bit for bit as before whatever the mode.
"""

from __future__ import annotations

import math
from typing import Callable

import pytest
import torch
import torch.nn.functional as F
from tiny_nets import seeded_
from torch import nn

import backpropvis
from backpropvis.core.errors import MethodError, UnsupportedActivationError

METHODS = ("saliency", "deconvnet", "gbp")
RULE_OF = {"saliency": ("identity", "activation"), "deconvnet": ("relu", "one"), "gbp": ("relu", "activation")}
SQRT_2_OVER_PI = math.sqrt(2 / math.pi)


def _sigmoid(x: torch.Tensor) -> torch.Tensor:
    return 1 / (1 + torch.exp(-x))


def _gelu_tanh_derivative(x: torch.Tensor) -> torch.Tensor:
    t = torch.tanh(SQRT_2_OVER_PI * (x + 0.044715 * x**3))
    return 0.5 * (1 + t) + 0.5 * x * (1 - t**2) * SQRT_2_OVER_PI * (1 + 3 * 0.044715 * x**2)


def _mish_derivative(x: torch.Tensor) -> torch.Tensor:
    softplus = torch.log1p(torch.exp(x))
    return torch.tanh(softplus) + x * (1 - torch.tanh(softplus) ** 2) * _sigmoid(x)


SELU_ALPHA, SELU_SCALE = 1.6732632423543772, 1.0507009873554805

# name -> (module as a model writes it, f'(x) in closed form)
ACTIVATIONS: dict[str, tuple[Callable[[], nn.Module], Callable[[torch.Tensor], torch.Tensor]]] = {
    "silu": (nn.SiLU, lambda x: _sigmoid(x) * (1 + x * (1 - _sigmoid(x)))),
    "silu_inplace": (lambda: nn.SiLU(inplace=True), lambda x: _sigmoid(x) * (1 + x * (1 - _sigmoid(x)))),
    "gelu": (
        nn.GELU,
        lambda x: 0.5 * (1 + torch.erf(x / math.sqrt(2))) + x * torch.exp(-(x**2) / 2) / math.sqrt(2 * math.pi),
    ),
    "gelu_tanh": (lambda: nn.GELU(approximate="tanh"), _gelu_tanh_derivative),
    "hardswish": (nn.Hardswish, lambda x: torch.where(x < -3, 0.0, torch.where(x > 3, 1.0, (2 * x + 3) / 6))),
    "hardswish_inplace": (
        lambda: nn.Hardswish(inplace=True),
        lambda x: torch.where(x < -3, 0.0, torch.where(x > 3, 1.0, (2 * x + 3) / 6)),
    ),
    "mish": (nn.Mish, _mish_derivative),
    "softplus": (
        lambda: nn.Softplus(beta=2.0, threshold=1.5),
        lambda x: torch.where(2 * x > 1.5, 1.0, _sigmoid(2 * x)),
    ),
    "elu": (lambda: nn.ELU(alpha=0.7), lambda x: torch.where(x > 0, 1.0, 0.7 * torch.exp(x))),
    "elu_inplace": (lambda: nn.ELU(alpha=0.7, inplace=True), lambda x: torch.where(x > 0, 1.0, 0.7 * torch.exp(x))),
    "selu": (nn.SELU, lambda x: torch.where(x > 0, SELU_SCALE, SELU_SCALE * SELU_ALPHA * torch.exp(x))),
    "celu": (lambda: nn.CELU(alpha=0.8), lambda x: torch.where(x > 0, 1.0, torch.exp(x / 0.8))),
    "logsigmoid": (nn.LogSigmoid, lambda x: 1 - _sigmoid(x)),
    "softsign": (nn.Softsign, lambda x: 1 / (1 + x.abs()) ** 2),
    "tanhshrink": (nn.Tanhshrink, lambda x: torch.tanh(x) ** 2),
}


class HandRule(torch.autograd.Function):
    """f(x) forward; backward ``T = h(R) * f'(x)`` (g "activation") or ``h(R)`` (g "one"),
    with ``derivative`` the closed form f'."""

    @staticmethod
    def forward(ctx, x, f, derivative, h, g):  # type: ignore[no-untyped-def]
        ctx.save_for_backward(x)
        ctx.derivative, ctx.h, ctx.g = derivative, h, g
        return f(x)

    @staticmethod
    def backward(ctx, grad_output):  # type: ignore[no-untyped-def]
        (x,) = ctx.saved_tensors
        transformed = grad_output.clamp(min=0) if ctx.h == "relu" else grad_output
        result = transformed * ctx.derivative(x) if ctx.g == "activation" else transformed
        return result, None, None, None, None


class SmoothNet(nn.Module):
    """dense 3->6 -> ``act`` -> dense 6->6 -> ReLU -> dense 6->4."""

    def __init__(self, act: nn.Module) -> None:
        super().__init__()
        self.fc1, self.act, self.fc2, self.fc3 = nn.Linear(3, 6), act, nn.Linear(6, 6), nn.Linear(6, 4)
        seeded_(self, 5, scale=1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc3(torch.relu(self.fc2(self.act(self.fc1(x)))))

    def reference(self, x: torch.Tensor, derivative: Callable, h: str, g: str) -> torch.Tensor:
        """The same net with both activations crossed by :class:`HandRule`."""
        f = lambda t: self.act(t.clone())  # noqa: E731 - a clone, so in-place modules leave t alone
        y = HandRule.apply(self.fc1(x), f, derivative, h, g)
        y = HandRule.apply(self.fc2(y), torch.relu, lambda t: (t > 0).to(t.dtype), h, g)
        return self.fc3(y)


def _inputs() -> torch.Tensor:
    return 2.5 * torch.randn(6, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_the_rule_at_each_smooth_activation_matches_a_hand_written_function(name: str) -> None:
    make, derivative = ACTIVATIONS[name]
    model = SmoothNet(make()).double()
    x = _inputs()
    maps = backpropvis.attribute_many(model, x, [0, 3], METHODS, smooth="rule")
    assert maps.smooth.mode == "rule" and len(maps.smooth.rule_applied) == 1 and "'act'" in maps.smooth.rule_applied[0]
    for method in METHODS:
        for number in range(2):
            leaf = x.clone().requires_grad_(True)
            logits = model.reference(leaf, derivative, *RULE_OF[method])
            (expected,) = torch.autograd.grad(logits[torch.arange(len(x)), maps.targets[number]].sum(), leaf)
            # rtol 1e-7: PyTorch computes CELU with 1/alpha rounded to float32 (1.6e-8 relative here)
            torch.testing.assert_close(maps[method][number], expected, rtol=1e-7, atol=1e-10)


def test_the_forward_values_are_the_models_own() -> None:
    for name, (make, _) in ACTIVATIONS.items():
        model = SmoothNet(make()).double()
        x = _inputs()
        maps = backpropvis.attribute_many(model, x, [0], ["gbp"], smooth="rule")
        assert torch.equal(maps.logits, model(x)), name


def test_the_gradient_mode_is_the_true_gradient_there_and_differs_from_the_rule() -> None:
    make, derivative = ACTIVATIONS["silu"]
    model = SmoothNet(make()).double()
    x = _inputs()
    with pytest.warns(UserWarning, match="silu in module 'act'"):
        passed = backpropvis.attribute_many(model, x, [1], ["gbp"], smooth="gradient")
    ruled = backpropvis.attribute_many(model, x, [1], ["gbp"], smooth="rule")
    leaf = x.clone().requires_grad_(True)
    y = model.act(model.fc1(leaf))  # true gradient through SiLU, GBP's rule at the ReLU
    y = HandRule.apply(model.fc2(y), torch.relu, lambda t: (t > 0).to(t.dtype), "relu", "activation")
    (expected,) = torch.autograd.grad(model.fc3(y)[:, 1].sum(), leaf)
    torch.testing.assert_close(passed["gbp"][0], expected)
    assert passed.smooth.passed_through and not passed.smooth.rule_applied
    assert (ruled["gbp"] - passed["gbp"]).abs().max() > 1e-3 * passed["gbp"].abs().max()


def test_saliency_under_the_rule_is_the_true_gradient() -> None:
    model = SmoothNet(nn.GELU()).double()
    x = _inputs()
    maps = backpropvis.attribute_many(model, x, [2], ["saliency"], smooth="rule")
    leaf = x.clone().requires_grad_(True)
    (gradient,) = torch.autograd.grad(model(leaf)[:, 2].sum(), leaf)
    torch.testing.assert_close(maps["saliency"][0], gradient, rtol=1e-12, atol=1e-14)


class SqueezeExcite(nn.Module):
    """conv 3->4 -> SiLU -> x * sigmoid(dense(mean(x))) -> mean -> dense 4->3 (EfficientNet-like)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.act, self.se, self.head = (
            nn.Conv2d(3, 4, 3, padding=1),
            nn.SiLU(),
            nn.Linear(4, 4),
            nn.Linear(4, 3),
        )
        seeded_(self, 8, scale=1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.conv(x))
        y = y * torch.sigmoid(self.se(y.mean((2, 3))))[:, :, None, None]
        return self.head(y.mean((2, 3)))


def test_a_squeeze_excite_gate_keeps_its_gradient_and_silu_gets_the_rule() -> None:
    model = SqueezeExcite().double()
    x = torch.randn(2, 3, 5, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    maps = backpropvis.attribute_many(model, x, [0], ["deconvnet", "gbp"], smooth="rule")
    assert [entry.split(" in ")[0] for entry in maps.smooth.gates] == ["torch.sigmoid"]
    assert [entry.split(" in ")[0] for entry in maps.smooth.rule_applied] == ["torch.nn.functional.silu"]
    silu_derivative = ACTIVATIONS["silu"][1]
    for method in ("deconvnet", "gbp"):
        leaf = x.clone().requires_grad_(True)
        y = HandRule.apply(model.conv(leaf), F.silu, silu_derivative, *RULE_OF[method])
        y = y * torch.sigmoid(model.se(y.mean((2, 3))))[:, :, None, None]
        (expected,) = torch.autograd.grad(model.head(y.mean((2, 3)))[:, 0].sum(), leaf)
        torch.testing.assert_close(maps[method][0], expected)


def test_the_paper_activations_are_bit_identical_in_every_mode() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.ReLU6(), nn.Flatten(), nn.Linear(16, 5))
    seeded_(model, 2)
    x = torch.randn(3, 3, 6, 6, generator=torch.Generator().manual_seed(0))
    refused = backpropvis.attribute_many(model, x, [0, 4], METHODS)
    for smooth in ("gradient", "rule"):
        other = backpropvis.attribute_many(model, x, [0, 4], METHODS, smooth=smooth)
        for method in METHODS:
            assert torch.equal(other[method], refused[method])


def test_refusal_strict_and_clashes() -> None:
    model = SmoothNet(nn.Mish())
    x = _inputs().float()
    with pytest.raises(UnsupportedActivationError, match="`smooth` to rule .* to gradient"):
        backpropvis.GuidedBackprop(model).attribute(x, 0)
    assert backpropvis.GuidedBackprop(model, smooth="rule").attribute(x, 0).shape == x.shape
    with pytest.warns(UserWarning, match="mish"):
        passed = backpropvis.attribute_many(model, x, [0], ["gbp"], strict=False, smooth="gradient")
    assert passed.smooth.mode == "gradient"
    for settings in ({"strict": True, "smooth": "rule"}, {"strict": False, "smooth": "rule"}, {"smooth": "Rule"}):
        with pytest.raises(MethodError, match="`smooth`"):
            backpropvis.attribute(model, x, 0, "gbp", **settings)
    with pytest.raises(MethodError, match="contradicts"):
        backpropvis.Saliency(model, strict=True, smooth="gradient")


def test_a_net_of_smooth_activations_only_names_the_rule_when_its_gradient_is_plain() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.SiLU(), nn.Linear(4, 2))
    seeded_(model, 1)
    with pytest.raises(backpropvis.core.errors.NoActivationError, match="`smooth` rule"):
        backpropvis.attribute(model, _inputs().float(), 0, "gbp", smooth="gradient")
    assert backpropvis.attribute(model, _inputs().float(), 0, "gbp", smooth="rule").shape == (6, 3)


def test_the_report_says_the_mode_and_the_functions() -> None:
    model = SqueezeExcite()
    maps = backpropvis.attribute_many(model, torch.randn(1, 3, 4, 4), [0], ["gbp"], smooth="rule")
    record = maps.smooth.as_dict()
    assert record["mode"] == "rule" and record["passed_through"] == []
    assert record["rule_applied"] == ["torch.nn.functional.silu in module 'act'"]
    assert "rule" in maps.smooth.sentence() and "torch.sigmoid" in maps.smooth.sentence()


def test_a_model_may_declare_its_mode_and_a_call_overrides_it() -> None:
    """``model.smooth_activations`` (what ``--smooth-activations`` sets) is the mode when a call gives none."""
    model = SmoothNet(nn.SiLU()).double()
    x = _inputs()
    model.smooth_activations = "rule"
    declared = backpropvis.attribute_many(model, x, [0], ["gbp"])
    assert declared.smooth.mode == "rule"
    assert torch.equal(declared["gbp"], backpropvis.attribute_many(model, x, [0], ["gbp"], smooth="rule")["gbp"])
    with pytest.raises(UnsupportedActivationError):
        backpropvis.attribute_many(model, x, [0], ["gbp"], smooth="refuse")
    with pytest.warns(UserWarning, match="silu"):
        assert backpropvis.attribute_many(model, x, [0], ["saliency"], strict=False).smooth.mode == "gradient"


class Keeping(nn.Module):
    """dense 3->6 -> SiLU (in place) -> dense 6->4 -> GELU -> dense 4->2; weak references to
    both smooth activations' outputs in ``outputs``."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(3, 6), nn.Linear(6, 4), nn.Linear(4, 2)
        self.outputs: list = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        import weakref

        first = F.silu(self.fc1(x), inplace=True)
        second = F.gelu(self.fc2(first))
        self.outputs = [weakref.ref(first), weakref.ref(second)]
        return self.fc3(second)


@pytest.mark.parametrize("ends", ["returns", "raises"])
def test_nothing_of_a_ruled_smooth_call_outlives_it(ends: str) -> None:
    """The rule's nodes (their f'(x) and the slot) are freed with the graph by reference counting."""
    import gc

    model = seeded_(Keeping(), 3)
    gc.collect()
    gc.disable()
    try:
        if ends == "returns":
            backpropvis.attribute_many(model, _inputs().float(), [0, 1], METHODS, smooth="rule")
        else:
            with pytest.raises(backpropvis.core.errors.TargetError):
                backpropvis.attribute_many(model, _inputs().float(), [7], METHODS, smooth="rule")
        assert len(model.outputs) == 2 and all(reference() is None for reference in model.outputs)
    finally:
        gc.enable()
