"""Devices by name, refused in one line where this machine has none of that kind."""

from __future__ import annotations

from typing import Union

import torch

from .errors import BackpropvisError

__all__ = ["resolve_device"]


def resolve_device(name: Union[str, torch.device]) -> torch.device:
    """A torch device from its name ("cpu", "cuda", "cuda:1", ...).

    Raises:
        BackpropvisError: for a name torch does not know, or CUDA asked on a machine without it.
    """
    try:
        device = torch.device(name)
    except RuntimeError:
        raise BackpropvisError(f"unknown device {str(name)!r}; use cpu or cuda") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BackpropvisError("`device` cuda asked, but this machine has no CUDA GPU")
    return device
