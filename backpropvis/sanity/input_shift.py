"""Kindermans et al.'s (2017) second network: a copy of a model whose first layer's bias
absorbs a constant shift of the input.

With ``f1``'s first layer ``z = W x + b1`` and a constant input shift ``m`` (one value per
input channel), ``f2`` is ``f1`` with that layer's bias replaced by

    b2 = b1 - W m                                               (Kindermans et al., Sec. 3)

so that ``f2(x + m) = f1(x)`` for every ``x``, every activation included. For a
convolution ``W m`` is the sum of every kernel tap times ``m`` (one number per output
channel). The border needs care: a convolution that zero-pads sees ``0`` around
``x + m`` where ``f1`` saw ``0`` around ``x``, i.e. ``-m`` relative to the shifted image,
so the bias change alone would break ``f2(x + m) = f1(x)`` along the border (see
:func:`naive_absorb_shift`, kept to show it). Here ``f2``'s first convolution pads its
input with ``m`` instead of 0 (:class:`ShiftAbsorbingConv2d`): the padded ``x + m`` is
then the padded ``x`` plus ``m`` everywhere, and the identity holds exactly. Reflect,
replicate and circular padding commute with a constant shift: only the bias changes.

Nothing else of the model changes; the copy is built by :func:`absorb_shift`, which checks
that the first layer (in execution order) reads the model's input unchanged and that its
output on ``x + m`` equals ``f1``'s on ``x``.
"""

from __future__ import annotations

import copy
from typing import Callable, cast

import torch
import torch.nn.functional as F
from torch import nn

from ..core.errors import ModelError
from ..models.efficientnet import Conv2dSame
from ..models.randomization import layer_module, redrawable_layers

__all__ = [
    "ShiftAbsorbingConv2d",
    "absorb_shift",
    "channel_shift",
    "first_layer_outputs",
    "naive_absorb_shift",
    "shifted_bias",
]

FIRST_LAYER_TOLERANCE = 1e-5
"""Largest relative difference allowed between f1's first-layer output on x and f2's on
x + m (relative to the largest absolute value; float32 rounding is about 1e-7)."""

Padding = Callable[[torch.Tensor], list[int]]


def channel_shift(model: nn.Module, pixel_shift: float, channels: int) -> torch.Tensor:
    """[C] the shift ``m`` in the model's input units of a shift of every pixel by
    ``pixel_shift`` (pixel values in [0, 1]; the paper moves MNIST from [0, 1] to [-1, 0]:
    ``pixel_shift = -1``): divided by the preprocessing's per-channel std when the model
    has one, else taken as it is."""
    preprocessing = getattr(model, "preprocessing", None)
    std = getattr(preprocessing, "std", None)
    if std is None or len(std) != channels:
        return torch.full((channels,), float(pixel_shift), dtype=torch.float64)
    return float(pixel_shift) / torch.tensor(std, dtype=torch.float64)


def shifted_bias(layer: nn.Module, shift: torch.Tensor) -> torch.Tensor:
    """``b2 = b1 - W m`` of a conv or linear layer ([out]); ``shift``: [C] (conv) or [in] (linear)."""
    weight = cast(torch.Tensor, layer.weight).detach()
    given = cast("torch.Tensor | None", layer.bias)
    bias = given.detach() if given is not None else weight.new_zeros(weight.shape[0])
    shift = shift.to(weight)
    if isinstance(layer, nn.Linear):
        return bias - weight @ shift
    # every kernel tap times m, summed per output channel (groups: each its own inputs)
    taps = weight.sum(dim=tuple(range(2, weight.dim())))  # [out, in / groups]
    groups = getattr(layer, "groups", 1)
    per_group = taps.shape[1]
    grouped = shift.view(groups, per_group)[
        torch.arange(weight.shape[0], device=weight.device) // (weight.shape[0] // groups)
    ]
    return bias - (taps * grouped).sum(1)


