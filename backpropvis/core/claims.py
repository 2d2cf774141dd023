"""Claims: statements a run can pass or fail, declared as data and judged in one place.

A :class:`Claim` reads one measured value and compares it with a declared threshold
(``metrics[metric] <comparison> threshold``); :meth:`Claim.evaluate` gives its
:class:`ClaimResult`. The paper's experiments (:mod:`backpropvis.experiments`) and the
audit's verdicts (:mod:`backpropvis.audit.verdicts`) both judge with it, so a threshold
means the same everywhere. :class:`Skip` is raised by a measurement that cannot run here
(its message says why): a skipped result, not a failed claim.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from typing import Callable, Mapping

from .errors import BackpropvisError

__all__ = ["Claim", "ClaimResult", "Skip", "UnknownMetricError", "COMPARISONS"]

COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
}


@dataclass(frozen=True)
class Claim:
    """A statement a run can pass or fail: ``metrics[metric] <comparison> threshold``.

    Args:
        id: a stable identifier, e.g. "gbp_cnn_recovers".
        text: the statement in words, as the report shows it.
        metric: the key of the measured value in the experiment's metrics.
        comparison: one of ">=", ">", "<=", "<".
        threshold: the bound the value is compared with.
    """

    id: str
    text: str
    metric: str
    comparison: str
    threshold: float

    def __post_init__(self) -> None:
        if self.comparison not in COMPARISONS:
            raise ValueError(f"claim {self.id}: comparison must be one of {list(COMPARISONS)}")

    def evaluate(self, metrics: Mapping[str, float]) -> ClaimResult:
        """The claim's verdict on ``metrics`` (a NaN value does not hold).

        Raises:
            UnknownMetricError: when ``metrics`` has no ``self.metric`` (a typo in the
                claim, or a metric the experiment forgot to return: a bug, not a finding).
        """
        if self.metric not in metrics:
            raise UnknownMetricError(
                f"claim {self.id!r} reads metric {self.metric!r}, which was not measured "
                f"(measured: {', '.join(sorted(metrics)) or 'nothing'})"
            )
        value = float(metrics[self.metric])
        holds = not math.isnan(value) and COMPARISONS[self.comparison](value, self.threshold)
        return ClaimResult(self.id, self.text, self.metric, self.comparison, self.threshold, value, bool(holds))


@dataclass(frozen=True)
class ClaimResult:
    """A claim with its measured value and verdict."""

    id: str
    text: str
    metric: str
    comparison: str
    threshold: float
    value: float
    holds: bool


class Skip(BackpropvisError):
    """Raised by ``measure`` when an experiment cannot run here; the message says why."""


class UnknownMetricError(LookupError):
    """A claim names a metric that ``measure`` did not return: a bug in the experiment."""
