"""Figure 3 and the premise of Eq. 9: in a trained network, GBP's and DeconvNet's maps
are about the same for every logit; saliency's are not.

The paper's Figure 3 (b, c) shows that the weights into two fc1 neurons of trained
VGG-16 have nearly the same narrow histogram, and reads it as evidence for Eq. 9: the
modified gradient of every fc1 neuron is about the same "partial image recovery"
F_conv(x), so GBP and DeconvNet do not depend on the logit. This experiment shows the
histograms and measures the premise itself:

- For the ImageNet-trained network of the run (the paper's VGG-16 where its checkpoint
  is present, else the bundled EfficientNet-Lite0 standing in) and for the digits VGG
  trained by this project (max-pooling, a dense fc1): each method's maps of ``logits``
  logits of each image (distinct logits drawn once from the run's seed; all 10 for the
  digits), the cosine between every two (:func:`backpropvis.core.metrics.pairwise_cosine_similarity`),
  averaged over the pairs and then over the images.
- The histograms of the weights into two units (rows of the weight matrix) of the
  ImageNet network's first dense layer (VGG-16's fc1, as in the paper; EfficientNet-Lite0's
  only one, its classifier) and of the digits VGG's fc1 and fc2, with the two-sample
  Kolmogorov-Smirnov statistic (:func:`backpropvis.core.metrics.ks_statistic`) between the two
  units; the same statistic for the network's random twin (the same layer redrawn with
  the paper's init, seeded by the run's seed and the layer's name), whose two units are
  drawn from one distribution: what "the same histogram" looks like at that sample size.

Claims (thresholds declared before any result was seen): for each network, GBP's and
DeconvNet's mean pairwise cosine is at least 0.875, the cosine of two maps within the class
distance :data:`~backpropvis.experiments.networks.NEARLY_SAME_DISTANCE` (0.5) that Figures 2
and 9 call "nearly the same"; saliency's is below 0.5 (a class distance above 1: another
logit's saliency map is further from this one than that of a map 60 degrees away); the two
units' weights have KS statistic below 0.1 (the paper's "nearly identical" histograms), in
VGG-16's fc1 as in the paper, in the stand-in's first dense layer and in the digits VGG's fc1.

What they catch: the plain gradient in every method's place (``plain-gradient``) gives GBP
and DeconvNet saliency's class-dependent maps, whose cosine is below the 0.875 bound; a
zero GBP or DeconvNet map (``zero-gbp``, ``zero-deconvnet``) has cosine 0 with everything.
A zero saliency map is not caught (its cosine 0 is below 0.5, as the paper's would be).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence, cast

import torch
from torch import nn
from tqdm.auto import tqdm

from ..core.metrics import ks_statistic, pairwise_cosine_similarity
from ..core.rules import METHOD_LABELS, PAPER_METHODS
from ..engine import attribute_many
from ..images.samples import sample_names
from ..models.init import PAPER_STD, generator_for, truncated_normal_
from ..models.randomization import layer_module, redrawable_layers
from ..render import figure_title, pyplot, save_figure
from .base import Claim, Experiment, FigureData, Measurement, RunContext
from .networks import DIGITS_NOTE, NEARLY_SAME_DISTANCE, MeasuredNetwork, digits_testbed, imagenet_testbed

__all__ = ["EXPERIMENT", "SAME_COSINE", "DIFFERENT_COSINE", "logit_maps_cosines", "unit_weights"]

SAME_COSINE = 1.0 - NEARLY_SAME_DISTANCE**2 / 2.0
"""0.875: the cosine of two unit maps at class distance 0.5 (||u - v||^2 = 2 - 2 cos)."""

DIFFERENT_COSINE = 0.5
"""Below it, two maps are more than 60 degrees apart (class distance above 1)."""

KS_ALIKE = 0.1
"""The Kolmogorov-Smirnov statistic below which two units' weight histograms count as nearly the same."""


def _logits(count: int, classes: int, seed: int) -> list[int]:
    """``count`` distinct logits (all when ``count >= classes``), drawn once from ``seed``, sorted."""
    if count >= classes:
        return list(range(classes))
    order = torch.randperm(classes, generator=torch.Generator().manual_seed(seed))
    return sorted(int(index) for index in order[:count])


_LOGITS_PER_CALL = 16
"""Logits per engine call: at most this many maps per method of one image are computed at a time."""


