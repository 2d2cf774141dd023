"""The arithmetic of one call's forward and backward passes.

- ``None`` (the default): whatever PyTorch's global flags say, as in every torch
  library. On a GPU that means cuDNN convolutions in TF32 (PyTorch's default) and
  float32 matrix products, unless the user changed them.
- ``"float32"``: exact IEEE float32 for this call, whatever the global flags say
  (TF32 off for CUDA matrix products and cuDNN convolutions, IEEE for oneDNN on the
  CPU). The experiments and theory studies use it, so their claims are reproducible.
- ``"tf32"``: CUDA matrix products and convolutions in TF32 (10-bit mantissa products).
- ``"bfloat16"``: autocast to bfloat16; maps are still returned in the inputs' dtype.

The flags are restored when the call ends, also when it raises.
"""

from __future__ import annotations

from typing import Any, Optional

import torch

__all__ = ["PRECISIONS", "PRECISION_NAMES", "Precision", "precision_name", "precision_from_name"]

PRECISIONS: tuple[Optional[str], ...] = (None, "float32", "tf32", "bfloat16")
"""Accepted values of ``precision``."""

DEFAULT_NAME = "default"
"""How settings, reports and the command line name ``precision=None`` (PyTorch's global flags)."""

PRECISION_NAMES: tuple[str, ...] = tuple(precision or DEFAULT_NAME for precision in PRECISIONS)
"""Every precision by name: ``--precision``'s choices."""


def precision_name(precision: Optional[str]) -> str:
    """``None`` -> "default"; every other precision is its own name."""
    return precision or DEFAULT_NAME


def precision_from_name(name: str) -> Optional[str]:
    """The inverse of :func:`precision_name`: "default" -> ``None``."""
    return None if name == DEFAULT_NAME else name


_NEW_API = hasattr(torch.backends.cuda.matmul, "fp32_precision")
"""PyTorch >= 2.9 sets TF32 per backend with ``fp32_precision``; older ones with ``allow_tf32``."""


_CUDNN_CONV: Any = getattr(torch.backends.cudnn, "conv", None)


def _backends() -> list[Any]:
    """The backend objects whose float32 precision a call may set (new API)."""
    backends = [torch.backends.cuda.matmul, _CUDNN_CONV]
    mkldnn = getattr(torch.backends, "mkldnn", None)
    for part in ("matmul", "conv"):
        if mkldnn is not None and hasattr(getattr(mkldnn, part, None), "fp32_precision"):
            backends.append(getattr(mkldnn, part))
    return backends


class Precision:
    """``with Precision(precision, device_type):`` the arithmetic of one call."""

    def __init__(self, precision: Optional[str], device_type: str) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
        self.precision, self.device_type = precision, device_type
        self.saved: list[tuple[Any, str, Any]] = []
        self.autocast: Optional[torch.autocast] = None

    def _set(self, owner: Any, name: str, value: Any) -> None:
        self.saved.append((owner, name, getattr(owner, name)))
        setattr(owner, name, value)

    def __enter__(self) -> Precision:
        if self.precision in ("float32", "tf32"):
            if _NEW_API:
                for backend in _backends():
                    on_gpu = backend in (torch.backends.cuda.matmul, _CUDNN_CONV)
                    self._set(backend, "fp32_precision", "tf32" if self.precision == "tf32" and on_gpu else "ieee")
            else:
                allow = self.precision == "tf32"
                self._set(torch.backends.cuda.matmul, "allow_tf32", allow)
                self._set(torch.backends.cudnn, "allow_tf32", allow)
        elif self.precision == "bfloat16":
            self.autocast = torch.autocast(self.device_type, dtype=torch.bfloat16)
            self.autocast.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.autocast is not None:
            self.autocast.__exit__(None, None, None)
            self.autocast = None
        for owner, name, value in reversed(self.saved):
            setattr(owner, name, value)
        self.saved = []
