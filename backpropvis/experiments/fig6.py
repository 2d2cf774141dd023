"""Figure 6: max-pooling and depth. A random three-layer CNN with a max-pool between
the ReLU and the readout, and a random VGG-16, each method for the max logit of
"tabby" (PAPER.md section 4).

Eq. 6-7: a max-pool's switches pick, with high probability, the units with
w . y > 0, so DeconvNet takes GBP's form and recovers the image too, while saliency
stays noise. Proposition 1: depth changes nothing in a random net.

The pool. The paper does not give it; the authors' code pools 9 x 9 windows at
stride 1 with TensorFlow's "SAME" padding, which is this figure's main row (``pool``).
Under that pool a window is all zeros almost never (256 filters, 81 positions each),
so every switch picks a unit with w . y > 0 and DeconvNet's map is exactly GBP's: no
texture-like artifacts there (Eq. 7's assumption fails only for windows of zeros and
for active units that lose to a larger one, and those get no gradient under either
rule). Other max-pools are measured rows without claims (``measured_pools``; 2 x 2 at
stride 2, where Eq. 7 fails for 44 % of the units and DeconvNet differs from GBP).
The control: the same CNN with an average pool of the main pool's geometry. An
average pool has no switches: every unit of a window gets its share of the gradient
whatever w . y, so DeconvNet keeps the unpooled form sum_i h(.) w_i of Theorem 2 and
stays noise, while GBP keeps its forward mask and still recovers. The same CNN with
no pool (same seed, so the same filters; Figure 4's top row) gives DeconvNet's
baseline.

"Noise" is an |input similarity| under 5 standard deviations of that of noise with the
map's own power spectrum (:func:`backpropvis.core.metrics.noise_similarity_std`: white
noise's 1 / sqrt(n) for the shallow CNN, larger for VGG-16's smoother maps) beyond
what choosing the largest of K logits gives a noise map (E[max of K normals] = 3.24
standard deviations for K = 1000, :func:`backpropvis.core.metrics.expected_normal_maximum`:
in these bias-free ReLU networks saliency . x is the logit itself, by Euler's identity).

What the claims catch (``tests/test_sabotage.py``): GBP computed as the plain gradient
is saliency, noise, so GBP's recovery claims fail (and DeconvNet's, which is then
saliency too); a zero GBP or DeconvNet map fails its recovery claims; a zero saliency
map fails "no map is all zeros"; GBP and DeconvNet swapped fail the average-pool
control (DeconvNet's place would show the image).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from ..core.metrics import cosine_similarity
from ..core.rules import METHOD_LABELS
from ..models import three_layer_cnn, vgg16
from ..models.shallow import ThreeLayerCNN
from ..render import CLIP_99, Picture, save_grid, to_display
from .base import Claim, Experiment, FigureData, Measurement, RunContext
from .method_maps import COLUMN_ORDER, MethodMaps, method_maps, method_maps_of_copies

__all__ = ["EXPERIMENT", "SharedReadoutRows", "measure", "pool_name"]


def pool_name(pool: Mapping[str, int]) -> str:
    """The metrics' prefix of a measured max-pool row: "maxpool2s2" for 2 x 2 windows at stride 2."""
    return f"maxpool{pool['window']}s{pool['stride']}"


def _pool_words(pool: Mapping[str, int], mode: str) -> str:
    padding = f", padding {pool['padding']}" if pool["padding"] else ""
    return f"{pool['window']}x{pool['window']} {mode}-pool, stride {pool['stride']}{padding}"


def _rows(settings: Mapping[str, Any]) -> list[tuple[str, Optional[Mapping[str, int]], str, str]]:
    """(metrics prefix, pool or None, pool mode, row label) of every CNN row, top to bottom."""
    main = settings["pool"]
    rows: list[tuple[str, Optional[Mapping[str, int]], str, str]] = [
        ("pool", main, "max", f"{_pool_words(main, 'max')}\n(the authors' code)"),
        ("average", main, "average", f"{_pool_words(main, 'average')}\n(control: no switches)"),
    ]
    rows += [
        (pool_name(pool), pool, "max", f"{_pool_words(pool, 'max')}\n(measured)") for pool in settings["measured_pools"]
    ]
    rows.append(("nopool", None, "max", "no pool (Figure 4)"))
    return rows


