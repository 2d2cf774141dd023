"""The paper's theory as computations: the closed-form maps of Lemma 1 and Eq. 6-7.

Everything here is computed from the weights alone, with no backward pass and no
call into :mod:`backpropvis.engine`: it is the independent check of the engine.

The random three-layer CNN (Eq. 3): an image x [C, H, W]; N filters w_i [C, k, k]
(p = C k^2 values each); J patches y_j = D_j x, the k x k windows of the zero-padded
image at stride b (``F.unfold``); the readout column V[:, k] with the feature of
filter i at patch j at index q_ij = i J + j (channel-major, as ``torch.flatten``).

- :data:`METHOD_FORMS`: each method's h and g (Eq. 2), stated here, not read from
  :mod:`backpropvis.core.rules`: a wrong rule there makes the engine disagree with this.
- :func:`closed_form_map`: Lemma 1 (Eq. 4) for saliency, DeconvNet and GBP; with a
  max-pool (any window, stride, padding) between the ReLU and the readout either
  exactly with the pool's switches (Eq. 6) or with the paper's approximation
  "chosen <=> w.y > 0" (Eq. 7); with an average pool, each output gets the mean
  share of the readout of every window containing it (no switches).
- :func:`switch_disagreement`: how often Eq. 7's assumption fails.
- :func:`patches` and :func:`fold_patches`: the D_j and their transposes.

Theorem 1's limit image, the recovery law and Theorem 2's statistics are in
:mod:`.limits`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..core.errors import MethodError

__all__ = [
    "METHOD_FORMS",
    "MethodForm",
    "SwitchDisagreement",
    "closed_form_map",
    "fold_patches",
    "method_form",
    "patches",
    "pool_switches",
    "switch_disagreement",
]

_FILTER_CHUNK = 256


def patches(image: torch.Tensor, kernel_size: int, stride: int, padding: int) -> torch.Tensor:
    """Every patch y_j = D_j x of the zero-padded image, as columns.

    Shapes: image [C, H, W] -> [p, J] with p = C k^2 and J = H' W' (row-major).
    """
    return F.unfold(image.unsqueeze(0), kernel_size, padding=padding, stride=stride)[0]


def fold_patches(
    columns: torch.Tensor, image_size: Sequence[int], kernel_size: int, stride: int, padding: int
) -> torch.Tensor:
    """sum_j D_j^T u_j: put each patch-shaped vector back where its patch came from and
    add the overlaps; what falls on the zero padding is dropped.

    Shapes: columns [p, J] -> [C, H, W] with ``image_size`` = (H, W).
    """
    return F.fold(columns.unsqueeze(0), tuple(image_size), kernel_size, padding=padding, stride=stride)[0]


@dataclass(frozen=True)
class MethodForm:
    """One method's h and g of the paper's Eq. 2, stated here on their own (never read
    from :mod:`backpropvis.core.rules`, so that a wrong rule there disagrees with this).

    Attributes:
        h: applied to the gradient R arriving at a ReLU's output: t for saliency,
            max(t, 0) for DeconvNet and GBP.
        g_is_relu: g(t) = max(t, 0) for saliency and GBP, so g'(y) = 1[y > 0] (the
            forward mask); g(t) = t for DeconvNet, so g'(y) = 1.
    """

    h: Callable[[torch.Tensor], torch.Tensor]
    g_is_relu: bool


def _identity(values: torch.Tensor) -> torch.Tensor:
    return values


def _relu(values: torch.Tensor) -> torch.Tensor:
    return values.clamp_min(0)


METHOD_FORMS: dict[str, MethodForm] = {
    "saliency": MethodForm(h=_identity, g_is_relu=True),
    "deconvnet": MethodForm(h=_relu, g_is_relu=False),
    "gbp": MethodForm(h=_relu, g_is_relu=True),
}
"""Eq. 2 for the paper's three methods, by name."""


def method_form(method: str) -> MethodForm:
    """Eq. 2's (h, g) of a method named "saliency", "deconvnet" or "gbp".

    Raises:
        MethodError: for anything else (a :class:`~backpropvis.core.rules.Rule` included: the
            closed forms state the paper's methods themselves).
    """
    if not isinstance(method, str) or method.strip().lower() not in METHOD_FORMS:
        raise MethodError(f"closed forms exist for the methods {', '.join(METHOD_FORMS)}, not {method!r}")
    return METHOD_FORMS[method.strip().lower()]


def _pool_windows(values: torch.Tensor, window: int, stride: int, padding: int, fill: float) -> torch.Tensor:
    """The pool's windows of each channel as columns, padding with ``fill``.

    Shapes: values [N, H', W'] -> [N, window^2, L], L the number of windows (row-major).
    """
    padded = F.pad(values.unsqueeze(1), (padding,) * 4, value=fill)
    return F.unfold(padded, window, stride=stride)


