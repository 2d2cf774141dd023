"""Theory study "depth": Proposition 1 / Eq. 8, GBP in a random VGG-16 keeps recovering the image.

Eq. 8 writes any method in a deep CNN as Lemma 1's form with the readout V replaced by
V^(1), the modified gradient arriving at the first layer; Proposition 1 says that in a
random network V^(1) behaves like i.i.d. zero-mean Gaussians, so the three-layer
analysis carries over whatever the depth. For each layer l of a random VGG-16, the
maps are back-propagated from that layer's ReLU output with a seeded random positive
top gradient, and their recovery of the first layer's limit image (3 x 3 patches,
stride 1, Theorem 1) is plotted against depth.

Claims beside GBP's: from conv1_1 saliency's map equals GBP's (a positive top
gradient makes h the identity, and both keep the forward mask g'), and DeconvNet is
noise before the first max-pool (Theorem 2) but carries the image past it (Eq. 6-7:
the switches), each judged against noise with the map's own spectrum
(:func:`backpropvis.core.metrics.noise_similarity_std`, 5 standard deviations). What they
catch (``tests/test_sabotage.py``): the plain gradient in place of GBP makes GBP's
and saliency's recoveries equal (and DeconvNet's noise before the pool becomes
saliency's image); a zero GBP, DeconvNet or saliency map fails its own recovery or
equality claim.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..core.metrics import input_similarity, noise_similarity_std
from ..core.rules import METHOD_LABELS, PAPER_METHODS
from ..engine import attribute_many
from ..models import generator_for, vgg16
from ..models.vgg import LAYER_KEYS, VGG16, VGG16_LAYERS
from ..render import CLIP_99, MINMAX, fit_text, map_panel, pyplot, save_figure
from ..theory.limits import limit_image, recovery
from .base import Claim, Experiment, FigureData, Measurement, RunContext
from .networks import model_inputs

__all__ = ["EXPERIMENT", "LayerReadout", "layer_readout"]

FULL: dict[str, Any] = {
    "input_size": 224,
    "layers": [name for name in VGG16_LAYERS if name != "fc3"],
    "shown_layers": ["conv1_2", "conv2_2", "conv3_3", "conv4_3", "conv5_3", "fc2"],
}
"""Every ReLU of VGG-16 (13 conv layers, fc1, fc2), at the paper's 224 px."""

QUICK: dict[str, Any] = {**FULL, "input_size": 112}
"""The same layers at 112 px (a quarter of the cost)."""

CLAIMS = (
    Claim(
        "gbp_recovery_stays_high",
        "GBP keeps recovering the image at every depth of a random VGG-16 (Prop. 1): "
        "its lowest centred recovery over the layers is at least 0.6",
        "gbp_centred_recovery_min",
        ">=",
        0.6,
    ),
    Claim(
        "gbp_beats_saliency_in_depth",
        "from the last conv layer GBP recovers the image far better than saliency: "
        "the difference in centred recovery is at least 0.3",
        "gbp_minus_saliency_last_conv",
        ">=",
        0.3,
    ),
    Claim(
        "saliency_is_gbp_from_conv1_1",
        "from conv1_1 (the first layer of the sweep) saliency's map is GBP's: with "
        "a positive top gradient h is the identity (relative L2 difference under 1e-5)",
        "saliency_gbp_difference_first_layer",
        "<",
        1e-5,
    ),
    Claim(
        "deconvnet_noise_before_pool",
        "from the layers before the first max-pool (conv1_*) DeconvNet is noise "
        "(Theorem 2): centred recovery under 5 noise standard deviations",
        "deconvnet_noise_sigmas_before_pool_max",
        "<",
        5.0,
    ),
    Claim(
        "deconvnet_image_after_pool",
        "from every conv layer past the first max-pool DeconvNet carries the image "
        "(Eq. 6-7): centred recovery at least 5 noise standard deviations",
        "deconvnet_noise_sigmas_after_pool_min",
        ">=",
        5.0,
    ),
)


class LayerReadout(nn.Module):
    """sum(o_l * G): the ReLU output o_l of one layer, read out with a fixed positive top
    gradient G, so that back-propagating this scalar starts every method at layer l
    with G (h(G) = G for every rule).  Shapes: [B, 3, S, S] -> [B, 1].

    Attributes:
        trunk: the network up to and including the layer's ReLU.
        top: G, shaped like o_l without the batch dimension.
    """

    def __init__(self, trunk: nn.Module, top: torch.Tensor) -> None:
        super().__init__()
        self.trunk = trunk
        self.register_buffer("top", top)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.trunk(x) * self.top).flatten(1).sum(1, keepdim=True)


def _trunk(model: VGG16, layer: str) -> nn.Module:
    """The modules of ``model`` up to the ReLU after ``layer`` (a conv or fc1 / fc2)."""
    part, index = LAYER_KEYS[layer].split(".")
    if part == "features":
        return model.features[: int(index) + 2]
    return nn.Sequential(model.features, model.avgpool, nn.Flatten(1), model.classifier[: int(index) + 2])


