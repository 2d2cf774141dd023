"""Figure 9: GBP in partly trained networks.

The paper's two rows, on every network it runs on:

- star row ("L*", :func:`backpropvis.models.randomization.trained_up_to`): trained
  weights up to and including stage L, every later layer redrawn with the paper's init
  (truncated normal, std 0.1, biases 0, seeded by the run's seed and the layer's name);
  the last stage's star network is the fully trained one.
- diamond row ("L<>", :func:`~backpropvis.models.randomization.only_redrawn`): every
  layer trained but stage L's, which are redrawn.

The networks: the ImageNet-trained network of the run (the paper's VGG-16 where its
checkpoint is present, with the paper's stages Conv1-1, Conv3-1, Conv5-1, FC3; else the
bundled EfficientNet-Lite0 standing in, stages stem, 2, 4, 6, head, classifier) and the
digits VGG trained by this project (Conv1-1, Conv2-1, Conv3-1, FC1, FC2), which has
VGG's max-pooling and dense fc1. Each map is GBP for its own network's max logit; each
partly random network is compared with the fully trained one by the class distance
(:func:`backpropvis.core.metrics.class_distance`: the L2 distance between the unit-norm maps,
the paper's Figure 7 statistic; 0 for the same map, sqrt(2) for unrelated ones),
averaged over the images.

Batch norm (EfficientNet-Lite0 only: VGG-16 and the digits VGG have none): a batch norm
right after a redrawn convolution is reset (scale 1, shift 0), and the running statistics
of every batch norm from the first redrawn layer on are re-estimated on the six bundled
photos and their mirror images, through the same crop as the measured images
(``batch_norm="reestimate"``). The trained statistics describe features that no longer
exist: kept, they blow the logits up 8.6-fold in every star-row network; with the batch
norm replaced by the identity, nothing rescales the paper's std-0.1 filters and GBP's map
shrinks to 1e-6 of its norm (``benchmarks/randomization_batchnorm.py``).

Claims, per network, declared before any result was seen, from the paper's Section 4.5:

- the dense top hardly matters: trained up to the last stage with a convolution
  (everything above it, every dense layer included, redrawn; VGG-16's Conv5-1*, the
  paper's "from Conv5-1* to FC3* GBP behaves almost the same"), GBP's map is within
  class distance :data:`~backpropvis.experiments.networks.NEARLY_SAME_DISTANCE` (0.5) of
  the fully trained one: an absolute bound;
- more trained convolutional stages filter out more patches: along the star row's
  convolutional stages the distance to the fully trained map falls at every step
  (value: the smallest fall, > 0);
- the earliest convolution matters most: redrawing the first stage alone moves the map
  further than redrawing any other stage alone (value: its distance minus the largest
  other diamond distance, > 0);
- every GBP map is non-zero (value: the smallest L2 norm of a map, > 0).

What they catch: the plain gradient in GBP's place (``plain-gradient``) fails the dense-top
bound, since saliency follows the class evidence the dense layers hold and a redrawn top
gives another map; a zero GBP map (``zero-gbp``) fails the non-zero claim and the
ordering (every distance is then 0, so nothing falls). Only GBP is computed, so a broken
DeconvNet or saliency cannot show here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from tqdm.auto import tqdm

from ..core.metrics import class_distance
from ..engine import attribute_many
from ..images.samples import sample_names
from ..models.randomization import Stage, calibration_inputs, default_stages, layer_module, only_redrawn, trained_up_to
from ..render import CLIP_99, figure_title, map_panel, pyplot, save_figure
from .base import Claim, Experiment, FigureData, Measurement, RunContext
from .networks import (
    DIGITS_NOTE,
    NEARLY_SAME_DISTANCE,
    MeasuredNetwork,
    digits_testbed,
    imagenet_testbed,
    input_pipeline,
)

__all__ = ["EXPERIMENT", "PartlyTrained", "partly_trained"]

_ROWS = {"star": "*", "diamond": "\u22c4"}  # the paper's marks: trained up to L (star), only L redrawn (diamond)


@dataclass
class PartlyTrained:
    """GBP maps of a network and of its partly trained variants, on one batch of images.

    Attributes:
        stages: the network's stages (:func:`~backpropvis.models.randomization.default_stages`).
        full: [B, 3, S, S] GBP of the fully trained network (its max logit).
        star: [L - 1, B, 3, S, S] trained up to each stage but the last (whose star network
            is the fully trained one).
        diamond: [L, B, 3, S, S] only each stage redrawn.
        star_distance: [L - 1, B] class distance of each star map to the fully trained map.
        diamond_distance: [L, B] the same for the diamond row.
        dense: per stage, whether all its layers are dense (``nn.Linear``).
        descriptions: each variant's weights, "star Conv1-1" -> "..., every layer after ... redrawn ...".
    """

    stages: tuple[Stage, ...]
    full: torch.Tensor
    star: torch.Tensor
    diamond: torch.Tensor
    star_distance: torch.Tensor
    diamond_distance: torch.Tensor
    dense: tuple[bool, ...]
    descriptions: dict[str, str]

    def convolutional(self) -> list[int]:
        """Positions of the stages holding a convolution (not only dense layers), in order."""
        return [number for number, dense in enumerate(self.dense) if not dense]


def _gbp(model: nn.Module, inputs: torch.Tensor, context: RunContext) -> torch.Tensor:
    """[B, 3, S, S] GBP of each image for its own max logit."""
    return attribute_many(model, inputs, ["max"], ["gbp"], precision=context.precision)["gbp"][0].cpu()


def _calibration(testbed: MeasuredNetwork, size: Optional[int]) -> Optional[torch.Tensor]:
    """[12, 3, S, S] the bundled photos and their mirror images through the measured crop,
    for re-estimating batch norm; None for a network without batch norm (nothing to estimate)."""
    model = testbed.network.model
    if not any(isinstance(module, _BatchNorm) for module in model.modules()):
        return None
    return calibration_inputs(model, input_pipeline(model, size)).to(testbed.inputs.device)


def partly_trained(
    testbed: MeasuredNetwork,
    context: RunContext,
    batch_norm: str = "reestimate",
    size: Optional[int] = None,
) -> PartlyTrained:
    """GBP in the network of ``testbed`` and in each of its star and diamond variants.

    Args:
        testbed: the trained network and its images ([B, 3, S, S]).
        context: the run (seed of the redrawn layers, precision, progress bars).
        batch_norm: the policy of :func:`backpropvis.models.randomization.redraw`.
        size: the crop of the images (for the batch norm calibration images).
    """
    model, inputs = testbed.network.model, testbed.inputs
    stages = default_stages(model)
    calibration = _calibration(testbed, size) if batch_norm == "reestimate" else None
    options: dict[str, Any] = {"seed": context.seed, "batch_norm": batch_norm, "calibration": calibration}
    full = _gbp(model, inputs, context)
    variants = [("star", stage) for stage in stages[:-1]] + [("diamond", stage) for stage in stages]
    maps: dict[str, list[torch.Tensor]] = {"star": [], "diamond": []}
    descriptions = {}
    for row, stage in tqdm(variants, desc=f"fig9 {testbed.network.name}", unit="network", disable=not context.progress):
        variant = (trained_up_to if row == "star" else only_redrawn)(model, stage, **options)
        maps[row].append(_gbp(variant, inputs, context))
        descriptions[f"{row} {stage.label}"] = str(getattr(variant, "weights_description", ""))
        del variant
    star, diamond = torch.stack(maps["star"]), torch.stack(maps["diamond"])
    return PartlyTrained(
        stages=stages,
        full=full,
        star=star,
        diamond=diamond,
        star_distance=class_distance(star, full.expand_as(star)),
        diamond_distance=class_distance(diamond, full.expand_as(diamond)),
        dense=tuple(all(isinstance(layer_module(model, name), nn.Linear) for name in stage.layers) for stage in stages),
        descriptions=descriptions,
    )


def _slug(label: str) -> str:
    """A stage label as part of a metric's name: "Conv1-1" -> "conv1_1", "stage 2" -> "stage_2"."""
    return label.lower().replace("-", "_").replace(" ", "_")


