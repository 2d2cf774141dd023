"""Part 1 of the engine: what a backward node reads.

Every intercepted activation becomes one :class:`RuledActivation` node. Its backward
pass applies ``T = h(R) * g'(y)`` (Eq. 1) with the rule found in a :class:`RuleSlot`
when the pass runs, so one forward pass serves every method. The node holds the slot,
the activation's kind and parameters, and the one tensor PyTorch's own backward would
save; nothing that refers back to the call that made it, so the graph is freed by
reference counting as soon as the caller drops the logits.
"""

from __future__ import annotations

from typing import Any

import torch

from ..activations import PiecewiseLinear
from ..rules import Rule

__all__ = ["RuleSlot", "RuledActivation"]


class RuleSlot:
    """The rule every :class:`RuledActivation` of one forward pass applies right now.

    Attributes:
        rule: the (h, g) rule of the backward pass that is running.
        batched: whether that pass batches targets (``is_grads_batched``): then the
            gradient arriving at a node is a batched tensor that must not be overwritten
            in place; otherwise a node may reuse the buffer ``h`` gave it.
    """

    __slots__ = ("rule", "batched")

    def __init__(self, rule: Rule) -> None:
        self.rule = rule
        self.batched = False


class RuledActivation(torch.autograd.Function):
    """A piecewise-linear activation whose backward pass applies the slot's rule (Eq. 1)."""

    @staticmethod
    def forward(
        ctx: Any, y: torch.Tensor, kind: PiecewiseLinear, params: tuple, inplace: bool, slot: RuleSlot
    ) -> torch.Tensor:
        out, saved = kind.forward(y, params, inplace)
        if inplace:
            ctx.mark_dirty(y)
        ctx.save_for_backward(saved)
        ctx.kind, ctx.params, ctx.slot = kind, params, slot
        return out

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[Any, ...]:
        (saved,) = ctx.saved_tensors
        kind, params, slot = ctx.kind, ctx.params, ctx.slot

        def times_derivative(grad: torch.Tensor, owned: bool) -> torch.Tensor:
            return kind.times_derivative(grad, saved, params, owned and not slot.batched)

        return slot.rule.backward(grad_output, times_derivative), None, None, None, None
