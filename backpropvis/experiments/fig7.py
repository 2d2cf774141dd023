"""Figure 7: the average class distance between the maps of two randomly chosen logits,
for each method, in a random and a trained network.

For every image two distinct logits are drawn (seeded by the run's seed and the image's
key, so the same pair in both networks); a method's distance for that image is
:func:`backpropvis.metrics.class_distance` between its two maps (the min-max display
variant, :func:`~backpropvis.metrics.class_distance_minmax`, is recorded too). The
paper averages over 10K ImageNet images; here the images are ``--images DIR`` (a
folder of image files or an ImageFolder tree: the first ``max_images`` in sorted order)
or, by default, the bundled sample images plus ``crops`` seeded random crops of them
(:class:`backpropvis.image_sets.Samples`). The random network is the paper's random
VGG-16; the trained one is :func:`~backpropvis.experiments.networks.trained_network`.

Every image source goes through :func:`backpropvis.stats.run_class_distance` (images
decoded by DataLoader workers, unreadable files recorded and left out, logit pairs from
:mod:`backpropvis.stats.pairs`), into a resumable SQLite file per network in the output
folder: a stopped 10K-image run continues where it was when run again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np
from torch import nn

from ..errors import ImageError
from ..image_sets import ImageSource, Samples
from ..metrics import ratio
from ..models import vgg16
from ..render import figure_title, pyplot, save_figure
from ..rules import METHOD_LABELS, PAPER_METHODS
from ..stats import Collected, collect, run_class_distance
from ..stats.distributed import World
from .base import Claim, Experiment, FigureData, Measurement, RunContext
from .networks import trained_network

__all__ = ["EXPERIMENT", "image_source"]


@dataclass
class Network:
    """One bar group of the figure: a network and how to name it.

    Attributes:
        label: "random" or "trained" (the metrics' prefix).
        model: the network, on the run's device.
        name, weights: how the report names the model and its weights.
        size: the input crop (pixels), or None for the model's own.
    """

    label: str
    model: nn.Module
    name: str
    weights: str
    size: Optional[int]

    @property
    def input_size(self) -> str:
        return f"{self.size}px" if self.size else "native"


def image_source(settings: Mapping[str, Any], context: RunContext) -> ImageSource:
    """``--images DIR``, else the bundled samples and ``settings["crops"]`` crops seeded by the run's seed."""
    return context.images if context.images is not None else Samples(settings["crops"], context.seed)


def _database(network: Network, source: ImageSource, context: RunContext) -> Path:
    """The network's resumable database in the output folder; one file per image source."""
    stem = f"class-distance-{network.label}-{network.name}-{network.input_size}-seed{context.seed}"
    return context.out / (f"{stem}-{source.setting}.sqlite" if isinstance(source, Samples) else f"{stem}.sqlite")


def _class_distances(
    network: Network, source: ImageSource, settings: Mapping[str, Any], context: RunContext
) -> Collected:
    """Every image of ``source`` through ``network``: the stored run, read back."""
    db = _database(network, source, context)
    run_class_distance(
        source,
        db,
        model=network.model,
        model_name=network.name,
        weights=network.weights,
        methods=PAPER_METHODS,
        pairs="random-random",
        seed=context.seed,
        input_size=network.size,
        limit=settings["max_images"],
        batch_size=settings["batch_size"],
        workers=2,
        device=context.device,
        precision=context.precision,
        progress=context.progress,
        world=World(),
    )
    return collect([db])


def _mean_and_sem(values: np.ndarray) -> tuple[float, float]:
    """The mean of ``values`` [N] and its standard error (0 for one value)."""
    sem = float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else 0.0
    return float(values.mean()), sem


def measure(settings: Mapping[str, Any], context: RunContext) -> Measurement:
    """Class distances of every image in both networks, their means and standard errors."""
    trained = trained_network(context)
    networks = [
        Network(
            "random",
            vgg16(seed=context.seed).to(context.device),
            "vgg16",
            f"random (seed {context.seed})",
            settings["size_random"],
        ),
        Network("trained", trained.model, trained.name, trained.weights, settings["size_trained"]),
    ]
    source = image_source(settings, context)
    runs = {network.label: _class_distances(network, source, settings, context) for network in networks}
    names = runs["random"].images
    unreadable = [f"{row['image']}: {row['reason']}" for row in runs["random"].failures]
    if not names:
        raise ImageError(f"none of the {len(unreadable)} images could be read, e.g. {unreadable[0]}")
    if isinstance(source, Samples):
        described = f"{source.describe()} (not ImageNet: pass --images DIR for that)"
    else:
        described = f"the first {len(names) + len(unreadable)} image files (sorted by path) of {source}"

    metrics: dict[str, float] = {}
    for net, run in runs.items():
        for column, method in enumerate(run.methods):
            for table, suffix in (("class_distance", ""), ("class_distance_minmax", "_minmax")):
                mean, sem = _mean_and_sem(run.tables[table][:, column])
                metrics[f"{net}_{method}_distance{suffix}"] = mean
                metrics[f"{net}_{method}_sem{suffix}"] = sem
        for other in ("gbp", "deconvnet"):
            for suffix in ("", "_minmax"):
                metrics[f"{net}_saliency_over_{other}{suffix}"] = ratio(
                    metrics[f"{net}_saliency_distance{suffix}"], metrics[f"{net}_{other}_distance{suffix}"]
                )
    metrics["images"] = float(len(names))

    notes = [f"Averaged over {described}; two distinct random logits per image (seed {context.seed})."]
    if trained.note:
        notes.append(trained.note)
    if unreadable:
        notes.append(f"{len(unreadable)} unreadable images left out, e.g. {unreadable[0]}")
    return Measurement(
        metrics=metrics,
        model=f"random vgg16 / trained {trained.name}",
        weights=f"random (seed {context.seed}) / {trained.weights}",
        notes=tuple(notes),
        details={
            "networks": [
                {"label": net.label, "model": net.name, "weights": net.weights, "input_size": net.size}
                for net in networks
            ],
            "images": names[:50],
            "unreadable": unreadable[:20],
        },
        figure={"methods": list(PAPER_METHODS), "described": described, "note": trained.note or ""},
    )


def draw(data: FigureData, path: Path) -> None:
    """Bars: mean class distance per method and network, error bars one standard error;
    left the unit-L2 distance the claims use, right the min-max display variant."""
    metrics, networks, methods = data.metrics, data.details["networks"], data.texts("methods")
    plt = pyplot()
    figure, axes = plt.subplots(1, 2, figsize=(13, 5.6))
    width = 0.26
    for axis, suffix, label in (
        (axes[0], "", "class distance (unit L2 norm; the claims)"),
        (axes[1], "_minmax", "class distance after min-max display normalisation"),
    ):
        for offset, method in enumerate(methods):
            positions = [index + (offset - 1) * width for index in range(len(networks))]
            means = [metrics[f"{net['label']}_{method}_distance{suffix}"] for net in networks]
            errors = [metrics[f"{net['label']}_{method}_sem{suffix}"] for net in networks]
            bars = axis.bar(positions, means, width, yerr=errors, capsize=4, label=METHOD_LABELS[method])
            axis.bar_label(bars, labels=[f"{mean:.3f}" for mean in means], fontsize=8, padding=2)
        ticks = [
            f"{net['label']}\n{net['model']} ({net['weights']})\n"
            + (f"{net['input_size']} px" if net["input_size"] else "native input size")
            for net in networks
        ]
        axis.set_xticks(range(len(networks)), ticks, fontsize=8)
        axis.set_ylabel(label, fontsize=9)
        axis.legend(fontsize=8)
    axes[0].set_ylim(0, 2)
    title = figure_title(
        f"Figure 7: mean class distance between two random logits' maps over {int(metrics['images'])} images "
        "(error bars: one standard error)",
        " / ".join(f"{net['label']} {net['model']}" for net in networks),
        " / ".join(net["weights"] for net in networks),
        f"Images: {data.text('described')}. " + data.text("note"),
        width=150,
    )
    save_figure(figure, path, title)


EXPERIMENT = Experiment(
    name="fig7",
    title="Average class distance of two random logits' maps: saliency far above GBP and DeconvNet",
    full={"crops": 94, "max_images": 10000, "size_random": 224, "size_trained": None, "batch_size": 4},
    quick={"crops": 26, "max_images": 32, "size_random": 112, "size_trained": None, "batch_size": 8},
    claims=tuple(
        Claim(
            f"{net}_saliency_3x_{other}",
            f"In the {net} network, saliency's average class distance is at least 3x {METHOD_LABELS[other]}'s",
            f"{net}_saliency_over_{other}",
            ">=",
            3.0,
        )
        for net in ("random", "trained")
        for other in ("gbp", "deconvnet")
    ),
    measure=measure,
    draw=draw,
)
