"""Where a unit looks: its receptive field in the input, from the layers' kernel, stride and padding.

The convolutions and poolings that run before (and inside) a layer are recorded in one
forward pass (hooks for that call only), in the order they run, and composed with the
usual arithmetic: per spatial dim, with ``j`` the distance in input pixels between two
neighbouring units and ``r`` the field's size, a layer of kernel ``k``, stride ``s``,
padding ``p`` and dilation ``d`` gives ``r += (d (k - 1)) j``, ``start += ((d (k - 1)) / 2 - p) j``,
``j *= s``. In a chain this is exact; where branches run side by side (a residual block)
every recorded layer counts, so the field is over-estimated, never cut short. A layer
without spatial dims (a dense layer) sees the whole input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import nn

from .errors import TargetError

__all__ = ["ReceptiveField", "receptive_field"]

_SPATIAL = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)


@dataclass(frozen=True)
class ReceptiveField:
    """The input region of the units of one layer (2-D inputs).

    Attributes:
        size: (rows, columns) of the field in input pixels.
        jump: input pixels between two neighbouring units, per dim.
        start: the input coordinate of unit (0, 0)'s centre, per dim.
        dense: True for a layer without spatial dims: every unit sees the whole input.
    """

    size: tuple[int, int]
    jump: tuple[int, int]
    start: tuple[float, float]
    dense: bool = False

    def box(self, position: Sequence[int], image_size: Sequence[int]) -> tuple[int, int, int, int]:
        """(top, left, bottom, right), bottom and right exclusive, of the unit at ``position``
        (spatial indices), clipped to an input of ``image_size`` (rows, columns)."""
        rows, columns = int(image_size[0]), int(image_size[1])
        if self.dense or len(position) != 2:
            return 0, 0, rows, columns
        ends = []
        for dim, limit in enumerate((rows, columns)):
            centre = self.start[dim] + int(position[dim]) * self.jump[dim]
            low = int(round(centre - (self.size[dim] - 1) / 2))
            ends.append((max(0, low), min(limit, low + self.size[dim])))
        (top, bottom), (left, right) = ends
        return top, left, bottom, right


def receptive_field(model: nn.Module, inputs: torch.Tensor, layer: str) -> ReceptiveField:
    """The receptive field of the units of the module named ``layer`` for inputs shaped like
    ``inputs`` [B, C, H, W] (one no-grad forward pass on them).

    Raises:
        TargetError: an unknown layer name.
    """
    modules = dict(model.named_modules())
    target = modules.get(layer) if layer else None
    if target is None:
        raise TargetError(f"{type(model).__name__} has no layer named '{layer}'")
    ran: list[nn.Module] = []
    shape: list[Any] = []

    def seen(module: nn.Module, args: Any, output: Any) -> None:
        if shape:
            return  # the layer has finished: what runs later is not below it
        if isinstance(module, _SPATIAL):
            ran.append(module)
        if module is target:
            shape.append(tuple(output.shape) if isinstance(output, torch.Tensor) else ())

    handles = [module.register_forward_hook(seen) for module in modules.values()]
    try:
        with torch.no_grad():
            model(inputs[:1])
    finally:
        for handle in handles:
            handle.remove()
    return _compose(ran, dense=not shape or len(shape[0]) < 4)


def _compose(layers: Sequence[nn.Module], dense: bool) -> ReceptiveField:
    size, jump, start = [1, 1], [1, 1], [0.0, 0.0]
    for module in layers:
        kernel, stride, padding, dilation = (_pair(getattr(module, name, 1)) for name in _PARAMETERS)
        same = getattr(module, "padding", None) == "same"
        for dim in range(2):
            reach = dilation[dim] * (kernel[dim] - 1)
            size[dim] += reach * jump[dim]
            start[dim] += (0.0 if same else reach / 2 - padding[dim]) * jump[dim]
            jump[dim] *= stride[dim]
    return ReceptiveField((size[0], size[1]), (jump[0], jump[1]), (start[0], start[1]), dense)


_PARAMETERS = ("kernel_size", "stride", "padding", "dilation")


def _pair(value: Any) -> tuple[int, int]:
    if isinstance(value, str):  # "valid" pads nothing; "same" is handled by the caller
        return (0, 0)
    if isinstance(value, (tuple, list)):
        return int(value[0]), int(value[-1])
    return int(value), int(value)
