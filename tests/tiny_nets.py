"""Tiny networks and an explicit, hand-written backward pass used as the reference.

The reference (:func:`reference_map`) never runs the engine: it replays a network's
layers one by one, records every activation's input ``y``, and walks back with
``T = h(R) * g'(y)`` written out as masks (PAPER.md Eq. 1-2); every other layer is
crossed with its own true vector-Jacobian product.
"""

from __future__ import annotations

from typing import Callable, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

RELU = "relu"
"""Marker of an activation step in :meth:`SpellingNet.steps`."""

SPELLINGS = (
    "module",
    "inplace_module",
    "reused_module",
    "reused_inplace_module",
    "F.relu",
    "F.relu_inplace",
    "torch.relu",
    "Tensor.relu",
    "torch.relu_",
    "Tensor.relu_",
)
"""Every way :class:`SpellingNet` can call its three ReLUs."""


@torch.no_grad()
def seeded_(module: nn.Module, seed: int, scale: float = 0.5) -> nn.Module:
    """Fill every parameter with seeded N(0, scale^2) values (running variances with
    values in [0.5, 1.5]), without touching the global RNG."""
    generator = torch.Generator().manual_seed(seed)
    for name, tensor in list(module.named_parameters()) + list(module.named_buffers()):
        if not tensor.is_floating_point():
            continue
        if name.endswith("running_var"):
            tensor.copy_(0.5 + torch.rand(tensor.shape, generator=generator))
        else:
            tensor.copy_(scale * torch.randn(tensor.shape, generator=generator))
    return module


class SpellingNet(nn.Module):
    """conv 3->4 -> ReLU -> conv 4->6 stride 2 -> ReLU -> max-pool 2 -> dense 96->8 -> ReLU
    -> dense 8->5, its three ReLUs called with one ``spelling``.

    Shapes: [B, 3, 16, 16] -> [B, 5].
    """

    def __init__(self, spelling: str = "module", seed: int = 0) -> None:
        super().__init__()
        assert spelling in SPELLINGS, spelling
        self.spelling = spelling
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 6, 3, stride=2, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(6 * 4 * 4, 8)
        self.fc2 = nn.Linear(8, 5)
        if spelling in ("module", "inplace_module"):
            inplace = spelling == "inplace_module"
            self.relu1, self.relu2, self.relu3 = nn.ReLU(inplace), nn.ReLU(inplace), nn.ReLU(inplace)
        elif spelling.startswith("reused"):
            self.relu = nn.ReLU(inplace=spelling == "reused_inplace_module")
        seeded_(self, seed)
        self.forward_calls = 0

    def act(self, x: torch.Tensor, number: int) -> torch.Tensor:
        spelling = self.spelling
        if spelling in ("module", "inplace_module"):
            return getattr(self, f"relu{number}")(x)
        if spelling.startswith("reused"):
            return self.relu(x)
        if spelling == "F.relu":
            return F.relu(x)
        if spelling == "F.relu_inplace":
            return F.relu(x, inplace=True)
        if spelling == "torch.relu":
            return torch.relu(x)
        if spelling == "Tensor.relu":
            return x.relu()
        if spelling == "torch.relu_":
            return torch.relu_(x)
        return x.relu_()  # Tensor.relu_

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.forward_calls += 1
        x = self.act(self.conv1(x), 1)
        x = self.pool(self.act(self.conv2(x), 2))
        x = self.act(self.fc1(torch.flatten(x, 1)), 3)
        return self.fc2(x)

    def steps(self) -> list[Union[str, Callable]]:
        """The same network as a list of layers, with :data:`RELU` for each activation."""
        return [self.conv1, RELU, self.conv2, RELU, self.pool, lambda x: torch.flatten(x, 1), self.fc1, RELU, self.fc2]


def reference_map(
    steps: Sequence[Union[str, Callable]],
    x: torch.Tensor,
    target: torch.Tensor,
    h: str,
    g: str,
    derivative: Callable[[torch.Tensor], torch.Tensor] = lambda y: (y > 0).to(y.dtype),
    activation: Callable[[torch.Tensor], torch.Tensor] = lambda y: y.clamp_min(0),
) -> torch.Tensor:
    """The map of rule (h, g) for logit ``target`` [B], by an explicit backward pass.

    Args:
        steps: layers in order; :data:`RELU` marks an activation.
        x: [B, ...] inputs.
        target: LongTensor[B].
        h: "identity" or "relu"; g: "activation" or "one" (Eq. 2).
        derivative: g'(y) of the activation; activation: g(y).

    Returns:
        [B, ...] shaped like ``x``.
    """
    inputs = []
    out = x.detach()
    with torch.no_grad():
        for step in steps:
            inputs.append(out)
            out = activation(out) if isinstance(step, str) else step(out)
    grad = torch.zeros_like(out).scatter_(1, target.view(-1, 1), 1.0)
    for step, y in zip(reversed(steps), reversed(inputs)):
        if isinstance(step, str):
            transformed = grad.clamp_min(0) if h == "relu" else grad
            grad = transformed * derivative(y) if g == "activation" else transformed
        else:
            y = y.clone().requires_grad_(True)
            with torch.enable_grad():
                (grad,) = torch.autograd.grad(step(y), y, grad)
    return grad


class CancellingNet(nn.Module):
    """A tiny net whose bfloat16 saliency is wrong and whose GBP and DeconvNet are not.

    Two hidden units see the image through nearly equal weights, ``1000 w`` and
    ``1000 (w + d)`` with ``d`` = 1/500 of ``w``, and stay active (a large bias); logit 0
    is their difference. Its saliency is ``1000 d``: exact in float32, but bfloat16 keeps
    8 bits of each weight, so the difference is mostly rounding (a cosine to float32 far
    under 0.95). GBP and DeconvNet clip the negative unit's signal, ``h = max(R, 0)``, and
    give ``1000 (w + d)``, which bfloat16 keeps (cosine about 1). Logit 1 is the sum,
    whose saliency bfloat16 keeps too. Input [B, 3, S, S]; logits [B, 3].
    """

    def __init__(self, size: int = 8, seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        features = 3 * size * size
        w = torch.randn(features, generator=generator)
        d = w / 500 * torch.sign(torch.randn(features, generator=generator))
        self.hidden = nn.Linear(features, 2)
        self.out = nn.Linear(2, 3, bias=False)
        with torch.no_grad():
            self.hidden.weight.copy_(torch.stack([1000 * (w + d), 1000 * w]))
            self.hidden.bias.fill_(1e5)
            self.out.weight.copy_(torch.tensor([[1.0, -1.0], [1.0, 1.0], [0.5, 0.25]]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.hidden(x.flatten(1))))


def cancelling_net(size: int = 8) -> nn.Module:
    """:class:`CancellingNet` in eval mode (a ``--model tiny_nets:cancelling_net`` factory)."""
    return CancellingNet(size).eval()


def rejection_sampled(size: int, std: float, generator: torch.Generator) -> torch.Tensor:
    """The paper's init written out as the algorithm reads: standard normals, then redraw
    those beyond +-2 until none is left, then scale."""
    values = torch.randn(size, generator=generator)
    outside = (values.abs() > 2).nonzero().squeeze(1)
    while outside.numel():
        values[outside] = torch.randn(outside.numel(), generator=generator)
        outside = outside[values[outside].abs() > 2]
    return values * std
