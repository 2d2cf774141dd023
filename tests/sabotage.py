"""Deliberately broken methods (``backpropvis.experiments.base.SABOTAGES``), installed by
patching the engine's per-rule backward passes, so that every caller of
``attribute_many`` (experiments, the streamed statistics, audit) gets the broken maps, and
every caller of ``backward_signals`` (sixt2020's convergence) the broken signals."""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch

import backpropvis.engine.attribution as attribution
import backpropvis.engine.signals as signals
from backpropvis.core.rules import SALIENCY
from backpropvis.experiments.base import SABOTAGES


@contextlib.contextmanager
def sabotaged(kind: str) -> Iterator[None]:
    """``with sabotaged("zero-gbp"):`` every engine call returns the broken maps."""
    if kind not in SABOTAGES:
        raise ValueError(f"unknown sabotage {kind!r}")
    original = attribution._maps_of

    def broken(rule, slot, plan, logits, leaves, *targets):
        if kind == "plain-gradient":
            return original(SALIENCY, slot, plan, logits, leaves, *targets)
        if kind == f"zero-{rule.name}":  # one map per input (leaf)
            return tuple(torch.zeros_like(maps) for maps in original(rule, slot, plan, logits, leaves, *targets))
        return original(rule, slot, plan, logits, leaves, *targets)

    original_signals = signals._signals_of

    def broken_signals(rule, slot, logits, outputs, seeds):
        if kind == "plain-gradient":
            return original_signals(SALIENCY, slot, logits, outputs, seeds)
        if kind == f"zero-{rule.name}":
            return [torch.zeros((len(seeds), *output.shape), dtype=output.dtype) for output in outputs]
        return original_signals(rule, slot, logits, outputs, seeds)

    attribution._maps_of = broken
    signals._signals_of = broken_signals
    try:
        yield
    finally:
        attribution._maps_of = original
        signals._signals_of = original_signals
