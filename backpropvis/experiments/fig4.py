"""Figure 4: local connections. A random three-layer CNN and a random three-layer FCN,
each method for the max logit of "tabby" (PAPER.md section 4).

Theorem 1 predicts that only GBP in the CNN recovers the image (each patch gets
E[w 1(w.y > 0)], which points along the patch); Theorem 2 that saliency and
DeconvNet are noise. In the FCN the one "patch" is the whole 3 S^2-dimensional
image, far too large for Nh hidden units, so GBP is noise there too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch
from tqdm.auto import tqdm

from ..models import three_layer_cnn, three_layer_fcn
from ..render import save_grid, similarity_caption, to_display
from ..rules import METHOD_LABELS
from .base import Claim, Experiment, FigureData, Measurement, RunContext
from .method_maps import COLUMN_ORDER, method_maps

__all__ = ["EXPERIMENT", "measure"]

NETWORKS = ("cnn", "fcn")
"""The figure's rows, top to bottom."""


def _build(network: str, settings: Mapping, seed: int):
    if network == "cnn":
        return three_layer_cnn(
            num_filters=settings["num_filters"], kernel_size=settings["kernel_size"], stride=settings["stride"],
            input_size=settings["input_size"], seed=seed,
        )
    return three_layer_fcn(hidden=settings["hidden"], input_size=settings["input_size"], seed=seed)


def measure(settings: Mapping, context: RunContext) -> Measurement:
    """Each method's map in each network; metrics ``<network>_<method>_similarity`` and
    ``others_max_abs_similarity`` (the largest |input similarity| but GBP-CNN's)."""
    results = {}
    for network in tqdm(NETWORKS, desc="fig4 networks", unit="network", disable=not context.progress):
        model = _build(network, settings, context.seed).to(context.device)
        results[network] = method_maps(model, COLUMN_ORDER, context, settings["target"])
        del model

    metrics = {
        f"{network}_{method}_similarity": results[network].similarity[method]
        for network in NETWORKS
        for method in COLUMN_ORDER
    }
    others = [abs(value) for key, value in metrics.items() if key != "cnn_gbp_similarity"]
    metrics["others_max_abs_similarity"] = max(others)

    model = (
        f"three-layer CNN (N={settings['num_filters']}, {settings['kernel_size']}x{settings['kernel_size']}, "
        f"stride {settings['stride']}) and three-layer FCN (Nh={settings['hidden']}), {settings['input_size']} px input"
    )
    return Measurement(
        metrics=metrics,
        model=model,
        weights=f"random, truncated normal std 0.1 (seed {context.seed})",
        details={"image": context.image, "targets": {network: results[network].target for network in NETWORKS}},
        figure={
            "methods": list(COLUMN_ORDER),
            "pictures": torch.stack([results[network].picture for network in NETWORKS]),  # [2, 3, S, S] in [0, 1]
            "maps": torch.stack([torch.stack([results[network].maps[method] for method in COLUMN_ORDER])
                                 for network in NETWORKS]),  # [2, 3 methods, 3, S, S]
        },
    )


def draw(data: FigureData, path: Path) -> None:
    """Rows: the CNN and the FCN; columns: the input, then each method's map."""
    settings, methods = data.settings, data.texts("methods")
    names = {"cnn": "CNN", "fcn": "FCN"}
    rows, captions = [], []
    for number, network in enumerate(NETWORKS):
        maps = data.tensor("maps")[number]
        rows.append([data.tensor("pictures")[number]] + [to_display(map_) for map_ in maps])
        captions.append(
            [f"input ({settings['input_size']} px)"]
            + [f"{METHOD_LABELS[m]}-{names[network]}\n{similarity_caption(data.metrics[f'{network}_{m}_similarity'])}"
               for m in methods]
        )
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
        title=f"Figure 4: random CNN vs random FCN, \"{data.details['image']}\", {settings['target']} logit",
    )


EXPERIMENT = Experiment(
    name="fig4",
    title="Figure 4: only GBP in a random CNN recovers the image (local connections)",
    full={"target": "max", "input_size": 224, "num_filters": 256, "kernel_size": 7, "stride": 2,
          "hidden": 4096},
    quick={"target": "max", "input_size": 112, "num_filters": 256, "kernel_size": 7, "stride": 2,
           "hidden": 4096},
    claims=(
        Claim("gbp_cnn_recovers", "GBP in the random CNN shows the image: input similarity at least 0.5",
              "cnn_gbp_similarity", ">=", 0.5),
        Claim("others_are_noise",
              "every other panel (DeconvNet and saliency in the CNN, all three in the FCN) is noise: "
              "|input similarity| below 0.2", "others_max_abs_similarity", "<", 0.2),
    ),
    measure=measure,
    draw=draw,
)