def _cnn(settings: Mapping[str, Any], seed: int, pool: Optional[Mapping[str, int]], mode: str) -> ThreeLayerCNN:
    """One row's CNN; its readout drawn on the fly (each pass draws only what it reads)."""
    options: dict[str, Any] = {"materialize_bytes": 0}
    if pool is not None:
        options.update(pool=pool["window"], pool_stride=pool["stride"], pool_padding=pool["padding"], pool_mode=mode)
    return three_layer_cnn(
        num_filters=settings["num_filters"],
        kernel_size=settings["kernel_size"],
        stride=settings["stride"],
        input_size=settings["input_size"],
        seed=seed,
        **options,
    )


class SharedReadoutRows(nn.Module):
    """Three-layer CNNs that differ only in their pool, with pooled features of one shape:
    the same filters w (one seed) and the same readout V (one seed, one feature shape),
    so ONE forward pass draws V's 3.2 G values (at the paper's size) for all of them.
    Sample r of a batch goes through row r's pool; each sample's maps are those of its
    row's own network (tests check them against each network alone).

    Shapes: [R, 3, S, S] (the image R times) -> [R, K].
    """

    def __init__(self, rows: Sequence[ThreeLayerCNN]) -> None:
        super().__init__()
        first = rows[0]
        if any(row.feature_shape != first.feature_shape for row in rows):
            raise ValueError("rows that share a readout need pooled features of one shape")
        self.conv, self.relu, self.readout = first.conv, first.relu, first.readout
        self.preprocessing = first.preprocessing
        self.pools = nn.ModuleList([row.pool if row.pool is not None else nn.Identity() for row in rows])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.relu(self.conv(x))  # [R, N, H', W']
        pooled = torch.cat([pool(features[row : row + 1]) for row, pool in enumerate(self.pools)])
        return self.readout(torch.flatten(pooled, 1))


def _relative_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    """||a - b|| / ||b||, NaN for a zero b."""
    norm = float(b.double().norm())
    return float((a.double() - b.double()).norm()) / norm if norm > 0 else float("nan")


def _method_maps_per_row(
    settings: Mapping[str, Any], context: RunContext, rows: Sequence[tuple]
) -> dict[str, MethodMaps]:
    """Row name -> each method's map: the CNN rows batched by feature shape (one pass per
    shape), then random VGG-16 as "vgg"."""
    by_shape: dict[tuple, list[tuple[str, ThreeLayerCNN]]] = {}
    for name, pool, mode, _ in rows:
        cnn = _cnn(settings, context.seed, pool, mode)
        by_shape.setdefault(cnn.feature_shape, []).append((name, cnn))
    results: dict[str, MethodMaps] = {}
    for group in tqdm(by_shape.values(), desc="fig6 CNN passes", unit="pass", disable=not context.progress):
        shared = SharedReadoutRows([cnn for _, cnn in group]).to(context.device)
        found = method_maps_of_copies(shared, len(group), COLUMN_ORDER, context, settings["target"])
        results.update({name: maps for (name, _), maps in zip(group, found)})
        del shared
    vgg = vgg16("random", seed=context.seed).to(context.device)
    results["vgg"] = method_maps(
        vgg, COLUMN_ORDER, context, settings["target"], vgg.preprocessing.resized(settings["vgg_input_size"])
    )
    del vgg
    return results


def _notes(settings: Mapping[str, Any], metrics: Mapping[str, float]) -> list[str]:
    """The figure's notes: the main pool's choice, the average-pool control, noise sd, each measured pool."""
    main = settings["pool"]
    notes = [
        f"The paper does not give the max-pool: the main row pools {main['window']}x{main['window']} windows at stride "
        f"{main['stride']} (padding {main['padding']}), as the authors' code does. There DeconvNet's map differs from "
        f"GBP's by {metrics['pool_deconvnet_vs_gbp']:.2g} (relative L2; cosine "
        f"{metrics['pool_deconvnet_gbp_cosine']:.3f}): it would be 0 if no window were all zeros, since a switch "
        "in a window with an active unit picks an active unit.",
        "The average-pool row is the control: without switches DeconvNet's input similarity is "
        f"{metrics['average_deconvnet_similarity']:+.3f} ({metrics['average_deconvnet_noise_sigmas']:.1f} noise sd; "
        f"GBP's {metrics['average_gbp_similarity']:.2f}).",
        "Noise sd: the input similarity's standard deviation for noise with the map's own spectrum. For the largest "
        f"of K logits a noise map sits E[max of K normals] = {metrics['logit_allowance_sigmas']:.2f} sd above 0 "
        "(saliency . x is the logit in these bias-free ReLU nets); the claims count noise sd beyond that.",
    ]
    for pool in settings["measured_pools"]:
        name = pool_name(pool)
        notes.append(
            f"{_pool_words(pool, 'max')}: DeconvNet input similarity {metrics[f'{name}_deconvnet_similarity']:.2f}, "
            f"GBP {metrics[f'{name}_gbp_similarity']:.2f}; DeconvNet differs from GBP by "
            f"{metrics[f'{name}_deconvnet_vs_gbp']:.2f} (relative L2)."
        )
    return notes


