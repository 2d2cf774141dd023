"""Figure 7: the average class distance between the maps of two randomly chosen logits,
for each method, in random and trained networks.

For every image two distinct logits are drawn (seeded by the run's seed and the image's
key, so the same pair in a random network and its trained version); a method's
distance for that image is :func:`backpropvis.core.metrics.class_distance` between its two
maps (the min-max display variant, :func:`~backpropvis.core.metrics.class_distance_minmax`,
is recorded too). The paper averages over 10K ImageNet images in a random and a
trained VGG-16. Here, five bar groups:

- "random": the paper's random VGG-16;
- "trained": the trained network of the run
  (:func:`~backpropvis.experiments.networks.trained_network`: VGG-16 where its
  checkpoint is present, else the ImageNet-trained EfficientNet-Lite0);
- "twin": the trained network's random twin, every layer redrawn with the paper's
  init (:func:`backpropvis.models.randomization.randomized`, batch norm re-estimated
  on the bundled photos); the random VGG-16 itself when the trained net is VGG-16;
- "digits_trained" and "digits_random": the small VGG-style network trained here on
  scikit-learn's digits (max-pooling and a dense fc1, as VGG-16) and its random twin,
  on its held-out digits (:class:`backpropvis.images.sets.Digits`).

The first three see ``--images DIR`` (a folder of image files or an ImageFolder tree:
the first ``max_images`` in sorted order) or, by default, the bundled sample photos
plus ``crops`` seeded random crops of them (:class:`backpropvis.images.sets.Samples`).
Every image source goes through ONE pipeline,
:func:`backpropvis.stats.run_class_distance` (images decoded by DataLoader workers,
unreadable files recorded and left out, logit pairs from :mod:`backpropvis.stats.pairs`),
into a resumable SQLite file per network in the output folder: a stopped 10K-image run
continues where it was when run again.

Uncertainty: crops of one photo are not independent images, so the 95 % intervals are
a cluster bootstrap over source photos (:func:`backpropvis.stats.summary.bootstrap_means`
with the photo of each key, :func:`backpropvis.images.sets.source_photo`): a resample
draws photos, each with all its crops. With 6 photos the intervals are wide; that is
what the data say. Files of a folder and digits are each their own photo.

The claims and what they catch (``tests/test_sabotage.py``): "saliency's distance is at
least 3x GBP's / DeconvNet's" fails for the plain gradient (every ratio 1), for a zero
GBP or DeconvNet map (distance 0: the ratio is NaN) and for a zero saliency map (ratio
0); "GBP's distance in the trained net is below sqrt(2) / 3" (a third of the distance
of two unrelated maps, which saliency's is close to) fails for the plain gradient;
"DeconvNet's distance is slightly above GBP's in the trained net" (the paper's
observation) is declared as it is and may fail: a finding. In the random twin of a
network without max-pooling (EfficientNet-Lite0) Theorem 2 expects DeconvNet to be
class-sensitive noise, so only GBP is claimed there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import numpy as np
from torch import nn
from tqdm.auto import tqdm

from ..core.errors import ImageError
from ..core.metrics import ratio, small_sample_note
from ..core.rules import METHOD_LABELS, PAPER_METHODS
from ..images.sets import Digits, ImageSource, Samples, source_photo, source_setting
from ..models import describe_module, digits_vgg, vgg16
from ..models.randomization import randomized
from ..render import figure_title, pyplot, save_figure
from ..stats import Collected, collect, run_class_distance
from ..stats.distributed import World
from ..stats.summary import bootstrap_means, percentile_interval, ratio_samples
from .base import Claim, Experiment, FigureData, Measurement, RunContext
from .networks import trained_network

__all__ = ["EXPERIMENT", "GROUPS", "image_source"]

GROUPS: tuple[str, ...] = ("random", "trained", "twin", "digits_random", "digits_trained")
"""The bar groups, in the figure's order (the metrics' prefixes)."""

UNRELATED_MAPS = math.sqrt(2.0)
"""The class distance of two maps that share nothing (orthogonal unit vectors); saliency's in a random net."""

CONFIDENCE = 0.95
"""The level of every bootstrap interval."""


@dataclass
class Network:
    """One bar group of the figure: a network, its images, and how to name it.

    Attributes:
        label: one of :data:`GROUPS` (the metrics' prefix).
        build: makes the network, on the run's device (called when its turn comes, so
            that one network at a time is held).
        name, weights: how the report names the model and its weights.
        size: the input crop (pixels), or None for the model's own.
        source: its images (the ImageNet-like set, or the held-out digits).
        limit: at most this many images of ``source``.
    """

    label: str
    build: Callable[[], nn.Module]
    name: str
    weights: str
    size: Optional[int]
    source: ImageSource
    limit: Optional[int]

    @property
    def input_size(self) -> str:
        return f"{self.size}px" if self.size else "native"


