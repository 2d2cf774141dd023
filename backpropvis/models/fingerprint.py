"""A model's weights as one short string: the SHA-256 of its state dict.

The hash covers every entry of ``model.state_dict()`` (parameters and buffers, such as
BatchNorm's running statistics) in sorted key order: the key, the dtype, the shape and
the raw bytes of the values, read on the CPU in C order. It is therefore the same in
every process and on every device for the same weights, and differs as soon as one
value, name or shape differs.
"""

from __future__ import annotations

import hashlib

import torch
from torch import nn

__all__ = ["weights_fingerprint", "file_fingerprint"]


def weights_fingerprint(model: nn.Module) -> str:
    """``"sha256:<64 hex digits>"`` of ``model``'s state dict (see the module's docstring)."""
    digest = hashlib.sha256()
    state = model.state_dict()
    for key in sorted(state):
        value = state[key]
        if not isinstance(value, torch.Tensor):  # a module's extra state
            digest.update(f"{key}\0{value!r}\0".encode())
        else:
            digest.update(f"{key}\0{value.dtype}\0{list(value.shape)}\0".encode())
            flat = value.detach().to("cpu").contiguous().reshape(-1)
            if flat.numel():
                digest.update(flat.view(torch.uint8).numpy().data)  # the buffer itself, no copy
    return f"sha256:{digest.hexdigest()}"


def file_fingerprint(data: bytes) -> str:
    """``"sha256:<64 hex digits>"`` of a file's bytes (a user's model file)."""
    return f"sha256:{hashlib.sha256(data).hexdigest()}"
