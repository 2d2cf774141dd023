"""What a lower precision did to the maps: the receipt of a run at TF32 or bfloat16.

A run at ``precision="tf32"`` or ``"bfloat16"`` is fast, and its maps may differ from
the exact ones: a map is a long product of small signed terms, and bfloat16 keeps 8
bits of each (on EfficientNet-Lite0 saliency's cosine to float32 fell to 0.53 on an
H200 while GBP's stayed at 0.98). :func:`receipt_of` makes one engine call again in
exact float32 (:func:`~backpropvis.engine.attribute_many` with ``precision="float32"``,
for the same resolved targets: logits and units) and measures, per method, the cosine of
every low-precision map to its float32 map: the minimum and the median over the call's
maps (targets x images). A method whose minimum falls under ``threshold``
(:data:`DEFAULT_THRESHOLD`) is named by :meth:`PrecisionReceipt.warnings`.

Commands compute it for their first engine call at TF32 or bfloat16 only (one float32
pass more, once) and store it with their results: they run their work under
:func:`collect_receipt`, an engine observer (:mod:`.observers`), so that a receipt needs
no change where the engine is called (an experiment, a sanity protocol, a layer's units).
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass, replace
from typing import Any, Iterator, Optional

import torch

from ..core.errors import BackpropvisError
from ..core.metrics import cosine_similarity
from ..core.targets import Target, Unit
from .attribution import attribute_many
from .attributions import Attributions
from .observers import EngineCall, watching
from .precision import Precision, PrecisionLike

__all__ = [
    "RECEIPT_PRECISIONS",
    "DEFAULT_THRESHOLD",
    "MethodCosine",
    "PrecisionReceipt",
    "needs_receipt",
    "check_threshold",
    "receipt_of",
    "resolved_targets",
    "ReceiptCollector",
    "collect_receipt",
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

    def at_threshold(self, threshold: float) -> PrecisionReceipt:
        """The same cosines judged at ``threshold`` (a kept result read back by a run with another
        ``receipt_threshold``, like a claim judged anew)."""
        return replace(self, threshold=check_threshold(threshold))

    def notes(self) -> list[str]:
        """What a command's notes and pages say: :meth:`summary_line`, then :meth:`warnings`."""
        return [self.summary_line()] + self.warnings()

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


def receipt_of(
    call: EngineCall, threshold: float = DEFAULT_THRESHOLD, images: Optional[int] = None
) -> PrecisionReceipt:
    """The receipt of one engine call made at TF32 or bfloat16: its maps against exact float32.

    The call is made again with ``precision="float32"`` and every other setting of the call
    (model, extra forward arguments, smooth mode, ``max_batch``), for the targets it resolved:
    each logit row's indices (a "random" or "max" target is not drawn again) and each unit's
    channel and neuron per sample.

    Args:
        call: the call (:class:`~.observers.EngineCall`).
        threshold: the cosine under which a method is named (:func:`check_threshold`).
        images: compare the first ``images`` inputs only (a padded batch's real ones); None, or
            a call with extra forward arguments (which may be per sample): all of them.

    Returns:
        :class:`PrecisionReceipt`; a pair of maps that are both zero counts as cosine 1.
    """
    threshold = check_threshold(threshold)
    given, result = call.inputs, call.result
    count = given.batch if images is None or given.extra else min(images, given.batch)
    exact = _exact_maps(call, count)
    entries = []
    for rule in call.rules:
        low, high = _per_map(result[rule.name], len(result.logits), count), _per_map(exact[rule.name], count, count)
        cosine = cosine_similarity(low, high, sample_dims=1)
        both_zero = (low.double().norm(dim=-1) == 0) & (high.double().norm(dim=-1) == 0)
        cosine = torch.where(both_zero, torch.ones_like(cosine), cosine).flatten().cpu()
        entries.append(MethodCosine(rule.name, float(cosine.min()), float(cosine.quantile(0.5))))
    return PrecisionReceipt(call.precision.value, threshold, len(result.targets) * count, tuple(entries))


def _exact_maps(call: EngineCall, count: int) -> Attributions:
    """The call's maps of its first ``count`` samples made again in float32, once per call and
    count (kept in ``call.memo``: nested commands watching the same call share them)."""
    key = ("float32 maps", count)
    if key not in call.memo:
        given = call.inputs
        tensors = tuple(tensor[:count] for tensor in given.tensors)
        call.memo[key] = attribute_many(
            call.model,
            tensors if given.several else tensors[0],
            resolved_targets(call.result, count),
            list(call.rules),
            additional_forward_args=given.extra,
            smooth=call.smooth,
            max_batch=call.max_batch,
            precision="float32",
        )
    return call.memo[key]


def resolved_targets(result: Attributions, count: int) -> list[Target]:
    """The targets behind ``result``'s rows, fixed, for its first ``count`` samples: a logit row's
    LongTensor[count] of indices; a unit row's :class:`~backpropvis.core.targets.Unit` with its
    channel and neuron per sample."""
    targets: list[Target] = []
    for row in range(len(result.targets)):
        unit = result.units.get(row)
        if unit is None:
            targets.append(result.targets[row, :count])
        else:
            targets.append(Unit(unit.unit.layer, unit.channel[:count], unit.position[:count]))
    return targets


def _per_map(maps: Any, batch: int, count: int) -> torch.Tensor:
    """[T, count, N]: the first ``count`` samples' maps flattened (a call's several inputs side by
    side), from a call's maps of ``batch`` samples: [T, batch, ...], a tuple of them for several
    inputs, or [T, ...] for one unbatched image (``batch`` 1)."""
    parts = maps if isinstance(maps, tuple) else (maps,)
    flat = [part.reshape(part.shape[0], batch, -1)[:, :count] for part in parts]
    return torch.cat(flat, dim=-1)


class ReceiptCollector:
    """An engine observer (:func:`~.observers.watching`) keeping the receipt of the first call made
    at TF32 or bfloat16 (:func:`receipt_of`); ``receipt`` stays None while there is none."""

    def __init__(self, threshold: float = DEFAULT_THRESHOLD, images: Optional[int] = None):
        self.threshold = check_threshold(threshold)
        self.images = images
        self.receipt: Optional[PrecisionReceipt] = None

    def __call__(self, call: EngineCall) -> None:
        if self.receipt is None and needs_receipt(call.precision):
            self.receipt = receipt_of(call, self.threshold, self.images)


@contextlib.contextmanager
def collect_receipt(threshold: float = DEFAULT_THRESHOLD, images: Optional[int] = None) -> Iterator[ReceiptCollector]:
    """``with collect_receipt() as receipts:`` the engine calls inside are watched, and
    ``receipts.receipt`` is the first TF32 / bfloat16 call's receipt (None if none was made).

    Raises:
        BackpropvisError: a ``threshold`` that is not a cosine in (0, 1].
    """
    with watching(ReceiptCollector(threshold, images)) as collector:
        yield collector  # type: ignore[misc]
