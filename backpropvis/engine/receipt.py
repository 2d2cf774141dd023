"""What a lower precision did to the maps: the receipt of a run at TF32 or bfloat16.

A run at ``precision="tf32"`` or ``"bfloat16"`` is fast, and its maps may differ from
the exact ones: a map is a long product of small signed terms, and bfloat16 keeps 8
bits of each (on EfficientNet-Lite0 saliency's cosine to float32 fell to 0.53 on an
H200 while GBP's stayed at 0.98). :func:`precision_receipt` recomputes one batch's
maps in exact float32 (:func:`~backpropvis.engine.attribute_many` with
``precision="float32"``, for the same target logits) and measures, per method, the
cosine of every low-precision map to its float32 map: the minimum and the median over
the batch's maps (targets x images). A method whose minimum falls under ``threshold``
(:data:`DEFAULT_THRESHOLD`) is named by :meth:`PrecisionReceipt.warnings`.

Commands compute it on their first batch only (one float32 pass more, once) and store
it with their results.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Sequence

import torch

from ..core.errors import BackpropvisError
from ..core.metrics import cosine_similarity
from ..core.rules import Rule
from .attribution import Attributions, attribute_many
from .precision import Precision, PrecisionLike

__all__ = [
    "RECEIPT_PRECISIONS",
    "DEFAULT_THRESHOLD",
    "MethodCosine",
    "PrecisionReceipt",
    "needs_receipt",
    "check_threshold",
    "precision_receipt",
]

RECEIPT_PRECISIONS: tuple[str, ...] = ("tf32", "bfloat16")
"""The precisions whose maps get a receipt (the others are exact float32, or PyTorch's flags)."""

DEFAULT_THRESHOLD = 0.95
"""The lowest cosine to float32 a method's maps may reach before a command warns."""


@dataclass(frozen=True)
class MethodCosine:
    """One method's cosines to float32 over a batch's maps: ``minimum`` and ``median``."""

    method: str
    minimum: float
    median: float


@dataclass(frozen=True)
class PrecisionReceipt:
    """Per method, how close the maps at ``precision`` came to exact float32.

    Attributes:
        precision: "tf32" or "bfloat16".
        threshold: the cosine under which a method is named.
        maps: maps compared per method (targets x images of the batch).
        methods: one :class:`MethodCosine` per method, in the run's order.
    """

    precision: str
    threshold: float
    maps: int
    methods: tuple[MethodCosine, ...]

    def below(self) -> tuple[str, ...]:
        """The methods whose minimum cosine is under the threshold."""
        return tuple(entry.method for entry in self.methods if not entry.minimum >= self.threshold)

    def warnings(self) -> list[str]:
        """One line per method under the threshold, naming it."""
        return [
            f"at {self.precision} the {entry.method} maps differ from float32: cosine as low as "
            f"{entry.minimum:.3f} (median {entry.median:.3f}) on the first batch, under {self.threshold:g}; "
            "float32 gives the exact maps"
            for entry in self.methods
            if entry.method in self.below()
        ]

    def summary_line(self) -> str:
        """The receipt in one line: every method's minimum and median cosine."""
        methods = "; ".join(
            f"{entry.method} min {entry.minimum:.3f}, median {entry.median:.3f}" for entry in self.methods
        )
        return f"precision receipt ({self.precision} against float32, first batch, {self.maps} maps): {methods}"

    def lines(self) -> list[str]:
        """The receipt as text: one line per method."""
        head = f"precision receipt ({self.precision} against float32, first batch, {self.maps} maps per method):"
        return [head] + [
            f"  {entry.method:>10}  cosine min {entry.minimum:.4f}  median {entry.median:.4f}"
            + ("  UNDER " + f"{self.threshold:g}" if entry.method in self.below() else "")
            for entry in self.methods
        ]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: what metrics.json, audit.json, summary.json and the store record."""
        return {**asdict(self), "methods": [asdict(entry) for entry in self.methods], "below": list(self.below())}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PrecisionReceipt:
        """The inverse of :meth:`as_dict`."""
        methods = tuple(MethodCosine(entry["method"], entry["minimum"], entry["median"]) for entry in data["methods"])
        return cls(data["precision"], float(data["threshold"]), int(data["maps"]), methods)


def needs_receipt(precision: PrecisionLike) -> bool:
    """Whether maps at ``precision`` get a receipt (TF32 and bfloat16)."""
    return Precision.parse(precision).value in RECEIPT_PRECISIONS


def check_threshold(threshold: float) -> float:
    """``threshold`` when it is a cosine in (0, 1].

    Raises:
        BackpropvisError: for any other value.
    """
    if not 0.0 < threshold <= 1.0:
        raise BackpropvisError(f"`receipt_threshold` is a cosine in (0, 1], not {threshold}")
    return float(threshold)


def precision_receipt(
    model: Any,
    inputs: torch.Tensor,
    attributions: Attributions,
    methods: Sequence[Rule],
    precision: PrecisionLike,
    *,
    threshold: float = DEFAULT_THRESHOLD,
) -> PrecisionReceipt:
    """The receipt of ``attributions``, computed at ``precision`` from ``inputs``.

    Args:
        model: the model the maps came from.
        inputs: [B, *shape] the inputs of that call (or its first B images).
        attributions: that call's result; its maps [T, B', ...] and targets [T, B']
            are cut to the first B images.
        methods: the rules of the maps to compare (keys of ``attributions``).
        precision: the precision of ``attributions`` ("tf32" or "bfloat16").
        threshold: the cosine under which a method is named (:func:`check_threshold`).

    The float32 pass treats smooth activations as the model declares
    (:func:`~backpropvis.engine.attribute_many`'s default), as the commands' own calls do.

    Returns:
        :class:`PrecisionReceipt`; a pair of maps that are both zero counts as cosine 1.
    """
    threshold = check_threshold(threshold)
    count = len(inputs)
    targets = attributions.targets[:, :count]
    exact = attribute_many(model, inputs, list(targets), list(methods), precision="float32")
    entries = []
    for rule in methods:
        low, high = attributions[rule.name][:, :count], exact[rule.name]
        cosine = cosine_similarity(low, high).flatten()
        both_zero = (_norms(low) == 0) & (_norms(high) == 0)
        cosine = torch.where(both_zero, torch.ones_like(cosine), cosine).cpu()
        entries.append(MethodCosine(rule.name, float(cosine.min()), float(cosine.quantile(0.5))))
    return PrecisionReceipt(Precision.parse(precision).value, threshold, int(targets.numel()), tuple(entries))


def _norms(maps: torch.Tensor) -> torch.Tensor:
    """[T, B, ...] -> [T * B] L2 norms."""
    return maps.reshape(maps.shape[0] * maps.shape[1], -1).double().norm(dim=-1)
