"""The arithmetic of one call's forward and backward passes: one value, :class:`Precision`.

- ``Precision.DEFAULT`` ("default"): whatever PyTorch's global flags say, as in every
  torch library. On a GPU that means cuDNN convolutions in TF32 (PyTorch's default) and
  float32 matrix products, unless the user changed them.
- ``Precision.FLOAT32`` ("float32"): exact IEEE float32 for this call, whatever the global
  flags say (TF32 off for CUDA matrix products and cuDNN convolutions, IEEE for oneDNN on
  the CPU). The experiments and theory studies use it, so their claims are reproducible.
- ``Precision.TF32`` ("tf32"): CUDA matrix products and convolutions in TF32 (10-bit mantissa products).
- ``Precision.BFLOAT16`` ("bfloat16"): autocast to bfloat16; maps are still returned in the inputs' dtype.

A :class:`Precision` is a ``str`` whose value is its name, so settings, databases and
reports store it as that name. :class:`Arithmetic` applies one to a block; the flags are
restored when the block ends, also when it raises.
"""

from __future__ import annotations

import enum
from typing import Any, Optional, Union

import torch

__all__ = ["Precision", "PrecisionLike", "PRECISION_NAMES", "Arithmetic"]


class Precision(str, enum.Enum):
    """The engine's arithmetic (see the module's docstring); ``Precision("tf32")`` or :meth:`parse`."""

    DEFAULT = "default"
    FLOAT32 = "float32"
    TF32 = "tf32"
    BFLOAT16 = "bfloat16"

    def __str__(self) -> str:
        return self.value

    @classmethod
    def parse(cls, value: PrecisionLike) -> Precision:
        """A :class:`Precision` from itself or its name.

        Raises:
            ValueError: any other value (naming the parameter ``precision``).
        """
        try:
            return cls(value)
        except ValueError:
            raise ValueError(f"precision must be one of {', '.join(PRECISION_NAMES)}, not {value!r}") from None


PrecisionLike = Union[Precision, str]
"""What a ``precision`` parameter accepts: a :class:`Precision` or its name."""

PRECISION_NAMES: tuple[str, ...] = tuple(precision.value for precision in Precision)
"""Every precision by name: ``--precision``'s choices."""


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


class Arithmetic:
    """``with Arithmetic(precision, device_type):`` the arithmetic of one call."""

    def __init__(self, precision: PrecisionLike, device_type: str) -> None:
        self.precision, self.device_type = Precision.parse(precision), device_type
        self.saved: list[tuple[Any, str, Any]] = []
        self.autocast: Optional[torch.autocast] = None

    def _set(self, owner: Any, name: str, value: Any) -> None:
        self.saved.append((owner, name, getattr(owner, name)))
        setattr(owner, name, value)

    def __enter__(self) -> Arithmetic:
        if self.precision in (Precision.FLOAT32, Precision.TF32):
            if _NEW_API:
                for backend in _backends():
                    on_gpu = backend in (torch.backends.cuda.matmul, _CUDNN_CONV)
                    self._set(
                        backend, "fp32_precision", "tf32" if self.precision is Precision.TF32 and on_gpu else "ieee"
                    )
            else:
                allow = self.precision is Precision.TF32
                self._set(torch.backends.cuda.matmul, "allow_tf32", allow)
                self._set(torch.backends.cudnn, "allow_tf32", allow)
        elif self.precision is Precision.BFLOAT16:
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
