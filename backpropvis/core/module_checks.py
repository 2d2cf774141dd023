"""What kind of module a model is, where it changes what the engine can do with it.

- Modules that compute differently in training mode (batch statistics, random masks):
  maps then change between calls, and BatchNorm's running statistics move.
- Compiled modules (``torch.compile``, ``module.compile()``) and TorchScript modules:
  their activations run where the engine's interceptor cannot see them.

One home for these checks, used by the engine (a warning, a refusal) and by the model
loader of the command line (eval mode, an early one-line refusal).
"""

from __future__ import annotations

import sys
from typing import Any, Optional

import torch
from torch import nn

from .errors import ModelError

__all__ = ["TRAINING_DEPENDENT", "training_dependent_modules", "hidden_kind", "refuse_compiled"]

TRAINING_DEPENDENT: tuple[type, ...] = (
    nn.modules.batchnorm._BatchNorm,
    nn.modules.instancenorm._InstanceNorm,
    nn.modules.dropout._DropoutNd,
    nn.AlphaDropout,
    nn.FeatureAlphaDropout,
)
"""Modules that compute differently in training mode."""


def training_dependent_modules(model: nn.Module) -> list[str]:
    """ "Type 'path'" of every submodule of ``model`` that is in training mode and computes
    differently there (BatchNorm, Dropout, ...), in module order."""
    return [
        f"{type(module).__name__} '{name or type(model).__name__}'"
        for name, module in model.named_modules()
        if module.training and isinstance(module, TRAINING_DEPENDENT)
    ]


def hidden_kind(module: Any) -> Optional[str]:
    """ "TorchScript module" or "compiled module" when ``module``'s activations run where
    the interceptor cannot see them, else None."""
    if isinstance(module, torch.jit.ScriptModule):
        return "TorchScript module"
    if getattr(module, "_compiled_call_impl", None) is not None or _is_optimized_module(module):
        return "compiled module"
    if hasattr(module, "_torchdynamo_orig_callable"):  # a function compiled with torch.compile
        return "compiled module"
    return None


def _is_optimized_module(module: Any) -> bool:
    eval_frame = sys.modules.get("torch._dynamo.eval_frame")  # never imported unless torch.compile ran
    return eval_frame is not None and isinstance(module, eval_frame.OptimizedModule)


def refuse_compiled(model: Any, name: Optional[str] = None) -> None:
    """Raise :class:`ModelError` in one line, naming the fix, if ``model`` is compiled."""
    if hidden_kind(model) == "compiled module":
        raise ModelError(
            f"{name or type(model).__name__} is compiled with torch.compile, which hides its activations from "
            "the engine; pass the uncompiled module (for a compiled module: model._orig_mod)"
        )
