"""Each rule of Eq. 1-2 against values computed by hand on a two-layer net.

The net is ``logits = W2 g(W1 x)`` with no biases. With

    x  = [1, 2, -1]
    W1 = [[-1, 0, 1], [0.5, 0, 0], [1, 1, 0], [1, 2, -2]]   (rows r1..r4)
    y  = W1 x = [-2, 0.5, 3, 7]                             (pre-activations)
    W2 = [[1, -2, 3, -4], [-1, 1, -1, 1]]

the gradient arriving at the activation for logit 0 is R = W2[0] = [1, -2, 3, -4]
(for logit 1, R = [-1, 1, -1, 1]); a rule passes T = h(R) * g'(y) (Eq. 1) and the map is
W1^T T = sum_i T_i r_i. Every expected value below is that sum, worked out by hand in
the comments; y was chosen to hit each activation's regions (negative, inside, above
6, above 1).
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

import backpropvis
from backpropvis import DECONVNET, GUIDED_BACKPROP, LINEAR, SALIENCY, Rule, resolve_rule
from backpropvis.core.errors import MethodError

X = [[1.0, 2.0, -1.0]]
W1 = [[-1.0, 0.0, 1.0], [0.5, 0.0, 0.0], [1.0, 1.0, 0.0], [1.0, 2.0, -2.0]]
W2 = [[1.0, -2.0, 3.0, -4.0], [-1.0, 1.0, -1.0, 1.0]]

# DeconvNet ignores the forward pass (g' = 1): T = max(R, 0) = [1, 0, 3, 0] whatever the
# activation, so the map is r1 + 3 r3 = [-1, 0, 1] + [3, 3, 0] = [2, 3, 1].
DECONV_LOGIT0 = [2.0, 3.0, 1.0]

# (activation, saliency map, gbp map) for logit 0, R = [1, -2, 3, -4].
CASES = {
    # ReLU: g' = [0, 1, 1, 1]
    #   saliency T = [0, -2, 3, -4]: -2 r2 + 3 r3 - 4 r4 = [-1,0,0] + [3,3,0] + [-4,-8,8]
    #   gbp      T = [0, 0, 3, 0]:   3 r3
    "relu": (nn.ReLU(), [-2.0, -5.0, 8.0], [3.0, 3.0, 0.0]),
    "relu_inplace": (nn.ReLU(inplace=True), [-2.0, -5.0, 8.0], [3.0, 3.0, 0.0]),
    # ReLU6: 7 > 6 saturates, g' = [0, 1, 1, 0]
    #   saliency T = [0, -2, 3, 0]: [-1,0,0] + [3,3,0];  gbp T = [0, 0, 3, 0]
    "relu6": (nn.ReLU6(), [2.0, 3.0, 0.0], [3.0, 3.0, 0.0]),
    # Hardtanh(-3, 2): -2 and 0.5 inside, 3 and 7 saturated, g' = [1, 1, 0, 0]
    #   saliency T = [1, -2, 0, 0]: [-1,0,1] + [-1,0,0];  gbp T = [1, 0, 0, 0]: r1
    "hardtanh": (nn.Hardtanh(-3.0, 2.0), [-2.0, 0.0, 1.0], [-1.0, 0.0, 1.0]),
    # LeakyReLU(0.1): g' = [0.1, 1, 1, 1] (the slope scales the negative side)
    #   saliency T = [0.1, -2, 3, -4]: 0.1 r1 + [-2,-5,8] = [-2.1, -5, 8.1]
    #   gbp      T = [0.1, 0, 3, 0]:   0.1 r1 + 3 r3     = [2.9, 3, 0.1]
    "leaky_relu": (nn.LeakyReLU(0.1), [-2.1, -5.0, 8.1], [2.9, 3.0, 0.1]),
    # PReLU with one weight 0.25: g' = [0.25, 1, 1, 1]
    #   saliency 0.25 r1 + [-2,-5,8];  gbp 0.25 r1 + [3,3,0]
    "prelu": (nn.PReLU(1, init=0.25), [-2.25, -5.0, 8.25], [2.75, 3.0, 0.25]),
    # PReLU with a negative weight -0.5: g' = [-0.5, 1, 1, 1]
    #   saliency -0.5 r1 + [-2,-5,8] = [-1.5, -5, 7.5];  gbp T = [-0.5, 0, 3, 0]: [3.5, 3, -0.5]
    "prelu_negative": (nn.PReLU(1, init=-0.5), [-1.5, -5.0, 7.5], [3.5, 3.0, -0.5]),
    # Threshold(1, -5): passes y > 1, g' = [0, 0, 1, 1]
    #   saliency T = [0, 0, 3, -4]: [3,3,0] + [-4,-8,8] = [-1, -5, 8];  gbp T = [0, 0, 3, 0]
    "threshold": (nn.Threshold(1.0, -5.0), [-1.0, -5.0, 8.0], [3.0, 3.0, 0.0]),
}
# LeakyReLU with a negative slope -0.5 has PReLU(-0.5)'s derivative, g' = [-0.5, 1, 1, 1].
CASES["leaky_relu_negative"] = (nn.LeakyReLU(-0.5), *CASES["prelu_negative"][1:])
# The in-place modules give the same maps (they save their output, not their input).
CASES.update(
    {
        "relu6_inplace": (nn.ReLU6(inplace=True), *CASES["relu6"][1:]),
        "hardtanh_inplace": (nn.Hardtanh(-3.0, 2.0, inplace=True), *CASES["hardtanh"][1:]),
        "leaky_relu_inplace": (nn.LeakyReLU(0.1, inplace=True), *CASES["leaky_relu"][1:]),
        "leaky_relu_negative_inplace": (nn.LeakyReLU(-0.5, inplace=True), *CASES["prelu_negative"][1:]),
        "threshold_inplace": (nn.Threshold(1.0, -5.0, inplace=True), *CASES["threshold"][1:]),
    }
)


def two_layer_net(activation: nn.Module) -> nn.Sequential:
    net = nn.Sequential(nn.Linear(3, 4, bias=False), activation, nn.Linear(4, 2, bias=False)).double()
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor(W1))
        net[2].weight.copy_(torch.tensor(W2))
    return net.eval()


def per_channel_prelu() -> nn.PReLU:
    prelu = nn.PReLU(4)
    with torch.no_grad():
        prelu.weight.copy_(torch.tensor([0.3, 0.9, 0.9, 0.9]))
    return prelu


def hand_map(activation: nn.Module, method: str) -> torch.Tensor:
    net = two_layer_net(activation)
    return backpropvis.attribute(net, torch.tensor(X, dtype=torch.float64), 0, method)


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("method", ["saliency", "deconvnet", "gbp"])
def test_rule_matches_hand_computed_map(case: str, method: str) -> None:
    activation, saliency, gbp = CASES[case]
    expected = {"saliency": saliency, "deconvnet": DECONV_LOGIT0, "gbp": gbp}[method]
    torch.testing.assert_close(hand_map(activation, method), torch.tensor([expected], dtype=torch.float64))


def test_saliency_is_the_true_gradient_for_every_activation() -> None:
    x = torch.tensor(X, dtype=torch.float64)
    for case, (activation, _, _) in CASES.items():
        if case == "leaky_relu_negative_inplace":
            continue  # PyTorch's own backward refuses an in-place leaky_relu with a negative slope
        net = two_layer_net(activation)
        y = x.clone().requires_grad_(True)
        (gradient,) = torch.autograd.grad(net(y)[0, 0], y)
        torch.testing.assert_close(backpropvis.attribute(net, x, 0, "saliency"), gradient)


def test_per_channel_prelu_uses_each_channels_slope() -> None:
    # weights [0.3, 0.9, 0.9, 0.9]: only y1 < 0, so g' = [0.3, 1, 1, 1]
    #   saliency 0.3 r1 + [-2,-5,8] = [-2.3, -5, 8.3];  gbp 0.3 r1 + [3,3,0] = [2.7, 3, 0.3]
    torch.testing.assert_close(
        hand_map(per_channel_prelu(), "saliency"), torch.tensor([[-2.3, -5.0, 8.3]], dtype=torch.float64)
    )
    torch.testing.assert_close(
        hand_map(per_channel_prelu(), "gbp"), torch.tensor([[2.7, 3.0, 0.3]], dtype=torch.float64)
    )


def test_second_logit_hand_computed() -> None:
    # logit 1: R = [-1, 1, -1, 1]; ReLU g' = [0, 1, 1, 1]
    #   saliency T = [0, 1, -1, 1]: r2 - r3 + r4 = [0.5,0,0] - [1,1,0] + [1,2,-2] = [0.5, 1, -2]
    #   deconvnet T = [0, 1, 0, 1]: r2 + r4 = [1.5, 2, -2];  gbp T = [0, 1, 0, 1]: the same
    net = two_layer_net(nn.ReLU())
    x = torch.tensor(X, dtype=torch.float64)
    maps = backpropvis.attribute_many(net, x, [1], ["saliency", "deconvnet", "gbp"])
    torch.testing.assert_close(maps["saliency"][0], torch.tensor([[0.5, 1.0, -2.0]], dtype=torch.float64))
    torch.testing.assert_close(maps["deconvnet"][0], torch.tensor([[1.5, 2.0, -2.0]], dtype=torch.float64))
    torch.testing.assert_close(maps["gbp"][0], torch.tensor([[1.5, 2.0, -2.0]], dtype=torch.float64))


def test_linear_rule_crosses_activations_as_identity() -> None:
    # h = g = identity: T = R = [1, -2, 3, -4]: r1 - 2 r2 + 3 r3 - 4 r4 = [-3, -5, 9],
    # the same for every activation (here ReLU and Hardtanh), and equal to W1^T W2[0].
    expected = torch.tensor([[-3.0, -5.0, 9.0]], dtype=torch.float64)
    torch.testing.assert_close(hand_map(nn.ReLU(), LINEAR), expected)
    torch.testing.assert_close(hand_map(nn.Hardtanh(-3.0, 2.0), "linear"), expected)
    torch.testing.assert_close(
        expected, torch.tensor(W2[:1], dtype=torch.float64) @ torch.tensor(W1, dtype=torch.float64)
    )


def test_custom_rule_is_keyed_by_its_name() -> None:
    # h = relu, g = one under another name is DeconvNet: [2, 3, 1].
    mine = Rule("positive-only", h="relu", g="one")
    net = two_layer_net(nn.ReLU6())
    maps = backpropvis.attribute_many(net, torch.tensor(X, dtype=torch.float64), [0], [mine, "saliency"])
    assert set(maps) == {"positive-only", "saliency"}
    torch.testing.assert_close(maps["positive-only"][0], torch.tensor([DECONV_LOGIT0], dtype=torch.float64))


def test_max_pool_passes_the_gradient_through_its_switch() -> None:
    # x = [[1, -3], [2, 0.5]] -> ReLU -> [[1, 0], [2, 0.5]] -> 2x2 max-pool -> 2 (switch at
    # (1, 0)) -> logit = 1.5 * 2. Every rule sends R = 1.5 back to (1, 0) only.
    net = nn.Sequential(nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(1, 1, bias=False)).double()
    with torch.no_grad():
        net[3].weight.fill_(1.5)
    x = torch.tensor([[[[1.0, -3.0], [2.0, 0.5]]]], dtype=torch.float64)
    expected = torch.tensor([[[[0.0, 0.0], [1.5, 0.0]]]], dtype=torch.float64)
    maps = backpropvis.attribute_many(net, x, [0], ["saliency", "deconvnet", "gbp"])
    for method in ("saliency", "deconvnet", "gbp"):
        torch.testing.assert_close(maps[method][0], expected)


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        # R = [-2, -0.5, 0, 1.5], g' = [1, 0, 1, 0.25]
        (SALIENCY, [-2.0, 0.0, 0.0, 0.375]),
        (DECONVNET, [0.0, 0.0, 0.0, 1.5]),
        (GUIDED_BACKPROP, [0.0, 0.0, 0.0, 0.375]),
        (LINEAR, [-2.0, -0.5, 0.0, 1.5]),
    ],
)
def test_rule_backward_is_eq1(rule: Rule, expected: list) -> None:
    grad = torch.tensor([-2.0, -0.5, 0.0, 1.5])
    derivative = torch.tensor([1.0, 0.0, 1.0, 0.25])
    arriving = grad.clone()
    owned_flags = []

    def times_derivative(t: torch.Tensor, owned: bool) -> torch.Tensor:
        owned_flags.append(owned)
        return t.mul_(derivative) if owned else t * derivative  # overwrites only what it is given to own

    torch.testing.assert_close(rule.backward(grad, times_derivative), torch.tensor(expected))
    assert torch.equal(grad, arriving)  # R itself is never overwritten


def test_the_default_methods_are_the_papers_three() -> None:
    # With no methods named, the maps are the three hand-computed ones of the paper's methods.
    activation, saliency, gbp = CASES["relu"]
    maps = backpropvis.attribute_many(two_layer_net(activation), torch.tensor(X, dtype=torch.float64), [0])
    expected = {"saliency": saliency, "deconvnet": DECONV_LOGIT0, "gbp": gbp}
    assert set(maps) == set(expected)
    for method, values in expected.items():
        torch.testing.assert_close(maps[method][0], torch.tensor([values], dtype=torch.float64))


def test_is_true_gradient_says_whether_a_rule_gives_the_gradient() -> None:
    # On a ReLU net where the four rules give four different maps, only the rule that
    # calls itself the true gradient gives autograd's gradient.
    net, x = two_layer_net(nn.ReLU()), torch.tensor(X, dtype=torch.float64)
    y = x.clone().requires_grad_(True)
    (gradient,) = torch.autograd.grad(net(y)[0, 0], y)
    for rule in (SALIENCY, DECONVNET, GUIDED_BACKPROP, LINEAR, Rule("custom", h="relu", g="one")):
        assert rule.is_true_gradient == torch.allclose(backpropvis.attribute(net, x, 0, rule), gradient), rule.name


def test_rules_are_resolved_by_name_alias_or_value() -> None:
    x = torch.tensor(X, dtype=torch.float64)
    gbp = hand_map(nn.ReLU(), "gbp")
    for name in ("GBP", "guided_backprop", " Gbp "):
        assert resolve_rule(name) is GUIDED_BACKPROP
        torch.testing.assert_close(backpropvis.attribute(two_layer_net(nn.ReLU()), x, 0, name), gbp)
    assert resolve_rule("deconv") is DECONVNET and resolve_rule(DECONVNET) is DECONVNET


def test_bad_rules_are_refused() -> None:
    with pytest.raises(MethodError, match="lrp"):
        resolve_rule("lrp")
    with pytest.raises(ValueError, match="h must be"):
        Rule("bad", h="abs", g="one")
    with pytest.raises(ValueError, match="g must be"):
        Rule("bad", h="relu", g="sign")
    with pytest.raises(dataclasses.FrozenInstanceError):
        SALIENCY.h = "relu"  # frozen value object


def test_a_list_of_methods_must_name_distinct_rules() -> None:
    from backpropvis.core.rules import resolve_rules

    assert resolve_rules(["gbp", SALIENCY, "deconv"]) == [GUIDED_BACKPROP, SALIENCY, DECONVNET]
    net, x = two_layer_net(nn.ReLU()), torch.tensor(X, dtype=torch.float64)
    for methods, message in (([], "no methods"), (["gbp", "guided_backprop"], "distinct"), (["gbp", "lrp"], "lrp")):
        with pytest.raises(MethodError, match=message):
            backpropvis.attribute_many(net, x, [0], methods)
