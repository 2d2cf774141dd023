"""Figure 9: GBP in partly trained VGG-16.

Top row ("L*"): trained weights up to and including layer L, the later layers random.
Bottom row ("L<>"): every layer trained but L, which is random. More trained
convolutional layers filter out more image patches, so the map with trained weights
up to conv5_1 is closer to the fully trained one than the map trained only up to
conv1_1; the dense layers hardly matter. Each panel: its input similarity
(:func:`backpropvis.metrics.input_similarity`) and its class distance
(:func:`~backpropvis.metrics.class_distance`) from the fully trained GBP map, each
map for its own network's max logit. VGG-specific: skipped without a trained VGG-16
checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import torch
from tqdm.auto import tqdm

from ..engine import attribute_many
from ..metrics import class_distance, class_distance_minmax, input_similarity
from ..models import vgg16
from ..render import Picture, figure_title, save_grid, to_display
from .base import Claim, Experiment, FigureData, Measurement, RunContext, Skip
from .fig3 import NO_VGG16
from .networks import input_pipeline, model_inputs, vgg16_checkpoint, vgg16_note

__all__ = ["EXPERIMENT"]

_SIGNS = {"upto": "*", "except": "<>"}


def measure(settings: Mapping[str, Any], context: RunContext) -> Measurement:
    """GBP maps of the fully trained network and of every partly trained variant."""
    checkpoint = vgg16_checkpoint(context)
    if checkpoint is None:
        raise Skip(NO_VGG16)
    layers = list(settings["layers"])
    variants: list[tuple[str, Optional[str], dict[str, Any]]] = [("full", None, {})]
    variants += [("upto", layer, {"trained_upto": layer}) for layer in layers]
    variants += [("except", layer, {"random_layers": [layer]}) for layer in layers]

    inputs: Optional[torch.Tensor] = None
    maps, descriptions = {}, {}
    for kind, layer, partial in tqdm(variants, desc="fig9 networks", unit="network", disable=not context.progress):
        model = vgg16(checkpoint, seed=context.seed, **partial).to(context.device)
        if inputs is None:
            inputs = model_inputs(model, [settings["image"]], context.device, settings.get("size"))
            picture = input_pipeline(model).unnormalize(inputs[0].cpu())
        gbp = attribute_many(model, inputs, ["max"], ["gbp"], precision=context.precision)["gbp"]
        maps[(kind, layer)] = gbp[0, 0].cpu()  # [3, S, S]
        descriptions[(kind, layer)] = model.weights_description
        del model

    assert inputs is not None  # set by the first variant
    reference = maps[("full", None)]
    metrics = {"similarity_full": float(input_similarity(reference, inputs[0].cpu()))}
    for (kind, layer), map_ in maps.items():
        if kind == "full":
            continue
        key = f"{kind}_{layer}"
        metrics[f"similarity_{key}"] = float(input_similarity(map_, inputs[0].cpu()))
        metrics[f"distance_{key}"] = float(class_distance(map_, reference))
        metrics[f"distance_minmax_{key}"] = float(class_distance_minmax(map_, reference))
    first, last_conv = settings["closer"]
    metrics["distance_gap"] = metrics[f"distance_upto_{first}"] - metrics[f"distance_upto_{last_conv}"]
    note = vgg16_note(checkpoint)
    return Measurement(
        metrics=metrics,
        model="vgg16",
        weights=str(checkpoint),
        notes=tuple(filter(None, [note])),
        details={f"{kind}_{layer}": description for (kind, layer), description in descriptions.items()},
        figure={
            "picture": picture,  # [3, S, S] in [0, 1]
            "full": reference,  # [3, S, S]
            "upto": torch.stack([maps[("upto", layer)] for layer in layers]),  # [L, 3, S, S]
            "except": torch.stack([maps[("except", layer)] for layer in layers]),  # [L, 3, S, S]
            "weights": f"{checkpoint}, random layers seed {context.seed}",
            "note": note or "",
        },
    )


def draw(data: FigureData, path: Path) -> None:
    """Row 1: fully trained, then trained up to each layer; row 2: the input, then all trained but each layer."""
    metrics, layers = data.metrics, data.settings["layers"]

    def caption(kind: str, layer: str) -> str:
        key = f"{kind}_{layer}"
        similarity, distance = metrics[f"similarity_{key}"], metrics[f"distance_{key}"]
        return f"{layer}{_SIGNS[kind]}: similarity {similarity:+.2f}, distance {distance:.3f}"

    rows: Sequence[Sequence[Optional[Picture]]] = [
        [to_display(data.tensor("full"))] + [to_display(map_) for map_ in data.tensor("upto")],
        [data.tensor("picture")] + [to_display(map_) for map_ in data.tensor("except")],
    ]
    save_grid(
        rows,
        path,
        row_labels=["trained up to L (L*)", "all trained but L (L<>)"],
        column_labels=["fully trained"] + [f"L = {layer}" for layer in layers],
        panel_labels=[
            [f"similarity {metrics['similarity_full']:+.2f}"] + [caption("upto", layer) for layer in layers],
            [f"input '{data.settings['image']}'"] + [caption("except", layer) for layer in layers],
        ],
        title=figure_title(
            "Figure 9: GBP (max logit) in partly trained VGG-16, random layers drawn as in the paper; "
            "captions: input similarity, class distance to the fully trained map",
            data.model,
            data.text("weights"),
            data.text("note"),
        ),
        panel_size=2.6,
    )


EXPERIMENT = Experiment(
    name="fig9",
    title="GBP in partly trained VGG-16: trained conv layers filter out patches, dense layers hardly matter",
    full={
        "image": "tabby",
        "size": 224,
        "layers": ("conv1_1", "conv3_1", "conv5_1", "fc3"),
        "closer": ("conv1_1", "conv5_1"),
    },
    quick={
        "image": "tabby",
        "size": 112,
        "layers": ("conv1_1", "conv3_1", "conv5_1", "fc3"),
        "closer": ("conv1_1", "conv5_1"),
    },
    claims=(
        Claim(
            "conv5_1_closer_than_conv1_1",
            "GBP with trained weights up to conv5_1 is closer to the fully trained GBP map than with trained weights "
            "up to conv1_1 (value: distance(conv1_1*) - distance(conv5_1*))",
            "distance_gap",
            ">",
            0.0,
        ),
    ),
    measure=measure,
    draw=draw,
)
