"""What the audit knows so far, typed (:class:`AuditRecord`): ``audit.json`` and the page are
written from it.

Each step's result is its own dataclass (the class-distance step's
:class:`~backpropvis.audit.sensitivity.ClassDistanceResult`, then one per step of
:data:`~backpropvis.audit.steps.STEPS`); the verdicts are
:class:`~backpropvis.audit.verdicts.MethodVerdicts`, judged from what is measured so far
(a step not reached yet, or skipped, reads "not measured").
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from .. import __version__
from ..core.files import write_json
from .results import StepResult, plain
from .sensitivity import REFERENCE, ClassDistanceResult
from .steps import STEPS
from .verdicts import STEPS as VERDICT_STEPS
from .verdicts import MethodVerdicts, judge_method, verdicts_as_data

__all__ = ["AUDIT_FILE", "NOT_REACHED", "AuditRecord"]

AUDIT_FILE = "audit.json"
"""The audit's result, in its folder."""

NOT_REACHED = "the audit stopped before this step; run the same command again to finish it"


@dataclass
class AuditRecord:
    """What the audit knows so far.

    Attributes:
        model, settings: the model and the settings, as ``audit.json`` reports them.
        methods: the methods judged.
        notes: what the user should know, one sentence each.
        seconds: step name -> wall time.
        class_distance: the class-distance step's result (None until it is measured).
        results: step name -> its result (None: skipped), in the order the steps ran.
        skipped: step name -> why it was skipped.
        reused: the steps read back from an earlier run rather than measured now.
    """

    model: dict[str, Any]
    settings: dict[str, Any]
    methods: list[str]
    notes: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    class_distance: Optional[ClassDistanceResult] = None
    results: dict[str, Optional[StepResult]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    reused: list[str] = field(default_factory=list)

    def not_measured(self) -> dict[str, str]:
        """Step name -> why the verdicts reading it cannot be judged (not reached, skipped, nothing to read)."""
        reasons = {step: NOT_REACHED for step in VERDICT_STEPS if step != "class_distance" and step not in self.results}
        reasons.update(self.skipped)
        for step in STEPS:
            result = self.results.get(step.name)
            reason = None if result is None else step.not_measured(result)
            if reason is not None:
                reasons[step.name] = reason
        return reasons

    def numbers(self, method: str) -> dict[str, float]:
        """Everything one method's verdicts read (:data:`~backpropvis.audit.verdicts.METRICS`) that is measured."""
        assert self.class_distance is not None
        numbers = self.class_distance.numbers(method)
        for step in STEPS:
            result = self.results.get(step.name)
            if result is not None:
                numbers.update(step.verdict_numbers(result, method, REFERENCE))
        return numbers

    def verdicts(self) -> dict[str, MethodVerdicts]:
        """Method -> its verdicts, judged with what is measured so far."""
        not_measured = self.not_measured()
        return {method: judge_method(self.numbers(method), not_measured) for method in self.methods}

    def as_json(self) -> dict[str, Any]:
        """The content of ``audit.json`` (NaN still as float; see :meth:`write`)."""
        assert self.class_distance is not None
        audit: dict[str, Any] = {
            "backpropvis": __version__,
            "model": self.model,
            "settings": self.settings,
            "notes": self.notes,
            "seconds": self.seconds,
            "class_distance": self.class_distance.summary,
            "images": plain(self.class_distance.images),
        }
        for step in STEPS:
            result = self.results.get(step.name)
            skipped = {"skipped": self.skipped.get(step.name, NOT_REACHED)}
            audit[step.name] = (
                skipped if result is None else {**result.to_json()[0], "reused": step.name in self.reused}
            )
        audit["verdicts"] = {method: verdicts.as_json() for method, verdicts in self.verdicts().items()}
        audit["thresholds"] = verdicts_as_data()
        return audit

    def write(self, folder: Path) -> None:
        """Judge every method with what is measured so far and (re)write ``audit.json``."""
        write_json(_json_ready(self.as_json()), folder / AUDIT_FILE)


def _json_ready(value: Any) -> Any:
    """NaN and infinities become null (strict JSON), recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(item) for item in value]
    return value