def image_source(settings: Mapping[str, Any], context: RunContext) -> ImageSource:
    """``--images DIR``, else the bundled samples and ``settings["crops"]`` crops seeded by the run's seed."""
    return context.images if context.images is not None else Samples(settings["crops"], context.seed)


def _networks(settings: Mapping[str, Any], context: RunContext) -> tuple[list[Network], Optional[str]]:
    """The networks of every bar group (the twin left out when it is the random VGG-16),
    and the note on the trained network (why a stand-in is used), if any."""
    trained = trained_network(context)
    source, digits, seed, device = image_source(settings, context), Digits("test"), context.seed, context.device
    networks = [
        Network(
            "random",
            lambda: vgg16(seed=seed).to(device),
            "vgg16",
            f"random (seed {seed})",
            settings["size_random"],
            source,
            settings["max_images"],
        ),
        Network(
            "trained",
            lambda: trained.model,
            trained.name,
            trained.weights,
            settings["size_trained"],
            source,
            settings["max_images"],
        ),
    ]
    if trained.name != "vgg16":  # a copy of the trained net: every layer redrawn, batch norm re-estimated
        networks.append(
            Network(
                "twin",
                lambda: randomized(trained.model, seed=seed),
                trained.name,
                f"random twin (paper init, seed {seed})",
                settings["size_trained"],
                source,
                settings["max_images"],
            )
        )
    networks += [
        Network(
            "digits_random",
            lambda: digits_vgg("random", seed=seed).to(device),
            "digits-vgg",
            f"random (seed {seed})",
            None,
            digits,
            settings["digits_images"],
        ),
        Network(
            "digits_trained",
            lambda: digits_vgg("trained").to(device),
            "digits-vgg",
            "trained on digits",
            None,
            digits,
            settings["digits_images"],
        ),
    ]
    return networks, trained.note


def _database(network: Network, context: RunContext) -> Path:
    """The network's resumable database in the output folder; one file per image source."""
    stem = f"class-distance-{network.label}-{network.name}-{network.input_size}-seed{context.seed}"
    if isinstance(network.source, (Samples, Digits)):
        return context.out / f"{stem}-{source_setting(network.source)}.sqlite"
    return context.out / f"{stem}.sqlite"


def _class_distances(network: Network, settings: Mapping[str, Any], context: RunContext) -> Collected:
    """Every image of the network's source through it (built now, released after): the stored run, read back."""
    db = _database(network, context)
    run_class_distance(
        network.source,
        db,
        model=describe_module(network.build(), network.name, str(network.weights), network.size),
        methods=PAPER_METHODS,
        pairs="random-random",
        seed=context.seed,
        limit=network.limit,
        batch_size=settings["batch_size"],
        workers=None,  # 0 on the CPU (a decoding process would take cores from the model), 2 on a GPU
        device=context.device,
        precision=context.precision,
        progress=context.progress,
        world=World(),
    )
    return collect([db])


def _group_metrics(label: str, run: Collected, seed: int) -> dict[str, float]:
    """Means, cluster-bootstrap intervals and ratios of one network's run."""
    methods = run.methods
    photos = [source_photo(key) for key in run.images]
    metrics: dict[str, float] = {f"{label}_images": float(len(run.images)), f"{label}_photos": float(len(set(photos)))}
    for table, suffix in (("class_distance", ""), ("class_distance_minmax", "_minmax")):
        values = run.tables[table]  # [N images, M methods]
        resampled = bootstrap_means(values, seed=seed, groups=photos)  # [resamples, M]
        for column, method in enumerate(methods):
            metrics[f"{label}_{method}_distance{suffix}"] = float(values[:, column].mean())
            low, high = percentile_interval(resampled[:, column], CONFIDENCE)
            metrics[f"{label}_{method}_ci_low{suffix}"], metrics[f"{label}_{method}_ci_high{suffix}"] = low, high
        for top, bottom in (("saliency", "gbp"), ("saliency", "deconvnet"), ("deconvnet", "gbp")):
            key = f"{label}_{top}_over_{bottom}{suffix}"
            means = (metrics[f"{label}_{top}_distance{suffix}"], metrics[f"{label}_{bottom}_distance{suffix}"])
            metrics[key] = ratio(*means)
            metrics[f"{key}_ci_low"], metrics[f"{key}_ci_high"] = percentile_interval(
                ratio_samples(resampled[:, methods.index(top)], resampled[:, methods.index(bottom)]), CONFIDENCE
            )
    return metrics


def _described(network: Network, run: Collected) -> str:
    unreadable = len(run.failures)
    if isinstance(network.source, (Samples, Digits)):
        return network.source.describe()
    return f"the first {len(run.images) + unreadable} image files (sorted by path) of {network.source}"


