"""Max-pooling whose switches are recomputed in each backward pass instead of kept.

PyTorch's max-pooling keeps, for the backward pass, its input AND the arg-max of every
window as int64 indices: for VGG-16 at 224 px that is 49 MB per 4 images, half the
size of the activations it pools. A plain backward frees them layer by layer; the
engine keeps the graph for several backward passes (one per rule and target), so it
would hold them all through every pass. Here the indices are recomputed from the kept
input when a backward pass reaches the layer (a pooling forward, cheap next to the
convolutions): the very same switches, so the very same gradient (the paper's "switches",
Eq. 6), without the indices' memory.

Only ``F.max_pool2d`` / ``torch.max_pool2d`` without ``return_indices`` are replaced;
every other pooling keeps PyTorch's own backward.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F
from torch.nn.modules.utils import _pair

__all__ = ["RecomputedMaxPool2d", "MAX_POOLS"]

PoolArgs = tuple[torch.Tensor, list[int], list[int], list[int], list[int], bool]
"""(input, kernel size, stride, padding, dilation, ceil mode), as aten's max_pool2d_with_indices takes them."""


class RecomputedMaxPool2d(torch.autograd.Function):
    """``max_pool2d`` keeping only its input; the backward pass recomputes the switches."""

    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        kernel: list[int],
        stride: list[int],
        padding: list[int],
        dilation: list[int],
        ceil_mode: bool,
    ) -> torch.Tensor:
        out, _ = torch.ops.aten.max_pool2d_with_indices(x, kernel, stride, padding, dilation, ceil_mode)
        ctx.save_for_backward(x)
        ctx.pool = (kernel, stride, padding, dilation, ceil_mode)
        return out

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[Any, ...]:
        (x,) = ctx.saved_tensors
        _, switches = torch.ops.aten.max_pool2d_with_indices(x, *ctx.pool)
        grad_input = torch.ops.aten.max_pool2d_with_indices_backward(grad_output, x, *ctx.pool, switches)
        return grad_input, None, None, None, None, None


def _pool_args(
    input: torch.Tensor,
    kernel_size: Any,
    stride: Any = None,
    padding: Any = 0,
    dilation: Any = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
) -> Optional[PoolArgs]:
    """``F.max_pool2d``'s arguments in aten's form, or None when the caller wants the indices."""
    if return_indices:
        return None
    kernel = list(_pair(kernel_size))
    strides = list(_pair(stride)) if stride is not None and stride != [] and stride != () else kernel
    return input, kernel, strides, list(_pair(padding)), list(_pair(dilation)), bool(ceil_mode)


MAX_POOLS: dict[Callable, Callable[..., Optional[PoolArgs]]] = {F.max_pool2d: _pool_args, torch.max_pool2d: _pool_args}
"""Intercepted max-pooling function -> its argument parser."""