def network_metrics(key: str, result: PartlyTrained) -> dict[str, float]:
    """The claims' values for one network (each distance averaged over the images).

    ``{key}_star_{stage}`` and ``{key}_diamond_{stage}``: the rows' distances to the fully
    trained map; ``{key}_dense_top``: the star distance at the last convolutional stage;
    ``{key}_star_smallest_fall``: the smallest fall of the star distance from one
    convolutional stage to the next (NaN with fewer than two); ``{key}_diamond_first_margin``:
    the first stage's diamond distance minus the largest other one;
    ``{key}_smallest_map_norm``: the smallest L2 norm of any GBP map measured.
    """
    star = result.star_distance.mean(dim=1).tolist()  # [L - 1]
    diamond = result.diamond_distance.mean(dim=1).tolist()  # [L]
    metrics = {f"{key}_star_{_slug(stage.label)}": value for stage, value in zip(result.stages, star)}
    metrics.update({f"{key}_diamond_{_slug(stage.label)}": value for stage, value in zip(result.stages, diamond)})
    convolutional = result.convolutional()
    top = convolutional[-1]
    metrics[f"{key}_dense_top"] = star[top] if top < len(star) else 0.0  # no dense stage above: the trained net
    falls = [star[lower] - star[upper] for lower, upper in zip(convolutional, convolutional[1:])]
    metrics[f"{key}_star_smallest_fall"] = min(falls) if falls else float("nan")
    metrics[f"{key}_diamond_first_margin"] = diamond[0] - max(diamond[1:]) if len(diamond) > 1 else float("nan")
    every_map = torch.cat([result.full[None], result.star, result.diamond]).flatten(2)  # [1 + 2L - 1, B, D]
    metrics[f"{key}_smallest_map_norm"] = float(every_map.double().norm(dim=-1).min())
    return metrics


