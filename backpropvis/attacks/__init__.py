"""Adversarial inputs: :mod:`.fgsm` (the fast gradient sign step) and :mod:`.sweep` (FGSM
over a sweep of steps, and how each method's map changed: the paper's Figure 8)."""

from .fgsm import fgsm, fgsm_direction
from .sweep import AdversarialSweep, fgsm_sweep

__all__ = ["fgsm", "fgsm_direction", "AdversarialSweep", "fgsm_sweep"]
