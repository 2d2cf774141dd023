"""Deliberately broken methods (``backpropvis.experiments.base.SABOTAGES``), installed by
patching the engine's per-rule backward passes, so that every caller of
``attribute_many`` (experiments, the streamed statistics, audit) gets the broken maps."""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch

import backpropvis.engine.attribution as attribution
from backpropvis.experiments.base import SABOTAGES
from backpropvis.rules import SALIENCY


@contextlib.contextmanager
def sabotaged(kind: str) -> Iterator[None]:
    """``with sabotaged("zero-gbp"):`` every engine call returns the broken maps."""
    if kind not in SABOTAGES:
        raise ValueError(f"unknown sabotage {kind!r}")
    original = attribution._maps_of

    def broken(rule, slot, plan, logits, x, *targets):
        if kind == "plain-gradient":
            return original(SALIENCY, slot, plan, logits, x, *targets)
        if kind == f"zero-{rule.name}":
            return torch.zeros_like(original(rule, slot, plan, logits, x, *targets))
        return original(rule, slot, plan, logits, x, *targets)

    attribution._maps_of = broken
    try:
        yield
    finally:
        attribution._maps_of = original
