"""The input side of a call: one tensor, several, extra forward arguments, or one image.

As in Captum, ``inputs`` is one Tensor [B, ...] or a tuple of them (each with the batch
B first), and ``additional_forward_args`` are passed to the model after them, untouched
(not differentiated): ``model(*inputs, *additional_forward_args)``. The maps then come
back as one tensor per input, in the same structure.

One image without its batch dimension, a single Tensor [C, H, W], is taken as a batch of
one, and its maps come back shaped like it. Since a model of [B, L, D] sequences also
takes 3-D inputs, the engine does not guess from the shape: a 3-D input counts as one
unbatched image only when the forward pass hands a tensor of its very shape to a 2-D
convolution (PyTorch's ``conv2d`` reads a 3-D tensor as one unbatched image); the engine then
stops that forward pass (:class:`UnbatchedImage`) and runs the call again on
``inputs.unsqueeze(0)``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Union

import torch

from ..core.errors import InputError

__all__ = ["CallInputs", "UnbatchedImage", "prepare_inputs", "shaped_maps"]

Inputs = Union[torch.Tensor, tuple[torch.Tensor, ...]]


class UnbatchedImage(Exception):
    """Raised inside the forward pass at a 2-D convolution given the call's 3-D input as
    one unbatched image; caught by the engine, which runs again with a batch of one."""


@dataclass(frozen=True)
class CallInputs:
    """What the model is called with.

    Attributes:
        tensors: the inputs, each [B, ...] (a batch of one added when ``unbatched``).
        extra: the additional forward arguments, passed after them.
        several: the caller gave a tuple (maps come back as a tuple).
        unbatched: the caller gave one image without its batch dimension.
    """

    tensors: tuple[torch.Tensor, ...]
    extra: tuple
    several: bool
    unbatched: bool = False

    @property
    def batch(self) -> int:
        return len(self.tensors[0])

    @property
    def may_be_unbatched(self) -> bool:
        """A single 3-D tensor: one image without its batch dimension, or a batch of 2-D inputs."""
        return not self.several and not self.unbatched and self.tensors[0].dim() == 3

    def as_batch_of_one(self) -> CallInputs:
        return replace(self, tensors=(self.tensors[0].unsqueeze(0),), unbatched=True)

    def leaves(self) -> tuple[torch.Tensor, ...]:
        """Leaves requiring grad, one per input, sharing memory with them (a copy of an
        inference tensor, which autograd cannot record)."""
        return tuple(
            (tensor.clone() if tensor.is_inference() else tensor.detach()).requires_grad_(True)
            for tensor in self.tensors
        )


def prepare_inputs(inputs: Inputs, additional_forward_args: Any = None) -> CallInputs:
    """Check ``inputs`` (a Tensor or a tuple of them) and wrap what the model is called with.

    Raises:
        InputError: no tensor, a tensor that is not floating point or has no batch
            dimension, or inputs whose batch sizes differ.
    """
    several = isinstance(inputs, (tuple, list))
    tensors = tuple(inputs) if several else (inputs,)
    if not tensors:
        raise InputError("inputs is an empty tuple; pass a Tensor or a tuple of Tensors")
    for number, tensor in enumerate(tensors):
        name = f"inputs[{number}]" if several else "inputs"
        if not isinstance(tensor, torch.Tensor):
            raise InputError(f"{name} must be a Tensor, not {type(tensor).__name__}")
        if not tensor.is_floating_point():
            raise InputError(f"{name} must be floating point, not {tensor.dtype}")
        if tensor.dim() < 2:
            raise InputError(f"{name} must have a batch dimension, got shape {list(tensor.shape)}")
    batches = [len(tensor) for tensor in tensors]
    if len(set(batches)) > 1:
        raise InputError(f"inputs must share their batch size (first dimension), got {batches}")
    if additional_forward_args is None:
        extra: tuple = ()
    elif isinstance(additional_forward_args, tuple):
        extra = additional_forward_args
    else:
        extra = (additional_forward_args,)
    return CallInputs(tensors, extra, several)


def shaped_maps(maps: tuple[torch.Tensor, ...], given: CallInputs) -> Inputs:
    """One rule's maps, one [T, B, ...] per input, in the structure the caller gave:
    a tuple for several inputs, one tensor otherwise, [T, C, H, W] for one unbatched image."""
    if given.unbatched:
        return maps[0].squeeze(1)
    return maps if given.several else maps[0]
