"""Figure 6: max-pooling and depth. A random three-layer CNN with a max-pool between
the ReLU and the readout, and a random VGG-16, each method for the max logit of
"tabby" (PAPER.md section 4).

Eq. 6-7: a max-pool's switches pick, with high probability, the units with
w . y > 0, so DeconvNet takes GBP's form and recovers the image too, while saliency
stays noise. The same CNN without the pool (same seed, so the same filters) is run
for DeconvNet's comparison. Proposition 1: depth changes nothing in a random net.
The paper does not give the pool's size; the model's pool takes ``pool`` x ``pool``
windows at stride ``pool`` (the authors' code used 9 x 9 windows at stride 1).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional, Sequence

import torch
from tqdm.auto import tqdm

from ..metrics import ratio
from ..models import three_layer_cnn, vgg16
from ..render import Picture, save_grid, similarity_caption, to_display
from ..rules import METHOD_LABELS
from .base import Claim, Experiment, FigureData, Measurement, RunContext
from .method_maps import COLUMN_ORDER, method_maps

__all__ = ["EXPERIMENT", "measure"]

NETWORKS = ("pool", "nopool", "vgg")
"""The networks run: the pooled CNN, the same CNN without the pool, random VGG-16."""


def _cnn(settings: Mapping, seed: int, pool):
    return three_layer_cnn(
        num_filters=settings["num_filters"], kernel_size=settings["kernel_size"], stride=settings["stride"],
        pool=pool, input_size=settings["input_size"], seed=seed,
    )


def measure(settings: Mapping, context: RunContext) -> Measurement:
    """Each method's map in the pooled CNN and in random VGG-16, DeconvNet's in the CNN
    without the pool; metrics ``<network>_<method>_similarity`` and the claims' ratios."""
    results = {}
    for network in tqdm(NETWORKS, desc="fig6 networks", unit="network", disable=not context.progress):
        if network == "vgg":
            model = vgg16("random", seed=context.seed).to(context.device)
            preprocessing = model.preprocessing.resized(settings["vgg_input_size"])
            methods = COLUMN_ORDER
        else:
            model = _cnn(settings, context.seed, settings["pool"] if network == "pool" else None).to(context.device)
            preprocessing, methods = model.preprocessing, COLUMN_ORDER if network == "pool" else ("deconvnet",)
        results[network] = method_maps(model, methods, context, settings["target"], preprocessing)
        del model

    metrics = {
        f"{network}_{method}_similarity": value
        for network, maps in results.items()
        for method, value in maps.similarity.items()
    }
    saliency = abs(metrics["vgg_saliency_similarity"])
    metrics.update(
        deconvnet_pool_gain=metrics["pool_deconvnet_similarity"] - metrics["nopool_deconvnet_similarity"],
        vgg_deconvnet_over_abs_saliency=ratio(metrics["vgg_deconvnet_similarity"], saliency),
        vgg_abs_saliency_similarity=saliency,
    )
    return Measurement(
        metrics=metrics,
        model=(
            f"three-layer CNN (N={settings['num_filters']}, {settings['kernel_size']}x{settings['kernel_size']}, "
            f"stride {settings['stride']}, {settings['input_size']} px) with and without a {settings['pool']}x"
            f"{settings['pool']} max-pool; VGG-16 ({settings['vgg_input_size']} px)"
        ),
        weights=f"random, truncated normal std 0.1 (seed {context.seed})",
        notes=(
            f"The paper does not give the max-pool's size: {settings['pool']}x{settings['pool']} windows at stride "
            f"{settings['pool']} here (the authors' code used 9x9 windows at stride 1).",
        ),
        details={"image": context.image, "targets": {network: maps.target for network, maps in results.items()}},
        figure={
            "methods": list(COLUMN_ORDER),
            "pool_picture": results["pool"].picture, "vgg_picture": results["vgg"].picture,  # [3, S, S] in [0, 1]
            "pool_maps": torch.stack([results["pool"].maps[m] for m in COLUMN_ORDER]),  # [3 methods, 3, S, S]
            "nopool_deconvnet": results["nopool"].maps["deconvnet"],  # [3, S, S]
            "vgg_maps": torch.stack([results["vgg"].maps[m] for m in COLUMN_ORDER]),  # [3 methods, 3, S', S']
        },
    )


def draw(data: FigureData, path: Path) -> None:
    """Row 1: the pooled CNN (and DeconvNet without the pool); row 2: random VGG-16."""
    settings, methods = data.settings, data.texts("methods")

    def caption(network: str, method: str) -> str:
        return similarity_caption(data.metrics[f"{network}_{method}_similarity"])

    rows: Sequence[Sequence[Optional[Picture]]] = [
        [data.tensor("pool_picture")] + [to_display(map_) for map_ in data.tensor("pool_maps")]
        + [to_display(data.tensor("nopool_deconvnet"))],
        [data.tensor("vgg_picture")] + [to_display(map_) for map_ in data.tensor("vgg_maps")] + [None],
    ]
    captions = [
        [f"input ({settings['input_size']} px)"]
        + [f"{METHOD_LABELS[m]}-pool\n{caption('pool', m)}" for m in methods]
        + [f"DeconvNet, no pool (Fig. 4)\n{caption('nopool', 'deconvnet')}"],
        [f"input ({settings['vgg_input_size']} px)"]
        + [f"{METHOD_LABELS[m]}-VGG\n{caption('vgg', m)}" for m in methods],
    ]
    save_grid(
        rows,
        path,
        row_labels=[
            f"random 3-layer CNN\n+ {settings['pool']}x{settings['pool']} max-pool, N={settings['num_filters']}",
            "random VGG-16",
        ],
        column_labels=["input"] + [METHOD_LABELS[m] for m in methods] + ["DeconvNet, no pool"],
        panel_labels=captions,
        title=f'Figure 6: max-pooling and depth in random nets, "{data.details["image"]}", {settings["target"]} logit',
    )


EXPERIMENT = Experiment(
    name="fig6",
    title="Figure 6: with max-pooling DeconvNet recovers the image too; random VGG-16 behaves like the shallow CNN",
    full={
        "target": "max",
        "input_size": 224,
        "num_filters": 256,
        "kernel_size": 7,
        "stride": 2,
        "pool": 2,
        "vgg_input_size": 224,
    },
    quick={
        "target": "max",
        "input_size": 112,
        "num_filters": 256,
        "kernel_size": 7,
        "stride": 2,
        "pool": 2,
        "vgg_input_size": 224,
    },
    claims=(
        Claim(
            "deconvnet_needs_pooling",
            "DeconvNet's input similarity with max-pooling exceeds its similarity without pooling by at least 0.1",
            "deconvnet_pool_gain",
            ">=",
            0.1,
        ),
        Claim(
            "gbp_vgg_recovers",
            "in random VGG-16 GBP's input similarity is at least 0.5",
            "vgg_gbp_similarity",
            ">=",
            0.5,
        ),
        Claim(
            "deconvnet_vgg_beats_saliency",
            "in random VGG-16 DeconvNet's input similarity is at least 5x saliency's absolute value",
            "vgg_deconvnet_over_abs_saliency",
            ">=",
            5.0,
        ),
        Claim(
            "saliency_vgg_is_noise",
            "in random VGG-16 saliency's |input similarity| is below 0.1",
            "vgg_abs_saliency_similarity",
            "<",
            0.1,
        ),
    ),
    measure=measure,
    draw=draw,
)
