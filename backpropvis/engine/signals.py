"""The backward signal at every activation, under a rule, inside one call.

Where :func:`~backpropvis.engine.attribution.attribute_many` returns the backward pass's
end (the map at the input), :func:`backward_signals` returns what arrives at the output
of every ruled activation on the way down: the relevance vectors whose convergence Sixt
et al. (2020) measure. The forward pass runs once under
:class:`~.recording.RecordedForward`; each rule's backward passes start from the given
vectors at the logits (one-hot targets or random directions) and take the gradient with
respect to every activation output at once. The signals can be large (every hidden
layer, for every starting vector: S times the activations of one forward pass), so the
caller passes ``reduce``, applied to each layer's signals inside the call: only its
results leave the call, and the record, the graph and the signals are freed when it
returns (a caller bounds the memory by the batch it passes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence, Union

import torch

from ..core.errors import InputError
from ..core.rules import Rule, resolve_rules
from ..core.smooth_activations import resolve_smooth
from .precision import Arithmetic, Precision, PrecisionLike
from .recording import ForwardRecord, RecordedForward
from .ruled import RuleSlot

__all__ = ["Signals", "backward_signals"]

Reduce = Callable[[torch.Tensor], torch.Tensor]
"""One layer's signals [S, B, *activation shape] -> anything small (e.g. [B])."""


@dataclass(frozen=True)
class Signals:
    """What :func:`backward_signals` returns.

    Attributes:
        layers: where each activation ran (its module's path; a module's second call is
            "path #2", and so on), in forward order.
        values: method -> one ``reduce`` result per layer, in the order of ``layers``.
        logits: [B, K] the model's output (detached).
    """

    layers: tuple[str, ...]
    values: dict[str, list[torch.Tensor]]
    logits: torch.Tensor


class _NamedRecord(ForwardRecord):
    """A record that also keeps each activation's output (a strong reference: the gradient
    with respect to an output nothing else keeps, e.g. one read only by a convolution
    whose weights need no gradient, could not be asked for) and where it ran."""

    def __init__(self, smooth: str, model_name: str) -> None:
        super().__init__(smooth, model_name)
        self.kept: list[tuple[str, torch.Tensor]] = []

    def add_activation_output(self, output: torch.Tensor) -> None:
        super().add_activation_output(output)
        where = self.where()
        calls = sum(1 for name, _ in self.kept if name == where or name.startswith(f"{where} #"))
        self.kept.append((f"{where} #{calls + 1}" if calls else where, output))

    def named_outputs(self) -> list[tuple[str, torch.Tensor]]:
        """(where, output) of every activation, in forward order."""
        return list(self.kept)


def _signals_of(
    rule: Rule, slot: RuleSlot, logits: torch.Tensor, outputs: Sequence[torch.Tensor], seeds: torch.Tensor
) -> list[torch.Tensor]:
    """One rule's signals: per activation output, [S, B, *shape] (one backward pass per starting vector)."""
    slot.rule, slot.batched = rule, False
    per_seed = [
        torch.autograd.grad(logits, list(outputs), seed, retain_graph=True, allow_unused=True, materialize_grads=True)
        for seed in seeds
    ]
    return [torch.stack([grads[index] for grads in per_seed]) for index in range(len(outputs))]


def backward_signals(
    model: Callable[[torch.Tensor], torch.Tensor],
    inputs: torch.Tensor,
    seeds: Union[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]],
    methods: Sequence[Union[str, Rule]],
    reduce: Reduce,
    *,
    smooth: Optional[str] = None,
    precision: PrecisionLike = Precision.DEFAULT,
    with_input: bool = False,
) -> Signals:
    """Every rule's backward signal at every activation output, reduced per layer.

    Args:
        model: as for ``attribute_many`` (an ``nn.Module`` in eval mode, or a callable).
        inputs: [B, *shape] floating point.
        seeds: [S, B, K] the S vectors each backward pass starts from at the logits, or a
            function of the logits [B, K] returning them (e.g. one-hot predicted classes).
        methods: rule names or rules.
        reduce: applied to each layer's signals [S, B, *activation shape].
        smooth, precision: as for ``attribute_many``.
        with_input: add the signal at the input (the map) as a last layer named "input".

    Returns:
        :class:`Signals`.

    Raises:
        InputError: seeds not shaped [S, B, K].
    """
    rules = resolve_rules(list(methods))
    mode = resolve_smooth(smooth, None, getattr(model, "smooth_activations", None))
    record = _NamedRecord(mode, type(model).__name__)
    slot = RuleSlot(rules[0])
    with torch.inference_mode(False), Arithmetic(precision, inputs.device.type):
        x = (inputs.clone() if inputs.is_inference() else inputs.detach()).requires_grad_(True)
        with torch.enable_grad(), RecordedForward(model, record, slot):
            logits = model(x)
        starts = seeds(logits.detach()) if callable(seeds) else seeds
        if starts.dim() != 3 or starts.shape[1:] != logits.shape:
            raise InputError(f"seeds must be [S, {len(x)}, {logits.shape[-1]}], not {list(starts.shape)}")
        named = record.named_outputs() + ([("input", x)] if with_input else [])
        outputs = [output for _, output in named]
        values = {
            rule.name: [reduce(signal) for signal in _signals_of(rule, slot, logits, outputs, starts.to(logits))]
            for rule in rules
        }
        return Signals(tuple(name for name, _ in named), values, logits.detach())