def _notes(
    metrics: Mapping[str, float],
    runs: Mapping[str, Collected],
    by_label: Mapping[str, Network],
    imagenet_like: str,
    trained_note: Optional[str],
    unreadable: list[str],
    seed: int,
) -> list[str]:
    """The figure's notes: what each group is averaged over, the intervals, DeconvNet / GBP
    in the trained nets, the trained network's note and twin, the unreadable images."""
    notes = [
        f"Random VGG-16, trained and twin networks: averaged over {imagenet_like}; digits networks over "
        f"{int(metrics['digits_trained_images'])} of {_described(by_label['digits_trained'], runs['digits_trained'])}. "
        f"Two distinct random logits per image (seed {seed}).",
        f"Intervals: {CONFIDENCE:.0%} cluster bootstrap over source photos ({int(metrics['random_photos'])} "
        f"independent photos behind the {int(metrics['images'])} images; crops of a photo resampled together)"
        + (f": {small}." if (small := small_sample_note(int(metrics["random_photos"]), "photos")) else "."),
        f"DeconvNet / GBP in the trained net: {metrics['trained_deconvnet_over_gbp']:.2f} "
        f"[{metrics['trained_deconvnet_over_gbp_ci_low']:.2f}, {metrics['trained_deconvnet_over_gbp_ci_high']:.2f}]; "
        f"in the trained digits VGG: {metrics['digits_trained_deconvnet_over_gbp']:.2f} "
        f"[{metrics['digits_trained_deconvnet_over_gbp_ci_low']:.2f}, "
        f"{metrics['digits_trained_deconvnet_over_gbp_ci_high']:.2f}] (the paper: slightly above 1 in trained VGG-16).",
    ]
    if trained_note:
        notes.append(trained_note)
    if "twin" not in runs:
        notes.append("The trained network is VGG-16: its random twin is the random VGG-16 (the twin_* metrics).")
    if unreadable:
        notes.append(f"{len(unreadable)} unreadable images left out, e.g. {unreadable[0]}")
    return notes


def measure(settings: Mapping[str, Any], context: RunContext) -> Measurement:
    """Class distances of every image in every network, their means and intervals."""
    networks, trained_note = _networks(settings, context)
    runs = {}
    for network in tqdm(networks, desc="fig7 networks", unit="network", disable=not context.progress):
        runs[network.label] = _class_distances(network, settings, context)
        if network.label == "random" and not runs["random"].images:  # before any other network is built
            failures = runs["random"].failures
            raise ImageError(
                f"none of the {len(failures)} images could be read, e.g. "
                f"{failures[0]['image']}: {failures[0]['reason']}"
            )
    first = runs["random"]
    unreadable = [f"{row['image']}: {row['reason']}" for row in first.failures]

    metrics: dict[str, float] = {}
    for label, run in runs.items():
        metrics.update(_group_metrics(label, run, context.seed))
    if "twin" not in runs:  # the trained net is VGG-16: its random twin is the random VGG-16
        metrics.update(
            {key.replace("random_", "twin_", 1): value for key, value in metrics.items() if key.startswith("random_")}
        )
    metrics["images"] = float(len(first.images))

    by_label = {network.label: network for network in networks}
    imagenet_like = _described(by_label["random"], first)
    if isinstance(by_label["random"].source, Samples):
        imagenet_like += " (not ImageNet: pass --images DIR for that)"
    notes = _notes(metrics, runs, by_label, imagenet_like, trained_note, unreadable, context.seed)
    groups = [label for label in GROUPS if label in runs]
    return Measurement(
        metrics=metrics,
        model=" / ".join(f"{label} {by_label[label].name}" for label in groups),
        weights=" / ".join(by_label[label].weights for label in groups),
        notes=tuple(notes),
        details={
            "networks": [
                {
                    "label": label,
                    "model": by_label[label].name,
                    "weights": by_label[label].weights,
                    "input_size": by_label[label].size,
                    "images": source_setting(by_label[label].source),
                }
                for label in groups
            ],
            "images": first.images[:50],
            "unreadable": unreadable[:20],
        },
        figure={"methods": list(PAPER_METHODS), "described": imagenet_like, "note": trained_note or ""},
    )