def measure(settings: Mapping[str, Any], context: RunContext) -> Measurement:
    """Each method's map in every CNN row and in random VGG-16; metrics
    ``<row>_<method>_similarity`` and ``<row>_<method>_noise_sigmas`` for the rows "pool"
    (the main max-pool), "average" (the control), "maxpool<w>s<s>" (measured), "nopool"
    and "vgg", DeconvNet's gain from the pool and its distance to GBP's map per row."""
    rows = _rows(settings)
    results = _method_maps_per_row(settings, context, rows)

    metrics: dict[str, float] = {}
    for network, maps in results.items():
        for method in COLUMN_ORDER:
            metrics[f"{network}_{method}_similarity"] = maps.similarity[method]
            metrics[f"{network}_{method}_noise_sigmas"] = maps.noise_sigmas(method)
            metrics[f"{network}_{method}_noise_excess"] = maps.noise_excess(method)
        metrics[f"{network}_deconvnet_vs_gbp"] = _relative_difference(maps.maps["deconvnet"], maps.maps["gbp"])
        metrics[f"{network}_deconvnet_gbp_cosine"] = float(cosine_similarity(maps.maps["deconvnet"], maps.maps["gbp"]))
    metrics.update(
        logit_allowance_sigmas=results["pool"].logit_allowance,
        deconvnet_pool_gain=metrics["pool_deconvnet_similarity"] - metrics["nopool_deconvnet_similarity"],
        zero_maps=float(sum(len(maps.zero_maps()) for maps in results.values())),
    )
    notes = _notes(settings, metrics)
    return Measurement(
        metrics=metrics,
        model=(
            f"three-layer CNN (N={settings['num_filters']}, {settings['kernel_size']}x{settings['kernel_size']}, "
            f"stride {settings['stride']}, {settings['input_size']} px), no pool, max- and average-pooled; "
            f"VGG-16 ({settings['vgg_input_size']} px)"
        ),
        weights=f"random, truncated normal std 0.1 (seed {context.seed})",
        notes=tuple(notes),
        details={
            "image": context.image,
            "targets": {network: maps.target for network, maps in results.items()},
            "rows": [name for name, *_ in rows] + ["vgg"],
            "row_labels": [label for *_, label in rows] + ["random VGG-16"],
        },
        figure={
            "methods": list(COLUMN_ORDER),
            "cnn_picture": results["pool"].picture,
            "vgg_picture": results["vgg"].picture,  # [3, S, S] in [0, 1]
            # [rows, 3 methods, 3, S, S] for the CNN rows, [3 methods, 3, S', S'] for VGG-16
            "cnn_maps": torch.stack([torch.stack([results[name].maps[m] for m in COLUMN_ORDER]) for name, *_ in rows]),
            "vgg_maps": torch.stack([results["vgg"].maps[m] for m in COLUMN_ORDER]),
        },
    )


def draw(data: FigureData, path: Path) -> None:
    """One row per CNN (main max-pool, average-pool control, measured max-pools, no pool)
    and one for random VGG-16: the input, then each method's map with its input
    similarity in noise standard deviations."""
    settings, methods, metrics, details = data.settings, data.texts("methods"), data.metrics, data.details
    names = details["rows"]

    def caption(network: str, method: str) -> str:
        return (
            f"{METHOD_LABELS[method]}: input sim. {metrics[f'{network}_{method}_similarity']:+.2f}\n"
            f"({metrics[f'{network}_{method}_noise_sigmas']:.0f} noise sd)"
        )

    cnn_maps, rows, captions = data.tensor("cnn_maps"), [], []
    for number, network in enumerate(names):
        picture = data.tensor("vgg_picture") if network == "vgg" else data.tensor("cnn_picture")
        maps = data.tensor("vgg_maps") if network == "vgg" else cnn_maps[number]
        size = settings["vgg_input_size"] if network == "vgg" else settings["input_size"]
        row: Sequence[Optional[Picture]] = [picture] + [to_display(map_) for map_ in maps]
        rows.append(row)
        captions.append([f"input ({size} px)"] + [caption(network, m) for m in methods])
    save_grid(
        rows,
        path,
        row_labels=[
            f"random 3-layer CNN\n{label}" if network != "vgg" else label
            for network, label in zip(names, details["row_labels"])
        ],
        column_labels=["input"] + [METHOD_LABELS[m] for m in methods],
        panel_labels=captions,
        title=(
            f'Figure 6: max-pooling and depth in random nets, "{details["image"]}", {settings["target"]} logit; '
            f"CNN: N={settings['num_filters']}, {settings['kernel_size']}x{settings['kernel_size']}, stride "
            f"{settings['stride']}\n(noise sd: the input similarity's spread for noise with the map's own spectrum; "
            f"the choice of the largest logit alone puts noise {metrics['logit_allowance_sigmas']:.1f} sd above 0)"
        ),
        panel_size=2.4,
        display=CLIP_99,
    )


