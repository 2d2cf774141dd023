"""What one engine call returns: :class:`Attributions`, the maps by method and what the
shared forward pass computed (logits, targets, units, the smooth activations met)."""

from __future__ import annotations

from typing import Optional

import torch

from ..core.smooth_activations import SmoothReport
from ..core.targets import ResolvedUnit

__all__ = ["Attributions"]


class Attributions(dict):
    """Maps by method name, each Tensor[T, B, *input.shape[1:]], raw and signed.

    Besides the maps it carries what the shared forward pass computed:

    Attributes:
        logits: [B, K] the model's output (detached).
        targets: LongTensor[T, B] the logit index behind every map; -1 in a unit's row.
        units: row -> :class:`~backpropvis.core.targets.ResolvedUnit` (the channel, neuron and
            activation per sample) for every unit target.
        smooth: the smooth mode and what it touched (:class:`SmoothReport`): smooth
            activations crossed with the rule, those let through with their true
            gradient, and the gates met, each as "function in module 'path'".
        passed_through: ``smooth.passed_through`` (smooth activations and hidden modules
            let through with their true gradient, only with ``smooth="gradient"``).
    """

    def __init__(
        self,
        maps: dict,
        logits: torch.Tensor,
        targets: torch.Tensor,
        smooth: SmoothReport,
        units: Optional[dict[int, ResolvedUnit]] = None,
    ):
        super().__init__(maps)
        self.logits = logits
        self.targets = targets
        self.smooth = smooth
        self.units = dict(units or {})

    @property
    def passed_through(self) -> tuple[str, ...]:
        return self.smooth.passed_through
