"""Theory study "dead-zones": Eq. 9, GBP in a trained network is class-independent filtering.

In a trained CNN the first-layer filters occupy a small subspace of patch space, so
the forward ReLUs filter out whole families of patches ("dead zones", Figure 3a),
and GBP's map becomes F_conv(x), a partial recovery of the image that does not
depend on the class (Eq. 9). Measured on the trained network of the run (VGG-16
where its weights are present, else EfficientNet-Lite0):

- the dead zone of the first layer: the fraction of patches (conv output positions)
  that no first-layer filter passes (activation derivative 0 for every filter), the
  mean fraction of filters passing a patch, and the same dead fraction at every
  later activation;
- the subspace: the effective dimension of the first-layer filters against random
  filters of the same shape (the paper's init);
- the map against a linear edge detector: rank correlation between each method's
  magnitude map and the Sobel edge magnitude of the input (scikit-image), both
  blurred to remove the stride grid, and each method's class distance between the
  max logit and a random one;
- GBP's input similarity, against that of noise with the map's own spectrum
  (:func:`backpropvis.core.metrics.noise_similarity_std`, 5 standard deviations beyond the
  3.24 that choosing the largest of 1000 logits can give noise): Eq. 9's "partial
  image recovery".

What the claims catch (``tests/test_sabotage.py``): GBP (or DeconvNet) computed as the
plain gradient is as class-sensitive as saliency (the ratios become 1); a zero GBP map
carries no image; a zero saliency map makes the ratios undefined (NaN); a zero
DeconvNet map fails "no map is all zeros".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np
import torch
from torch import nn

from ..core.metrics import class_distance, expected_normal_maximum, input_similarity, noise_similarity_std, ratio
from ..core.rules import METHOD_LABELS, PAPER_METHODS
from ..engine import Attributions, attribute_many
from ..models import generator_for, truncated_normal_
from ..render import CLIP_99, map_panel, pyplot, save_figure
from ..theory.limits import effective_dimension
from .base import Claim, Experiment, FigureData, Measurement, RunContext
from .networks import imagenet_testbed

__all__ = ["EXPERIMENT", "ActivationPasses", "activation_passes"]

FULL: dict[str, Any] = {
    "targets": ["max", "random"],
    "blur_sigma": 2.0,
    "random_filters_seed": 0,
    "input_size": None,
}
"""Targets: the predicted logit and a random other one (drawn from a generator seeded
with the run's seed). The blur (Gaussian, in pixels) removes the stride-2 grid of the
maps before the rank correlation with the edge map. ``input_size`` None: the trained
network's own crop (224)."""

QUICK: dict[str, Any] = dict(FULL)
"""One forward pass and six maps of the trained network: the same as the full run."""

CLAIMS = (
    Claim(
        "trained_filters_small_subspace",
        "trained first-layer filters span a small subspace of patch space: "
        "their effective dimension is under half that of random filters of the same shape",
        "effective_dimension_ratio",
        "<",
        0.5,
    ),
    Claim(
        "gbp_class_independent",
        "GBP in the trained network hardly depends on the class (Eq. 9): its class "
        "distance is under half of saliency's",
        "gbp_over_saliency_class_distance",
        "<",
        0.5,
    ),
    Claim(
        "deconvnet_class_independent",
        "DeconvNet in the trained network hardly depends on the class (Eq. 9): "
        "its class distance is under half of saliency's",
        "deconvnet_over_saliency_class_distance",
        "<",
        0.5,
    ),
    Claim(
        "gbp_carries_the_image",
        "GBP's map of the max logit carries the image (Eq. 9, partial image recovery): "
        "input similarity at least 5 noise standard deviations beyond the largest logit's allowance",
        "gbp_image_noise_sigmas",
        ">=",
        5.0,
    ),
    Claim("no_zero_map", "no map is all zeros", "zero_maps", "<=", 0.0),
    Claim(
        "gbp_follows_edges",
        "GBP's magnitude follows the input's edges (Sobel): positive rank correlation",
        "edge_correlation_gbp",
        ">",
        0.0,
    ),
)


class ActivationPasses:
    """Which (filter, position) pairs each activation passes, for one forward pass.

    Used as a context manager around the forward pass: it hooks every ``nn.ReLU`` and
    ``nn.Hardtanh`` (ReLU6) module of the model and records, for each call on a 4-D
    feature map, where the activation's derivative is non-zero (a > 0, or
    min < a < max for ReLU6), and the first convolution's weights. The hooks are
    removed on exit.

    Attributes:
        layers: one entry per activation call on [B, N, H', W']: (module path,
            bool [N, H', W'] of the first sample).
        first_filters: [N, C, k, k] the first convolution called, or None.
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.layers: list[tuple[str, torch.Tensor]] = []
        self.first_filters: Optional[torch.Tensor] = None
        self._handles: list = []

    def __enter__(self) -> ActivationPasses:
        for name, module in self.model.named_modules():
            if isinstance(module, (nn.ReLU, nn.Hardtanh)):
                self._handles.append(module.register_forward_pre_hook(self._activation(name)))
            elif isinstance(module, nn.Conv2d):
                self._handles.append(module.register_forward_hook(self._convolution))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()

    def _activation(self, name: str):
        def hook(module: nn.Module, args: tuple) -> None:
            pre = args[0].detach()
            if pre.dim() != 4:
                return
            if isinstance(module, nn.Hardtanh):
                passes = (pre > module.min_val) & (pre < module.max_val)
            else:
                passes = pre > 0
            self.layers.append((name, passes[0].cpu()))

        return hook

    def _convolution(self, module: nn.Conv2d, args: tuple, output) -> None:
        if self.first_filters is None:
            self.first_filters = module.weight.detach().cpu()


def activation_passes(model: nn.Module, inputs: torch.Tensor) -> ActivationPasses:
    """Run ``model`` on ``inputs`` [1, 3, S, S] once and record :class:`ActivationPasses`."""
    with ActivationPasses(model) as recorded, torch.no_grad():
        model(inputs)
    return recorded


def _edge_correlation(maps: torch.Tensor, edges: np.ndarray, sigma: float) -> float:
    """Spearman correlation of the blurred magnitude sum_c |map| with the blurred edge map."""
    from scipy.ndimage import gaussian_filter
    from scipy.stats import spearmanr

    magnitude = maps.abs().sum(0).double().numpy()
    return float(spearmanr(gaussian_filter(magnitude, sigma).ravel(), gaussian_filter(edges, sigma).ravel())[0])


def _filter_dimensions(trained_filters: torch.Tensor, seed: int) -> dict[str, float]:
    """The first layer's filters [N, C, k, k]: their effective dimension, that of random
    filters of the same shape (the paper's init, drawn from ``seed``), their ratio, and the
    patch's dimension C k k."""
    metrics: dict[str, float] = {}
    random_filters = truncated_normal_(
        torch.empty(trained_filters.shape),
        0.1,
        generator_for(seed, "dead-zones-random-filters"),
    )
    metrics["effective_dimension_trained"] = effective_dimension(trained_filters)
    metrics["effective_dimension_random"] = effective_dimension(random_filters)
    metrics["effective_dimension_ratio"] = ratio(
        metrics["effective_dimension_trained"], metrics["effective_dimension_random"]
    )
    metrics["patch_dimension"] = float(trained_filters[0].numel())
    return metrics


def _map_metrics(
    maps: Attributions, edges: np.ndarray, inputs: torch.Tensor, settings: Mapping[str, Any]
) -> dict[str, float]:
    """Per method its first map's correlation with the image's edges [S, S] and its class
    distance between the two targets; GBP's and DeconvNet's class distance over saliency's;
    GBP's input similarity and its noise sd beyond the max logit's allowance; the zero maps."""
    metrics: dict[str, float] = {}
    for method in PAPER_METHODS:
        first_map = maps[method][0, 0].cpu()
        metrics[f"edge_correlation_{method}"] = _edge_correlation(first_map, edges, settings["blur_sigma"])
        metrics[f"class_distance_{method}"] = float(class_distance(maps[method][0, 0], maps[method][1, 0]))
    for method in ("gbp", "deconvnet"):
        metrics[f"{method}_over_saliency_class_distance"] = ratio(
            metrics[f"class_distance_{method}"], metrics["class_distance_saliency"]
        )
    gbp_map = maps["gbp"][0, 0].cpu()
    metrics["input_similarity_gbp"] = float(input_similarity(gbp_map, inputs[0].cpu()))
    allowance = expected_normal_maximum(maps.logits.shape[-1]) if settings["targets"][0] == "max" else 0.0
    metrics["gbp_image_noise_sigmas"] = (
        abs(metrics["input_similarity_gbp"]) / noise_similarity_std(inputs[0].cpu(), gbp_map) - allowance
    )  # NaN for a zero map
    metrics["zero_maps"] = float(sum(not bool(maps[method][:, 0].any()) for method in PAPER_METHODS))
    return metrics


def measure(settings: Mapping[str, Any], context: RunContext) -> Measurement:
    from skimage.filters import sobel

    testbed = imagenet_testbed(context, [context.image], settings["input_size"] or None)
    network, model, inputs = testbed.network, testbed.network.model, testbed.inputs
    recorded = activation_passes(model, inputs)
    if not recorded.layers or recorded.first_filters is None:
        raise RuntimeError(f"{network.name} showed no convolution or no ReLU / ReLU6 module")
    metrics: dict[str, float] = {}
    first_name, first = recorded.layers[0]
    dead = ~first.any(dim=0)  # [H', W']: no filter passes the patch
    metrics["dead_fraction_first_layer"] = float(dead.double().mean())
    metrics["passing_fraction_first_layer"] = float(first.double().mean())
    per_layer = [float((~passes.any(dim=0)).double().mean()) for _, passes in recorded.layers]
    passing = [float(passes.double().mean()) for _, passes in recorded.layers]
    metrics["dead_fraction_max_over_layers"] = max(per_layer)
    metrics["passing_fraction_min_over_layers"] = min(passing)
    metrics["layers_with_dead_patches"] = sum(value > 0 for value in per_layer)

    metrics.update(_filter_dimensions(recorded.first_filters, settings["random_filters_seed"]))

    generator = torch.Generator().manual_seed(context.seed)
    maps = attribute_many(
        model, inputs, list(settings["targets"]), list(PAPER_METHODS), generator=generator, precision=context.precision
    )
    picture = testbed.pictures[0]
    edges = sobel(picture.mean(0).double().numpy())
    metrics.update(_map_metrics(maps, edges, inputs, settings))
    targets = maps.targets[:, 0].tolist()
    notes = [
        f"First activation ({first_name}): {metrics['dead_fraction_first_layer']:.1%} of the patches are passed by no "
        f"filter; on average {metrics['passing_fraction_first_layer']:.0%} of the filters pass a patch. "
        f"{metrics['layers_with_dead_patches']} of {len(per_layer)} activations have dead patches "
        f"(at most {metrics['dead_fraction_max_over_layers']:.1%}); the least open activation passes "
        f"{metrics['passing_fraction_min_over_layers']:.0%} of its (channel, position) pairs.",
        f"Maps for logits {targets[0]} (max) and {targets[1]} (random).",
    ]
    if network.note:
        notes.insert(0, network.note)
    details = {
        "dead_fraction_per_activation": per_layer,
        "passing_fraction_per_activation": passing,
        "activations": [name for name, _ in recorded.layers],
        "targets": targets,
    }
    figure = {
        "methods": list(PAPER_METHODS),
        "maps": torch.stack([maps[method][:, 0] for method in PAPER_METHODS]).cpu(),  # [M, 2 targets, 3, S, S]
        "picture": picture,  # [3, S, S] in [0, 1]
        "edges": edges,  # [S, S] Sobel magnitude
        "share": first.double().mean(0),  # [H', W']: the share of first-layer filters passing each patch
    }
    return Measurement(metrics, network.name, network.weights, tuple(notes), details, figure)


def draw(data: FigureData, path: Path) -> None:
    """The input, its edges and each method's maps for both targets; the first layer's
    passing filters and effective dimension; the dead fraction at every activation."""
    metrics, details, edges = data.metrics, data.details, data.arrays["edges"]
    per_layer, passing, targets = (
        details["dead_fraction_per_activation"],
        details["passing_fraction_per_activation"],
        details["targets"],
    )
    plt = pyplot()
    figure = plt.figure(figsize=(15, 9))
    grid = figure.add_gridspec(3, 5, height_ratios=[1, 1, 0.9])
    map_panel(figure.add_subplot(grid[0, 0]), data.tensor("picture").permute(1, 2, 0).numpy(), "input")
    map_panel(figure.add_subplot(grid[1, 0]), edges / max(edges.max(), 1e-12), "Sobel edge map")
    share = data.arrays["share"]
    axis = figure.add_subplot(grid[0, 4])
    shown = axis.imshow(share, cmap="magma", vmin=0, vmax=1)
    axis.set_xticks([])
    axis.set_yticks([])
    axis.set_title("first layer: share of filters passing", fontsize=9)
    axis.set_xlabel(f"dead patches {metrics['dead_fraction_first_layer']:.1%}", fontsize=8)
    figure.colorbar(shown, ax=axis, fraction=0.046)
    for column, (method, maps) in enumerate(zip(data.texts("methods"), data.tensor("maps")), start=1):
        for row in (0, 1):
            caption = (
                f"edge corr. {metrics[f'edge_correlation_{method}']:+.2f}"
                if row == 0
                else f"class distance {metrics[f'class_distance_{method}']:.3f}"
            )
            map_panel(
                figure.add_subplot(grid[row, column]),
                maps[row],
                f"{METHOD_LABELS[method]}, logit {targets[row]}",
                caption,
            )
    axis = figure.add_subplot(grid[1, 4])
    axis.bar(
        ["trained", "random"],
        [metrics["effective_dimension_trained"], metrics["effective_dimension_random"]],
        color=["tab:blue", "tab:gray"],
    )
    axis.set_title(f"first-layer filters: effective dimension\n(of {int(metrics['patch_dimension'])})", fontsize=9)
    axis = figure.add_subplot(grid[2, :])
    axis.plot(range(len(per_layer)), per_layer, "o-", color="tab:red", label="positions passed by no channel (dead)")
    axis.plot(range(len(passing)), passing, "s--", color="tab:blue", label="(channel, position) pairs passed")
    axis.set_xlabel("activation (forward order)")
    axis.set_ylabel("fraction")
    axis.set_ylim(-0.05, 1.05)
    axis.set_title("dead zones at every activation", fontsize=9)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    figure.suptitle(f"Eq. 9 in trained {data.model}: dead zones, and GBP against an edge detector", fontsize=11)
    save_figure(figure, path, display=CLIP_99)


EXPERIMENT = Experiment(
    name="dead-zones",
    title="Eq. 9: dead zones of trained filters; GBP as class-independent filtering, against an edge map",
    full=FULL,
    quick=QUICK,
    claims=CLAIMS,
    measure=measure,
    draw=draw,
    group="theory",
    tiny={**FULL, "input_size": 64},
    catches=("plain-gradient", "zero-gbp", "zero-deconvnet", "zero-saliency"),
)
