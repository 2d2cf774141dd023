"""Which logit each map is computed for: target specifications, parsed and resolved.

One home for the three things every caller of the engine needs: reading targets from
text (``"max,random,281"``), drawing "a random logit other than a given one" uniformly,
and turning target specifications into a LongTensor of logit indices.
"""

from __future__ import annotations

import numbers
from typing import Callable, Optional, Sequence, Union

import torch

from .errors import TargetError

__all__ = ["Target", "TARGET_NAMES", "parse_targets", "random_other_logits", "other_logit", "resolve_targets"]

Target = Union[int, str, torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]
"""An int (the same logit for every sample), a LongTensor[B] (one per sample), a name, or a
function of the logits [B, K] returning a LongTensor[B] (decided after the forward pass)."""

TARGET_NAMES: dict[str, str] = {
    "max": "each sample's arg-max logit (the predicted class)",
    "random": "a logit drawn uniformly from the K - 1 that are not the sample's max",
}
"""Target names, with what they mean."""


def parse_targets(text: str) -> list[Target]:
    """``"max,random,281"`` -> ``["max", "random", 281]``.

    Raises:
        TargetError: for an entry that is neither an integer nor a target name, or no entry.
    """
    targets: list[Target] = []
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        if entry.lstrip("-").isdigit():
            targets.append(int(entry))
        elif entry.lower() in TARGET_NAMES:
            targets.append(entry.lower())
        else:
            raise TargetError(f"unknown target {entry!r}; use an index or one of {', '.join(TARGET_NAMES)}")
    if not targets:
        raise TargetError("no targets given")
    return targets


def random_other_logits(excluded: torch.Tensor, num_classes: int, generator: torch.Generator) -> torch.Tensor:
    """For each entry of ``excluded``, a logit drawn uniformly from the other K - 1.

    Args:
        excluded: LongTensor[B] (any device), the logit each draw must avoid.
        num_classes: K, at least 2.
        generator: a CPU generator; B integers are drawn from it.

    Returns:
        LongTensor[B] on ``excluded.device``, never equal to ``excluded``.
    """
    if num_classes < 2:
        raise TargetError(f"a random other logit needs a model with at least two logits, this one has {num_classes}")
    offset = torch.randint(0, num_classes - 1, excluded.shape, generator=generator).to(excluded.device)
    return other_logit(offset, excluded)


def other_logit(offset: torch.Tensor, excluded: torch.Tensor) -> torch.Tensor:
    """An offset drawn uniformly from [0, K - 1) -> a logit of [0, K) other than ``excluded``
    (it skips the excluded logit and stays uniform). Shapes: [B] x [B] -> [B]."""
    return offset + (offset >= excluded).long()


def resolve_targets(
    targets: Sequence[Target],
    logits: torch.Tensor,
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """Turn target specifications into logit indices.

    Args:
        targets: T entries, each an int (the same logit for every sample), a
            LongTensor[B] (one logit per sample), ``"max"`` (each sample's arg-max
            logit) or ``"random"`` (a logit drawn uniformly from the K - 1 logits that
            are not the sample's max, from ``generator``).
        logits: [B, K] the model's output.
        generator: a CPU :class:`torch.Generator` for ``"random"``; when omitted, one
            seeded with 0 is used, so results stay reproducible.

    Returns:
        LongTensor[T, B] on ``logits.device``.

    Raises:
        TargetError: for an index outside ``[0, K)``, a tensor not shaped [B], or an
            unknown name.
    """
    batch, num_classes = logits.shape
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    predicted = logits.detach().argmax(dim=1)
    resolved = []
    for target in targets:
        if isinstance(target, str):
            name = target.strip().lower()
            if name == "max":
                resolved.append(predicted)
            elif name == "random":
                resolved.append(random_other_logits(predicted, num_classes, generator))
            else:
                raise TargetError(f"unknown target {target!r}; use an index or one of {', '.join(TARGET_NAMES)}")
        elif isinstance(target, torch.Tensor):
            if target.dtype in (torch.bool,) or target.is_floating_point() or target.is_complex():
                raise TargetError(f"a target tensor must hold integer indices, not {target.dtype}")
            if target.dim() == 0:
                target = target.expand(batch)
            if target.shape != (batch,):
                raise TargetError(f"a target tensor must be shaped [{batch}], not {list(target.shape)}")
            _check_range(target, num_classes)
            resolved.append(target.to(logits.device, torch.long))
        elif isinstance(target, numbers.Integral) and not isinstance(target, bool):  # int, numpy integers
            _check_range(torch.tensor([int(target)]), num_classes)
            resolved.append(torch.full((batch,), int(target), dtype=torch.long, device=logits.device))
        elif callable(target):
            resolved.append(_called(target, logits.detach()))
        else:
            raise TargetError(f"a target must be an int, a LongTensor, 'max' or 'random', not {target!r}")
    if not resolved:
        raise TargetError("no targets given")
    return torch.stack(resolved)


def _called(target: Callable[[torch.Tensor], torch.Tensor], logits: torch.Tensor) -> torch.Tensor:
    """A function target's indices [B], checked for shape and dtype here and for range on the device."""
    batch, num_classes = logits.shape
    indices = target(logits)
    if not isinstance(indices, torch.Tensor) or indices.shape != (batch,) or indices.is_floating_point():
        raise TargetError(f"a target function must return integer indices shaped [{batch}], not {indices!r}")
    indices = indices.to(logits.device, torch.long)
    if indices.device.type == "cpu":
        _check_range(indices, num_classes)
    else:  # on an accelerator the check is queued with the work: no wait per batch
        inside = ((indices >= 0) & (indices < num_classes)).all()
        torch._assert_async(inside, f"a target function's index is outside the {num_classes} logits")
    return indices


def _check_range(indices: torch.Tensor, num_classes: int) -> None:
    low, high = int(indices.min()), int(indices.max())
    if low < 0 or high >= num_classes:
        bad = low if low < 0 else high
        raise TargetError(f"target {bad} is outside the model's {num_classes} logits (0 to {num_classes - 1})")
