"""Which torch functions are activations, and how to cross each one backwards.

Every spelling a model may use ends in one of the functions listed here, whether it
comes from a module (``nn.ReLU(inplace=True)``), the functional API (``F.relu``),
the torch namespace (``torch.relu_``) or a tensor method (``x.relu()``). The engine
sees each call through a :class:`torch.overrides.TorchFunctionMode` and looks it up
in :data:`PIECEWISE_LINEAR` (apply the rule); the other nonlinearities (smooth
activations and gates) are sorted in :mod:`.smooth_activations`.

A :class:`PiecewiseLinear` knows two things about its activation g: how to compute
g(y) (natively, so values are bit-identical to the model's own) and how to multiply a
gradient by its derivative g'(y), recovered from what it saved in the forward pass
(fused into one kernel where torch has one that also batches over targets).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F

__all__ = ["PiecewiseLinear", "PIECEWISE_LINEAR", "function_name"]


@dataclass(frozen=True)
class PiecewiseLinear:
    """One kind of piecewise-linear activation.

    Args:
        name: the activation's name, for reports ("relu", "hardtanh", ...).
        forward: ``(y, params, inplace) -> (g(y), saved)``; ``saved`` is what
            ``times_derivative`` needs: what PyTorch's own backward saves (the output for
            ReLU and in-place calls, the input otherwise), so a model that modifies
            a tensor in place fails or works exactly as it does without the engine.
        times_derivative: ``(grad, saved, params, overwrite) -> grad * g'(y)``, for any
            ``grad`` shaped like ``y`` (also under the engine's batching over targets); with
            ``overwrite`` the product may be written into ``grad``'s own memory (one
            activation-sized buffer less at every layer of the backward pass).
    """

    name: str
    forward: Callable[[torch.Tensor, tuple, bool], tuple[torch.Tensor, torch.Tensor]]
    times_derivative: Callable[[torch.Tensor, torch.Tensor, tuple, bool], torch.Tensor]


def _relu_forward(y: torch.Tensor, params: tuple, inplace: bool):
    out = torch.relu_(y) if inplace else torch.relu(y)
    return out, out


def _clamp_forward(y: torch.Tensor, params: tuple, inplace: bool):
    low, high = params
    if inplace:
        out = torch._C._nn.hardtanh_(y, low, high)
        return out, out
    # Like PyTorch, keep the input: the model may modify the output in place. The
    # derivative reads the same from either, since out > low iff y > low (and for high).
    return torch._C._nn.hardtanh(y, low, high), y


def _relu_times_derivative(grad: torch.Tensor, out: torch.Tensor, params: tuple, overwrite: bool) -> torch.Tensor:
    if overwrite:  # grad * 1[out > 0], one fused kernel
        return torch.ops.aten.threshold_backward.grad_input(grad, out, 0, grad_input=grad)
    return torch.ops.aten.threshold_backward(grad, out, 0)


def _clamp_times_derivative(grad: torch.Tensor, saved: torch.Tensor, params: tuple, overwrite: bool) -> torch.Tensor:
    low, high = params
    if overwrite:  # grad * 1[low < y < high], one fused kernel
        return torch.ops.aten.hardtanh_backward.grad_input(grad, saved, low, high, grad_input=grad)
    return torch.ops.aten.hardtanh_backward(grad, saved, low, high)


def _leaky_forward(y: torch.Tensor, params: tuple, inplace: bool):
    (slope,) = params
    if inplace:
        # A negative slope flips the output's sign, so then take the active region first.
        positive = (y > 0) if slope < 0 else None
        out = torch._C._nn.leaky_relu_(y, slope)
        return out, (out if positive is None else positive)
    return torch._C._nn.leaky_relu(y, slope), y  # as PyTorch: the input (y > 0 where active)


def _leaky_times_derivative(grad: torch.Tensor, saved: torch.Tensor, params: tuple, overwrite: bool) -> torch.Tensor:
    (slope,) = params
    return _times(grad, torch.where(saved > 0, 1.0, slope).to(grad.dtype), overwrite)


def _times(grad: torch.Tensor, factor: torch.Tensor, overwrite: bool) -> torch.Tensor:
    """``grad * factor``, in ``grad``'s memory when ``overwrite``."""
    return grad.mul_(factor) if overwrite else grad * factor


def _threshold_forward(y: torch.Tensor, params: tuple, inplace: bool):
    threshold, value = params
    passed = y > threshold  # taken before an in-place call overwrites y
    out = torch.threshold_(y, threshold, value) if inplace else torch.threshold(y, threshold, value)
    return out, passed


def _prelu_forward(y: torch.Tensor, params: tuple, inplace: bool):
    (weight,) = params
    return torch.prelu(y, weight), y  # the weight may be negative: keep the input's sign