def logit_maps_cosines(testbed: MeasuredNetwork, logits: list[int], context: RunContext) -> dict[str, torch.Tensor]:
    """method -> [B, L, L]: the cosine between the maps of every two of ``logits``, per image.

    Each engine call takes one image and up to :data:`_LOGITS_PER_CALL` logits (every method
    from one forward pass); the maps of one image ([L, 3, S, S] per method) are kept until
    its cosines are computed.
    """
    chunks = [logits[start : start + _LOGITS_PER_CALL] for start in range(0, len(logits), _LOGITS_PER_CALL)]
    cosines: dict[str, list[torch.Tensor]] = {method: [] for method in PAPER_METHODS}
    progress = tqdm(
        total=len(testbed.inputs) * len(chunks),
        desc=f"fig3 {testbed.network.name}",
        unit="call",
        disable=not context.progress,
    )
    with progress:
        for image in range(len(testbed.inputs)):
            parts: dict[str, list[torch.Tensor]] = {method: [] for method in PAPER_METHODS}
            for chunk in chunks:
                maps = attribute_many(
                    testbed.network.model,
                    testbed.inputs[image : image + 1],
                    chunk,
                    PAPER_METHODS,
                    precision=context.precision,
                )
                for method in PAPER_METHODS:
                    parts[method].append(maps[method][:, 0].cpu())  # [chunk, 3, S, S]
                del maps
                progress.update()
            for method in PAPER_METHODS:
                cosines[method].append(pairwise_cosine_similarity(torch.cat(parts[method])))  # [L, L]
    return {method: torch.stack(matrices) for method, matrices in cosines.items()}


def _mean_off_diagonal(matrices: torch.Tensor) -> torch.Tensor:
    """[B, L, L] -> [B]: the mean of each matrix's entries off the diagonal (every pair once)."""
    rows, columns = torch.triu_indices(matrices.shape[-1], matrices.shape[-1], offset=1)
    return matrices[:, rows, columns].mean(dim=-1)


def first_dense_layer(model: nn.Module) -> str:
    """The name of the model's first dense layer (VGG-16's fc1, EfficientNet-Lite0's classifier)."""
    return next(name for name in redrawable_layers(model) if isinstance(layer_module(model, name), nn.Linear))


