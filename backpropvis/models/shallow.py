"""The paper's random three-layer networks (PAPER.md section 2, Eq. 3).

- :func:`three_layer_cnn`: conv (N filters, k x k x 3, stride b) -> ReLU ->
  [max- or average-pool, any window and stride] -> dense readout to K logits.
  At the paper's size (N = 256, 7 x 7,
  stride 2, 224 input) the readout has 3.2 G weights: it is a
  :class:`~backpropvis.models.seeded_dense.SeededDense`, drawn on the fly.
- :func:`three_layer_fcn`: dense d -> Nh -> ReLU -> dense K.

All weights are the paper's truncated normal (std 0.1, cut at +-2 std), biases 0,
seeded by ``seed``.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from .init import PAPER_STD, init_layer_, keeps_global_rng
from .preprocessing import IMAGENET
from .seeded_dense import DEFAULT_MATERIALIZE_BYTES, SeededDense

__all__ = ["PoolMode", "ThreeLayerCNN", "ThreeLayerFCN", "pooled_side", "three_layer_cnn", "three_layer_fcn"]

PoolMode = Literal["max", "average"]
"""How the optional pool of :class:`ThreeLayerCNN` combines a window: its maximum
(Eq. 6's switches) or its mean (the control without switches)."""


def pooled_side(side: int, window: int, stride: int, padding: int) -> int:
    """How many pool windows fit along a side (floor mode): (side + 2 padding - window) // stride + 1."""
    return (side + 2 * padding - window) // stride + 1


def _pool_layer(window: int, stride: int, padding: int, mode: str) -> nn.Module:
    if mode == "max":
        return nn.MaxPool2d(window, stride=stride, padding=padding)
    if mode == "average":  # padded positions are left out of each mean, as TensorFlow's "SAME" pools do
        return nn.AvgPool2d(window, stride=stride, padding=padding, count_include_pad=False)
    raise ValueError(f"pool_mode must be 'max' or 'average', not {mode!r}")


class ThreeLayerCNN(nn.Module):
    """f_k(x) = sum_i sum_j V[q_ij, k] relu(w_i . D_j x)  (Eq. 3), optionally pooled (Eq. 6).

    Shapes: input [B, 3, S, S] -> logits [B, K].

    The pool sits between the ReLU and the readout: ``pool`` is its window (square),
    ``pool_stride`` its stride (default: the window, non-overlapping), ``pool_padding``
    its padding (padded positions are never chosen by a max and are left out of a
    mean), ``pool_mode`` "max" or "average". The authors' own code pools 9 x 9 with
    stride 1 and TensorFlow's "SAME" padding: ``pool=9, pool_stride=1, pool_padding=4``.

    Attributes:
        conv: the N filters w_i (``conv.weight`` [N, 3, k, k]), zero-padded by k // 2.
        pool: ``nn.MaxPool2d`` or ``nn.AvgPool2d`` between the ReLU and the readout, or ``None``.
        readout: V as a :class:`SeededDense` from N * H' * W' features (flattened
            channel-major, as ``torch.flatten``) to K logits.
    """

    def __init__(
        self,
        num_filters: int = 256,
        kernel_size: int = 7,
        stride: int = 2,
        pool: int | None = None,
        num_classes: int = 1000,
        input_size: int = 224,
        seed: int = 0,
        std: float = PAPER_STD,
        bias: float = 0.0,
        materialize_bytes: int = DEFAULT_MATERIALIZE_BYTES,
        pool_stride: int | None = None,
        pool_padding: int = 0,
        pool_mode: PoolMode = "max",
    ) -> None:
        super().__init__()
        self.input_size = input_size
        self.conv = nn.Conv2d(3, num_filters, kernel_size, stride=stride, padding=kernel_size // 2)
        init_layer_(self.conv, seed, "conv", std, bias)
        self.relu = nn.ReLU()
        self.pool = _pool_layer(pool, pool_stride or pool, pool_padding, pool_mode) if pool else None
        side = (input_size + 2 * (kernel_size // 2) - kernel_size) // stride + 1
        if pool:
            side = pooled_side(side, pool, pool_stride or pool, pool_padding)
        self.feature_shape = (num_filters, side, side)
        self.readout = SeededDense(
            num_filters * side * side,
            num_classes,
            seed=seed,
            name="readout",
            std=std,
            materialize_bytes=materialize_bytes,
        )
        self.preprocessing = IMAGENET.resized(input_size)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 3, S, S] -> [B, N, H', W'], the (pooled) ReLU outputs read by V."""
        features = self.relu(self.conv(x))
        return self.pool(features) if self.pool is not None else features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.readout(torch.flatten(self.features(x), 1))


class ThreeLayerFCN(nn.Module):
    """Dense d -> Nh -> ReLU -> dense K, with d = 3 S^2.  Shapes: [B, 3, S, S] -> [B, K]."""

    def __init__(
        self,
        hidden: int = 4096,
        input_size: int = 224,
        num_classes: int = 1000,
        seed: int = 0,
        std: float = PAPER_STD,
        materialize_bytes: int = DEFAULT_MATERIALIZE_BYTES,
    ) -> None:
        super().__init__()
        self.input_size = input_size
        inputs = 3 * input_size * input_size
        self.hidden = SeededDense(
            inputs, hidden, seed=seed, name="hidden", std=std, materialize_bytes=materialize_bytes
        )
        self.relu = nn.ReLU()
        self.readout = SeededDense(
            hidden, num_classes, seed=seed, name="readout", std=std, materialize_bytes=materialize_bytes
        )
        self.preprocessing = IMAGENET.resized(input_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.readout(self.relu(self.hidden(torch.flatten(x, 1))))


@keeps_global_rng
def three_layer_cnn(
    num_filters: int = 256,
    kernel_size: int = 7,
    stride: int = 2,
    pool: int | None = None,
    num_classes: int = 1000,
    input_size: int = 224,
    seed: int = 0,
    **options,
) -> ThreeLayerCNN:
    """The paper's random three-layer CNN (eval mode).

    ``options``: std, bias, materialize_bytes, and the pool's pool_stride, pool_padding
    and pool_mode (see :class:`ThreeLayerCNN`).
    """
    return ThreeLayerCNN(num_filters, kernel_size, stride, pool, num_classes, input_size, seed, **options).eval()


@keeps_global_rng
def three_layer_fcn(
    hidden: int = 4096, input_size: int = 224, num_classes: int = 1000, seed: int = 0, **options
) -> ThreeLayerFCN:
    """The paper's random three-layer FCN (eval mode). ``options``: std, materialize_bytes."""
    return ThreeLayerFCN(hidden, input_size, num_classes, seed, **options).eval()
