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

from ..core.errors import TargetError
from ..engine.unit_targets import full_layer_name

__all__ = ["ReceptiveField", "receptive_field", "modules_that_ran", "layers_over_depth"]

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
    layer = full_layer_name(model, layer)
    if layer not in dict(model.named_modules()) or not layer:
        raise TargetError(f"{type(model).__name__} has no layer named '{layer}'")
    ran = modules_that_ran(model, inputs)
    names = [name for name, _, _ in ran]
    if layer not in names:
        return _compose([], dense=True)
    upto = ran[: names.index(layer) + 1]  # a module finishes after everything inside it
    shape = upto[-1][2]
    return _compose([module for _, module, _ in upto if isinstance(module, _SPATIAL)], dense=len(shape) < 4)


def modules_that_ran(model: nn.Module, inputs: torch.Tensor) -> list[tuple[str, nn.Module, tuple[int, ...]]]:
    """(name, module, output shape) of every named module in the order they finished, in one
    no-grad forward pass on ``inputs[:1]`` (hooks for that call only); a module that ran
    twice is listed at its first run."""
    names = {module: name for name, module in model.named_modules() if name}
    ran: list[tuple[str, nn.Module, tuple[int, ...]]] = []
    seen: set[str] = set()

    def finished(module: nn.Module, args: Any, output: Any) -> None:
        name = names[module]
        if name not in seen:
            seen.add(name)
            ran.append((name, module, tuple(output.shape) if isinstance(output, torch.Tensor) else ()))

    handles = [module.register_forward_hook(finished) for module in names]
    try:
        with torch.no_grad():
            model(inputs[:1])
    finally:
        for handle in handles:
            handle.remove()
    return ran


def layers_over_depth(model: nn.Module, inputs: torch.Tensor, count: int = 6) -> list[str]:
    """``count`` layers spread evenly over the depth, for unit targets: among the convolutions
    and the dense layers but the last (the logits), in the order they ran, the first, the last
    and evenly spaced ones between."""
    ran = modules_that_ran(model, inputs)
    candidates = [name for name, module, _ in ran if isinstance(module, (nn.Conv2d, nn.Linear))]
    if candidates and isinstance(dict(model.named_modules())[candidates[-1]], nn.Linear):
        candidates = candidates[:-1]
    if len(candidates) <= count:
        return candidates
    picked = sorted({round(i * (len(candidates) - 1) / (count - 1)) for i in range(count)})
    return [candidates[i] for i in picked]


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