def unit_weights(model: nn.Module, layer: str, units: tuple[int, int], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """([2, N] the weights into two units of a dense layer, the same in its random twin).

    The twin's layer is the layer redrawn with the paper's init from (seed, layer name):
    the values the model's random twin (:func:`backpropvis.models.randomization.randomized`) has.
    """
    module = cast(nn.Linear, layer_module(model, layer))
    # init_layer_'s weight draw alone, without copying the whole layer (VGG-16's fc1: 411 MB)
    twin = torch.empty(module.weight.shape, dtype=module.weight.dtype)
    truncated_normal_(twin, PAPER_STD, generator_for(seed, layer))
    rows = list(units)
    return module.weight.detach()[rows].cpu().clone(), twin[rows].clone()


def measure(settings: Mapping[str, Any], context: RunContext) -> Measurement:
    """Pairwise cosines of each method's maps over logits, and two units' weight histograms, per network."""
    testbeds = [
        imagenet_testbed(context, settings["images"], settings.get("size")),
        digits_testbed(context, int(settings["digits_images"])),
    ]
    units = (int(settings["units"][0]), int(settings["units"][1]))
    fc2_units = (int(settings["digits_fc2_units"][0]), int(settings["digits_fc2_units"][1]))
    metrics: dict[str, float] = {}
    figure: dict[str, Any] = {"keys": [testbed.key for testbed in testbeds], "methods": list(PAPER_METHODS)}
    details: dict[str, Any] = {}
    histograms = []  # (slot, network name, layer, units)
    for testbed in testbeds:
        model, key = testbed.network.model, testbed.key
        with torch.no_grad():
            classes = int(model(testbed.inputs[:1]).shape[-1])
        logits = _logits(int(settings["logits"]), classes, context.seed)
        cosines = logit_maps_cosines(testbed, logits, context)
        per_image = {method: _mean_off_diagonal(matrices) for method, matrices in cosines.items()}  # [B]
        for method in PAPER_METHODS:
            metrics[f"{key}_{method}_cosine"] = float(per_image[method].mean())
            figure[f"{key}_{method}_matrix"] = cosines[method][0]  # [L, L], the first image
        figure[f"{key}_name"] = testbed.network.name
        figure[f"{key}_image"] = testbed.image_names[0]
        details[key] = {
            "model": testbed.network.name,
            "weights": testbed.network.weights,
            "images": testbed.image_names,
            "logits": logits,
            "cosine_per_image": {method: values.tolist() for method, values in per_image.items()},
        }
        if key == "imagenet":
            histograms.append(("imagenet_dense", testbed, first_dense_layer(model), units))
        else:
            histograms += [("digits_fc1", testbed, "fc1", units), ("digits_fc2", testbed, "fc2", fc2_units)]
    figure["histograms"] = [slot for slot, *_ in histograms]
    histogram_metrics, histogram_figure, histogram_details = _weight_histograms(histograms, context.seed)
    metrics.update(histogram_metrics)
    figure.update(histogram_figure)
    details.update(histogram_details)
    imagenet = testbeds[0].network
    notes = [note for note in (imagenet.note,) if note] + [DIGITS_NOTE]
    if imagenet.name != "vgg16":
        notes.append(
            f"{imagenet.name} has no fc1: its histograms are of its only dense layer, "
            f"{first_dense_layer(imagenet.model)} (the classifier), rows {units[0]} and {units[1]}."
        )
    figure["note"] = " ".join(notes)
    return Measurement(
        metrics=metrics,
        model=" and ".join(testbed.network.name for testbed in testbeds),
        weights="; ".join(f"{testbed.network.name}: {testbed.network.weights}" for testbed in testbeds),
        notes=tuple(notes),
        details=details,
        figure=figure,
    )


def _weight_histograms(
    histograms: Sequence[tuple[str, Any, str, tuple[int, int]]], seed: int
) -> tuple[dict[str, float], dict[str, Any], dict[str, Any]]:
    """Per (slot, testbed, layer, two units): the two units' incoming weights, trained and in
    the random twin ([2, N] each), their KS statistics, and what the figure and details keep."""
    metrics: dict[str, float] = {}
    figure: dict[str, Any] = {}
    details: dict[str, Any] = {}
    for slot, testbed, layer, chosen in histograms:
        trained, twin = unit_weights(testbed.network.model, layer, chosen, seed)
        metrics[f"{slot}_ks"] = ks_statistic(trained[0], trained[1])
        metrics[f"{slot}_ks_random_twin"] = ks_statistic(twin[0], twin[1])
        figure[f"{slot}_trained"], figure[f"{slot}_twin"] = trained, twin  # [2, N]
        figure[f"{slot}_label"] = f"{testbed.network.name} {layer}"
        figure[f"{slot}_units"] = list(chosen)
        details[slot] = {
            "network": testbed.network.name,
            "layer": layer,
            "units (rows, from 0)": list(chosen),
            "weights per unit": int(trained.shape[1]),
            "mean": trained.double().mean(dim=1).tolist(),
            "std": trained.double().std(dim=1).tolist(),
            "random twin std": twin.double().std(dim=1).tolist(),
        }
    return metrics, figure, details


def draw(data: FigureData, path: Path) -> None:
    """Row 1: the two units' weight histograms per layer, trained; row 2: the random twin's;
    then per network, each method's matrix of cosines between the maps of every two logits."""
    plt = pyplot()
    slots, keys, methods = data.texts("histograms"), data.texts("keys"), data.texts("methods")
    columns = max(len(slots), len(methods))
    figure, axes = plt.subplots(
        2 + len(keys),
        columns,
        figsize=(4.8 * columns, 3.5 * (2 + len(keys)) + 1.2),
        layout="constrained",
        squeeze=False,
    )
    for column, slot in enumerate(slots):
        for row, (kind, what) in enumerate((("trained", "trained"), ("twin", "random twin"))):
            _histograms(axes[row][column], data, slot, kind, what)
    for row, key in enumerate(keys, start=2):
        name, image = data.text(f"{key}_name"), data.text(f"{key}_image")
        for column, method in enumerate(methods):
            axis = axes[row][column]
            shown = axis.imshow(data.tensor(f"{key}_{method}_matrix").numpy(), vmin=-1.0, vmax=1.0, cmap="RdBu_r")
            cosine = data.metrics[f"{key}_{method}_cosine"]
            axis.set_title(
                f"{name}, {METHOD_LABELS[method]}: mean pairwise cosine {cosine:.3f}\n(all images; matrix: {image})",
                fontsize=9,
            )
            axis.set_xlabel("logit (position in the drawn set)", fontsize=8)
            axis.set_ylabel("logit", fontsize=8)
        figure.colorbar(shown, ax=list(axes[row][: len(methods)]), shrink=0.8, label="cosine between two maps")
    for row in range(2, 2 + len(keys)):
        for column in range(len(methods), columns):
            axes[row][column].axis("off")
    for row in range(2):
        for column in range(len(slots), columns):
            axes[row][column].axis("off")
    title = figure_title(
        "Figure 3: weights into two units of a dense layer (trained vs random twin, KS statistic), and the premise "
        "of Eq. 9: how alike each method's maps are across logits",
        data.model,
        data.weights.replace("; ", ";\n"),
    )
    save_figure(figure, path, title)


def _histograms(axis, data: FigureData, slot: str, kind: str, what: str) -> None:
    weights, units = data.tensor(f"{slot}_{kind}"), data.tensor(f"{slot}_units").tolist()
    values = weights.flatten()
    low, high = float(values.quantile(0.0005)), float(values.quantile(0.9995))
    bins = min(int(data.settings["bins"]), max(8, weights.shape[1] // 8))
    for unit, sample in zip(units, weights):
        axis.hist(sample.numpy(), bins=bins, range=(low, high), histtype="step", linewidth=1.4, label=f"unit {unit}")
    ks = data.metrics[f"{slot}_ks" if kind == "trained" else f"{slot}_ks_random_twin"]
    axis.set_title(
        f"{data.text(f'{slot}_label')}, {what}: KS statistic {ks:.3f}\n"
        f"({weights.shape[1]} weights per unit; std {float(weights.double().std()):.2e})",
        fontsize=9,
    )
    axis.set_xlabel("incoming weight", fontsize=8)
    axis.set_ylabel("count", fontsize=8)
    axis.legend(fontsize=7)


EXPERIMENT = Experiment(
    name="fig3",
    title="Trained networks: GBP's and DeconvNet's maps are about the same for every logit (Eq. 9), saliency's are "
    "not; two dense units' weights have nearly the same histogram",
    full={
        "images": tuple(sample_names()),
        "size": None,
        "logits": 64,
        "digits_images": 64,
        "units": (26, 44),
        "digits_fc2_units": (2, 4),
        "bins": 100,
    },
    quick={
        "images": ("tabby",),
        "size": None,
        "logits": 64,
        "digits_images": 16,
        "units": (26, 44),
        "digits_fc2_units": (2, 4),
        "bins": 100,
    },
    tiny={
        "images": ("tabby",),
        "size": 64,
        "logits": 10,
        "digits_images": 4,
        "units": (26, 44),
        "digits_fc2_units": (2, 4),
        "bins": 100,
    },
    claims=tuple(
        claim
        for key, network in (("imagenet", "the ImageNet-trained network"), ("digits", "the digits VGG"))
        for claim in (
            Claim(
                f"{key}_gbp_same_for_every_logit",
                f"In {network}, GBP's maps of two logits have mean pairwise cosine at least {SAME_COSINE}",
                f"{key}_gbp_cosine",
                ">=",
                SAME_COSINE,
            ),
            Claim(
                f"{key}_deconvnet_same_for_every_logit",
                f"In {network}, DeconvNet's maps of two logits have mean pairwise cosine at least {SAME_COSINE}",
                f"{key}_deconvnet_cosine",
                ">=",
                SAME_COSINE,
            ),
            Claim(
                f"{key}_saliency_differs_by_logit",
                f"In {network}, saliency's maps of two logits have mean pairwise cosine below {DIFFERENT_COSINE}",
                f"{key}_saliency_cosine",
                "<",
                DIFFERENT_COSINE,
            ),
        )
    )
    + (
        Claim(
            "imagenet_dense_histograms_alike",
            "The weights into two units (settings: units) of the ImageNet-trained network's first dense layer "
            f"(VGG-16's fc1, as the paper's neurons 26 and 44) have a two-sample KS statistic below {KS_ALIKE}",
            "imagenet_dense_ks",
            "<",
            KS_ALIKE,
        ),
        Claim(
            "digits_fc1_histograms_alike",
            f"The weights into two units of the digits VGG's fc1 have a two-sample KS statistic below {KS_ALIKE}",
            "digits_fc1_ks",
            "<",
            KS_ALIKE,
        ),
    ),
    measure=measure,
    draw=draw,
    catches=("plain-gradient", "zero-gbp", "zero-deconvnet"),
)
