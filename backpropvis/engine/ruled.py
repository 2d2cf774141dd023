"""Part 1 of the engine: what a backward node reads.

Every intercepted piecewise-linear activation becomes one :class:`RuledActivation` node
(and, with ``smooth="rule"``, every elementwise smooth one a :class:`RuledSmoothActivation`). Its backward
pass applies ``T = h(R) * g'(y)`` (Eq. 1) with the rule found in a :class:`RuleSlot`
when the pass runs, so one forward pass serves every method. The node holds the slot,
the activation's kind and parameters, and the one tensor PyTorch's own backward would
save; nothing that refers back to the call that made it, so the graph is freed by
reference counting as soon as the caller drops the logits.
"""

from __future__ import annotations

from typing import Any

import torch

from ..core.activations import PiecewiseLinear
from ..core.rules import Rule
from ..core.smooth_activations import SmoothCall

__all__ = ["RuleSlot", "RuledActivation", "RuledSmoothActivation"]


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


class RuledSmoothActivation(torch.autograd.Function):
    """An elementwise smooth activation f crossed with the slot's rule, g' = f' (Eq. 1):
    ``T = h(R) * f'(x)``.

    The forward pass computes f(x) natively (values identical to the model's own) and
    f'(x) with it, from one autograd pass through f (so f' is PyTorch's own derivative,
    and RReLU's random slopes are those of this very call); f'(x) is the one tensor
    kept. Each backward pass is then one multiplication (after ``h``).
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, call: SmoothCall, slot: RuleSlot) -> torch.Tensor:
        with torch.enable_grad():
            leaf = x.detach().requires_grad_(True)
            value = call.compute(leaf)
            (derivative,) = torch.autograd.grad(value, leaf, torch.ones_like(value))
        ctx.save_for_backward(derivative)
        ctx.slot = slot
        if call.inplace:
            ctx.mark_dirty(x)
            return x.copy_(value.detach())
        return value.detach()

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[Any, ...]:
        (derivative,) = ctx.saved_tensors
        slot = ctx.slot

        def times_derivative(grad: torch.Tensor, owned: bool) -> torch.Tensor:
            return grad.mul_(derivative) if owned and not slot.batched else grad * derivative

        return slot.rule.backward(grad_output, times_derivative), None, None
