"""Kindermans et al. 2017, "The (Un)reliability of Saliency Methods": input invariance.

``f2`` is ``f1`` with its first layer's bias absorbing a constant input shift ``m``
(:mod:`.input_shift`: ``b2 = b1 - W m``, the border padded with ``m``), so ``f2(x + m) =
f1(x)`` with every activation equal. A method is *input-invariant* when its map of
``(f1, x)`` equals its map of ``(f2, x + m)``. Saliency, DeconvNet and GBP depend only on
the weights and the activation pattern, both unchanged, so they are; gradient x input
(``saliency * input``) is not: its map moves by ``saliency * m``.

One step per shift: ``m = 0`` (the copy with nothing to absorb: the arithmetic's floor),
then each of ``pixel_shifts`` (the paper moves MNIST from [0, 1] to [-1, 0]: a pixel shift
of -1, divided here by the model's preprocessing std). Per image and method the metric
``max_rel_diff`` is ``max |map2 - map1| / max |map1|`` (NaN for a zero reference map, so
a broken method cannot pass any claim with zero maps); beside it the control ``other
class``: the same number between the maps of the predicted class and of another class on
``f1``, what a real change of the map measures. Maps are computed in float64 (the test is
exact: float32 rounding could flip a ReLU that sits at 0 and move a map for that reason).
"""

from __future__ import annotations

import copy
import functools
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ..core.claims import Claim
from ..core.errors import BackpropvisError
from ..core.rules import PAPER_METHODS, resolve_rules
from ..engine import Precision, attribute_many
from ..models import derive_seed
from .compare import step_from_numbers
from .input_shift import absorb_shift, channel_shift
from .kindermans_page import draw_kindermans, kindermans_section
from .protocol import Protocol, SanityResult, SanityRun, StepResult

__all__ = [
    "GRADIENT_X_INPUT",
    "INVARIANCE_TOLERANCE",
    "KindermansSettings",
    "PROTOCOL",
    "claim_values",
    "measure",
    "relative_difference",
]

GRADIENT_X_INPUT = "gradient_x_input"
"""The method the paper shows failing: the saliency map times the input."""

INVARIANCE_TOLERANCE = 1e-6
"""Largest ``max_rel_diff`` an input-invariant method may show in float64 (its rounding is ~1e-16)."""

CHANGE_THRESHOLD = 0.01
"""Smallest ``max_rel_diff`` on every image for a method to count as moved (1% of the map's largest value)."""

METRIC = "max_rel_diff"


@dataclass(frozen=True)
class KindermansSettings:
    """What one run does.

    Attributes:
        methods: rule names (gradient x input is added; it needs saliency, computed anyway).
        pixel_shifts: the shifts of every pixel value (in [0, 1] units), one step each.
        dtype: the arithmetic of the maps ("float64" or "float32").
        images: how many images ``reproduce`` takes.
    """

    methods: tuple[str, ...] = PAPER_METHODS
    pixel_shifts: tuple[float, ...] = (-1.0,)
    dtype: str = "float64"
    images: int = 32

    def __post_init__(self) -> None:
        if self.dtype not in ("float64", "float32"):
            raise BackpropvisError(f"dtype must be float64 or float32, not {self.dtype!r}")
        if not self.pixel_shifts or 0.0 in self.pixel_shifts:
            raise BackpropvisError(
                f"pixel_shifts must be non-zero shifts (the step m = 0 is always run), not {self.pixel_shifts}"
            )
        if self.images < 1:
            raise BackpropvisError(f"images must be at least 1, not {self.images}")
        resolve_rules(self.methods)


def relative_difference(reference: torch.Tensor, other: torch.Tensor) -> np.ndarray:
    """[B, ...] x [B, ...] -> [B]: ``max |other - reference| / max |reference|`` per image,
    NaN where the reference map is all zeros."""
    difference = (other - reference).abs().flatten(1).amax(1).double()
    scale = reference.abs().flatten(1).amax(1).double()
    return torch.where(scale > 0, difference / scale, torch.full_like(scale, float("nan"))).cpu().numpy()


