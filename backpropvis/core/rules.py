"""The backward rule of an activation: the pair (h, g) of the paper's Eq. 1-2.

Crossing the i-th activation of a layer on the way back, with ``y`` the activation's
input (pre-activation) and ``R`` the gradient arriving from above, every method
of the family passes down

    T = h(R) * g'(y)                                                    (Eq. 1)

with h the identity or ``max(., 0)`` and g' the activation's own derivative or 1
(Eq. 2). The three classic methods are the three non-trivial combinations:

=================  ===========  ======================
method             h            g'
=================  ===========  ======================
saliency           identity     activation derivative
DeconvNet          max(., 0)    1
Guided Backprop    max(., 0)    activation derivative
=================  ===========  ======================

A :class:`Rule` is a small immutable value. It knows nothing about models or targets;
the engine (:mod:`backpropvis.engine`) applies it at every activation it intercepts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal, Sequence, Union

import torch

from .errors import MethodError

GradientTransform = Literal["identity", "relu"]
ActivationDerivative = Literal["activation", "one"]

__all__ = [
    "Rule",
    "SALIENCY",
    "DECONVNET",
    "GUIDED_BACKPROP",
    "LINEAR",
    "RULES",
    "PAPER_METHODS",
    "METHOD_LABELS",
    "resolve_rule",
    "resolve_rules",
]


@dataclass(frozen=True)
class Rule:
    """One backward rule of the family of Eq. 1-2.

    Args:
        name: how results are keyed and labelled ("saliency", "gbp", ...).
        h: ``"identity"`` passes the arriving gradient as it is; ``"relu"`` keeps only
            its positive part, ``max(R, 0)``.
        g: ``"activation"`` multiplies by the activation's derivative at the forward
            input (the forward mask: 1 where a ReLU was active, the slope for a
            LeakyReLU, 0 where a ReLU6 or Hardtanh saturated); ``"one"`` ignores the
            forward pass entirely (g is the identity, so g' = 1).
    """

    name: str
    h: GradientTransform
    g: ActivationDerivative

    def __post_init__(self) -> None:
        if self.h not in ("identity", "relu"):
            raise ValueError(f"rule {self.name!r}: h must be 'identity' or 'relu', not {self.h!r}")
        if self.g not in ("activation", "one"):
            raise ValueError(f"rule {self.name!r}: g must be 'activation' or 'one', not {self.g!r}")

    @property
    def is_true_gradient(self) -> bool:
        """Whether this rule leaves the backward pass untouched (plain saliency)."""
        return self.h == "identity" and self.g == "activation"

    def backward(
        self, grad_output: torch.Tensor, times_derivative: Callable[[torch.Tensor, bool], torch.Tensor]
    ) -> torch.Tensor:
        """Eq. 1: ``T = h(R) * g'(y)``.

        Args:
            grad_output: R, the gradient arriving at the activation's output, any shape.
            times_derivative: ``(t, owned) -> t * g'(y)``, multiplying a tensor shaped like
                R by the activation's derivative at its forward input (the forward mask);
                ``owned`` says that ``t`` is a fresh tensor the multiplication may overwrite
                (R itself is never overwritten). Called only when ``g == "activation"``.
                E.g. ``lambda t, owned: t * (y > 0)`` for a ReLU.

        Returns:
            T, shaped like ``grad_output``.
        """
        if self.h == "relu":
            transformed, owned = grad_output.clamp_min(0), True
        else:
            transformed, owned = grad_output, False
        return times_derivative(transformed, owned) if self.g == "activation" else transformed


SALIENCY = Rule("saliency", h="identity", g="activation")
"""Simonyan et al. 2013: the true gradient, ``T = R * 1[y > 0]`` for a ReLU."""

DECONVNET = Rule("deconvnet", h="relu", g="one")
"""Zeiler & Fergus 2014: the backward ReLU only, ``T = max(R, 0)``."""

GUIDED_BACKPROP = Rule("gbp", h="relu", g="activation")
"""Springenberg et al. 2014: both, ``T = max(R, 0) * 1[y > 0]``."""

LINEAR = Rule("linear", h="identity", g="one")
"""The ablation where every activation is crossed as if it were the identity."""

RULES: dict[str, Rule] = {rule.name: rule for rule in (SALIENCY, DECONVNET, GUIDED_BACKPROP, LINEAR)}
"""Every named rule, by name. ``"guided_backprop"`` is accepted as an alias of ``"gbp"``."""

PAPER_METHODS: tuple[str, ...] = (SALIENCY.name, DECONVNET.name, GUIDED_BACKPROP.name)
"""The paper's three methods in the row order of its Figures 2 and 8 and the bar order of
Figure 7 (Figures 4 and 6 show them in reverse): the default ``methods`` of every function
and command that computes maps."""

METHOD_LABELS: dict[str, str] = {
    SALIENCY.name: "Saliency",
    DECONVNET.name: "DeconvNet",
    GUIDED_BACKPROP.name: "GBP",
    LINEAR.name: "Linear",
}
"""How figures, tables and reports name each rule."""

_ALIASES = {"guided_backprop": "gbp", "guidedbackprop": "gbp", "deconv": "deconvnet"}


def resolve_rule(method: Union[str, Rule]) -> Rule:
    """Return the :class:`Rule` named by ``method`` (a name or a rule itself).

    Raises:
        MethodError: for an unknown name, listing the known ones.
    """
    if isinstance(method, Rule):
        return method
    if isinstance(method, str):
        key = method.strip().lower()
        key = _ALIASES.get(key, key)
        if key in RULES:
            return RULES[key]
    raise MethodError(f"unknown method {method!r}; choose one of {', '.join(RULES)} or pass a Rule")


def resolve_rules(methods: Sequence[Union[str, Rule]]) -> list[Rule]:
    """The rules named by ``methods``, in order (maps are keyed by rule name).

    Raises:
        MethodError: for no method at all, an unknown name, or two rules with one name.
    """
    rules = [resolve_rule(method) for method in methods]
    if not rules:
        raise MethodError("no methods given")
    names = [rule.name for rule in rules]
    if len(set(names)) != len(names):
        raise MethodError(f"methods must have distinct names, got {', '.join(names)}")
    return rules
