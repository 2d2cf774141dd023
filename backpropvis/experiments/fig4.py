"""Figure 4: local connections. A random three-layer CNN and a random three-layer FCN,
each method for the max logit of "tabby" (PAPER.md section 4).

Theorem 1 predicts that only GBP in the CNN recovers the image (each patch gets
E[w 1(w.y > 0)], which points along the patch); Theorem 2 that saliency and
DeconvNet are noise. In the FCN the one "patch" is the whole d = 3 S^2-dimensional
image, far too large for Nh hidden units: the same law predicts GBP's cosine with x
to be only 1 / sqrt(1 + 9.3 d / Nh) (:func:`backpropvis.theory.limits.expected_gbp_recovery`;
0.11 at 112 px, 0.054 at the paper's 224 px), which the paper's figure shows as noise.

The claims and what they catch (``tests/test_sabotage.py``):

- "GBP in the CNN shows the image" (input similarity >= 0.5) fails when GBP is the
  plain gradient (it is then saliency: noise) or a zero map, and when GBP and
  DeconvNet are swapped;
- "saliency and DeconvNet are noise" bounds their |input similarity| by 5 standard
  deviations of noise's (:func:`backpropvis.core.metrics.noise_similarity_std`: 1 / sqrt(n)
  for these white maps, 0.0052 at 112 px) beyond the 3.24 that choosing the largest of
  1000 logits gives a noise map (saliency . x is the logit itself in a bias-free ReLU
  net; :func:`backpropvis.core.metrics.expected_normal_maximum`): it fails when DeconvNet's
  panel shows the image (GBP and DeconvNet swapped);
- "GBP in the FCN is as faint as Theorem 1 predicts" (its cosine with x within a
  factor 2 of the prediction) fails for the plain gradient (noise: 10x below, or
  negative) and for a zero map;
- "no map is all zeros" catches a zero map of any method, which the bounds on noise
  alone would let through.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping

import numpy as np
import torch
from tqdm.auto import tqdm

from ..core.rules import METHOD_LABELS
from ..models import three_layer_cnn, three_layer_fcn
from ..render import CLIP_99, save_grid, similarity_caption, to_display
from ..theory.limits import expected_gbp_recovery, recovery
from .base import Claim, Experiment, FigureData, Measurement, RunContext
from .method_maps import COLUMN_ORDER, method_maps

__all__ = ["EXPERIMENT", "measure"]

NETWORKS = ("cnn", "fcn")
"""The figure's rows, top to bottom."""


def _build(network: str, settings: Mapping, seed: int):
    if network == "cnn":
        return three_layer_cnn(
            num_filters=settings["num_filters"],
            kernel_size=settings["kernel_size"],
            stride=settings["stride"],
            input_size=settings["input_size"],
            seed=seed,
        )
    return three_layer_fcn(hidden=settings["hidden"], input_size=settings["input_size"], seed=seed)


def measure(settings: Mapping, context: RunContext) -> Measurement:
    """Each method's map in each network; metrics ``<network>_<method>_similarity``,
    ``noise_panels_max_sigmas`` (the largest |input similarity| of saliency and DeconvNet,
    in noise standard deviations beyond the largest logit's allowance), the FCN's GBP recovery against Theorem 1's
    prediction, and ``zero_maps`` (how many maps are all zeros)."""
    results = {}
    for network in tqdm(NETWORKS, desc="fig4 networks", unit="network", disable=not context.progress):
        model = _build(network, settings, context.seed).to(context.device)
        results[network] = method_maps(model, COLUMN_ORDER, context, settings["target"])
        del model

    metrics: dict[str, float] = {}
    for network in NETWORKS:
        for method in COLUMN_ORDER:
            metrics[f"{network}_{method}_similarity"] = results[network].similarity[method]
            metrics[f"{network}_{method}_noise_sigmas"] = results[network].noise_sigmas(method)
    fcn = results["fcn"]
    fcn_recovery = float(recovery(fcn.maps["gbp"], fcn.inputs[0]))  # the FCN's limit image is x itself
    predicted = expected_gbp_recovery(settings["hidden"], fcn.inputs[0].numel())
    metrics.update(
        noise_std=results["cnn"].noise_std,
        logit_allowance_sigmas=results["cnn"].logit_allowance,
        noise_panels_max_sigmas=float(
            np.max(
                [results[network].noise_excess(method) for network in NETWORKS for method in ("saliency", "deconvnet")]
            )
        ),  # NaN (a failing claim) for a zero map
        fcn_gbp_recovery=fcn_recovery,
        fcn_gbp_predicted_recovery=predicted,
        fcn_gbp_recovery_log2_error=abs(math.log2(fcn_recovery / predicted)) if fcn_recovery > 0 else math.nan,
        zero_maps=float(sum(len(results[network].zero_maps()) for network in NETWORKS)),
    )

    model = (
        f"three-layer CNN (N={settings['num_filters']}, {settings['kernel_size']}x{settings['kernel_size']}, "
        f"stride {settings['stride']}) and three-layer FCN (Nh={settings['hidden']}), {settings['input_size']} px input"
    )
    return Measurement(
        metrics=metrics,
        model=model,
        weights=f"random, truncated normal std 0.1 (seed {context.seed})",
        notes=(
            f"Noise: white noise's input similarity has standard deviation {metrics['noise_std']:.4f} at this size "
            f"(1 / sqrt(n)); choosing the largest of the logits puts a noise map "
            f"{metrics['logit_allowance_sigmas']:.2f} of those above 0; the largest |input similarity| of saliency "
            f"and DeconvNet is {metrics['noise_panels_max_sigmas']:.1f} beyond that.",
            f"GBP in the FCN: cosine with x {fcn_recovery:.3f}, Theorem 1 predicts {predicted:.3f} for Nh = "
            f"{settings['hidden']} units and d = {fcn.inputs[0].numel()} (1 / sqrt(1 + 9.3 d / Nh)): faint, as the "
            "paper's figure shows it, but not zero.",
        ),
        details={"image": context.image, "targets": {network: results[network].target for network in NETWORKS}},
        figure={
            "methods": list(COLUMN_ORDER),
            "pictures": torch.stack([results[network].picture for network in NETWORKS]),  # [2, 3, S, S] in [0, 1]
            "maps": torch.stack(
                [torch.stack([results[network].maps[method] for method in COLUMN_ORDER]) for network in NETWORKS]
            ),  # [2, 3 methods, 3, S, S]
        },
    )


