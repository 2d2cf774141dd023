"""What an audit step is: its settings (:class:`AuditSettings`), what it may read
(:class:`AuditContext`), and the step itself (:class:`AuditStep`).

After the class-distance step (:mod:`.sensitivity`, which every verdict reads), the
audit runs the steps of :data:`backpropvis.audit.steps.STEPS` one after the other on a
few images: each step measures its result (a frozen dataclass of its own, declared in
its file: :class:`~backpropvis.audit.results.StepResult`; the numbers ``audit.json``
reports, the arrays its figures are drawn from), is kept on disk (:mod:`.saved`; a rerun
with the same identity reads it back into the same type), gives the verdicts the numbers
it measures, and draws its section of the page from its result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, Optional, Sequence, TypeVar

import torch
from torch import nn

from ..core.errors import BackpropvisError
from ..core.rules import PAPER_METHODS
from ..engine import Precision, PrecisionLike
from ..engine.receipt import DEFAULT_THRESHOLD
from ..images.sets import ImageSource
from ..models import LoadedModel
from ..stats import PAIRS
from .probes import Probes
from .results import StepResult

__all__ = ["ADVERSARIAL_STEPS", "AuditSettings", "AuditContext", "AuditStep"]

R = TypeVar("R", bound=StepResult)

ADVERSARIAL_STEPS: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
"""FGSM steps in units of 1/255 of the pixel range (those of the project's Figure 8)."""


@dataclass(frozen=True)
class AuditSettings:
    """What an audit measures, beside the model and the images (``run_audit``'s keywords).

    Attributes:
        methods: rule names; saliency, the reference of every verdict, is added when missing.
        pairs: the two logits per image of the class-distance step (default: two random
            ones, as the paper's Figure 7).
        seed: the seed of every random draw (random weights, random logits, redrawn layers, bootstrap).
        limit: only the first ``limit`` images of the sorted list.
        few_images: how many images (the first readable ones) the later steps look at.
        adversarial_steps: FGSM steps in units of 1/255.
        batch_size, workers: images per forward pass and decoding processes of the class-distance step
            (workers None: 0 on the CPU, 2 on an accelerator).
        precision: the engine's arithmetic, a :class:`~backpropvis.engine.Precision` or its name.
        unit_layers: module names of the unit-distance step (None: six spread over the depth,
            :func:`~backpropvis.theory.receptive_fields.layers_over_depth`).
        receipt_threshold: at TF32 or bfloat16, the cosine to float32 under which the
            class-distance step's precision receipt names a method (its notes and audit.json).
    """

    methods: Sequence[str] = PAPER_METHODS
    pairs: str = "random-random"
    seed: int = 0
    limit: Optional[int] = None
    few_images: int = 4
    adversarial_steps: Sequence[float] = ADVERSARIAL_STEPS
    batch_size: int = 8
    workers: Optional[int] = None
    precision: PrecisionLike = Precision.DEFAULT
    unit_layers: Optional[Sequence[str]] = None
    receipt_threshold: float = DEFAULT_THRESHOLD

    def check(self) -> None:
        """Raises :class:`~backpropvis.core.errors.BackpropvisError` naming a bad setting (before anything runs)."""
        if self.few_images < 1:
            raise BackpropvisError(f"`few_images` must be at least 1, not {self.few_images}")
        steps = self.adversarial_steps
        if not steps or not all(math.isfinite(step) and step > 0 for step in steps):
            shown = ", ".join(f"{step:g}" for step in steps) or "none"
            raise BackpropvisError(f"`adversarial_steps` must be positive numbers (units of 1/255), not {shown}")
        if self.pairs not in PAIRS:
            raise BackpropvisError(f"unknown `pairs` {self.pairs!r}; choose one of {', '.join(PAIRS)}")


@dataclass
class AuditContext:
    """Everything a step may read: the model, the images, the settings, the few images.

    Attributes:
        folder: the audit's folder.
        images, keys: the image source and its listed keys.
        loaded, module: the model, and its module on ``device``.
        device: where the maps are computed.
        methods: the method names (saliency first when it was added).
        settings: the audit's settings; ``precision`` parsed.
        recorded: the settings as ``audit.json`` reports them.
        progress: show progress bars.
        probes: the few images (set after the class-distance step).
        inputs: ``probes.inputs`` on ``device``, [B, C, H, W].
        identity: what a kept step must have been measured with (model, images, settings).
    """

    folder: Path
    images: ImageSource
    keys: list[str]
    loaded: LoadedModel
    module: nn.Module
    device: torch.device
    methods: list[str]
    settings: AuditSettings
    recorded: dict[str, Any]
    progress: bool = True
    probes: Optional[Probes] = None
    inputs: Optional[torch.Tensor] = None
    identity: dict[str, Any] = field(default_factory=dict)

    @property
    def title(self) -> str:
        """The model in one line, for figure titles."""
        return self.loaded.title


class AuditStep(Generic[R]):
    """One step of the audit on the few images; subclasses set :attr:`name` and :attr:`result_type`
    and override :meth:`measure` (and, as they need, :meth:`identity`, :meth:`verdict_numbers`,
    :meth:`not_measured` and :meth:`figures`), each reading the step's typed result."""

    name: ClassVar[str] = ""
    """The step's key: in ``audit.json``, ``steps/<name>.json``, and
    :data:`~backpropvis.audit.verdicts.STEPS` (where a verdict names the step it reads)."""

    result_type: type[R]
    """The step's result: a frozen dataclass deriving from
    :class:`~backpropvis.audit.results.StepResult`, declared in the step's file (its fields
    are what ``audit.json`` reports of the step, and its arrays)."""

    def identity(self, context: AuditContext) -> dict[str, Any]:
        """What a kept result must have been measured with (default: the model, images and settings)."""
        return context.identity

    def measure(self, context: AuditContext) -> R:
        """The step's result on the few images.

        Raises:
            Skip: the step cannot run on this model or these images (the message says why).
        """
        raise NotImplementedError

    def verdict_numbers(self, result: R, method: str, reference: str) -> dict[str, float]:
        """What the verdicts read of ``method`` in this step (names of
        :data:`~backpropvis.audit.verdicts.METRICS`), ``reference`` being saliency."""
        return {}

    def not_measured(self, result: R) -> Optional[str]:
        """Why the verdicts reading this step cannot be judged even though it ran (None: they can)."""
        return None

    def figures(self, result: R, context: AuditContext, folder: Path) -> list[tuple[Path, str]]:
        """The step's section of the page: figures drawn into ``folder``, with their captions."""
        return []