def _maps(model, inputs: torch.Tensor, targets: list, rules: Sequence[str], precision) -> dict[str, torch.Tensor]:
    """method -> [T, B, C, H, W]: the rules' maps, and gradient x input."""
    found = attribute_many(model, inputs, targets, list(rules), precision=precision)
    maps = {rule: found[rule] for rule in rules}
    maps[GRADIENT_X_INPUT] = found["saliency"] * inputs.unsqueeze(0)
    return maps


def _rules(settings: KindermansSettings) -> list[str]:
    return list(dict.fromkeys([*settings.methods, "saliency"]))


def _other_class(predicted: torch.Tensor, classes: int, seed: int) -> torch.Tensor:
    """[B] a class other than the predicted one, drawn per image (seeded)."""
    generator = torch.Generator().manual_seed(derive_seed(seed, "sanity kindermans2017 other class"))
    offset = torch.randint(1, classes, predicted.shape, generator=generator)
    return (predicted.cpu() + offset) % classes


def _unit(run: SanityRun, settings: KindermansSettings, f1, inputs, reference, other, predicted, pixel_shift: float):
    """One shift's numbers (method -> values and controls) and the first image's f2 maps [M, C, H, W]."""
    precision = Precision.DEFAULT if settings.dtype == "float64" else run.precision
    shift = channel_shift(run.model, pixel_shift, inputs.shape[1]).to(inputs)
    f2 = absorb_shift(f1, shift, inputs)
    shifted = _maps(f2, inputs + shift.view(1, -1, 1, 1), [predicted], _rules(settings), precision)
    numbers: dict[str, Any] = {}
    for method, maps in shifted.items():
        values = relative_difference(reference[method][0], maps[0])
        control = relative_difference(reference[method][0], reference[method][1])
        numbers[method] = {
            "values": {METRIC: [values.tolist()]},
            "controls": {"other class": {METRIC: [control.tolist()]}},
        }
    first = torch.stack([shifted[method][0, 0].cpu() for method in shifted])
    return numbers, {"first": first, "shift": shift.cpu()}


def measure(run: SanityRun, settings: KindermansSettings) -> SanityResult:
    """Every shift's step on ``run``'s model and images (see the module's docstring)."""
    dtype = {"float64": torch.float64, "float32": torch.float32}[settings.dtype]
    precision = Precision.DEFAULT if dtype == torch.float64 else run.precision
    f1 = copy.deepcopy(run.model).to(dtype).eval()
    inputs = run.inputs.to(dtype)
    logits = attribute_many(f1, inputs, ["max"], ["saliency"], precision=precision)
    predicted = logits.targets[0]
    other = _other_class(predicted, logits.logits.shape[1], run.seed).to(predicted.device)
    reference = _maps(f1, inputs, [predicted, other], _rules(settings), precision)
    shifts = (0.0, *settings.pixel_shifts)
    steps: list[StepResult] = []
    first: list[torch.Tensor] = []
    for index, pixel_shift in enumerate(tqdm(shifts, desc="kindermans2017", unit="shift", disable=not run.progress)):
        compute = functools.partial(_unit, run, settings, f1, inputs, reference, other, predicted, pixel_shift)
        kept = run.store.run(f"{index:03d}-shift", compute)
        label = "no shift (m = 0)" if pixel_shift == 0 else f"pixels {pixel_shift:+g}"
        steps.append(step_from_numbers("input shift", label, (), kept.numbers, run.seed))
        first.append(kept.tensor("first").float())
    methods = (*[rule for rule in settings.methods], GRADIENT_X_INPUT)
    return SanityResult(
        protocol=PROTOCOL.name,
        settings=asdict(settings),
        model=run.model_name,
        weights=run.weights,
        batch_norm=None,
        order="execution",
        metrics=(METRIC,),
        methods=methods,
        steps=steps,
        claim_values=claim_values(steps, methods),
        notes=_notes(run, settings),
        arrays={
            "maps": torch.stack(first).numpy()[:, _positions(methods, settings)],
            "image": run.inputs[0].cpu().numpy(),
        },
    )


