"""Activations that are not piecewise-linear, sorted into smooth activations and gates.

The rules of Eq. 1-2 are written for piecewise-linear activations (:mod:`.activations`).
Every other nonlinearity a model may call falls in one of two groups:

- **Elementwise smooth activations** f (SiLU/Swish, GELU with either approximation,
  Hardswish, Mish, Softplus, ELU, SELU, CELU, LogSigmoid, Softsign, Tanhshrink, the
  shrinkages and RReLU): a layer's nonlinearity, in the place a ReLU holds in the
  paper's networks. What the engine does there is the user's choice, the ``smooth``
  mode (:data:`SMOOTH_MODES`): ``"refuse"`` (an error naming the option), ``"gradient"``
  (the true gradient, f'(x) R, whatever the method) or ``"rule"`` (the method's rule
  with g' = f': ``T = h(R) * f'(x)``, Eq. 1; see docs/smooth-activations.md).
- **Gates** (sigmoid, hard-sigmoid, tanh, softmax and its log/min variants, GLU, and
  the attention functions that contain a softmax): functions whose output scales
  another branch (squeeze-excite, attention weights, LSTM-style gates) rather than
  replacing a layer's pre-activation. A gate is recognised by its function alone: these
  functions are always gates, whatever their place in the model. They keep their true
  gradient in every mode and are listed, so a map says which gates it crossed.

A SiLU written by hand as ``x * torch.sigmoid(x)`` is therefore a product with a gate
(true gradient), not an activation: use ``nn.SiLU`` / ``F.silu`` for the rule to apply.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F

from .errors import MethodError

__all__ = [
    "SMOOTH_MODES",
    "SmoothCall",
    "SMOOTH_ACTIVATIONS",
    "GATES",
    "SmoothReport",
    "resolve_smooth",
]

SMOOTH_MODES: tuple[str, ...] = ("refuse", "gradient", "rule")
"""What the engine does at an elementwise smooth activation: refuse it, pass its true
gradient, or apply the method's rule with g' = f'."""


@dataclass(frozen=True)
class SmoothCall:
    """One call of a smooth activation, taken apart.

    Attributes:
        input: x, the activation's input.
        compute: ``t -> f(t)`` out of place, with the call's own parameters (alpha,
            beta, approximation, RReLU's bounds and mode).
        inplace: whether the call writes f(x) into x.
    """

    input: torch.Tensor
    compute: Callable[[torch.Tensor], torch.Tensor]
    inplace: bool


def _python_parser(function: Callable) -> Callable[..., SmoothCall]:
    """For ``torch.nn.functional`` functions written in Python (``F.silu(input, inplace=False)``)."""
    signature = inspect.signature(function)

    def parse(*args: Any, **kwargs: Any) -> SmoothCall:
        bound = signature.bind(*args, **kwargs)
        arguments = dict(bound.arguments)
        x = arguments.pop("input")
        inplace = bool(arguments.pop("inplace", False))
        return SmoothCall(x, lambda t: function(t, **arguments), inplace)

    return parse


def _builtin_parser(out_of_place: Callable, inplace: bool) -> Callable[..., SmoothCall]:
    """For built-in functions (``torch._C._nn.silu``; ``torch._C._nn.silu_`` with ``inplace``)
    whose out-of-place twin takes the same arguments."""

    def parse(x: torch.Tensor, *args: Any, **kwargs: Any) -> SmoothCall:
        return SmoothCall(x, lambda t: out_of_place(t, *args, **kwargs), inplace)

    return parse


SMOOTH_ACTIVATIONS: dict[Callable, Callable[..., SmoothCall]] = {}
"""Intercepted function -> its argument parser (returning a :class:`SmoothCall`)."""

_PYTHON_FUNCTIONS = ("silu", "mish", "hardswish", "elu", "selu", "celu", "softsign", "tanhshrink", "rrelu")
for _name in _PYTHON_FUNCTIONS:
    _function = getattr(F, _name, None)
    if _function is not None and inspect.isfunction(_function):
        SMOOTH_ACTIVATIONS[_function] = _python_parser(_function)

_BUILTINS: tuple[tuple[Any, str], ...] = (
    (torch._C._nn, "gelu"),
    (torch._C._nn, "silu"),
    (torch._C._nn, "mish"),
    (torch._C._nn, "hardswish"),
    (torch._C._nn, "softplus"),
    (torch._C._nn, "elu"),
    (torch._C._nn, "log_sigmoid"),
    (torch._C._nn, "softshrink"),
    (torch, "selu"),
    (torch, "celu"),
    (torch, "rrelu"),
    (torch, "hardshrink"),
    (torch.Tensor, "hardshrink"),
)
for _namespace, _name in _BUILTINS:
    _out_of_place = getattr(_namespace, _name, None)
    if _out_of_place is None:
        continue
    SMOOTH_ACTIVATIONS.setdefault(_out_of_place, _builtin_parser(_out_of_place, inplace=False))
    _inplace = getattr(_namespace, _name + "_", None)
    if _inplace is not None:
        SMOOTH_ACTIVATIONS.setdefault(_inplace, _builtin_parser(_out_of_place, inplace=True))