def measure(settings: Mapping[str, Any], context: RunContext) -> Measurement:
    """Star and diamond rows of the ImageNet-trained network and of the digits VGG."""
    testbeds = [
        imagenet_testbed(context, settings["images"], settings.get("size")),
        digits_testbed(context, int(settings["digits_images"])),
    ]
    metrics: dict[str, float] = {}
    figure: dict[str, Any] = {"keys": [testbed.key for testbed in testbeds]}
    details: dict[str, Any] = {}
    notes = [testbed.network.note for testbed in testbeds if testbed.network.note] + [DIGITS_NOTE]
    for testbed in testbeds:
        size = settings.get("size") if testbed.key == "imagenet" else None
        result = partly_trained(testbed, context, settings["batch_norm"], size)
        metrics.update(network_metrics(testbed.key, result))
        key = testbed.key
        figure.update(
            {
                f"{key}_name": testbed.network.name,
                f"{key}_image": testbed.image_names[0],
                f"{key}_picture": testbed.pictures[0],  # [3, S, S] in [0, 1]
                f"{key}_full": result.full[0],  # [3, S, S]: the first image's maps
                f"{key}_star": result.star[:, 0],  # [L - 1, 3, S, S]
                f"{key}_diamond": result.diamond[:, 0],  # [L, 3, S, S]
                f"{key}_stages": [stage.label for stage in result.stages],
                f"{key}_convolutional": [not dense for dense in result.dense],
            }
        )
        details[key] = {
            "model": testbed.network.name,
            "weights": testbed.network.weights,
            "images": testbed.image_names,
            "stages": {stage.label: list(stage.layers) for stage in result.stages},
            "variants": result.descriptions,
            "star_distance_per_image": result.star_distance.tolist(),
            "diamond_distance_per_image": result.diamond_distance.tolist(),
        }
        if any("batch norm" in description for description in result.descriptions.values()):
            notes.append(_batch_norm_note(testbed.network.name, settings["batch_norm"]))
    figure["note"] = " ".join(notes)
    return Measurement(
        metrics=metrics,
        model=" and ".join(testbed.network.name for testbed in testbeds),
        weights="; ".join(f"{testbed.network.name}: {testbed.network.weights}" for testbed in testbeds)
        + f"; redrawn layers: the paper's init, seed {context.seed}",
        notes=tuple(notes),
        details=details,
        figure=figure,
    )


def _batch_norm_note(name: str, policy: str) -> str:
    if policy != "reestimate":
        return f"{name}: batch norm after a redrawn convolution handled as {policy!r} (see randomization.redraw)."
    return (
        f"{name}: a batch norm after a redrawn convolution is reset (scale 1, shift 0) and every batch norm from the "
        "first redrawn layer on has its running statistics re-estimated on the six bundled photos and their mirror "
        "images: the trained statistics describe features that no longer exist (kept, they blow the logits up "
        "8.6-fold; as the identity, GBP's map shrinks to 1e-6 of its norm: benchmarks/randomization_batchnorm.py)."
    )


