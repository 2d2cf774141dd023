"""Words for the report: how to read each trained-network figure, and why known findings fail.

Data only (the report shows them; nothing here decides a verdict). A :class:`Reading` is
one or two sentences beside a figure, saying what the paper expects and why the picture
looks as it does; it applies when the result's model names its network. :data:`FINDINGS`
explains the claims known not to hold on the bundled defaults, keyed by experiment and
claim id; a failing claim without one is listed with "not explained yet".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional

__all__ = ["Reading", "READINGS", "FINDINGS", "readings_for", "finding"]


@dataclass(frozen=True)
class Reading:
    """A caption beside an experiment's figure.

    Attributes:
        network: a name the result's model must contain ("efficientnet-lite0"), or "" for any model.
        text: what is expected and why the picture looks as it does.
    """

    network: str
    text: str


_LITE0_DECONVNET = (
    "EfficientNet-Lite0's DeconvNet maps are a uniform checkerboard, the same for every image: DeconvNet's "
    "backward ReLU is h = max(h, 0) with no forward mask, and the network has no max-pooling whose switches "
    "could carry the image back (the paper's Eq. 6-7), so nothing in its backward pass depends on the input; "
    "the transposed stride-2 convolutions overlap their kernels unevenly, which draws the checkerboard. The "
    "paper's explanation predicts exactly this for a network without max-pooling: no image at all."
)

READINGS: dict[str, tuple[Reading, ...]] = {
    "fig2": (
        Reading(
            "",
            "Expected (the paper, Eq. 9): saliency changes with the logit, GBP and DeconvNet hardly do, because "
            "their backward ReLUs throw away the negative, class-specific part of the top gradient.",
        ),
        Reading("efficientnet-lite0", _LITE0_DECONVNET),
        Reading(
            "efficientnet-lite0",
            "GBP keeps the forward mask, so it shows the tabby's edges; a handful of large values would dominate "
            "it under min-max, turning the rest flat grey (the 99th-percentile display keeps the edges visible).",
        ),
        Reading(
            "digits-vgg",
            "The digits VGG has VGG's max-pooling and dense fc1: its DeconvNet and GBP maps draw the digit "
            "(switches and forward masks carry it back), the same for every logit.",
        ),
    ),
    "fig3": (
        Reading(
            "",
            "Top: the weights into two units of a dense layer, trained against the random twin; the paper's "
            "point is that trained fc1 rows look alike, so GBP (which sums them under masks, Eq. 9) barely "
            "depends on the class. Bottom: that premise measured directly, as how alike each method's maps are "
            "over many logits (GBP and DeconvNet near 1, saliency near 0).",
        ),
    ),
    "fig7": (
        Reading(
            "",
            "Expected (the paper): two random logits' maps are far apart for saliency and close for GBP and "
            "DeconvNet in every network, random or trained; in trained VGG-16 DeconvNet slightly above GBP.",
        ),
        Reading(
            "efficientnet-lite0",
            "In EfficientNet-Lite0 DeconvNet's maps do not depend on the input (no max-pooling, no forward "
            "mask), only on the class, so its bar is low, below GBP's.",
        ),
    ),
    "fig8": (
        Reading(
            "",
            "Expected (the paper): an FGSM step that changes the prediction changes saliency's map, while GBP's "
            "and DeconvNet's barely move, since they hardly depend on the class.",
        ),
        Reading(
            "efficientnet-lite0",
            "EfficientNet-Lite0's DeconvNet map does not move at all: it does not depend on the input, only on "
            "the class (no max-pooling switches, no forward mask).",
        ),
    ),
    "fig9": (
        Reading(
            "",
            "Expected (the paper): GBP's map changes when trained convolutional layers are redrawn (their "
            "filters decide which patches pass) and hardly when the dense layers are. Star row: trained up to "
            "the stage, the rest redrawn; diamond row: only that stage redrawn.",
        ),
    ),
    "dead-zones": (
        Reading(
            "",
            "Expected (Eq. 9): trained filters leave dead zones where no unit is active, so GBP draws a filtered "
            "image, much like an edge map, and the same for every class.",
        ),
    ),
}
"""Experiment name -> its readings, in the order shown."""

FINDINGS: dict[tuple[str, str], str] = {
    ("fig2", "digits_saliency_5x_gbp"): (
        "In the small digits VGG (10 classes, 8x8 digits) GBP's maps change more with the logit than in "
        "EfficientNet-Lite0, so saliency over GBP lands near 5, just under it. The paper states the claim for "
        "VGG-16's 1000 classes; measured here, not explained."
    ),
    ("fig3", "digits_deconvnet_same_for_every_logit"): (
        "Eq. 9's premise, maps nearly the same for every logit, holds less well for DeconvNet in the digits VGG "
        "than in EfficientNet-Lite0 (mean cosine about 0.74 over its 10 logits); measured, not explained."
    ),
    ("fig3", "digits_fc1_histograms_alike"): (
        "Trained fc1 rows of the digits VGG hold a spike of near-zero weights, so two units' histograms differ "
        "(KS statistic about 4x the random twin's). The paper's observation is about VGG-16's fc1 (4096 units of "
        "25088 inputs)."
    ),
    ("fig5", "paper_sentence_similarity"): (
        "The paper's sentence (the CNN at N = 64 recovers more than the FCN at the largest Nh) does not hold "
        "here: by raw cosine the FCN is ahead, and the CNN needs N = 256 to win. The figure's trend, far fewer "
        "first-layer weights with local connections, holds."
    ),
    ("fig5", "paper_sentence_recovery"): (
        "As above, measured by recovery instead of raw cosine: the FCN at the largest Nh is level with the CNN "
        "at N = 64."
    ),
    ("fig6", "deconvnet_vgg_fine_detail"): (
        "DeconvNet in random VGG-16 carries the image (far beyond noise, through its max-pool switches), but much "
        "less of it than GBP: the paper's 'every fine detail' is not reproduced."
    ),
    ("fig7", "digits_random_saliency_3x_deconvnet"): (
        "In both digits networks saliency's class distance is only about 2x DeconvNet's (10 classes; max-pool "
        "switches set by the digit); measured, not explained."
    ),
    ("fig7", "digits_trained_saliency_3x_deconvnet"): (
        "As for the random digits VGG: saliency about 2x DeconvNet in the trained one too."
    ),
    ("fig7", "trained_deconvnet_above_gbp"): (
        "In EfficientNet-Lite0 DeconvNet's class distance is below GBP's (the paper: slightly above, in trained "
        "VGG-16): with no max-pooling and no forward mask its maps do not depend on the input. In the trained "
        "digits VGG, which has max-pooling, DeconvNet's is about twice GBP's. The interval is over 6 photos only."
    ),
    ("fig8", "every_image_flips"): (
        "One bundled photo (coffee, on seed 0) keeps its prediction at every step up to 8/255: the attack's "
        "premise fails for it, and the step fractions are over the others."
    ),
    ("fig8", "saliency_3x_gbp_at_1"): (
        "GBP's map moves with FGSM steps of 1/255 and more (class distance 0.5-0.9): the paper's statement holds "
        "at each image's smallest flipping step, below one grey level, and not at visible steps."
    ),
    ("fig8", "saliency_3x_gbp_at_2"): "As at 1/255: GBP's map moves with the step.",
    ("fig8", "saliency_3x_gbp_at_4"): "As at 1/255: GBP's map moves with the step.",
}
"""(experiment, claim id) -> why the claim does not hold on the bundled defaults (quick and full, seed 0)."""


def readings_for(result: Mapping) -> list[str]:
    """The readings of a result (a metrics.json dict) whose network its model names."""
    model = str(result.get("model", ""))
    return [reading.text for reading in READINGS.get(result["experiment"], ()) if reading.network in model]


def finding(experiment: str, claim_id: str) -> Optional[str]:
    """Why claim ``claim_id`` of ``experiment`` does not hold, where that is written down."""
    return FINDINGS.get((experiment, claim_id))
