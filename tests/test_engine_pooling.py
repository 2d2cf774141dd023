"""Max-pooling under the engine: the true gradient (PyTorch's own, to the bit), with its
switches recomputed in the backward pass instead of kept as int64 indices."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from tiny_nets import seeded_
from torch import nn

import backpropvis

POOLS = {
    "2x2 stride 2": dict(kernel_size=2),
    "3x3 stride 1 pad 1 (overlapping)": dict(kernel_size=3, stride=1, padding=1),
    "3x3 stride 2 ceil": dict(kernel_size=3, stride=2, ceil_mode=True),
    "2x2 dilation 2": dict(kernel_size=2, stride=1, dilation=2),
    "9x9 stride 1 (the authors' code)": dict(kernel_size=9, stride=1, padding=4),
}


class Pooled(nn.Module):
    """conv -> ReLU -> max-pool -> dense; after the ReLU many windows tie at 0."""

    def __init__(self, pool: dict, spelling: str = "module") -> None:
        super().__init__()
        self.conv, self.pool, self.spelling = nn.Conv2d(3, 4, 3, padding=1), pool, spelling
        self.fc = nn.LazyLinear(5)
        seeded_(self.conv, 31)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv(x))
        if self.spelling == "module":
            h = nn.MaxPool2d(**self.pool)(h)
        elif self.spelling == "torch.max_pool2d":
            pool = dict(self.pool)
            h = torch.max_pool2d(h, pool.pop("kernel_size"), **pool)
        else:  # the caller asked for the indices: PyTorch's own max-pool is kept
            h, indices = F.max_pool2d(h, return_indices=True, **self.pool)
            h = h + 0 * indices.to(h.dtype)
        return self.fc(h.flatten(1))


def plain_gradient(model: nn.Module, x: torch.Tensor, target: int) -> torch.Tensor:
    x = x.clone().requires_grad_(True)
    model(x)[:, target].sum().backward()
    return x.grad


@pytest.mark.parametrize("spelling", ["module", "torch.max_pool2d", "return_indices"])
@pytest.mark.parametrize("pool", sorted(POOLS))
def test_saliency_through_max_pooling_is_pytorchs_own_gradient(pool: str, spelling: str) -> None:
    x = torch.randn(3, 3, 12, 12, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    model = Pooled(POOLS[pool], spelling).double()
    model(x)  # materialise the lazy dense layer
    seeded_(model.fc, 32)
    maps = backpropvis.attribute_many(model, x, [0, 3], ["saliency", "gbp"], max_batch=6)
    for number, target in enumerate((0, 3)):
        assert torch.equal(maps["saliency"][number], plain_gradient(model, x, target))
    assert not torch.equal(maps["gbp"], maps["saliency"])  # the rule still applies around the pool


def test_no_int64_switches_are_kept_for_the_backward_passes() -> None:
    """Every tensor the forward pass saves for backward, seen through saved-tensor hooks:
    with the engine none is an index tensor; PyTorch's own max-pool saves one per pool."""
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(8 * 4 * 4, 5),
    )
    x = torch.randn(2, 3, 16, 16)
    saved_dtypes: list[torch.dtype] = []

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        saved_dtypes.append(tensor.dtype)
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        plain_gradient(model, x, 0)
        assert torch.int64 in saved_dtypes  # PyTorch's max-pool keeps its indices
        saved_dtypes.clear()
        backpropvis.attribute_many(model, x, [0, 1], ["saliency", "gbp"])
    assert saved_dtypes and torch.int64 not in saved_dtypes
