"""Part 3 of the engine: a frozen plan for the backward passes, computed from the record.

The backward passes run in two stages, split at an activation output that every path
from the input to the logits crosses (a graph cut). From the logits down to the cut,
targets are batched through ``torch.autograd.grad(..., is_grads_batched=True)``: that
top of the network holds the big dense layers (VGG-16's 25088 x 4096 fc1), whose
weights are then read once for all targets, and only small activations, so the batch
costs little memory. From the cut down to the input, ``targets_per_pass`` maps go per
pass: with one target per pass the peak memory stays that of one plain forward plus
one backward, whatever the number of targets.

The cut is the earliest of the last activations above which the graph holds no
convolution (batching a convolution's backward over targets only loops over them, at
a cost in memory) and whose outputs, over a few batched targets, fit in
:data:`TOP_STAGE_BYTES`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence, Union

import torch

from .recording import ForwardRecord

__all__ = ["BackwardPlan", "plan_backward", "region_above", "TOP_STAGE_BYTES", "DEFAULT_MAX_BATCH"]

DEFAULT_MAX_BATCH = 1
"""Maps (targets x batch) per backward pass below the cut, unless ``max_batch`` says
otherwise: one target per pass keeps the peak memory of one plain backward."""

TOP_STAGE_BYTES = 64 << 20
"""Bytes of gradient at the cut's activation output held per batch of targets."""


@dataclass(frozen=True)
class BackwardPlan:
    """How the backward passes of one call run.

    Attributes:
        cut: the activation output the passes are split at, or None (one stage).
        targets_above_cut: targets batched per pass from the logits down to the cut.
        targets_per_pass: targets per pass from the cut (or the logits) down to the input.
    """

    cut: Optional[torch.Tensor]
    targets_above_cut: int
    targets_per_pass: int


def plan_backward(
    record: ForwardRecord,
    logits: torch.Tensor,
    inputs: Union[torch.Tensor, Sequence[torch.Tensor]],
    num_targets: int,
    *,
    max_batch: int = DEFAULT_MAX_BATCH,
    batchable: bool = True,
) -> BackwardPlan:
    """The plan for ``num_targets`` maps of every rule from ``logits`` [B, K] to ``inputs``.

    Args:
        record: what the forward pass recorded.
        logits: [B, K] the forward pass's output (with its graph).
        inputs: [B, ...] the leaf the maps are taken with respect to, or several such
            leaves (a model of several inputs).
        num_targets: T, maps per rule.
        max_batch: maps (targets x batch) per pass below the cut.
        batchable: False when a layer cannot batch its backward over targets (e.g. one
            drawing its weights on the fly): then one target per pass everywhere.
    """
    if not batchable:
        return BackwardPlan(None, 1, 1)
    leaves = _leaves(inputs)
    per_pass = max(1, max_batch // len(leaves[0]))
    batched = max(2, min(num_targets, 8))
    chosen: Optional[torch.Tensor] = None
    largest = chosen_largest = 0
    for output in reversed(record.activation_outputs()):
        largest = max(largest, output.numel() * output.element_size())
        if largest * batched > TOP_STAGE_BYTES:
            break
        region = region_above(logits, output, leaves)
        if region is None or any(record.is_convolution(node) for node in region):
            break
        chosen, chosen_largest = output, largest
    if chosen is None:
        return BackwardPlan(None, per_pass, per_pass)
    return BackwardPlan(chosen, max(1, TOP_STAGE_BYTES // chosen_largest), per_pass)


def _leaves(inputs: Union[torch.Tensor, Sequence[torch.Tensor]]) -> tuple[torch.Tensor, ...]:
    return (inputs,) if isinstance(inputs, torch.Tensor) else tuple(inputs)


def region_above(
    logits: torch.Tensor, cut: torch.Tensor, inputs: Union[torch.Tensor, Sequence[torch.Tensor]]
) -> Optional[list[Any]]:
    """The autograd nodes between ``logits`` and the activation output ``cut``, or None
    unless every path from ``inputs`` (one leaf or several) to ``logits`` crosses ``cut``
    (a graph cut, so gradients can be taken in two stages through it)."""
    if cut.grad_fn is None:
        return None
    leaves = _leaves(inputs)
    target, seen, stack, reached, region = cut.grad_fn, set(), [logits.grad_fn], False, []
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        if node is target:
            reached = True
            continue
        variable = getattr(node, "variable", None)
        if variable is not None and any(variable is leaf for leaf in leaves):
            return None
        region.append(node)
        stack.extend(next_node for next_node, _ in node.next_functions)
    return region if reached else None