def draw(data: FigureData, path: Path) -> None:
    """Rows: the CNN and the FCN; columns: the input, then each method's map, each with
    its input similarity in noise standard deviations (and the FCN's GBP with its cosine
    with x against Theorem 1's prediction)."""
    settings, methods, metrics = data.settings, data.texts("methods"), data.metrics
    names = {"cnn": "CNN", "fcn": "FCN"}

    def caption(network: str, method: str) -> str:
        similarity = metrics[f"{network}_{method}_similarity"]
        text = f"{METHOD_LABELS[method]}-{names[network]}\n{similarity_caption(similarity)}"
        text += f" ({metrics[f'{network}_{method}_noise_sigmas']:.0f} noise sd)"
        if (network, method) == ("fcn", "gbp"):
            predicted = metrics["fcn_gbp_predicted_recovery"]
            text += f"\ncos with x {metrics['fcn_gbp_recovery']:.3f}, theory {predicted:.3f}"
        return text

    rows, captions = [], []
    for number, network in enumerate(NETWORKS):
        maps = data.tensor("maps")[number]
        rows.append([data.tensor("pictures")[number]] + [to_display(map_) for map_ in maps])
        captions.append([f"input ({settings['input_size']} px)"] + [caption(network, m) for m in methods])
    save_grid(
        rows,
        path,
        row_labels=[
            f"random 3-layer CNN\nN={settings['num_filters']}, {settings['kernel_size']}x{settings['kernel_size']}, "
            f"stride {settings['stride']}",
            f"random 3-layer FCN\nNh={settings['hidden']}",
        ],
        column_labels=["input"] + [METHOD_LABELS[m] for m in methods],
        panel_labels=captions,
        title=f'Figure 4: random CNN vs random FCN, "{data.details["image"]}", {settings["target"]} logit '
        f"\n(noise sd: the input similarity's spread for noise with the map's spectrum, about 1 / sqrt(n) = "
        f"{metrics['noise_std']:.4f}; the largest logit alone puts noise {metrics['logit_allowance_sigmas']:.1f} sd "
        "above 0)",
        display=CLIP_99,
    )


FULL: dict = {"target": "max", "input_size": 224, "num_filters": 256, "kernel_size": 7, "stride": 2, "hidden": 4096}
"""The paper's networks: N = 256 filters of 7 x 7 x 3 at stride 2, Nh = 4096, on 224 px."""

EXPERIMENT = Experiment(
    name="fig4",
    title="Figure 4: only GBP in a random CNN recovers the image (local connections)",
    full=FULL,
    quick={**FULL, "input_size": 112},
    tiny={**FULL, "input_size": 48, "num_filters": 128, "hidden": 512},
    catches=("plain-gradient", "zero-gbp", "zero-deconvnet", "zero-saliency"),
    claims=(
        Claim(
            "gbp_cnn_recovers",
            "GBP in the random CNN shows the image: input similarity at least 0.5",
            "cnn_gbp_similarity",
            ">=",
            0.5,
        ),
        Claim(
            "saliency_deconvnet_are_noise",
            "saliency and DeconvNet in both networks are noise (Theorem 2): every |input similarity| is below 5 "
            "noise standard deviations (about 1 / sqrt(n)) beyond the 3.24 that choosing the largest of 1000 "
            "logits gives noise",
            "noise_panels_max_sigmas",
            "<",
            5.0,
        ),
        Claim(
            "gbp_fcn_as_faint_as_theory",
            "GBP in the FCN recovers as little as Theorem 1 predicts for one patch of the whole image: its cosine "
            "with x is within a factor 2 of 1 / sqrt(1 + 9.3 d / Nh) (|log2 ratio| at most 1)",
            "fcn_gbp_recovery_log2_error",
            "<=",
            1.0,
        ),
        Claim("no_zero_map", "no map is all zeros", "zero_maps", "<=", 0.0),
    ),
    measure=measure,
    draw=draw,
)