def _zero_padding(conv: nn.Conv2d) -> Padding:
    """The zero padding of ``conv``'s forward pass, as ``F.pad`` amounts for an input."""
    if isinstance(conv, Conv2dSame):
        return conv.same_padding
    if conv.padding == "valid":
        return lambda x: [0, 0, 0, 0]
    if conv.padding == "same":
        amounts = []
        for kernel, dilation in zip(reversed(conv.kernel_size), reversed(conv.dilation)):
            total = dilation * (kernel - 1)
            amounts += [total // 2, total - total // 2]
        return lambda x: amounts
    if type(conv) is not nn.Conv2d:
        raise ModelError(f"the first layer is a {type(conv).__name__}, whose padding this construction does not know")
    height, width = cast("tuple[int, int]", conv.padding)
    return lambda x: [width, width, height, height]


class ShiftAbsorbingConv2d(nn.Module):
    """f2's first convolution: ``f1``'s weights, the bias ``b2 = b1 - W m``, and its input
    padded with ``m`` (per channel) where ``f1``'s pads with 0.

    Args:
        conv: ``f1``'s first convolution (zero padding; ``nn.Conv2d`` or ``Conv2dSame``).
        shift: [C] the input shift ``m``.

    Shapes: [B, C, H, W] -> [B, C_out, H', W'], as ``conv``.
    """

    fill: torch.Tensor

    def __init__(self, conv: nn.Conv2d, shift: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(conv.weight.detach().clone())
        self.bias = nn.Parameter(shifted_bias(conv, shift))
        self.register_buffer("fill", shift.to(conv.weight).view(1, -1, 1, 1).clone())
        self.stride, self.dilation, self.groups = conv.stride, conv.dilation, conv.groups
        self.padding_of = _zero_padding(conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        left, right, top, bottom = self.padding_of(x)
        batch, channels, height, width = x.shape
        padded = self.fill.expand(batch, channels, height + top + bottom, width + left + right).clone()
        padded[:, :, top : top + height, left : left + width] = x  # the interior is x itself, bit for bit
        return F.conv2d(padded, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _first_layer(model: nn.Module, example: torch.Tensor) -> tuple[str, nn.Module]:
    layers = redrawable_layers(model, example)
    if not layers:
        raise ModelError(f"{type(model).__name__} calls no convolution or linear layer whose bias could absorb a shift")
    return layers[0], layer_module(model, layers[0])


def first_layer_outputs(model: nn.Module, inputs: torch.Tensor, layer: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """(the input, the output) of ``layer`` in one forward pass of ``model`` on ``inputs``
    (a temporary hook, removed before returning)."""
    seen: list[torch.Tensor] = []

    def keep(_module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        if not seen:
            seen.extend([args[0].detach(), output.detach()])

    handle = layer.register_forward_hook(keep)
    try:
        with torch.no_grad():
            model(inputs)
    finally:
        handle.remove()
    return seen[0], seen[1]


def _replaced(model: nn.Module, layer: nn.Module, shift: torch.Tensor, example: torch.Tensor) -> nn.Module:
    new: nn.Module
    if isinstance(layer, nn.Linear):
        new = copy.deepcopy(layer)
        flat = shift.to(layer.weight).view(-1, *([1] * (example.dim() - 2))).expand(example.shape[1:]).flatten()
        new.bias = nn.Parameter(shifted_bias(layer, flat))
        return new
    if isinstance(layer, nn.Conv2d) and layer.padding_mode != "zeros":
        new = copy.deepcopy(layer)  # reflect / replicate / circular padding commute with the shift
        new.bias = nn.Parameter(shifted_bias(layer, shift))
        return new
    if isinstance(layer, nn.Conv2d):
        return ShiftAbsorbingConv2d(layer, shift)
    raise ModelError(f"the first layer is a {type(layer).__name__}: only Conv2d and Linear can absorb a shift here")


def _swap(model: nn.Module, old: nn.Module, new: nn.Module) -> None:
    for path, module in model.named_modules():
        if module is old:
            parent, _, child = path.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, child, new)
            return
    raise ModelError("the first layer is not a submodule of the model")  # pragma: no cover - found above


def absorb_shift(model: nn.Module, shift: torch.Tensor, example: torch.Tensor) -> nn.Module:
    """f2: a copy of ``model`` whose first layer absorbs the input shift ``shift`` (see the
    module's docstring); ``model`` is untouched.

    Args:
        model: f1, in eval mode.
        shift: [C] the constant shift ``m`` per input channel.
        example: [B, C, H, W] inputs (the layer order is traced on them, and the identity
            ``f2(x + m) = f1(x)`` is checked at the first layer on them).

    Raises:
        ModelError: a model whose first layer does not read the input unchanged (e.g. a
            preprocessing or normalisation inside the model), or an unsupported first layer.
    """
    name, layer = _first_layer(model, example)
    seen_input, reference = first_layer_outputs(model, example, layer)
    if seen_input.numel() != example.numel() or not torch.equal(seen_input.flatten(1), example.flatten(1)):
        raise ModelError(
            f"the first layer {name!r} does not read the model's input unchanged, so its bias cannot absorb a shift"
        )
    shifted_model = copy.deepcopy(model)
    old = layer_module(shifted_model, name)
    new = _replaced(shifted_model, old, shift, example)
    _swap(shifted_model, old, new)
    _, output = first_layer_outputs(
        shifted_model, example + shift.to(example).view(1, -1, *([1] * (example.dim() - 2))), new
    )
    scale = reference.abs().max().clamp_min(torch.finfo(reference.dtype).tiny)
    difference = float((output - reference).abs().max() / scale)
    if difference > FIRST_LAYER_TOLERANCE:
        raise ModelError(
            f"the first layer {name!r} of the shifted copy differs from the original's by {difference:.2g} "
            "(relative): the shift is not absorbed"
        )
    description = f"{getattr(model, 'weights_description', 'trained')}, first layer {name!r} absorbing an input shift"
    setattr(shifted_model, "weights_description", description)  # noqa: B010 - not a parameter
    return shifted_model


def naive_absorb_shift(model: nn.Module, shift: torch.Tensor, example: torch.Tensor) -> nn.Module:
    """The bias change alone (``b2 = b1 - W m``), the convolution still zero-padding: what
    :func:`absorb_shift` avoids. ``f2(x + m)`` then differs from ``f1(x)`` along the border."""
    name, _ = _first_layer(model, example)
    shifted_model = copy.deepcopy(model)
    layer = layer_module(shifted_model, name)
    with torch.no_grad():
        bias = shifted_bias(layer, shift)
        if layer.bias is None:
            layer.bias = nn.Parameter(bias)
        else:
            cast(torch.Tensor, layer.bias).copy_(bias)
    return shifted_model
