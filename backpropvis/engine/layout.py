"""Convolution weights laid out once per call in their input's memory format.

An image decoded from H x W x C pixels and permuted (as
:class:`~backpropvis.models.preprocessing.Preprocessing` does) is a channels_last
tensor; a model's weights are contiguous (N, C, H, W). oneDNN and cuDNN then run the
convolution in channels_last and copy the weight into that layout at EVERY call:
once in the forward pass and once in each backward pass. The engine runs one forward
and many backward passes (one per rule and target), so it would copy VGG-16's conv
weights (59 MB) once per map. Here the weight is copied once, in the forward pass,
and the convolution keeps the copy for its backward passes: the same values in the
layout the kernels would have made, so the very same maps.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["weight_in_input_layout"]


def weight_in_input_layout(args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """``(input, weight, ...)`` of a convolution call with the 4-D weight made
    channels_last when the 4-D input is channels_last and not plain contiguous;
    otherwise the arguments unchanged. Shapes: input [B, C, H, W], weight [N, C/g, kH, kW]."""
    if len(args) >= 2:
        inputs, weight = args[0], args[1]
    else:
        inputs, weight = (args[0] if args else kwargs.get("input")), kwargs.get("weight")
    if not _needs_copy(inputs, weight):
        return args, kwargs
    laid_out = weight.contiguous(memory_format=torch.channels_last)
    if len(args) >= 2:
        return (args[0], laid_out, *args[2:]), kwargs
    return args, {**kwargs, "weight": laid_out}


def _needs_copy(inputs: Any, weight: Any) -> bool:
    if not (isinstance(inputs, torch.Tensor) and isinstance(weight, torch.Tensor)):
        return False
    if inputs.dim() != 4 or weight.dim() != 4 or inputs.is_contiguous():
        return False
    channels_last = torch.channels_last
    return inputs.is_contiguous(memory_format=channels_last) and not weight.is_contiguous(memory_format=channels_last)