for _alias in ("gelu", "softplus", "logsigmoid", "hardshrink", "softshrink", "elu_", "rrelu_", "selu_", "celu_"):
    # F.gelu is torch._C._nn.gelu, F.elu_ is torch._C._nn.elu_, ...: registered above
    assert getattr(F, _alias, None) is None or getattr(F, _alias) in SMOOTH_ACTIVATIONS, _alias


def _collect(*functions: Any) -> frozenset:
    return frozenset(function for function in functions if function is not None)


GATES: frozenset = _collect(
    *(getattr(F, name, None) for name in ("sigmoid", "hardsigmoid", "tanh", "softmax", "log_softmax", "softmin")),
    *(getattr(F, name, None) for name in ("glu", "scaled_dot_product_attention", "multi_head_attention_forward")),
    *(getattr(torch._C._nn, name, None) for name in ("hardsigmoid", "hardsigmoid_", "glu")),
    *(getattr(torch, name, None) for name in ("sigmoid", "sigmoid_", "tanh", "tanh_", "softmax", "log_softmax")),
    *(getattr(torch.Tensor, name, None) for name in ("sigmoid", "sigmoid_", "tanh", "tanh_", "softmax")),
    getattr(torch.Tensor, "log_softmax", None),
    getattr(torch.special, "expit", None),
    getattr(torch.special, "softmax", None),
    getattr(torch.special, "log_softmax", None),
)
"""Gates: they keep their true gradient in every mode and are listed."""


@dataclass(frozen=True)
class SmoothReport:
    """What one call did at the non-piecewise-linear functions of a forward pass.

    Attributes:
        mode: the smooth mode (one of :data:`SMOOTH_MODES`).
        rule_applied: smooth activations crossed with the method's rule (mode "rule"),
            as "function in module 'path'".
        passed_through: smooth activations (mode "gradient") and modules hiding their
            activations, crossed with their true gradient.
        gates: gates met, crossed with their true gradient (every mode).
    """

    mode: str
    rule_applied: tuple[str, ...] = ()
    passed_through: tuple[str, ...] = ()
    gates: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """For JSON: ``{"mode": ..., "rule_applied": [...], "passed_through": [...], "gates": [...]}``."""
        return {
            "mode": self.mode,
            "rule_applied": list(self.rule_applied),
            "passed_through": list(self.passed_through),
            "gates": list(self.gates),
        }

    def functions(self, kind: str) -> list[str]:
        """The distinct functions (without modules) of ``kind`` ("rule_applied",
        "passed_through" or "gates"), in the order first met."""
        names = (entry.split(" in module ")[0] for entry in getattr(self, kind))
        return list(dict.fromkeys(names))

    def sentence(self) -> str:
        """One line for pages and logs, e.g. "smooth activations: rule (g' = f') at
        torch.nn.functional.silu; gates with their true gradient: torch.sigmoid"."""
        said = {"refuse": "refused", "gradient": "true gradient", "rule": "rule (g' = f')"}[self.mode]
        parts = [f"smooth activations: {said}"]
        for kind, label in (("rule_applied", "at"), ("passed_through", "let through"), ("gates", "gates kept")):
            functions = self.functions(kind)
            if functions:
                parts.append(f"{label}: {', '.join(functions)}")
        return "; ".join(parts)


def resolve_smooth(smooth: Optional[str], strict: Optional[bool], declared: Optional[str] = None) -> str:
    """The smooth mode from the ``smooth`` and the older ``strict`` parameters.

    ``strict=True`` is ``smooth="refuse"`` and ``strict=False`` is ``smooth="gradient"``;
    neither given is the mode the model declares (``declared``: its
    ``model.smooth_activations``, as the commands set it), else ``"refuse"``.

    Raises:
        MethodError: an unknown mode, or ``strict`` and ``smooth`` that disagree.
    """
    implied = None if strict is None else ("refuse" if strict else "gradient")
    if smooth is None and implied is None and declared is not None:
        smooth = declared
    if smooth is None:
        return implied or "refuse"
    if smooth not in SMOOTH_MODES:
        raise MethodError(f"unknown `smooth` {smooth!r}; choose one of {', '.join(SMOOTH_MODES)}")
    if implied is not None and implied != smooth:
        raise MethodError(
            f"strict={strict} means `smooth` {implied}, which contradicts `smooth` {smooth}; give `smooth` alone"
        )
    return smooth