def _add_windows_back(
    columns: torch.Tensor, size: Sequence[int], window: int, stride: int, padding: int
) -> torch.Tensor:
    """The adjoint of :func:`_pool_windows`: every window's values put back where they
    came from, overlapping windows adding up, padding dropped.

    Shapes: columns [N, window^2, L] -> [N, H', W'] with ``size`` = (H', W').
    """
    height, width = size
    padded = F.fold(columns, (height + 2 * padding, width + 2 * padding), window, stride=stride)
    return padded[:, 0, padding : padding + height, padding : padding + width]


def pool_switches(outputs: torch.Tensor, pool: int, stride: int | None = None, padding: int = 0) -> torch.Tensor:
    """delta'(o_ij) of Eq. 6: which ReLU outputs a max-pool passes on, for any window
    ``pool``, stride (default: the window) and padding, in floor mode.

    Each window passes on its first maximum in row-major order, as PyTorch's max-pool
    does (it matters where a whole window is 0); padded positions never win. With
    overlapping windows an output is chosen when at least one window chooses it.

    Shapes: outputs [N, H', W'] -> bool [N, H', W'] (False where no window chose).
    """
    stride = stride or pool
    windows = _pool_windows(outputs, pool, stride, padding, float("-inf"))  # [N, w^2, L]
    chosen = F.one_hot(windows.argmax(dim=1), pool * pool).transpose(1, 2).to(outputs.dtype)  # [N, w^2, L]
    return _add_windows_back(chosen, outputs.shape[1:], pool, stride, padding) > 0


def _pooled_area(size: Sequence[int], pool: int, stride: int, padding: int, like: torch.Tensor) -> torch.Tensor:
    """bool [H', W']: the outputs that at least one pool window covers."""
    ones = like.new_ones(1, *size)
    return _add_windows_back(_pool_windows(ones, pool, stride, padding, 0.0), size, pool, stride, padding)[0] > 0


def _gradient_at_relu(
    pre: torch.Tensor,
    readout: torch.Tensor,
    pool: int | None,
    stride: int,
    padding: int,
    mode: str,
    approximate: bool,
) -> torch.Tensor:
    """R: what the readout column sends back to each ReLU output, through the pool.

    No pool: V[q_ij, k]. Max-pool (Eq. 6): the sum of V over the windows that choose the
    output (delta'(o_ij) V[q~_ij, k] when windows do not overlap); with ``approximate``
    (Eq. 7) "chosen" becomes 1[w_i . y_j > 0] for every window containing the output.
    Average pool: the sum over the windows containing the output of V / (the number of
    unpadded outputs in that window).

    Shapes: pre [n, H', W'] (w_i . y_j), readout [n, L] (the pooled grid flattened) -> [n, H', W'].
    """
    if not pool:
        return readout.reshape(pre.shape)
    per_window = readout.unsqueeze(1)  # [n, 1, L]
    if mode == "average":
        inside = _pool_windows(pre.new_ones(1, *pre.shape[1:]), pool, stride, padding, 0.0)  # [1, w^2, L]
        share = inside / inside.sum(dim=1, keepdim=True)
    elif mode == "max" and approximate:
        share = _pool_windows(pre.new_ones(1, *pre.shape[1:]), pool, stride, padding, 0.0)
    elif mode == "max":
        windows = _pool_windows(pre.clamp_min(0), pool, stride, padding, float("-inf"))  # the ReLU outputs o_ij
        share = F.one_hot(windows.argmax(dim=1), pool * pool).transpose(1, 2).to(pre.dtype)
    else:
        raise ValueError(f"pool_mode must be 'max' or 'average', not {mode!r}")
    if approximate and mode != "max":
        raise ValueError("Eq. 7's approximation is about max-pooling's switches (pool_mode='max')")
    gradient = _add_windows_back(share * per_window, pre.shape[1:], pool, stride, padding)
    return gradient * (pre > 0) if approximate else gradient