def draw(data: FigureData, path: Path) -> None:
    """Bars: mean class distance per method and network, error bars the 95 % cluster
    bootstrap interval over source photos; left the unit-L2 distance the claims use,
    right the min-max display variant."""
    metrics, networks, methods = data.metrics, data.details["networks"], data.texts("methods")
    plt = pyplot()
    figure, axes = plt.subplots(2, 1, figsize=(15, 11), layout="constrained")
    width = 0.26
    for axis, suffix, label in (
        (axes[0], "", "class distance (unit L2 norm; the claims)"),
        (axes[1], "_minmax", "class distance after min-max display normalisation"),
    ):
        for offset, method in enumerate(methods):
            positions = [index + (offset - 1) * width for index in range(len(networks))]
            means = np.array([metrics[f"{net['label']}_{method}_distance{suffix}"] for net in networks])
            lows = np.array([metrics[f"{net['label']}_{method}_ci_low{suffix}"] for net in networks])
            highs = np.array([metrics[f"{net['label']}_{method}_ci_high{suffix}"] for net in networks])
            errors = np.nan_to_num(np.stack([means - lows, highs - means]).clip(min=0))
            bars = axis.bar(positions, means, width, yerr=errors, capsize=4, label=METHOD_LABELS[method])
            axis.bar_label(bars, labels=[f"{mean:.3f}" for mean in means], fontsize=7, padding=2)
        ticks = [
            f"{net['label'].replace('_', ' ')}\n{net['model']}\n{net['weights']}\n"
            + (f"{net['input_size']} px" if net["input_size"] else "native size")
            + f", {net['images']}"
            for net in networks
        ]
        axis.set_xticks(range(len(networks)), ticks, fontsize=7)
        axis.set_ylabel(label, fontsize=9)
        axis.legend(fontsize=8, loc="upper right")
    axes[0].axhline(UNRELATED_MAPS, color="0.6", linestyle=":", linewidth=1)
    axes[0].text(len(networks) - 0.5, UNRELATED_MAPS, " unrelated maps (sqrt 2)", fontsize=7, va="bottom", ha="right")
    axes[0].set_ylim(0, 2)
    trained = next(net for net in networks if net["label"] == "trained")
    title = figure_title(
        f"Figure 7: mean class distance between the maps of two random logits, over {int(metrics['images'])} images "
        f"({int(metrics['random_photos'])} independent photos) and the held-out digits\nerror bars: 95 % bootstrap "
        "interval over source photos (the crops of one photo are resampled together)"
        + (f", {small}" if (small := small_sample_note(int(metrics["random_photos"]), "photos")) else ""),
        "random vgg16, trained " + trained["model"] + ", its random twin, digits-vgg random and trained",
        trained["weights"],
        f"Images: {data.text('described')}.",
        width=1000,  # save_figure wraps to the figure's width
    )
    save_figure(figure, path, title)


def _ratio_claim(label: str, other: str, words: str) -> Claim:
    return Claim(
        f"{label}_saliency_3x_{other}",
        f"In the {words}, saliency's average class distance is at least 3x {METHOD_LABELS[other]}'s",
        f"{label}_saliency_over_{other}",
        ">=",
        3.0,
    )


_PAPER_NETWORKS = {
    "random": "random VGG-16",
    "trained": "trained network",
    "digits_random": "random digits VGG",
    "digits_trained": "trained digits VGG",
}

CLAIMS: tuple[Claim, ...] = (
    *(_ratio_claim(label, other, words) for label, words in _PAPER_NETWORKS.items() for other in ("gbp", "deconvnet")),
    _ratio_claim("twin", "gbp", "trained network's random twin"),
    *(
        Claim(
            f"{label}_gbp_class_insensitive",
            f"In the {words}, GBP's maps of two logits are nearly the same: class distance below sqrt(2) / 3 "
            "(a third of that of two unrelated maps)",
            f"{label}_gbp_distance",
            "<",
            UNRELATED_MAPS / 3,
        )
        for label, words in (("trained", "trained network"), ("digits_trained", "trained digits VGG"))
    ),
    *(
        Claim(
            f"{label}_deconvnet_above_gbp",
            f"In the {words}, DeconvNet's average class distance is slightly above GBP's (the paper, trained "
            "VGG-16): ratio above 1",
            f"{label}_deconvnet_over_gbp",
            ">",
            1.0,
        )
        for label, words in (("trained", "trained network"), ("digits_trained", "trained digits VGG"))
    ),
)

EXPERIMENT = Experiment(
    name="fig7",
    title="Average class distance of two random logits' maps: saliency far above GBP and DeconvNet",
    full={
        "crops": 94,
        "max_images": 10000,
        "size_random": 224,
        "size_trained": None,
        "batch_size": 4,
        "digits_images": None,
    },
    quick={
        "crops": 4,
        "max_images": 10,
        "size_random": 112,
        "size_trained": None,
        "batch_size": 8,
        "digits_images": 64,
    },
    tiny={"crops": 2, "max_images": 4, "size_random": 32, "size_trained": 64, "batch_size": 8, "digits_images": 8},
    catches=("plain-gradient", "zero-gbp", "zero-deconvnet", "zero-saliency"),
    claims=CLAIMS,
    measure=measure,
    draw=draw,
)
