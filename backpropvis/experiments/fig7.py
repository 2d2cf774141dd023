"""Figure 7: the average class distance between the maps of two randomly chosen logits,
for each method, in a random and a trained network.

For every image two distinct logits are drawn (seeded, the same pair for both
networks); a method's distance for that image is
:func:`backpropvis.metrics.class_distance` between its two maps (the min-max display
variant, :func:`~backpropvis.metrics.class_distance_minmax`, is recorded too). The
paper averages over 10K ImageNet images; here the images are ``--images DIR`` (a
folder of image files or an ImageFolder tree: the first ``max_images`` in sorted order)
or, by default, the bundled sample images plus seeded random crops of them. The random
network is the paper's random VGG-16; the trained one is
:func:`~backpropvis.experiments.common.trained_network`.

With ``--images DIR`` each network's run goes through
:func:`backpropvis.stats.run_class_distance`: images decoded by DataLoader workers,
unreadable files recorded and left out, results in a resumable SQLite file per network
in the output folder (a stopped 10K-image run continues where it was when run again);
there an image's two logits are drawn from (seed, its path).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from ..engine import attribute_many
from ..errors import ImageError
from ..images import load_image, sample_names
from ..metrics import class_distance, class_distance_minmax, ratio
from ..models import vgg16
from ..render import figure_title, pyplot, save_figure
from ..rules import METHOD_LABELS, PAPER_METHODS
from .base import Claim, Experiment, Measurement, RunContext
from .common import trained_network

__all__ = ["EXPERIMENT", "image_sources", "random_crops", "logit_pairs"]

Source = tuple[str, Callable[[], Image.Image]]
"""(name for the report, loader of the RGB picture)."""


def random_crops(count: int, seed: int) -> list[Source]:
    """``count`` seeded random crops of the bundled samples: each a square of 35-90 % of
    the sample's shorter side at a random place, mirrored half of the time."""
    generator = np.random.default_rng([seed, 7])
    names = sample_names()
    crops = []
    for number in range(count):
        name = names[int(generator.integers(len(names)))]
        fraction, left, top, mirror = generator.uniform(0.35, 0.9), generator.random(), generator.random(), generator.random() < 0.5

        def load(name=name, fraction=fraction, left=left, top=top, mirror=mirror) -> Image.Image:
            picture = load_image(name)
            side = int(min(picture.size) * fraction)
            x, y = int(left * (picture.size[0] - side)), int(top * (picture.size[1] - side))
            cropped = picture.crop((x, y, x + side, y + side))
            return cropped.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if mirror else cropped

        crops.append((f"{name}-crop{number}", load))
    return crops


def image_sources(settings: Mapping[str, Any], context: RunContext) -> tuple[list[Source], str]:
    """The default images (no ``--images``) to average over, and how the report describes them."""
    samples = [(name, lambda name=name: load_image(name)) for name in sample_names()]
    crops = random_crops(settings["crops"], context.seed)
    return samples + crops, (
        f"the {len(samples)} bundled sample images and {len(crops)} seeded random crops of them "
        "(not ImageNet: pass --images DIR for that)"
    )


def logit_pairs(count: int, classes: int, seed: int) -> torch.Tensor:
    """LongTensor[2, count]: for each image two distinct logits, uniformly at random."""
    generator = torch.Generator().manual_seed(seed)
    first = torch.randint(0, classes, (count,), generator=generator)
    second = torch.randint(0, classes - 1, (count,), generator=generator)
    return torch.stack([first, second + (second >= first).long()])


