"""Figure 5: how many first-layer weights GBP needs to recover the image, with and
without local connections (PAPER.md section 4).

GBP of "tabby" for the max logit in a random three-layer CNN with N filters (7 x 7 x 3,
stride 2) and in a random three-layer FCN with Nh hidden units on a 64 x 64 x 3 input.
Each map is scored two ways:

- input similarity: :func:`~backpropvis.core.metrics.input_similarity`, the per-channel
  centred cosine with the input x;
- recovery: :func:`~backpropvis.theory.limits.recovery`, the cosine with Theorem 1's limit
  image x_lim = sum_j D_j^T y_j / ||y_j|| (for the FCN the one patch is the whole
  image, so x_lim = x / ||x||), which is what GBP converges to as N grows: the CNN's
  limit is a locally normalised image, not x itself.

The weights comparison: a first layer has N p weights in the CNN (p = 3 k^2) and
Nh d in the FCN (d = 3 S^2). With the best similarity reached by at most W weights
(the running maximum of each curve) interpolated linearly in log10 W, W_net(s) is the
number of weights a network needs to reach similarity s. Over the levels s that both
curves reach, ``weight_ratio_min`` is the smallest W_FCN(s) / W_CNN(s) (21 levels
evenly spread over that range). When no level is reached by both, the one-sided bound
the data allow is reported instead (``weight_ratio_kind`` in the details).

Absolute claims beside the comparisons: every CNN map carries the image (its input
similarity at least 5 standard deviations of noise's,
:func:`backpropvis.core.metrics.noise_similarity_std`, beyond the 3.24 that choosing the
largest of 1000 logits gives noise), and the FCN's GBP recovers as much
as Theorem 1 predicts for one patch of d values and Nh units, within a factor 2
(:func:`backpropvis.theory.limits.expected_gbp_recovery`). What they catch
(``tests/test_sabotage.py``): GBP computed as the plain gradient is saliency, noise in
both networks, so the CNN's maps fall to noise and the FCN's far below the
prediction (the rises and the weights ratio of noise could pass by chance); a zero
GBP map has input similarity 0 and recovery 0. Only GBP is computed here, so the
other methods' sabotages do not apply.

``--quick`` runs the CNN on 112 px and the FCN on 48 px with every Nh scaled by
(48 / 64)^2: d / Nh, and so the recovery Theorem 1 expects of each FCN, is the
paper's, at a third of the drawn weights.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..models import three_layer_cnn, three_layer_fcn
from ..render import CLIP_99, pyplot, save_figure, similarity_caption, to_display
from ..theory.limits import expected_gbp_recovery, limit_image, recovery
from .base import Claim, Experiment, FigureData, Measurement, RunContext
from .method_maps import MethodMaps, method_maps

__all__ = ["EXPERIMENT", "measure", "weights_to_reach", "weight_ratio"]

_LEVELS = 21


def weights_to_reach(weights: Sequence[float], similarities: Sequence[float], level: float) -> float:
    """W(s): the first-layer weights needed to reach similarity ``level``.

    The curve is the running maximum of ``similarities`` (the best reached with at most
    that many weights), interpolated linearly in log10(weights); returns the first
    crossing, or NaN when ``level`` is outside [first value, best value].
    """
    logs = np.log10(np.asarray(weights, dtype=float))
    best = np.maximum.accumulate(np.asarray(similarities, dtype=float))
    if level < best[0] or level > best[-1]:
        return float("nan")
    if level == best[0]:
        return float(10 ** logs[0])
    above = int(np.argmax(best >= level))
    low, high = best[above - 1], best[above]
    fraction = (level - low) / (high - low)
    return float(10 ** (logs[above - 1] + fraction * (logs[above] - logs[above - 1])))


def weight_ratio(
    cnn_weights: Sequence[float],
    cnn_similarity: Sequence[float],
    fcn_weights: Sequence[float],
    fcn_similarity: Sequence[float],
) -> dict:
    """How many times more first-layer weights the FCN needs than the CNN for one similarity.

    Returns a dict: ``ratio`` (the value the claim reads), ``kind`` ("min over common
    levels", "lower bound" when the FCN never reaches the CNN's smallest level, "upper
    bound" when the CNN never reaches the FCN's smallest level), ``levels`` and
    ``ratios`` (the per-level values, empty for a bound).
    """
    cnn_best = np.maximum.accumulate(np.asarray(cnn_similarity, dtype=float))
    fcn_best = np.maximum.accumulate(np.asarray(fcn_similarity, dtype=float))
    low, high = max(cnn_best[0], fcn_best[0]), min(cnn_best[-1], fcn_best[-1])
    if low <= high:
        levels = np.linspace(low, high, _LEVELS)
        ratios = [
            weights_to_reach(fcn_weights, fcn_similarity, s) / weights_to_reach(cnn_weights, cnn_similarity, s)
            for s in levels
        ]
        return {
            "ratio": float(min(ratios)),
            "kind": "min over common levels",
            "levels": levels.tolist(),
            "ratios": ratios,
        }
    if fcn_best[-1] < cnn_best[0]:  # the FCN's best is below the CNN's smallest network
        return {"ratio": float(fcn_weights[-1] / cnn_weights[0]), "kind": "lower bound", "levels": [], "ratios": []}
    return {"ratio": float(fcn_weights[0] / cnn_weights[-1]), "kind": "upper bound", "levels": [], "ratios": []}


def _min_rise(values: Sequence[float]) -> float:
    """The smallest step between consecutive values (> 0 when they rise at every step)."""
    return float(np.min(np.diff(np.asarray(values, dtype=float))))


def measure(settings: Mapping, context: RunContext) -> Measurement:
    """GBP in each CNN and each FCN; similarities, recoveries, rises and the weights ratio."""
    kernel, stride = settings["kernel_size"], settings["stride"]
    cnn_maps: list[MethodMaps] = []
    fcn_maps: list[MethodMaps] = []
    sizes = [("cnn", n) for n in settings["num_filters"]] + [("fcn", nh) for nh in settings["hidden"]]
    for network, size in tqdm(sizes, desc="fig5 networks", unit="network", disable=not context.progress):
        model: nn.Module
        if network == "cnn":
            model = three_layer_cnn(
                num_filters=size,
                kernel_size=kernel,
                stride=stride,
                input_size=settings["cnn_input_size"],
                seed=context.seed,
            )
        else:
            model = three_layer_fcn(hidden=size, input_size=settings["fcn_input_size"], seed=context.seed)
        maps = method_maps(model.to(context.device), ("gbp",), context, settings["target"])
        (cnn_maps if network == "cnn" else fcn_maps).append(maps)
        del model

    cnn_limit = limit_image(cnn_maps[0].inputs[0].double(), kernel, stride, kernel // 2)
    fcn_limit = fcn_maps[0].inputs[0]
    cnn_similarity = [maps.similarity["gbp"] for maps in cnn_maps]
    fcn_similarity = [maps.similarity["gbp"] for maps in fcn_maps]
    cnn_recovery = [float(recovery(maps.maps["gbp"], cnn_limit)) for maps in cnn_maps]
    fcn_recovery = [float(recovery(maps.maps["gbp"], fcn_limit)) for maps in fcn_maps]
    p = 3 * kernel * kernel
    d = 3 * settings["fcn_input_size"] ** 2
    cnn_weights = [n * p for n in settings["num_filters"]]
    fcn_weights = [nh * d for nh in settings["hidden"]]
    ratio = weight_ratio(cnn_weights, cnn_similarity, fcn_weights, fcn_similarity)
    ratio_recovery = weight_ratio(cnn_weights, cnn_recovery, fcn_weights, fcn_recovery)
    fcn_predicted = [expected_gbp_recovery(nh, d) for nh in settings["hidden"]]
    fcn_log2_errors = [abs(math.log2(r / e)) if r > 0 else math.nan for r, e in zip(fcn_recovery, fcn_predicted)]

    metrics: dict[str, float] = {}
    for n, s, r in zip(settings["num_filters"], cnn_similarity, cnn_recovery):
        metrics[f"cnn_N{n}_similarity"], metrics[f"cnn_N{n}_recovery"] = s, r
    for nh, s, r, e in zip(settings["hidden"], fcn_similarity, fcn_recovery, fcn_predicted):
        metrics[f"fcn_Nh{nh}_similarity"], metrics[f"fcn_Nh{nh}_recovery"] = s, r
        metrics[f"fcn_Nh{nh}_predicted_recovery"] = e
    metrics.update(
        cnn_min_noise_sigmas=float(np.min([maps.noise_excess("gbp") for maps in cnn_maps])),  # NaN for a zero map
        fcn_recovery_max_log2_error=float(np.max(fcn_log2_errors)),  # NaN (a failing claim) if any is NaN
        zero_maps=float(sum(len(maps.zero_maps()) for maps in cnn_maps + fcn_maps)),
        cnn_min_rise=_min_rise(cnn_similarity),
        fcn_min_rise=_min_rise(fcn_similarity),
        weight_ratio_min=ratio["ratio"],
        weight_ratio_min_recovery=ratio_recovery["ratio"],
        largest_cnn_minus_fcn_similarity=cnn_similarity[-1] - fcn_similarity[-1],
        largest_cnn_minus_fcn_recovery=cnn_recovery[-1] - fcn_recovery[-1],
    )
    notes = [
        f"Weights ratio ({ratio['kind']}): {ratio['ratio']:.3g} by input similarity, "
        f"{ratio_recovery['ratio']:.3g} ({ratio_recovery['kind']}) by recovery.",
        f"Paper's sentence (CNN N={settings['num_filters'][-1]} vs FCN Nh={settings['hidden'][-1]}): "
        f"input similarity {cnn_similarity[-1]:.3f} vs {fcn_similarity[-1]:.3f}, "
        f"recovery {cnn_recovery[-1]:.3f} vs {fcn_recovery[-1]:.3f}.",
        "Recovery is the plain cosine with Theorem 1's limit image (for the CNN the locally normalised image "
        "sum_j D_j^T y_j / ||y_j||, for the FCN x itself); input similarity is the per-channel centred cosine with x.",
    ]
    return Measurement(
        metrics=metrics,
        model=(
            f"three-layer CNN ({kernel}x{kernel}x3, stride {stride}, {settings['cnn_input_size']} px) and "
            f"three-layer FCN ({settings['fcn_input_size']}x{settings['fcn_input_size']}x3 input)"
        ),
        weights=f"random, truncated normal std 0.1 (seed {context.seed})",
        notes=tuple(notes),
        details={
            "image": context.image,
            "cnn_first_layer_weights": cnn_weights,
            "fcn_first_layer_weights": fcn_weights,
            "weight_ratio_similarity": ratio,
            "weight_ratio_recovery": ratio_recovery,
            "targets": {"cnn": [m.target for m in cnn_maps], "fcn": [m.target for m in fcn_maps]},
        },
        figure={
            "cnn_picture": cnn_maps[0].picture,
            "fcn_picture": fcn_maps[0].picture,  # [3, S, S] in [0, 1]
            "cnn_gbp": torch.stack([maps.maps["gbp"] for maps in cnn_maps]),  # [len(num_filters), 3, S, S]
            "fcn_gbp": torch.stack([maps.maps["gbp"] for maps in fcn_maps]),  # [len(hidden), 3, S', S']
        },
    )


def draw(data: FigureData, path: Path) -> None:
    """Two rows of GBP maps (CNN by N, FCN by Nh) above three plots of the similarities."""
    settings, metrics, details = data.settings, data.metrics, data.details
    curves = {
        net: {
            "sizes": settings[key],
            "similarity": [metrics[f"{net}_{symbol}{size}_similarity"] for size in settings[key]],
            "recovery": [metrics[f"{net}_{symbol}{size}_recovery"] for size in settings[key]],
            "weights": details[f"{net}_first_layer_weights"],
        }
        for net, symbol, key in (("cnn", "N", "num_filters"), ("fcn", "Nh", "hidden"))
    }
    ratio = details["weight_ratio_similarity"]
    plt = pyplot()
    columns = max(len(settings["num_filters"]), len(settings["hidden"])) + 1
    figure = plt.figure(figsize=(2.4 * columns, 10.5), layout="constrained")
    top, bottom = figure.subfigures(2, 1, height_ratios=[2.0, 1.2])
    axes = top.subplots(2, columns, squeeze=False)
    for row, (net, symbol, side) in enumerate(
        (("cnn", "N", settings["cnn_input_size"]), ("fcn", "Nh", settings["fcn_input_size"]))
    ):
        curve = curves[net]
        for axis in axes[row]:
            axis.set_xticks([])
            axis.set_yticks([])
        axes[row][0].imshow(data.tensor(f"{net}_picture").permute(1, 2, 0).numpy())
        axes[row][0].set_title(f"input ({side} px)", fontsize=9)
        axes[row][0].set_ylabel(f"random 3-layer {net.upper()}", fontsize=10)
        panels = zip(curve["sizes"], data.tensor(f"{net}_gbp"), curve["similarity"], curve["recovery"])
        for column, (size, gbp, similarity, recovered) in enumerate(panels, start=1):
            axes[row][column].imshow(to_display(gbp))
            axes[row][column].set_title(f"GBP-{net.upper()}, {symbol} = {size}", fontsize=9)
            axes[row][column].set_xlabel(
                f"{similarity_caption(similarity)}\n{similarity_caption(recovered, 'recovery')}", fontsize=8
            )
        for column in range(len(curve["sizes"]) + 1, columns):
            axes[row][column].axis("off")
    top.suptitle(
        f'Figure 5: GBP of "{details["image"]}" ({settings["target"]} logit) as the first layer grows', fontsize=11
    )

    plots = bottom.subplots(1, 3)
    for axis, net, label, colour in (
        (plots[0], "cnn", "N (CNN filters)", "tab:blue"),
        (plots[1], "fcn", "Nh (FCN hidden units)", "tab:orange"),
    ):
        sizes = curves[net]["sizes"]
        axis.plot(sizes, curves[net]["similarity"], "o-", color=colour, label="input similarity")
        axis.plot(sizes, curves[net]["recovery"], "s--", color=colour, label="recovery (cos with x_lim)")
        if net == "fcn":
            predicted = [metrics[f"fcn_Nh{size}_predicted_recovery"] for size in sizes]
            axis.plot(sizes, predicted, ":", color="black", label="Theorem 1: 1/sqrt(1 + 9.3 d/Nh)")
        axis.set_xscale("log")
        axis.set_xticks(list(sizes))
        axis.set_xticklabels([str(size) for size in sizes], fontsize=8)
        axis.minorticks_off()
        axis.set_xlabel(label, fontsize=9)
        axis.set_ylabel("similarity", fontsize=9)
        axis.set_ylim(0, 1)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7, loc="upper left")
    axis = plots[2]
    for net, colour in (("cnn", "tab:blue"), ("fcn", "tab:orange")):
        axis.plot(
            curves[net]["weights"], curves[net]["similarity"], "o-", color=colour, label=f"{net.upper()} input sim."
        )
        axis.plot(curves[net]["weights"], curves[net]["recovery"], "s--", color=colour, label=f"{net.upper()} recovery")
    if ratio["levels"]:
        axis.axhspan(ratio["levels"][0], ratio["levels"][-1], color="grey", alpha=0.15, label="levels both reach")
    axis.set_xscale("log")
    axis.set_xlabel("first-layer weights (N p  /  Nh d)", fontsize=9)
    axis.set_ylabel("similarity", fontsize=9)
    axis.set_ylim(0, 1)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7, loc="upper left")
    axis.set_title(f"FCN / CNN weights for equal input sim.:\n{ratio['ratio']:.3g} ({ratio['kind']})", fontsize=8)
    save_figure(figure, path, display=CLIP_99)


FULL: dict = {
    "target": "max",
    "cnn_input_size": 224,
    "kernel_size": 7,
    "stride": 2,
    "num_filters": (8, 16, 32, 64),
    "fcn_input_size": 64,
    "hidden": (5000, 10000, 40000, 70000),
}
"""The paper's sweeps: N filters of 7 x 7 x 3 at stride 2 on 224 px, Nh hidden units on 64 px."""

QUICK: dict = {**FULL, "cnn_input_size": 112, "fcn_input_size": 48, "hidden": (2813, 5625, 22500, 39375)}
"""The CNN on 112 px; the FCN on 48 px with Nh scaled by (48 / 64)^2 (rounded), so that d / Nh
is the paper's."""

EXPERIMENT = Experiment(
    name="fig5",
    title="Figure 5: GBP needs far fewer first-layer weights with local connections (CNN by N, FCN by Nh)",
    full=FULL,
    quick=QUICK,
    tiny={**FULL, "cnn_input_size": 48, "num_filters": (8, 32, 128), "fcn_input_size": 32, "hidden": (250, 1000, 4000)},
    catches=("plain-gradient", "zero-gbp"),
    claims=(
        Claim("cnn_rises_with_n", "the CNN's GBP input similarity rises at every step of N", "cnn_min_rise", ">", 0.0),
        Claim(
            "fcn_rises_with_nh", "the FCN's GBP input similarity rises at every step of Nh", "fcn_min_rise", ">", 0.0
        ),
        Claim(
            "cnn_gbp_shows_the_image",
            "the CNN's GBP map carries the image at every N: input similarity at least 5 noise standard deviations "
            "(about 1 / sqrt(n)) beyond the largest logit's allowance",
            "cnn_min_noise_sigmas",
            ">=",
            5.0,
        ),
        Claim(
            "fcn_gbp_as_theory_predicts",
            "the FCN's GBP recovers what Theorem 1 predicts for one patch of d values: at every Nh its cosine with x "
            "is within a factor 2 of 1 / sqrt(1 + 9.3 d / Nh)",
            "fcn_recovery_max_log2_error",
            "<=",
            1.0,
        ),
        Claim(
            "cnn_needs_fewer_weights",
            "the CNN reaches a given input similarity with at least 1000x fewer first-layer weights (N p vs Nh d) "
            "than the FCN (smallest ratio over the levels both reach)",
            "weight_ratio_min",
            ">=",
            1000.0,
        ),
        Claim(
            "paper_sentence_similarity",
            "the paper's sentence, by input similarity: the CNN at the largest N (64) beats the FCN at the largest "
            "Nh (70000 in the paper)",
            "largest_cnn_minus_fcn_similarity",
            ">",
            0.0,
        ),
        Claim(
            "paper_sentence_recovery",
            "the paper's sentence, by recovery (cosine with the limit image): the CNN at the largest N (64) beats "
            "the FCN at the largest Nh (70000 in the paper)",
            "largest_cnn_minus_fcn_recovery",
            ">",
            0.0,
        ),
        Claim("no_zero_map", "no map is all zeros", "zero_maps", "<=", 0.0),
    ),
    measure=measure,
    draw=draw,
)
