"""The audit's steps on the few images, in the order they run (after the class-distance step).

To add a step:

1. write ``backpropvis/audit/<name>_step.py`` with

   - its result type: a frozen dataclass deriving from
     :class:`~backpropvis.audit.results.StepResult`, whose fields are what ``audit.json``
     reports of the step (numbers, texts, lists, dicts, nested dataclasses) and, typed
     ``np.ndarray``, the arrays its figures are drawn from (the generic
     ``to_json``/``from_json`` keep it in ``steps/<name>.json`` and ``.npz`` and read it
     back into the same type);
   - a subclass of :class:`~backpropvis.audit.step.AuditStep` parametrised by it: set
     ``name`` (its key in ``audit.json`` and ``steps/<name>.json``) and ``result_type``, and
     implement ``measure(context) -> result`` (raise :class:`~backpropvis.core.claims.Skip`
     when the step cannot run here); override ``identity`` when a setting of yours decides
     its result, ``figures`` to draw its section of the page from the result (``(path,
     caption)`` pairs), and, when verdicts read it, ``verdict_numbers`` (and
     ``not_measured``), with the step in :data:`backpropvis.audit.verdicts.STEPS` and its
     metrics in ``METRICS``;
2. add one line, an instance of it, to :data:`STEPS` below;
3. add a test that a sabotaged method changes what the step reports (``tests/test_layers.py``
   needs nothing: the audit is one layer).

A new setting goes to :class:`~backpropvis.audit.step.AuditSettings` (and, for the
command line, one option in ``cli.py``'s ``audit`` command).
"""

from __future__ import annotations

from typing import Any

from .adversarial_step import AdversarialStep
from .maps_step import MapsStep
from .randomization_step import RandomizationStep
from .step import AuditStep
from .unit_distance_step import UnitDistanceStep

__all__ = ["STEPS"]

STEPS: tuple[AuditStep[Any], ...] = (
    MapsStep(),
    RandomizationStep(),
    AdversarialStep(),
    UnitDistanceStep(),
)
"""The steps on the few images, run in this order by :func:`~backpropvis.audit.run.run_audit`."""