def _prelu_times_derivative(grad: torch.Tensor, y: torch.Tensor, params: tuple, overwrite: bool) -> torch.Tensor:
    (weight,) = params
    weight = weight.detach().to(grad.dtype)
    if weight.numel() > 1 and y.dim() > 1:  # one slope per channel, channels on dim 1
        weight = weight.reshape(1, -1, *([1] * (y.dim() - 2)))
    return _times(grad, torch.where(y > 0, torch.ones_like(weight), weight), overwrite)


def _threshold_times_derivative(
    grad: torch.Tensor, passed: torch.Tensor, params: tuple, overwrite: bool
) -> torch.Tensor:
    return _times(grad, passed, overwrite)


RELU = PiecewiseLinear("relu", _relu_forward, _relu_times_derivative)
HARDTANH = PiecewiseLinear("hardtanh", _clamp_forward, _clamp_times_derivative)
LEAKY_RELU = PiecewiseLinear("leaky_relu", _leaky_forward, _leaky_times_derivative)
THRESHOLD = PiecewiseLinear("threshold", _threshold_forward, _threshold_times_derivative)
PRELU = PiecewiseLinear("prelu", _prelu_forward, _prelu_times_derivative)


# Argument parsers: each returns (input, params, inplace) for its function's signature.
def _relu_args(input, inplace=False):
    return input, (), inplace


def _relu_inplace_args(input):
    return input, (), True


def _relu6_args(input, inplace=False):
    return input, (0.0, 6.0), inplace


def _relu6_inplace_args(input):
    return input, (0.0, 6.0), True


def _hardtanh_args(input, min_val=-1.0, max_val=1.0, inplace=False):
    return input, (float(min_val), float(max_val)), inplace


def _hardtanh_inplace_args(input, min_val=-1.0, max_val=1.0):
    return input, (float(min_val), float(max_val)), True


def _leaky_args(input, negative_slope=0.01, inplace=False):
    return input, (float(negative_slope),), inplace


def _leaky_inplace_args(input, negative_slope=0.01):
    return input, (float(negative_slope),), True


def _threshold_args(input, threshold, value, inplace=False):
    return input, (float(threshold), float(value)), inplace


def _threshold_inplace_args(input, threshold, value):
    return input, (float(threshold), float(value)), True


def _prelu_args(input, weight):
    return input, (weight,), False


_ParseArgs = Callable[..., tuple]

PIECEWISE_LINEAR: dict[Callable, tuple[PiecewiseLinear, _ParseArgs]] = {}
"""Intercepted function -> (its activation kind, its argument parser)."""


def _register(kind: PiecewiseLinear, parse: _ParseArgs, *functions: Any) -> None:
    for function in functions:
        if function is not None:
            PIECEWISE_LINEAR[function] = (kind, parse)


_nn = torch._C._nn
_register(RELU, _relu_args, F.relu)
_register(RELU, _relu_inplace_args, torch.relu_, torch.Tensor.relu_)
_register(RELU, lambda input: (input, (), False), torch.relu, torch.Tensor.relu)
_register(HARDTANH, _relu6_args, F.relu6)
_register(HARDTANH, lambda input: (input, (0.0, 6.0), False), getattr(_nn, "relu6", None))
_register(HARDTANH, _relu6_inplace_args, getattr(_nn, "relu6_", None))
_register(HARDTANH, _hardtanh_args, F.hardtanh, _nn.hardtanh)
_register(HARDTANH, _hardtanh_inplace_args, F.hardtanh_, _nn.hardtanh_)
_register(LEAKY_RELU, _leaky_args, F.leaky_relu, _nn.leaky_relu)
_register(LEAKY_RELU, _leaky_inplace_args, F.leaky_relu_, _nn.leaky_relu_)
_register(THRESHOLD, _threshold_args, F.threshold, torch.threshold)
_register(THRESHOLD, _threshold_inplace_args, getattr(F, "threshold_", None), getattr(torch, "threshold_", None))
_register(PRELU, _prelu_args, F.prelu, torch.prelu, getattr(torch.Tensor, "prelu", None))


def function_name(function: Callable) -> str:
    """A readable dotted name for a torch function, e.g. ``torch.nn.functional.gelu``."""
    name = getattr(function, "__name__", repr(function))
    qualified = getattr(function, "__qualname__", name)
    if qualified.startswith("TensorBase.") or qualified.startswith("Tensor."):
        return "Tensor." + name
    module = getattr(function, "__module__", None) or "torch"
    if module == "torch._C._nn":
        module = "torch.nn.functional"
    return f"{module}.{name}"
