"""Theory study "gaussianity": Theorem 2, saliency and DeconvNet in the random CNN are noise.

For each method's map in the random three-layer CNN (no pooling): its values against
the normal fitted to them (Kolmogorov-Smirnov distance, skewness, excess kurtosis),
its input similarity, its recovery of Theorem 1's limit image, and its class
distance between two logits. GBP is told apart by its recovery, not by its
histogram: its values can look nearly Gaussian too.

"Carries no image" is an |input similarity| under 5 standard deviations of that of
noise with the map's own spectrum (:func:`backpropvis.core.metrics.noise_similarity_std`;
1 / sqrt(n) for Theorem 2's white maps).

What the claims catch (``tests/test_sabotage.py``): GBP computed as the plain gradient
is saliency, which recovers nothing ("GBP recovers" fails); a zero map has no spread,
so its Kolmogorov-Smirnov distance to a normal is 1 ("... is Gaussian" fails for
saliency and DeconvNet) and its recovery 0 (GBP).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from ..core.metrics import class_distance, input_similarity, noise_similarity_std
from ..core.rules import METHOD_LABELS, PAPER_METHODS
from ..engine import attribute_many
from ..render import CLIP_99, map_panel, pyplot, save_figure
from ..theory.limits import gaussianity, recovery
from .base import Claim, Experiment, FigureData, Measurement, RunContext
from .random_cnn import random_cnn

__all__ = ["EXPERIMENT"]

FULL: dict[str, Any] = {
    "num_filters": 256,
    "kernel_size": 7,
    "stride": 2,
    "input_size": 224,
    "num_classes": 2,
    "targets": [0, 1],
    "bins": 120,
}
"""The paper's random CNN (N = 256, 7 x 7 x 3, stride 2, 224 px). The maps of logits 0
and 1 need only V[:, 0] and V[:, 1], so the readout has 2 logits instead of 1000."""

QUICK: dict[str, Any] = dict(FULL)
"""Already cheap (one forward pass, six maps): the same as the full run."""

CLAIMS = (
    Claim(
        "saliency_is_gaussian",
        "saliency's values are Gaussian: KS distance to the fitted normal under 0.05",
        "ks_saliency",
        "<",
        0.05,
    ),
    Claim(
        "deconvnet_is_gaussian",
        "DeconvNet's values are Gaussian: KS distance to the fitted normal under 0.05",
        "ks_deconvnet",
        "<",
        0.05,
    ),
    Claim(
        "saliency_carries_no_image",
        "saliency carries no image: |input similarity| under 5 standard deviations "
        "of noise's (about 1 / sqrt(n), 0.013 at 224 px)",
        "noise_sigmas_saliency",
        "<",
        5.0,
    ),
    Claim(
        "deconvnet_carries_no_image",
        "DeconvNet carries no image: |input similarity| under 5 standard deviations "
        "of noise's (about 1 / sqrt(n), 0.013 at 224 px)",
        "noise_sigmas_deconvnet",
        "<",
        5.0,
    ),
    Claim("gbp_recovers", "GBP recovers the image at N = 256: recovery at least 0.8", "recovery_gbp", ">=", 0.8),
)


def measure(settings: Mapping[str, Any], context: RunContext) -> Measurement:
    cnn = random_cnn(
        context, **{key: settings[key] for key in ("num_filters", "kernel_size", "stride", "input_size", "num_classes")}
    )
    maps = attribute_many(
        cnn.model, cnn.inputs, list(settings["targets"]), list(PAPER_METHODS), precision=context.precision
    )
    image = cnn.inputs[0].cpu()
    metrics: dict[str, float] = {}
    first = {}
    for method in PAPER_METHODS:
        first[method] = maps[method][0, 0].cpu()
        for name, value in gaussianity(first[method]).items():
            metrics[f"{name}_{method}"] = value
        similarity = float(input_similarity(first[method], image))
        metrics[f"input_similarity_{method}"] = similarity
        metrics[f"abs_input_similarity_{method}"] = abs(similarity)
        # the logits are fixed (0 and 1), not chosen as the largest: noise has mean 0 here
        metrics[f"noise_sigmas_{method}"] = abs(similarity) / noise_similarity_std(image, first[method])
        metrics[f"recovery_{method}"] = float(recovery(first[method], cnn.limit))
        metrics[f"class_distance_{method}"] = float(class_distance(maps[method][0, 0], maps[method][1, 0]))
    notes = (
        f"GBP's histogram is close to Gaussian as well (KS {metrics['ks_gbp']:.3f}, skewness "
        f"{metrics['skewness_gbp']:.2f}): a Gaussian-looking histogram does not mean noise; what tells GBP apart is "
        f"its recovery ({metrics['recovery_gbp']:.2f} against {metrics['recovery_saliency']:.2f} for saliency and "
        f"{metrics['recovery_deconvnet']:.2f} for DeconvNet) and its smaller class distance.",
    )
    figure = {
        "methods": list(PAPER_METHODS),
        "maps": torch.stack([first[method] for method in PAPER_METHODS]),
        "picture": cnn.picture,
    }  # maps [M, 3, S, S] for the first target; picture [3, S, S] in [0, 1]
    return Measurement(metrics, "three-layer CNN (random)", f"random (seed {context.seed})", notes, figure=figure)


def draw(data: FigureData, path: Path) -> None:
    """Top: the input and each method's map; bottom: each map's standardised histogram
    against the normal."""
    from scipy import stats

    settings, metrics = data.settings, data.metrics
    plt = pyplot()
    figure, axes = plt.subplots(2, 4, figsize=(15, 7.2), gridspec_kw={"height_ratios": [1, 1]})
    map_panel(axes[0][0], data.tensor("picture").permute(1, 2, 0).numpy(), "input")
    axes[1][0].axis("off")
    axes[1][0].text(
        0.0,
        0.5,
        f"random CNN, N = {settings['num_filters']}\n{settings['kernel_size']}x{settings['kernel_size']}x3 filters, "
        f"stride {settings['stride']}\n{settings['input_size']} px, logit {settings['targets'][0]}\n\n"
        "histograms: every value of the map\n(C x H x W), standardised;\n"
        "curve: the fitted normal N(0, 1)",
        fontsize=9,
        va="center",
    )
    for column, (method, map_) in enumerate(zip(data.texts("methods"), data.tensor("maps")), start=1):
        values = map_.double().flatten().numpy()
        spread = values.std()
        standardised = (values - values.mean()) / spread if spread > 0 else np.zeros_like(values)  # a zero map
        map_panel(
            axes[0][column],
            map_,
            METHOD_LABELS[method],
            f"input similarity {metrics[f'input_similarity_{method}']:+.3f}, "
            f"recovery {metrics[f'recovery_{method}']:.2f}",
        )
        axis = axes[1][column]
        axis.hist(standardised, bins=settings["bins"], range=(-5, 5), density=True, color="tab:blue", alpha=0.6)
        grid = np.linspace(-5, 5, 200)
        axis.plot(grid, stats.norm.pdf(grid), color="tab:red", label="fitted normal")
        axis.set_yscale("log")
        axis.set_ylim(1e-5, 1)
        axis.set_title(
            f"KS {metrics[f'ks_{method}']:.3f}, skew {metrics[f'skewness_{method}']:+.2f}, "
            f"ex. kurt. {metrics[f'excess_kurtosis_{method}']:+.2f}",
            fontsize=9,
        )
        axis.set_xlabel(f"standardised value (class distance {metrics[f'class_distance_{method}']:.2f})", fontsize=8)
        axis.legend(fontsize=7)
    figure.suptitle(
        "Theorem 2: saliency and DeconvNet in a random CNN are Gaussian noise; GBP is not noise, "
        "though its histogram looks Gaussian too",
        fontsize=11,
    )
    save_figure(figure, path, display=CLIP_99)


EXPERIMENT = Experiment(
    name="gaussianity",
    title="Theorem 2: saliency and DeconvNet in the random CNN are Gaussian noise with no image in them",
    full=FULL,
    quick=QUICK,
    claims=CLAIMS,
    measure=measure,
    draw=draw,
    group="theory",
    tiny={**FULL, "input_size": 64, "bins": 60},
    catches=("plain-gradient", "zero-gbp", "zero-deconvnet", "zero-saliency"),
)
