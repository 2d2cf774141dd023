"""Adversarial examples: the fast gradient sign method (FGSM, Goodfellow et al. 2014).

Figure 8 of the paper perturbs an image so that the trained network changes its
prediction, then asks whether each method's map changes with it.
"""

from __future__ import annotations

from typing import Callable, Optional, Union

import torch
import torch.nn.functional as F

from ..core.errors import InputError, TargetError

__all__ = ["fgsm", "fgsm_direction"]


def fgsm(
    model: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    label: Union[int, torch.Tensor],
    epsilon: float,
    *,
    targeted: bool = False,
    bounds: Optional[tuple[float, float]] = None,
) -> torch.Tensor:
    """One step of size ``epsilon`` along the sign of the input gradient of the
    cross-entropy loss ``L(x) = CE(model(x), label)``.

    Direction:
        - ``targeted=False`` (the paper's use): ``label`` is the class to move away
          from (usually the prediction), and the step goes *up* the loss:
          ``x + epsilon * sign(dL/dx)``.
        - ``targeted=True``: ``label`` is the class to move towards, and the step goes
          *down* its loss: ``x - epsilon * sign(dL/dx)``.

    Every element moves by exactly ``epsilon`` (or 0 where the gradient is exactly 0),
    so ``||x_adv - x||_inf = epsilon``; with ``bounds=(low, high)`` the result is then
    clipped to the valid range, which can shorten the step at the bounds.

    Args:
        model: maps [B, ...] inputs to [B, K] logits.
        x: [B, ...] floating-point inputs (not modified).
        label: an int (the same class for every sample) or LongTensor[B].
        epsilon: the step in the input's own units (>= 0).
        targeted: see Direction.
        bounds: optional (low, high) to clip the result to.

    Returns:
        [B, ...] the adversarial inputs, detached.
    """
    _check_batch(x)
    if not epsilon >= 0:
        raise InputError(f"epsilon must be a non-negative number, not {epsilon!r}")
    adversarial = x.detach() + epsilon * fgsm_direction(model, x, label, targeted=targeted)
    if bounds is not None:
        adversarial = adversarial.clamp(*bounds)
    return adversarial.detach()


def fgsm_direction(
    model: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    label: Union[int, torch.Tensor],
    *,
    targeted: bool = False,
) -> torch.Tensor:
    """The direction every FGSM step takes from ``x``: ``sign(dL/dx)`` (``-sign`` with
    ``targeted=True``), ``L`` and the arguments as in :func:`fgsm`. One forward and one
    backward pass serve every step size: ``fgsm(..., epsilon)`` is ``x + epsilon *
    fgsm_direction(...)``, then clipped.

    Returns:
        [B, ...] detached, with values in {-1, 0, 1}.
    """
    _check_batch(x)
    inputs = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        logits = model(inputs)
        labels = _labels(label, logits)
        loss = F.cross_entropy(logits, labels, reduction="sum")  # sum: each sample's own gradient
        (gradient,) = torch.autograd.grad(loss, inputs)
    return -gradient.sign() if targeted else gradient.sign()


def _check_batch(x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() < 2:
        raise InputError("fgsm needs a floating-point batch shaped [B, ...]")


def _labels(label: Union[int, torch.Tensor], logits: torch.Tensor) -> torch.Tensor:
    batch, classes = logits.shape
    labels = torch.as_tensor(label, device=logits.device)
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise TargetError(f"fgsm labels must be integer class indices, not {labels.dtype}")
    labels = labels.long().expand(batch) if labels.dim() == 0 else labels.long()
    if labels.shape != (batch,):
        raise TargetError(f"fgsm labels must be an int or shaped [{batch}], not {list(labels.shape)}")
    if int(labels.min()) < 0 or int(labels.max()) >= classes:
        raise TargetError(f"fgsm label out of range [0, {classes})")
    return labels
