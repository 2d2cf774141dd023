"""The audit's verdicts, declared as data: each one a set of claims every one of which must hold.

A verdict is about one method on the user's model; its claims read that method's
numbers (:data:`METRICS`) with the experiments' :class:`~backpropvis.experiments.base.Claim`
(a NaN value does not hold, a claim naming a number that was not measured is a bug).
The thresholds were chosen from the paper's reasoning before any audit was run, and
they are not tuned to make an audit agree with the paper: a disagreement is a finding.

Why these thresholds
--------------------
Distances are the class distance of :func:`backpropvis.core.metrics.class_distance`: both
maps scaled to unit L2 norm, then the norm of their difference. It reads 0 for the
same map, sqrt(2) = 1.41 for two unrelated ones (independent noise is orthogonal in
high dimension: Theorem 2's saliency maps of two logits) and 2 for opposite maps.

- **A third of saliency's** (:data:`SALIENCY_FRACTION`). Saliency is the true gradient:
  it is the paper's reference for a map that follows the model's decision, and the
  paper's Figures 7 and 8 separate the methods by how far below saliency's change
  theirs is ("much larger than that of both GBP and DeconvNet"). The project's
  reproduction of those figures states it as "saliency's distance is at least 3x GBP's
  / DeconvNet's" (claims of fig7 and fig8), so a method whose change is at least a
  third of saliency's is on saliency's side of that line and one below it is on
  GBP's. The same factor is used for all three perturbations (another logit, the top
  layers redrawn, an adversarial image), which are three ways of asking whether the
  map follows what the model computes on top of the image.
- **A tenth of the map** (:data:`SMALLEST_CHANGE`). A relative test alone judges
  saliency against itself (ratio 1), and says nothing when saliency itself hardly
  changes. A method counts as changing only when its two unit maps differ by more
  than 0.1, a tenth of a map's norm (cosine 0.995: to the eye, the same picture).
  For the Figure 7 statistic the claim is on the lower end of the bootstrap 95 %
  interval of the mean over images, so a change carried by one or two images of the
  set does not count.
- **Input similarity 0.2** (:data:`SHOWS_THE_IMAGE`). The input similarity
  (:func:`backpropvis.core.metrics.input_similarity`) of Theorem 2's noise maps is about
  0.01, and the project's Figure 4 and 6 experiments call a panel noise below 0.2 in
  magnitude; Theorem 1's recovery is at 0.5 and above. A map at 0.2 or more shows the
  image at least in part (the paper's "partial image recovery" of trained networks).

A method is then:

- **class-sensitive** when its mean class distance between the maps of two logits
  (the paper's Figure 7 statistic) is at least a third of saliency's and its 95 %
  interval lies above 0.1;
- an **image recoverer** when its maps' mean input similarity is at least 0.2;
- **model-following** (Adebayo et al.'s cascading randomisation, the paper's Figure 9)
  when redrawing the top layer(s) at random changes its map (for the trained model's
  predicted class) by at least a third of what it changes saliency's, and by more than 0.1;
- **adversarially sensitive** (the paper's Figure 8) when, at each image's smallest FGSM
  step that changes the prediction, its map changes by at least a third of saliency's
  change, and by more than 0.1.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Optional

from ..core.claims import Claim, ClaimResult

__all__ = [
    "METRICS",
    "SALIENCY_FRACTION",
    "SMALLEST_CHANGE",
    "SHOWS_THE_IMAGE",
    "STEPS",
    "VERDICTS",
    "Judgement",
    "MethodVerdicts",
    "Verdict",
    "judge",
    "judge_method",
    "verdicts_as_data",
    "format_verdicts",
]

SALIENCY_FRACTION = 1.0 / 3.0
"""A method's change over saliency's at or above which it is on saliency's side (see the module's docstring)."""

SMALLEST_CHANGE = 0.1
"""Class distance above which two unit maps differ at all (a tenth of a map's norm)."""

SHOWS_THE_IMAGE = 0.2
"""Input similarity at or above which a map shows the image (below it: noise, as Figures 4 and 6 read it)."""

STEPS: dict[str, str] = {
    "class_distance": "class sensitivity and image recovery over the image set (Figure 7's statistic)",
    "randomization": "cascading randomisation from the top layer down (Figure 9; Adebayo et al. 2018)",
    "adversarial": "FGSM adversarial images (Figure 8)",
}
"""The audit's measuring steps, by the name its results and verdicts use."""

METRICS: dict[str, str] = {
    "class_distance": "mean class distance between the maps of two logits, over the images",
    "class_distance_low": "lower end of its bootstrap 95% interval",
    "class_distance_high": "upper end of its bootstrap 95% interval",
    "class_distance_over_saliency": "its mean class distance over saliency's",
    "class_distance_over_saliency_low": "lower end of the ratio's paired-bootstrap 95% interval",
    "class_distance_over_saliency_high": "upper end of the ratio's paired-bootstrap 95% interval",
    "input_similarity": "mean input similarity of its maps (both logits, every image)",
    "top_redrawn_distance": "mean class distance between its map and the one with the top stage redrawn at random",
    "top_redrawn_over_saliency": "that distance over saliency's",
    "adversarial_distance": "mean class distance between its maps of an image and of its smallest flipping FGSM "
    "example",
    "adversarial_over_saliency": "that distance over saliency's",
}
"""The numbers a method's verdicts read, by name (each verdict's claims name them)."""


@dataclass(frozen=True)
class Verdict:
    """A yes/no statement about a method, holding when every one of its claims holds.

    Attributes:
        name: its key in ``audit.json`` ("class_sensitive").
        yes, no: the method as the verdict calls it either way ("class-sensitive", "class-insensitive").
        step: the step (:data:`STEPS`) that measures the numbers it reads.
        claims: the criteria, each with its threshold, on the numbers of :data:`METRICS`.
    """

    name: str
    yes: str
    no: str
    step: str
    claims: tuple[Claim, ...]

    def __post_init__(self) -> None:
        if self.step not in STEPS:
            raise ValueError(f"verdict {self.name}: unknown step {self.step!r}")
        unknown = [claim.metric for claim in self.claims if claim.metric not in METRICS]
        if unknown:
            raise ValueError(f"verdict {self.name}: unknown metric {unknown[0]!r}")


def _follows_saliency(prefix: str, change: str) -> tuple[Claim, Claim]:
    return (
        Claim(
            f"{prefix}_a_third_of_saliency",
            f"{change} is at least a third of saliency's",
            f"{prefix}_over_saliency",
            ">=",
            SALIENCY_FRACTION,
        ),
        Claim(
            f"{prefix}_above_a_tenth",
            f"{change} is more than 0.1 (a tenth of a unit map)",
            f"{prefix}_distance",
            ">",
            SMALLEST_CHANGE,
        ),
    )


VERDICTS: tuple[Verdict, ...] = (
    Verdict(
        "class_sensitive",
        "class-sensitive",
        "class-insensitive",
        "class_distance",
        (
            Claim(
                "a_third_of_saliency",
                "Its mean class distance between two logits' maps is at least a third of saliency's",
                "class_distance_over_saliency",
                ">=",
                SALIENCY_FRACTION,
            ),
            Claim(
                "interval_above_a_tenth",
                "The 95% interval of its mean class distance lies above 0.1 (a tenth of a unit map)",
                "class_distance_low",
                ">",
                SMALLEST_CHANGE,
            ),
        ),
    ),
    Verdict(
        "recovers_image",
        "recovers the image",
        "does not show the image",
        "class_distance",
        (
            Claim(
                "shows_the_image",
                "The mean input similarity of its maps is at least 0.2 (noise is below)",
                "input_similarity",
                ">=",
                SHOWS_THE_IMAGE,
            ),
        ),
    ),
    Verdict(
        "follows_model",
        "follows the model",
        "ignores the top layers",
        "randomization",
        _follows_saliency("top_redrawn", "Redrawing the top stage at random changes its map by what"),
    ),
    Verdict(
        "changes_with_adversarial",
        "changes with an adversarial prediction",
        "barely changes with an adversarial prediction",
        "adversarial",
        _follows_saliency("adversarial", "An adversarial image that changes the prediction changes its map by what"),
    ),
)
"""The verdicts of every audited method, in the order ``audit.json`` and the page give them."""


def _plain(value: float) -> Optional[float]:
    return None if math.isnan(value) else value


@dataclass(frozen=True)
class Judgement:
    """One verdict on one method.

    Attributes:
        holds: every claim holds (None: the verdict's step was not measured).
        says: the method in words (the verdict's ``yes`` or ``no``), or "not measured: why".
        claims: each claim with its value (NaN: not measured, JSON null) and whether it holds.
        skipped: why the verdict's step was not measured, or None.
    """

    holds: Optional[bool]
    says: str
    claims: tuple[ClaimResult, ...]
    skipped: Optional[str]

    def as_json(self) -> dict[str, Any]:
        """As ``audit.json`` gives it (a NaN value as null)."""
        claims = [{**asdict(claim), "value": _plain(claim.value)} for claim in self.claims]
        return {"holds": self.holds, "says": self.says, "claims": claims, "skipped": self.skipped}


@dataclass(frozen=True)
class MethodVerdicts:
    """Every verdict of :data:`VERDICTS` on one method.

    Attributes:
        criteria: verdict name -> its :class:`Judgement`, in the order of :data:`VERDICTS`.
        numbers: what the verdicts read (names of :data:`METRICS`), as measured (NaN: not measured).
    """

    criteria: dict[str, Judgement]
    numbers: dict[str, float]

    def holds(self, verdict: str) -> Optional[bool]:
        """Whether the verdict named ``verdict`` holds (None: not measured)."""
        return self.criteria[verdict].holds

    @property
    def summary(self) -> str:
        """The verdicts in words, those measured: "class-insensitive; recovers the image; ..."."""
        return "; ".join(judged.says for judged in self.criteria.values() if judged.holds is not None)

    def as_json(self) -> dict[str, Any]:
        """As ``audit.json`` gives it: ``{verdict name: bool or None, ..., "summary": ..., "criteria":
        {name: judgement}, "numbers": {...}}`` (NaN as null)."""
        entry: dict[str, Any] = {name: judged.holds for name, judged in self.criteria.items()}
        entry["summary"] = self.summary
        entry["criteria"] = {name: judged.as_json() for name, judged in self.criteria.items()}
        entry["numbers"] = {name: _plain(float(value)) for name, value in self.numbers.items()}
        return entry


def judge(verdict: Verdict, numbers: Mapping[str, float], skipped: Optional[str] = None) -> Judgement:
    """One verdict on a method's numbers (names of :data:`METRICS`); ``skipped``: why the
    verdict's step was not measured, or None. A NaN value does not hold."""
    if skipped is not None:
        return Judgement(None, f"not measured: {skipped}", (), skipped)
    results = tuple(claim.evaluate(numbers) for claim in verdict.claims)
    holds = all(result.holds for result in results)
    return Judgement(holds, verdict.yes if holds else verdict.no, results, None)


def judge_method(numbers: Mapping[str, float], skipped: Mapping[str, str]) -> MethodVerdicts:
    """Every verdict of :data:`VERDICTS` on one method's ``numbers``; ``skipped`` maps a
    step's name to why it was not measured."""
    criteria = {verdict.name: judge(verdict, numbers, skipped.get(verdict.step)) for verdict in VERDICTS}
    return MethodVerdicts(criteria, dict(numbers))


def verdicts_as_data() -> list[dict[str, Any]]:
    """:data:`VERDICTS` as JSON (what ``audit.json`` records as the thresholds it used)."""
    return [
        {
            "name": verdict.name,
            "yes": verdict.yes,
            "no": verdict.no,
            "step": verdict.step,
            "claims": [asdict(claim) for claim in verdict.claims],
        }
        for verdict in VERDICTS
    ]


def format_verdicts(audit: dict) -> str:
    """The text ``backpropvis audit`` prints, from ``audit.json``'s content: per method the
    numbers behind the verdicts (class distance [95% CI], its ratio to saliency's, input
    similarity, change with the top redrawn, change with an adversarial prediction), then
    the verdicts in words."""

    def number(value, digits: int = 3, sign: str = "") -> str:
        return "-" if value is None else f"{value:{sign}.{digits}f}"

    lines = [
        f"{'method':>10}  {'class distance [95% CI]':>25}  {'/ saliency':>10}  {'input sim.':>10}  "
        f"{'top redrawn':>11}  {'adversarial':>11}"
    ]
    for method, entry in audit["verdicts"].items():
        numbers = entry["numbers"]
        interval = (
            f"{number(numbers['class_distance'])} [{number(numbers['class_distance_low'])}, "
            f"{number(numbers['class_distance_high'])}]"
        )
        lines.append(
            f"{method:>10}  {interval:>25}  {number(numbers['class_distance_over_saliency']):>10}  "
            f"{number(numbers['input_similarity'], sign='+'):>10}  {number(numbers.get('top_redrawn_distance')):>11}  "
            f"{number(numbers.get('adversarial_distance')):>11}"
        )
    lines.append("verdicts:")
    lines += [f"{method:>10}  {entry['summary']}" for method, entry in audit["verdicts"].items()]
    first = next(iter(audit["verdicts"].values()))
    lines += [
        f"not measured: {name}: {judged['skipped']}" for name, judged in first["criteria"].items() if judged["skipped"]
    ]
    return "\n".join(lines)