def _distances(
    model: torch.nn.Module, size: Optional[int], pictures: Sequence[Image.Image], pairs: torch.Tensor,
    device: torch.device,
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """method -> (class distance [B], min-max class distance [B]) for one batch."""
    preprocessing = model.preprocessing if size is None else model.preprocessing.resized(size)
    inputs = preprocessing.batch(pictures).to(device)
    maps = attribute_many(model, inputs, [pairs[0].to(device), pairs[1].to(device)], PAPER_METHODS)
    return {
        method: (class_distance(maps[method][0], maps[method][1]).cpu(),
                 class_distance_minmax(maps[method][0], maps[method][1]).cpu())
        for method in PAPER_METHODS
    }


Distances = dict[str, dict[str, tuple[list[torch.Tensor], list[torch.Tensor]]]]
"""network -> method -> (class distances, min-max class distances), lists of [B] tensors."""


def _over_samples(
    settings: Mapping[str, Any], context: RunContext, networks: Mapping[str, tuple]
) -> tuple[Distances, list[str], list[str], str]:
    """The default images, in memory: (distances, names of the images measured, unreadable, description)."""
    sources, described = image_sources(settings, context)
    pairs = logit_pairs(len(sources), 1000, context.seed)
    collected = {net: {method: ([], []) for method in PAPER_METHODS} for net in networks}
    unreadable, names = [], []
    batch_size = settings["batch_size"]
    batches = range(0, len(sources), batch_size)
    for start in tqdm(batches, desc="fig7 batches", unit="batch", disable=not context.progress):
        pictures, kept = [], []
        for number in range(start, min(start + batch_size, len(sources))):
            try:
                pictures.append(sources[number][1]())
                kept.append(number)
            except ImageError as error:
                unreadable.append(str(error))
        if not pictures:
            continue
        names += [sources[number][0] for number in kept]
        for net, (model, _, _, size) in networks.items():
            for method, (plain, minmax) in _distances(model, size, pictures, pairs[:, kept], context.device).items():
                collected[net][method][0].append(plain)
                collected[net][method][1].append(minmax)
    return collected, names, unreadable, described


def _over_folder(
    settings: Mapping[str, Any], context: RunContext, networks: Mapping[str, tuple]
) -> tuple[Distances, list[str], list[str], str]:
    """``--images DIR`` streamed by :func:`backpropvis.stats.run_class_distance` into one
    resumable database per network in the output folder; returns as :func:`_over_samples`."""
    from ..stats import collect, run_class_distance
    from ..stats.distributed import World

    collected: Distances = {}
    for net, (model, name, weights, size) in networks.items():
        db = context.out / f"class-distance-{net}-{name}-{f'{size}px' if size else 'native'}-seed{context.seed}.sqlite"
        run_class_distance(
            context.images, db, model=model, model_name=name, weights=weights, methods=PAPER_METHODS, pairs="random-random",
            seed=context.seed, input_size=size, limit=settings["max_images"], batch_size=settings["batch_size"],
            workers=2, device=context.device, progress=context.progress, world=World(),
        )
        run = collect([db])
        collected[net] = {
            method: ([torch.from_numpy(run.tables["class_distance"][:, column])],
                     [torch.from_numpy(run.tables["class_distance_minmax"][:, column])])
            for column, method in enumerate(run.methods)
        }
    unreadable = [f"{row['image']}: {row['reason']}" for row in run.failures]
    described = f"the first {len(run.images) + len(unreadable)} image files (sorted by path) of {context.images}"
    return collected, run.images, unreadable, described


def measure(settings: Mapping[str, Any], context: RunContext) -> Measurement:
    """Class distances of every image in both networks, their means and standard errors."""
    trained = trained_network(context)
    networks = {
        "random": (vgg16(seed=context.seed).to(context.device), "vgg16", f"random (seed {context.seed})", settings["size_random"]),
        "trained": (trained.model, trained.name, trained.weights, settings["size_trained"]),
    }
    over = _over_samples if context.images is None else _over_folder
    collected, names, unreadable, described = over(settings, context, networks)
    count = len(names)
    if count == 0:
        raise ImageError(f"none of the {len(unreadable)} images could be read, e.g. {unreadable[0]}")
    metrics: dict[str, float] = {}
    for net in networks:
        for method in PAPER_METHODS:
            plain = torch.cat(collected[net][method][0])
            minmax = torch.cat(collected[net][method][1])
            metrics[f"{net}_{method}_distance"] = float(plain.mean())
            metrics[f"{net}_{method}_sem"] = float(plain.std() / math.sqrt(len(plain))) if len(plain) > 1 else 0.0
            metrics[f"{net}_{method}_distance_minmax"] = float(minmax.mean())
            metrics[f"{net}_{method}_sem_minmax"] = float(minmax.std() / math.sqrt(len(minmax))) if len(minmax) > 1 else 0.0
        for other in ("gbp", "deconvnet"):
            metrics[f"{net}_saliency_over_{other}"] = ratio(
                metrics[f"{net}_saliency_distance"], metrics[f"{net}_{other}_distance"]
            )
            metrics[f"{net}_saliency_over_{other}_minmax"] = ratio(
                metrics[f"{net}_saliency_distance_minmax"], metrics[f"{net}_{other}_distance_minmax"]
            )
    metrics["images"] = float(count)

    notes = [f"Averaged over {described}; two distinct random logits per image (seed {context.seed})."]
    if trained.note:
        notes.append(trained.note)
    if unreadable:
        notes.append(f"{len(unreadable)} unreadable images left out, e.g. {unreadable[0]}")
    _draw(context, networks, metrics, count, described, trained.note)
    return Measurement(
        metrics=metrics,
        model=f"random vgg16 / trained {trained.name}",
        weights=f"random (seed {context.seed}) / {trained.weights}",
        notes=tuple(notes),
        details={"images": names[:50], "unreadable": unreadable[:20]},
    )


def _draw(context: RunContext, networks: Mapping[str, tuple], metrics: Mapping[str, float], count: int,
          described: str, note: Optional[str]) -> None:
    """Bars: mean class distance per method and network, error bars one standard error;
    left the unit-L2 distance the claims use, right the min-max display variant."""
    plt = pyplot()
    figure, axes = plt.subplots(1, 2, figsize=(13, 5.6))
    width = 0.26
    for axis, suffix, label in (
        (axes[0], "", "class distance (unit L2 norm; the claims)"),
        (axes[1], "_minmax", "class distance after min-max display normalisation"),
    ):
        for offset, method in enumerate(PAPER_METHODS):
            positions = [index + (offset - 1) * width for index in range(len(networks))]
            means = [metrics[f"{net}_{method}_distance{suffix}"] for net in networks]
            errors = [metrics[f"{net}_{method}_sem{suffix}"] for net in networks]
            bars = axis.bar(positions, means, width, yerr=errors, capsize=4, label=METHOD_LABELS[method])
            axis.bar_label(bars, labels=[f"{mean:.3f}" for mean in means], fontsize=8, padding=2)
        ticks = [
            f"{net}\n{model} ({weights})\n{f'{size} px' if size else 'native input size'}"
            for net, (_, model, weights, size) in networks.items()
        ]
        axis.set_xticks(range(len(networks)), ticks, fontsize=8)
        axis.set_ylabel(label, fontsize=9)
        axis.legend(fontsize=8)
    axes[0].set_ylim(0, 2)
    title = figure_title(
        f"Figure 7: mean class distance between two random logits' maps over {count} images "
        "(error bars: one standard error)",
        " / ".join(f"{net} {model}" for net, (_, model, _, _) in networks.items()),
        " / ".join(weights for (_, _, weights, _) in networks.values()),
        f"Images: {described}. " + (note or ""), width=150,
    )
    save_figure(figure, context.out / "figure.png", title)


EXPERIMENT = Experiment(
    name="fig7",
    title="Average class distance of two random logits' maps: saliency far above GBP and DeconvNet",
    full={"crops": 94, "max_images": 10000, "size_random": 224, "size_trained": None, "batch_size": 4},
    quick={"crops": 26, "max_images": 32, "size_random": 112, "size_trained": None, "batch_size": 8},
    claims=tuple(
        Claim(
            f"{net}_saliency_3x_{other}",
            f"In the {net} network, saliency's average class distance is at least 3x {METHOD_LABELS[other]}'s",
            f"{net}_saliency_over_{other}", ">=", 3.0,
        )
        for net in ("random", "trained")
        for other in ("gbp", "deconvnet")
    ),
    measure=measure,
)