def layer_readout(model: VGG16, layer: str, inputs: torch.Tensor, seed: int) -> LayerReadout:
    """:class:`LayerReadout` of ``layer`` with G = |z|, z standard normal, seeded by
    (``seed``, "top-gradient", ``layer``)."""
    trunk = _trunk(model, layer)
    with torch.no_grad():
        shape = trunk(inputs.clone()).shape[1:]
    top = torch.randn(shape, generator=generator_for(seed, "top-gradient", layer)).abs()
    return LayerReadout(trunk, top.to(inputs))


def _last_conv(layers: Sequence[str]) -> str:
    """The deepest convolution among the measured layers."""
    return [layer for layer in layers if layer.startswith("conv")][-1]


def _summary_metrics(
    metrics: Mapping[str, float],
    curves: Mapping[str, list[float]],
    centred: Mapping[str, list[float]],
    layers: Sequence[str],
) -> dict[str, float]:
    """The claims' numbers from the per-layer ones: GBP's lowest and last recoveries, its lead
    over saliency at the last convolution, DeconvNet's noise sd before and after the first pool."""
    convs = [layer for layer in layers if layer.startswith("conv")]
    last = convs[-1]
    summary: dict[str, float] = {}
    summary["gbp_recovery_min"] = min(curves["gbp"])
    summary["gbp_centred_recovery_min"] = min(centred["gbp"])
    summary["gbp_centred_recovery_first"] = centred["gbp"][0]
    summary["gbp_centred_recovery_last_conv"] = metrics[f"centred_recovery_gbp_{last}"]
    summary["gbp_minus_saliency_last_conv"] = (
        metrics[f"centred_recovery_gbp_{last}"] - metrics[f"centred_recovery_saliency_{last}"]
    )
    before_pool = [layer for layer in convs if layer.startswith("conv1_")]
    after_pool = [layer for layer in convs if not layer.startswith("conv1_")]
    summary["deconvnet_noise_sigmas_before_pool_max"] = float(
        np.max([metrics[f"noise_sigmas_deconvnet_{layer}"] for layer in before_pool]) if before_pool else math.nan
    )
    summary["deconvnet_noise_sigmas_after_pool_min"] = float(
        np.min([metrics[f"noise_sigmas_deconvnet_{layer}"] for layer in after_pool]) if after_pool else math.nan
    )
    return summary


def measure(settings: Mapping[str, Any], context: RunContext) -> Measurement:
    model = vgg16("random", seed=context.seed).to(context.device)
    model.preprocessing = model.preprocessing.resized(settings["input_size"])
    inputs = model_inputs(model, [context.image], context.device)
    limit = limit_image(inputs[0].double(), 3, 1, 1).float()
    image = inputs[0].cpu()
    metrics: dict[str, float] = {}
    curves: dict[str, list[float]] = {method: [] for method in PAPER_METHODS}
    centred: dict[str, list[float]] = {method: [] for method in PAPER_METHODS}
    shown: dict[str, dict[str, torch.Tensor]] = {}
    for layer in tqdm(settings["layers"], desc="VGG-16 layers", disable=not context.progress):
        readout = layer_readout(model, layer, inputs, context.seed)
        maps = attribute_many(readout, inputs, [0], list(PAPER_METHODS), precision=context.precision)
        for method in PAPER_METHODS:
            value = float(recovery(maps[method][0, 0], limit.to(maps[method])))
            curves[method].append(value)
            metrics[f"recovery_{method}_{layer}"] = value
            centred[method].append(float(input_similarity(maps[method][0, 0].cpu(), limit.cpu())))
            metrics[f"centred_recovery_{method}_{layer}"] = centred[method][-1]
            metrics[f"noise_sigmas_{method}_{layer}"] = abs(centred[method][-1]) / noise_similarity_std(
                limit.cpu(), maps[method][0, 0].cpu()
            )  # NaN for a zero map
        metrics[f"input_similarity_gbp_{layer}"] = float(input_similarity(maps["gbp"][0, 0].cpu(), image))
        if layer == settings["layers"][0]:
            gbp, saliency = maps["gbp"][0, 0].double(), maps["saliency"][0, 0].double()
            norm = float(gbp.norm())
            metrics["saliency_gbp_difference_first_layer"] = (
                float((saliency - gbp).norm()) / norm if norm > 0 else math.nan
            )
        if layer in settings["shown_layers"]:
            shown[layer] = {method: maps[method][0, 0].cpu() for method in ("gbp", "saliency")}
    last = _last_conv(settings["layers"])
    metrics.update(_summary_metrics(metrics, curves, centred, settings["layers"]))
    notes = (
        "Recovery is the cosine with x_lim; the centred recovery removes each channel's mean from both first, since "
        "a positive top gradient gives DeconvNet a constant colour offset (sum of the filters) that the plain cosine "
        "counts as recovery (DeconvNet from conv1_1: "
        f"{metrics['recovery_deconvnet_conv1_1']:.2f} plain, "
        f"{metrics['centred_recovery_deconvnet_conv1_1']:.2f} centred). "
        "Claims use the centred recovery.",
        "From conv1_1 saliency equals GBP (a positive top gradient makes h the identity there); deeper, saliency's "
        "signed gradients cancel and its recovery falls, while GBP's stays high, as Proposition 1 predicts. "
        f"GBP's still drifts down with depth ({metrics['gbp_centred_recovery_first']:.2f} at {settings['layers'][0]}, "
        f"{metrics['gbp_centred_recovery_last_conv']:.2f} at {last}): V^(1) of a deep net is not exactly i.i.d. "
        "DeconvNet takes up part of the image only past the first max-pool (conv2_1 on), as Eq. 6-7 predict.",
    )
    figure = {
        "methods": list(PAPER_METHODS),
        "limit": limit.cpu(),
        "shown_layers": list(shown),
        **{f"shown_{method}": torch.stack([maps[method] for maps in shown.values()]) for method in ("gbp", "saliency")},
    }  # limit [3, S, S]; shown_gbp, shown_saliency [len(shown_layers), 3, S, S]
    return Measurement(metrics, "VGG-16 (random)", model.weights_description, notes, figure=figure)