def draw(data: FigureData, path: Path) -> None:
    """Per network: the star row (the input, then trained up to each stage, the last being
    the fully trained network) and the diamond row (only each stage redrawn), each map with
    its class distance to the fully trained one; below, those distances plotted per stage."""
    plt = pyplot()
    keys = data.texts("keys")
    columns = 1 + max(len(data.texts(f"{key}_stages")) for key in keys)
    figure = plt.figure(figsize=(2.1 * columns, 2.35 * 2 * len(keys) + 3.6), layout="constrained")
    grid = figure.add_gridspec(2 * len(keys) + 1, columns, height_ratios=[1.0] * (2 * len(keys)) + [1.45])
    metrics = data.metrics
    for number, key in enumerate(keys):
        stages, name = data.texts(f"{key}_stages"), data.text(f"{key}_name")
        star, diamond, full = data.tensor(f"{key}_star"), data.tensor(f"{key}_diamond"), data.tensor(f"{key}_full")
        top, bottom = 2 * number, 2 * number + 1
        axis = figure.add_subplot(grid[top, 0])
        map_panel(
            axis, data.tensor(f"{key}_picture").permute(1, 2, 0).numpy(), f"{name}\ninput: {data.text(f'{key}_image')}"
        )
        for column, stage in enumerate(stages, start=1):
            slug = _slug(stage)
            last = column == len(stages)
            axis = figure.add_subplot(grid[top, column])
            caption = "= fully trained" if last else f"distance {metrics[f'{key}_star_{slug}']:.3f}"
            map_panel(axis, full if last else star[column - 1], f"{stage}{_ROWS['star']}", caption)
            axis = figure.add_subplot(grid[bottom, column])
            map_panel(
                axis,
                diamond[column - 1],
                f"{stage}{_ROWS['diamond']}",
                f"distance {metrics[f'{key}_diamond_{slug}']:.3f}",
            )
        axis = figure.add_subplot(grid[bottom, 0])
        axis.axis("off")
        axis.text(
            0.0,
            0.5,
            f"{name}\ntop row (L*): trained up to L,\nlater layers redrawn\n"
            f"bottom row (L{_ROWS['diamond']}): only L\nredrawn",
            fontsize=8,
            va="center",
        )
    halves = grid[-1, :].subgridspec(1, len(keys))
    for number, key in enumerate(keys):
        _plot_distances(figure.add_subplot(halves[0, number]), data, key)
    figure.suptitle(
        figure_title(
            "Figure 9: GBP (max logit) in partly trained networks, layers redrawn with the paper's init; "
            "captions: class distance to the fully trained map (mean over the images)",
            data.model,
            data.weights.replace("; ", ";\n"),
        ),
        fontsize=9,
    )
    save_figure(figure, path, display=CLIP_99)


def _plot_distances(axis, data: FigureData, key: str) -> None:
    stages, metrics = data.texts(f"{key}_stages"), data.metrics
    positions = range(len(stages))
    star = [metrics[f"{key}_star_{_slug(stage)}"] for stage in stages[:-1]] + [0.0]
    diamond = [metrics[f"{key}_diamond_{_slug(stage)}"] for stage in stages]
    axis.plot(positions, star, "o-", label="trained up to L, later layers redrawn (L*)")
    axis.plot(positions, diamond, "D--", label=f"only L redrawn (L{_ROWS['diamond']})")
    axis.axhline(
        NEARLY_SAME_DISTANCE,
        color="grey",
        linestyle=":",
        linewidth=1,
        label=f"'nearly the same' bound ({NEARLY_SAME_DISTANCE})",
    )
    convolutional = data.tensor(f"{key}_convolutional").tolist()
    ticks = [stage + ("" if conv else "\n(dense)") for stage, conv in zip(stages, convolutional)]
    axis.set_xticks(list(positions), ticks, fontsize=8)
    axis.set_ylim(0.0, max(1.5, *star, *diamond) * 1.05)
    axis.set_ylabel("class distance to\nthe fully trained map", fontsize=8)
    axis.set_title(f"{data.text(f'{key}_name')}: mean over {len(data.details[key]['images'])} image(s)", fontsize=9)
    axis.legend(fontsize=7)


EXPERIMENT = Experiment(
    name="fig9",
    title="GBP in partly trained networks: trained conv layers filter out patches, dense layers hardly matter",
    full={"images": tuple(sample_names()), "size": None, "digits_images": 64, "batch_norm": "reestimate"},
    quick={"images": ("tabby",), "size": None, "digits_images": 16, "batch_norm": "reestimate"},
    tiny={"images": ("tabby",), "size": 64, "digits_images": 4, "batch_norm": "reestimate"},
    claims=tuple(
        claim
        for key, network in (("imagenet", "the ImageNet-trained network"), ("digits", "the digits VGG"))
        for claim in (
            Claim(
                f"{key}_dense_top_hardly_matters",
                f"In {network}, redrawing every layer above the last convolutional stage (the dense top) moves GBP's "
                f"map less than class distance {NEARLY_SAME_DISTANCE} from the fully trained one",
                f"{key}_dense_top",
                "<",
                NEARLY_SAME_DISTANCE,
            ),
            Claim(
                f"{key}_more_trained_convs_closer",
                f"In {network}, GBP's map comes closer to the fully trained one with every further trained "
                "convolutional stage (star row; value: the smallest step)",
                f"{key}_star_smallest_fall",
                ">",
                0.0,
            ),
            Claim(
                f"{key}_first_conv_matters_most",
                f"In {network}, redrawing the first stage alone changes GBP's map more than redrawing any other "
                "stage alone (diamond row; value: its distance minus the largest other)",
                f"{key}_diamond_first_margin",
                ">",
                0.0,
            ),
            Claim(
                f"{key}_maps_nonzero",
                f"In {network}, every GBP map is non-zero (value: the smallest L2 norm)",
                f"{key}_smallest_map_norm",
                ">",
                0.0,
            ),
        )
    ),
    measure=measure,
    draw=draw,
    catches=("plain-gradient", "zero-gbp"),
)