def _positions(methods: Sequence[str], settings: KindermansSettings) -> list[int]:
    """Where each shown method sits among the computed maps (rules, then gradient x input)."""
    computed = [*_rules(settings), GRADIENT_X_INPUT]
    return [computed.index(method) for method in methods]


def _notes(run: SanityRun, settings: KindermansSettings) -> list[str]:
    return [
        "f2: f1 with its first layer's bias b2 = b1 - W m and its input padded with m (not 0), so f2(x + m) = f1(x) "
        "with every activation equal; maps of f1's predicted class on both.",
        f"Shifts of every pixel by {', '.join(f'{s:+g}' for s in settings.pixel_shifts)} (pixel values in [0, 1]), "
        "divided by the model's preprocessing std; the step 'no shift' is the copy with m = 0.",
        f"max_rel_diff = max |map2 - map1| / max |map1| per image, in {settings.dtype}; beside it, the same between "
        "the maps of the predicted class and of another class.",
    ]


def claim_values(steps: Sequence[StepResult], methods: Sequence[str]) -> dict[str, float]:
    """Per method the largest and smallest ``max_rel_diff`` over images and shifted steps
    (``<method>_largest``, ``<method>_smallest``; NaN as soon as one image's is NaN)."""
    values: dict[str, float] = {}
    shifted = [step for step in steps if not step.label.startswith("no shift")]
    for method in methods:
        per_image = [v for step in shifted for v in step.methods.get(method, {}).get(METRIC).values]  # type: ignore[union-attr]
        array = np.asarray(per_image, dtype=np.float64)
        broken = array.size == 0 or bool(np.isnan(array).any())
        values[f"{method}_largest"] = float("nan") if broken else float(array.max())
        values[f"{method}_smallest"] = float("nan") if broken else float(array.min())
    return values


def _invariant(method: str, label: str) -> Claim:
    return Claim(
        f"{method}_invariant",
        f"{label} is input-invariant: its map moves by at most {INVARIANCE_TOLERANCE:g} of its largest value "
        "on every image",
        f"{method}_largest",
        "<=",
        INVARIANCE_TOLERANCE,
    )


CLAIMS: tuple[Claim, ...] = (
    _invariant("saliency", "Saliency"),
    _invariant("deconvnet", "DeconvNet"),
    _invariant("gbp", "GBP"),
    Claim(
        "gradient_x_input_not_invariant",
        f"Gradient x input is not input-invariant: its map moves by more than {CHANGE_THRESHOLD:g} of its largest "
        "value on every image (a zero map gives NaN and fails)",
        f"{GRADIENT_X_INPUT}_smallest",
        ">",
        CHANGE_THRESHOLD,
    ),
)


PROTOCOL = Protocol(
    name="kindermans2017",
    title="Input invariance (Kindermans et al. 2017): does a shift absorbed by the first layer's bias move the map?",
    reference="Kindermans, Hooker, Adebayo, Alber, Schütt, Dähne, Erhan & Kim 2017, The (Un)reliability of "
    "Saliency Methods (NeurIPS 2017 workshop; in Explainable AI, Springer 2019)",
    full=KindermansSettings(),
    quick=KindermansSettings(pixel_shifts=(-1.0, 0.5), images=8),
    tiny=KindermansSettings(images=4),
    claims=CLAIMS,
    measure=measure,
    section=kindermans_section,
    draw=draw_kindermans,
    catches=("zero-gbp", "zero-deconvnet", "zero-saliency"),
)