def draw(data: FigureData, path: Path) -> None:
    """Top: every method's (centred) recovery against depth; below, GBP's and saliency's maps from some layers."""
    settings, metrics = data.settings, data.metrics
    shown = {layer: number for number, layer in enumerate(data.texts("shown_layers"))}
    plt = pyplot()
    columns = len(settings["shown_layers"]) + 1
    figure = plt.figure(figsize=(max(2.3 * columns, 7.0), 8.6))  # the curves' legend needs 7 inches
    grid = figure.add_gridspec(3, columns, height_ratios=[1.4, 1, 1])
    axis = figure.add_subplot(grid[0, :])
    positions = list(range(len(settings["layers"])))
    for method, color in zip(data.texts("methods"), ("tab:blue", "tab:orange", "tab:green")):
        curve = [metrics[f"recovery_{method}_{layer}"] for layer in settings["layers"]]
        centred = [metrics[f"centred_recovery_{method}_{layer}"] for layer in settings["layers"]]
        axis.plot(positions, curve, "o-", color=color, label=f"{METHOD_LABELS[method]}: recovery")
        axis.plot(
            positions,
            centred,
            "s--",
            color=color,
            alpha=0.6,
            markersize=4,
            label=f"{METHOD_LABELS[method]}: centred recovery",
        )
    axis.set_xticks(positions, settings["layers"], rotation=45, fontsize=8)
    axis.set_ylim(-0.05, 1.0)
    axis.set_ylabel("recovery (cosine with x_lim)")
    axis.set_title(
        fit_text(
            f"Proposition 1 / Eq. 8: back-propagated from each ReLU of a random VGG-16 "
            f"({settings['input_size']} px), random positive top gradient",
            figure.get_figwidth(),
            10,
        ),
        fontsize=10,
    )
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7, ncol=3)
    map_panel(
        figure.add_subplot(grid[1, 0]),
        data.tensor("limit"),
        "limit image x_lim",
        "3x3 patches, stride 1; min-max",
        display=MINMAX,  # an image, stretched as one
    )
    figure.add_subplot(grid[2, 0]).axis("off")
    for column, layer in enumerate(settings["shown_layers"], start=1):
        if layer not in shown:
            continue
        for row, method in ((1, "gbp"), (2, "saliency")):
            map_panel(
                figure.add_subplot(grid[row, column]),
                data.tensor(f"shown_{method}")[shown[layer]],
                f"{METHOD_LABELS[method]}, {layer}",
                f"recovery {metrics[f'recovery_{method}_{layer}']:.2f} "
                f"(centred {metrics[f'centred_recovery_{method}_{layer}']:.2f})",
            )
    save_figure(figure, path, display=CLIP_99)


EXPERIMENT = Experiment(
    name="depth",
    title="Proposition 1 / Eq. 8: in a random VGG-16, GBP from every layer still recovers the image",
    full=FULL,
    quick=QUICK,
    claims=CLAIMS,
    measure=measure,
    draw=draw,
    group="theory",
    tiny={
        **FULL,
        "input_size": 32,
        "layers": ["conv1_1", "conv1_2", "conv2_1", "conv3_1", "conv5_3", "fc2"],
        "shown_layers": ["fc2"],
    },
    catches=("plain-gradient", "zero-gbp", "zero-deconvnet", "zero-saliency"),
)