def closed_form_map(
    image: torch.Tensor,
    filters: torch.Tensor,
    readout_column: torch.Tensor,
    method: str,
    *,
    stride: int,
    padding: int,
    pool: int | None = None,
    pool_stride: int | None = None,
    pool_padding: int = 0,
    pool_mode: str = "max",
    approximate_pool: bool = False,
) -> torch.Tensor:
    """s_k(x) of Lemma 1 for the random three-layer CNN, with Z_k = 1 (the raw map).

    Without pooling (Eq. 4):  s_k(x) = sum_j D_j^T sum_i h(V[q_ij, k]) w~(i, j), where
    w~(i, j) = w_i for DeconvNet and w_i 1[w_i . y_j > 0] for saliency and GBP (h and g
    of Eq. 2 as :data:`METHOD_FORMS` states them).
    With a max-pool (Eq. 6) V[q_ij, k] becomes the gradient the pool sends to output
    (i, j): delta'(o_ij) V[q~_ij, k] for non-overlapping windows, the sum of V over every
    window that chooses (i, j) when windows overlap; with ``approximate_pool`` (Eq. 7)
    "chosen" is replaced by 1[w_i . y_j > 0]. With an average pool it is the sum over
    the windows containing (i, j) of V divided by the window's number of (unpadded) outputs.
    h applies to that sum: it is what reaches the ReLU.

    Args:
        image: x [C, H, W].
        filters: w [N, C, k, k] (the conv has no bias).
        readout_column: V[:, k] [N H'' W''], the (pooled) features flattened channel-major.
        method: "saliency", "deconvnet" or "gbp".
        stride, padding: the convolution's stride b and zero padding.
        pool: the pool's window, or None for no pool.
        pool_stride: the pool's stride (default: the window).
        pool_padding: the pool's padding (never chosen by a max, left out of a mean).
        pool_mode: "max" or "average".
        approximate_pool: use Eq. 7 instead of Eq. 6 (max-pooling only).

    Returns:
        [C, H, W] in the dtype of ``image``.

    Raises:
        MethodError: for a method other than the three.
    """
    form = method_form(method)
    channels_out, _, kernel, _ = filters.shape
    columns = patches(image, kernel, stride, padding)  # [p, J]
    side_h = (image.shape[1] + 2 * padding - kernel) // stride + 1
    side_w = (image.shape[2] + 2 * padding - kernel) // stride + 1
    readout = readout_column.to(image).reshape(channels_out, -1)  # [N, L]
    flat_filters = filters.to(image).reshape(channels_out, -1)  # [N, p]
    per_patch = torch.zeros_like(columns)  # [p, J]
    for start in range(0, channels_out, _FILTER_CHUNK):  # Eq. 4 is a sum over filters
        w = flat_filters[start : start + _FILTER_CHUNK]
        pre = (w @ columns).reshape(len(w), side_h, side_w)  # w_i . y_j
        gradient = _gradient_at_relu(
            pre,
            readout[start : start + _FILTER_CHUNK],
            pool,
            pool_stride or pool or 1,
            pool_padding,
            pool_mode,
            approximate_pool,
        )
        coefficient = form.h(gradient)
        if form.g_is_relu:
            coefficient = coefficient * (pre > 0)  # the forward mask of w~(i, j)
        per_patch += w.T @ coefficient.reshape(len(w), -1)
    return fold_patches(per_patch, image.shape[1:], kernel, stride, padding)


@dataclass(frozen=True)
class SwitchDisagreement:
    """How often Eq. 7's "chosen by the pool <=> w.y > 0" fails, over the (i, j) that
    some pool window covers.

    Attributes:
        total: the fraction of (i, j) where the two disagree.
        chosen_but_inactive: chosen by the pool although w.y <= 0 (a window of zeros).
        active_but_not_chosen: w.y > 0 but no window chose it (each lost to a larger output).
    """

    total: float
    chosen_but_inactive: float
    active_but_not_chosen: float


def switch_disagreement(
    image: torch.Tensor,
    filters: torch.Tensor,
    *,
    stride: int,
    padding: int,
    pool: int,
    pool_stride: int | None = None,
    pool_padding: int = 0,
) -> SwitchDisagreement:
    """Eq. 6 vs Eq. 7: compare the max-pool's switches (chosen by at least one window)
    with 1[w_i . y_j > 0], for any window, stride and padding of the pool.

    Shapes: image [C, H, W], filters [N, C, k, k].
    """
    pool_stride = pool_stride or pool
    channels_out, _, kernel, _ = filters.shape
    columns = patches(image, kernel, stride, padding)
    side_h = (image.shape[1] + 2 * padding - kernel) // stride + 1
    side_w = (image.shape[2] + 2 * padding - kernel) // stride + 1
    covered = _pooled_area((side_h, side_w), pool, pool_stride, pool_padding, columns)
    counts = np.zeros(2)
    flat_filters = filters.to(image).reshape(channels_out, -1)
    for start in range(0, channels_out, _FILTER_CHUNK):
        pre = (flat_filters[start : start + _FILTER_CHUNK] @ columns).reshape(-1, side_h, side_w)
        chosen = pool_switches(pre.clamp_min(0), pool, pool_stride, pool_padding)[:, covered]
        active = (pre > 0)[:, covered]
        counts += [float((chosen & ~active).sum()), float((active & ~chosen).sum())]
    total = channels_out * int(covered.sum())
    return SwitchDisagreement(float(counts.sum() / total), float(counts[0] / total), float(counts[1] / total))