FULL: dict[str, Any] = {
    "target": "max",
    "input_size": 224,
    "num_filters": 256,
    "kernel_size": 7,
    "stride": 2,
    "pool": {"window": 9, "stride": 1, "padding": 4},
    "measured_pools": [{"window": 2, "stride": 2, "padding": 0}],
    "vgg_input_size": 224,
}
"""The paper's CNN (N = 256, 7 x 7, stride 2, 224 px) with the authors' 9 x 9 stride-1 "SAME" max-pool, the
same pool averaging (the control), a 2 x 2 stride-2 max-pool (measured), no pool; random VGG-16 at 224 px."""

EXPERIMENT = Experiment(
    name="fig6",
    title="Figure 6: with max-pooling DeconvNet recovers the image too; random VGG-16 behaves like the shallow CNN",
    full=FULL,
    quick={**FULL, "input_size": 112},
    tiny={
        **FULL,
        "input_size": 48,
        "num_filters": 128,
        "vgg_input_size": 112,
        "pool": {"window": 5, "stride": 1, "padding": 2},
    },
    catches=("plain-gradient", "zero-gbp", "zero-deconvnet", "zero-saliency"),
    claims=(
        Claim(
            "gbp_pool_recovers",
            "with the max-pool GBP still shows the image: input similarity at least 0.5",
            "pool_gbp_similarity",
            ">=",
            0.5,
        ),
        Claim(
            "deconvnet_pool_recovers",
            "with the max-pool DeconvNet shows the image too (Eq. 6-7): input similarity at least 0.5",
            "pool_deconvnet_similarity",
            ">=",
            0.5,
        ),
        Claim(
            "deconvnet_needs_pooling",
            "DeconvNet's input similarity with the max-pool exceeds its similarity without a pool by at least 0.1",
            "deconvnet_pool_gain",
            ">=",
            0.1,
        ),
        Claim(
            "saliency_pool_is_noise",
            "with the max-pool saliency stays noise: |input similarity| under 5 noise standard deviations beyond the "
            "largest logit's allowance",
            "pool_saliency_noise_excess",
            "<",
            5.0,
        ),
        Claim(
            "deconvnet_needs_switches",
            "with an average pool of the same windows (no switches) DeconvNet falls back to noise: |input "
            "similarity| under 5 noise standard deviations beyond the largest logit's allowance",
            "average_deconvnet_noise_excess",
            "<",
            5.0,
        ),
        Claim(
            "gbp_vgg_recovers",
            "in random VGG-16 GBP shows the image: input similarity at least 0.5",
            "vgg_gbp_similarity",
            ">=",
            0.5,
        ),
        Claim(
            "deconvnet_vgg_shows_image",
            "in random VGG-16 DeconvNet carries the image: input similarity at least 5 noise standard deviations "
            "beyond the largest logit's allowance",
            "vgg_deconvnet_noise_excess",
            ">=",
            5.0,
        ),
        Claim(
            "deconvnet_vgg_fine_detail",
            "in random VGG-16 DeconvNet reconstructs the image like GBP (the paper: every fine-grained detail): "
            "input similarity at least 0.5",
            "vgg_deconvnet_similarity",
            ">=",
            0.5,
        ),
        Claim(
            "saliency_vgg_is_noise",
            "in random VGG-16 saliency is noise: |input similarity| under 5 noise standard deviations beyond the "
            "largest logit's allowance",
            "vgg_saliency_noise_excess",
            "<",
            5.0,
        ),
        Claim("no_zero_map", "no map is all zeros", "zero_maps", "<=", 0.0),
    ),
    measure=measure,
    draw=draw,
)
