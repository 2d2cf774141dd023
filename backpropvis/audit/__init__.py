"""``backpropvis audit``: the paper's diagnostics on a user's model and images, with a
verdict per method.

Nie, Zhang & Patel (ICML 2018) found that GBP and DeconvNet mostly recover the input
image and ignore the class, while saliency follows the model's decision. The audit
asks the same questions of any model (built-in, ``MODULE:CALLABLE`` or
``PATH.py:CALLABLE``) on any images:

1. class sensitivity: per method, the class distance between the maps of two logits
   over the whole image set (the paper's Figure 7 statistic), through the resumable
   class-distance database (:mod:`backpropvis.stats`), with bootstrap 95 % intervals
   and each method's ratio to saliency (:mod:`.sensitivity`);
2. image recovery: each method's input similarity, from the same database;
3. model randomisation: each map's change as the model's stages are redrawn at random
   from the top down (Figure 9, Adebayo et al.'s cascading randomisation), on a few
   images (:mod:`.randomization_step`);
4. the adversarial test (Figure 8) on the same few images (:mod:`.adversarial_step`).

Steps 3 and 4 (and the page's maps, :mod:`.maps_step`) are the list
:data:`~backpropvis.audit.steps.STEPS`, run by a short loop; how to add one is said there.

Each method is then judged by the verdicts of :mod:`.verdicts` (thresholds declared as
data, with the reasons for them), into ``DIR/audit.json`` and one self-contained
``DIR/index.html`` with the figures (:func:`run_audit`).
"""

from .record import AUDIT_FILE, AuditRecord
from .results import StepResult
from .run import FIGURES_FOLDER, run_audit
from .sensitivity import CLASS_DISTANCE_DB
from .step import ADVERSARIAL_STEPS, AuditContext, AuditSettings, AuditStep
from .steps import STEPS
from .verdicts import METRICS, VERDICTS, Verdict, format_verdicts

__all__ = [
    "run_audit",
    "AuditRecord",
    "AuditSettings",
    "AuditContext",
    "AuditStep",
    "StepResult",
    "STEPS",
    "AUDIT_FILE",
    "FIGURES_FOLDER",
    "CLASS_DISTANCE_DB",
    "ADVERSARIAL_STEPS",
    "VERDICTS",
    "Verdict",
    "METRICS",
    "format_verdicts",
]
