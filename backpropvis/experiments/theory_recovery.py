"""Theory study "recovery": Theorem 1 and the recovery law, in the random three-layer CNN and FCN.

GBP's map (from the engine) is compared with Theorem 1's limit image
x_lim = sum_j D_j^T y_j / ||y_j|| (:func:`backpropvis.theory.limits.limit_image`); its
recovery is the cosine between the two. Three measurements:

1. the recovery law: recovery against the number of filters N, several seeds each,
   and the slope of log(1 - recovery) against log N (Theorem 1: eps^2 = O~(p / N),
   so about -1 once recovery is near 1);
2. the filter size p: the N needed for a given recovery, for 3 x 3 ... 11 x 11
   filters, with one patch per pixel (stride = filter side, the theorem's setting)
   and with the paper's stride 2 (overlapping patches average the noise away);
3. the FCN, whose limit image is x itself (one patch: the whole image): how many more
   hidden units it needs than the CNN needs filters, against d / p.

What the claims catch (``tests/test_sabotage.py``): only GBP is computed. Computed as
the plain gradient it is saliency, which recovers nothing at any N: 1 - recovery stays
near 1 and the law's slope near 0 instead of -1; a zero map has recovery 0, with the
same effect (and an undefined amplitude).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from tqdm.auto import tqdm

from ..engine import PrecisionLike, attribute_many
from ..models import three_layer_fcn
from ..render import CLIP_99, MINMAX, Picture, map_panel, pyplot, save_figure
from ..theory.limits import PowerLaw, filters_needed, fit_power_law, law_amplitude, recovery, tangent_squared
from .base import Claim, Experiment, FigureData, Measurement, RunContext
from .networks import model_inputs
from .random_cnn import RandomCNN, random_cnn

__all__ = ["EXPERIMENT"]

FULL: dict[str, Any] = {
    "input_size": 224,
    "kernel_size": 7,
    "stride": 2,
    "num_filters": [8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096],
    "seeds": [0, 1, 2, 3, 4],
    "fit_from_filters": 256,
    "shown_filters": [8, 64, 512, 4096],
    "num_classes": 2,
    "target": 0,
    "filter_sizes": [3, 5, 7, 11],
    "filter_sweep_filters": [64, 256, 1024],
    "filter_sweep_overlapping_stride": 2,
    "target_recovery": 0.9,
    "fcn_input_size": 64,
    "fcn_hidden": [256, 1024, 4096],
    "fcn_cnn_filters": [16, 64, 256],
}
"""The paper's CNN geometry (7 x 7 x 3 filters, stride 2, 224 px). GBP's map for one
logit depends on the readout only through V[:, k], so the readout has 2 logits: the
maps are exactly those of the first logit of a 1000-logit network, and N = 4096 stays
cheap. The law is fitted from N = 256 on, where recovery is near 1 and 1 - cos ~ tan^2 / 2
(below, 1 - recovery saturates at 1 and the slope flattens); tan^2 = 1 / recovery^2 - 1
is fitted over every N as well. Seeds are offsets added to the run's seed."""

QUICK: dict[str, Any] = {
    **FULL,
    "num_filters": [8, 32, 128, 256, 1024, 4096],
    "seeds": [0, 1],
    "shown_filters": [8, 32, 256, 4096],
    "filter_sweep_filters": [256],
    "fcn_hidden": [1024, 4096],
    "fcn_cnn_filters": [64, 256],
}

CLAIMS = (
    Claim(
        "recovery_law_slope_low",
        "1 - recovery falls like 1 / N: the slope of log(1 - recovery) against log N is at least -1.2",
        "recovery_law_slope",
        ">=",
        -1.2,
    ),
    Claim("recovery_law_slope_high", "... and at most -0.8", "recovery_law_slope", "<=", -0.8),
    Claim(
        "recovery_at_4096",
        "GBP recovers the image: recovery at the largest N of the sweep (4096) is at least 0.95",
        "recovery_at_largest_n",
        ">=",
        0.95,
    ),
    Claim(
        "filters_needed_linear_in_p",
        "the N needed for a given recovery grows linearly with the filter size p "
        "(one patch per pixel): the log-log slope is within 0.2 of 1",
        "filters_needed_exponent_error",
        "<=",
        0.2,
    ),
    Claim(
        "fcn_needs_d_over_p_more",
        "the FCN needs about d / p times more hidden units than the CNN needs filters "
        "(one patch per pixel) for the same recovery: the ratio is within a factor 2 of d / p",
        "fcn_ratio_log2_error",
        "<=",
        1.0,
    ),
)


def _gbp_recovery(
    model, inputs: torch.Tensor, limit: torch.Tensor, target: int, precision: PrecisionLike
) -> tuple[float, torch.Tensor]:
    """GBP's map of ``target`` from the engine (at ``precision``) and its cosine with ``limit``."""
    gbp = attribute_many(model, inputs, [target], ["gbp"], precision=precision)["gbp"][0, 0]
    return float(recovery(gbp, limit.to(gbp))), gbp.cpu()


def _cnn_recovery(context: RunContext, settings: Mapping[str, Any], **config) -> tuple[float, torch.Tensor, RandomCNN]:
    """(recovery, GBP map, the network with its input and limit image) of one random CNN."""
    cnn = random_cnn(context, num_classes=settings["num_classes"], **config)
    value, gbp = _gbp_recovery(cnn.model, cnn.inputs, cnn.limit, settings["target"], context.precision)
    return value, gbp, cnn


def _law(settings: Mapping[str, Any], context: RunContext, metrics: dict, progress) -> dict:
    rows, shown, picture = [], {}, None
    geometry = {key: settings[key] for key in ("input_size", "kernel_size", "stride")}
    for count in settings["num_filters"]:
        for offset in settings["seeds"]:
            value, gbp, cnn = _cnn_recovery(
                context, settings, num_filters=count, seed=context.seed + offset, **geometry
            )
            rows.append((count, value))
            if offset == settings["seeds"][0] and count in settings["shown_filters"]:
                shown[count] = gbp
            if picture is None:
                picture, limit = cnn.picture, cnn.limit
            progress.update()
    counts, values = np.array(rows).T
    for count in settings["num_filters"]:
        metrics[f"recovery_at_{count}"] = float(values[counts == count].mean())
    metrics["recovery_at_largest_n"] = metrics[f"recovery_at_{max(settings['num_filters'])}"]
    fitted = counts >= settings["fit_from_filters"]
    law = fit_power_law(counts[fitted], 1 - values[fitted])
    metrics.update(
        recovery_law_slope=law.slope,
        recovery_law_slope_low=law.slope_low,
        recovery_law_slope_high=law.slope_high,
        recovery_law_r_squared=law.r_squared,
    )
    tangent = fit_power_law(counts, tangent_squared(values).tolist())
    metrics.update(
        tan2_law_slope_all=tangent.slope,
        tan2_law_slope_all_low=tangent.slope_low,
        tan2_law_slope_all_high=tangent.slope_high,
    )
    everything = fit_power_law(counts, 1 - values)
    metrics["recovery_law_slope_all"] = everything.slope
    return {
        "counts": counts,
        "values": values,
        "law": law,
        "tangent": tangent,
        "shown": shown,
        "picture": picture,
        "limit": limit,
    }


def _filter_sizes(settings: Mapping[str, Any], context: RunContext, metrics: dict, progress) -> dict:
    needed: dict[str, list[float]] = {"kernel": [], "overlapping": []}
    for kernel in settings["filter_sizes"]:
        for mode, stride, counts in (
            ("kernel", kernel, settings["filter_sweep_filters"]),
            ("overlapping", settings["filter_sweep_overlapping_stride"], settings["filter_sweep_filters"][-1:]),
        ):
            values = []
            for count in counts:
                value, _, _ = _cnn_recovery(
                    context,
                    settings,
                    num_filters=count,
                    kernel_size=kernel,
                    stride=stride,
                    input_size=settings["input_size"],
                )
                values.append(value)
                progress.update()
            amplitude = law_amplitude(counts, values)
            needed[mode].append(filters_needed(amplitude, settings["target_recovery"]))
            suffix = "" if mode == "kernel" else "_overlapping"
            metrics[f"filters_needed_{kernel}x{kernel}{suffix}"] = needed[mode][-1]
    sizes = [3 * kernel * kernel for kernel in settings["filter_sizes"]]
    exponent = fit_power_law(sizes, needed["kernel"])
    metrics.update(
        filters_needed_exponent=exponent.slope,
        filters_needed_exponent_low=exponent.slope_low,
        filters_needed_exponent_high=exponent.slope_high,
        filters_needed_exponent_error=abs(exponent.slope - 1.0),
        filters_needed_exponent_overlapping=fit_power_law(sizes, needed["overlapping"]).slope,
    )
    return {"sizes": sizes, "needed": needed, "exponent": exponent}


def _fcn(settings: Mapping[str, Any], context: RunContext, metrics: dict, progress) -> dict:
    size, kernel = settings["fcn_input_size"], settings["kernel_size"]
    fcn_values = []
    for hidden in settings["fcn_hidden"]:
        model = three_layer_fcn(hidden, size, settings["num_classes"], seed=context.seed).to(context.device)
        inputs = model_inputs(model, [context.image], context.device)
        # x_lim = x
        fcn_values.append(_gbp_recovery(model, inputs, inputs[0], settings["target"], context.precision)[0])
        progress.update()
    cnn_values = []
    for count in settings["fcn_cnn_filters"]:
        cnn_values.append(
            _cnn_recovery(context, settings, num_filters=count, kernel_size=kernel, stride=kernel, input_size=size)[0]
        )
        progress.update()
    fcn_amplitude = law_amplitude(settings["fcn_hidden"], fcn_values)
    cnn_amplitude = law_amplitude(settings["fcn_cnn_filters"], cnn_values)
    d_over_p = (3 * size * size) / (3 * kernel * kernel)
    ratio = fcn_amplitude / cnn_amplitude
    metrics.update(
        fcn_amplitude=fcn_amplitude,
        cnn_amplitude=cnn_amplitude,
        fcn_over_cnn_units=ratio,
        d_over_p=d_over_p,
        fcn_ratio_log2_error=abs(math.log2(ratio / d_over_p)),
    )
    for hidden, value in zip(settings["fcn_hidden"], fcn_values):
        metrics[f"fcn_recovery_at_{hidden}"] = value
    return {
        "fcn": (settings["fcn_hidden"], fcn_values, fcn_amplitude),
        "cnn": (settings["fcn_cnn_filters"], cnn_values, cnn_amplitude),
        "d_over_p": d_over_p,
    }


def measure(settings: Mapping[str, Any], context: RunContext) -> Measurement:
    metrics: dict[str, float] = {}
    total = (
        len(settings["num_filters"]) * len(settings["seeds"])
        + len(settings["filter_sizes"]) * (len(settings["filter_sweep_filters"]) + 1)
        + len(settings["fcn_hidden"])
        + len(settings["fcn_cnn_filters"])
    )
    with tqdm(total=total, desc="recovery sweeps", unit="net", disable=not context.progress) as progress:
        law = _law(settings, context, metrics, progress)
        sizes = _filter_sizes(settings, context, metrics, progress)
        fcn = _fcn(settings, context, metrics, progress)
    notes = (
        f"Fitted from N = {settings['fit_from_filters']} on: slope {metrics['recovery_law_slope']:.3f} "
        f"(95% CI {metrics['recovery_law_slope_low']:.3f} to {metrics['recovery_law_slope_high']:.3f}); over every N "
        f"the slope of log(1 - recovery) is {metrics['recovery_law_slope_all']:.3f} (1 - recovery saturates near 1 "
        f"at small N) while tan^2 = 1/recovery^2 - 1 keeps the 1 / N law: slope {metrics['tan2_law_slope_all']:.3f}.",
        f"With the paper's stride {settings['filter_sweep_overlapping_stride']}, the N needed hardly grows with p "
        f"(exponent {metrics['filters_needed_exponent_overlapping']:.2f}): each pixel lies in (k / stride)^2 "
        "overlapping patches whose independent errors average out, which cancels the growth in p.",
    )
    shown = [count for count in settings["shown_filters"] if count in law["shown"]]
    figure = {
        "counts": law["counts"],
        "values": law["values"],  # every (N, seed): N and GBP's recovery
        "law": _fit_array(law["law"]),
        "tangent": _fit_array(law["tangent"]),
        "exponent": _fit_array(sizes["exponent"]),
        "shown_counts": shown,
        "shown_maps": torch.stack([law["shown"][count] for count in shown]),  # [k, 3, S, S]
        "shown_recovery": [float(recovery(law["shown"][count], law["limit"])) for count in shown],
        "picture": law["picture"],
        "limit": law["limit"],  # [3, S, S]
        "sizes": sizes["sizes"],
        "needed_kernel": sizes["needed"]["kernel"],
        "needed_overlapping": sizes["needed"]["overlapping"],
    }
    for name in ("fcn", "cnn"):
        units, values, amplitude = fcn[name]
        figure.update({f"{name}_units": units, f"{name}_values": values, f"{name}_amplitude": amplitude})
    return Measurement(
        metrics, "three-layer CNN and FCN (random)", f"random (seed {context.seed} + offsets)", notes, figure=figure
    )


def _fit_array(fit: PowerLaw) -> np.ndarray:
    """A fitted law as an array of its fields, in order (saved with the figure's data)."""
    return np.array(dataclasses.astuple(fit), dtype=np.float64)


def _fit(array: np.ndarray) -> PowerLaw:
    """The fitted law saved by :func:`_fit_array`."""
    return PowerLaw(*array.tolist())


def _log_log(axis, xlabel: str, ylabel: str, title: str) -> None:
    """Log scales on both axes when the plotted data allow (a broken method's zero map
    gives nothing finite and positive to plot: the panel then stays linear)."""
    points = [line.get_xydata() for line in axis.get_lines()] + [c.get_offsets() for c in axis.collections]
    values = np.concatenate([np.asarray(p, dtype=float).reshape(-1, 2) for p in points]) if points else np.empty((0, 2))
    if np.any(np.isfinite(values).all(axis=1) & (values > 0).all(axis=1)):
        axis.set_xscale("log")
        axis.set_yscale("log")
    axis.set_xlabel(xlabel)
    axis.set_ylabel(ylabel)
    axis.set_title(title, fontsize=10)
    axis.legend(fontsize=7)


def draw(data: FigureData, path: Path) -> None:
    """The recovery law, the filters needed against the filter size, the FCN against the
    CNN, and GBP's maps as N grows."""
    settings, metrics, arrays = data.settings, data.metrics, data.arrays
    law, tangent, exponent = _fit(arrays["law"]), _fit(arrays["tangent"]), _fit(arrays["exponent"])
    plt = pyplot()
    figure = plt.figure(figsize=(15, 7.5))
    grid = figure.add_gridspec(2, 6, height_ratios=[1.5, 1])

    axis = figure.add_subplot(grid[0, :2])
    counts, values = arrays["counts"], arrays["values"]
    axis.scatter(counts, 1 - values, s=14, color="tab:blue", label="1 - recovery (each seed)")
    axis.scatter(counts, tangent_squared(values), s=14, marker="x", color="tab:gray", label="tan^2 = 1/recovery^2 - 1")
    fitted = np.geomspace(settings["fit_from_filters"], counts.max(), 20)
    whole = np.geomspace(counts.min(), counts.max(), 40)
    axis.plot(whole, law.predict(whole), "--", color="tab:blue", alpha=0.4)
    axis.plot(
        fitted,
        law.predict(fitted),
        color="tab:blue",
        label=f"fit N >= {settings['fit_from_filters']}: slope {law.slope:.2f} "
        f"[{law.slope_low:.2f}, {law.slope_high:.2f}]",
    )
    axis.plot(whole, tangent.predict(whole), color="tab:gray", label=f"tan^2 fit: slope {tangent.slope:.2f}")
    _log_log(
        axis,
        "number of filters N",
        "1 - recovery,  tan^2",
        f"Theorem 1: GBP's recovery law ({settings['kernel_size']}x"
        f"{settings['kernel_size']}x3, stride {settings['stride']})",
    )

    axis = figure.add_subplot(grid[0, 2:4])
    p = np.array(arrays["sizes"], dtype=float)
    axis.plot(p, arrays["needed_kernel"], "o", color="tab:orange", label="stride = filter side (no overlap)")
    axis.plot(p, exponent.predict(p), color="tab:orange", label=f"slope {exponent.slope:.2f} (linear: 1)")
    axis.plot(
        p,
        arrays["needed_overlapping"],
        "s",
        color="tab:purple",
        label=f"stride {settings['filter_sweep_overlapping_stride']} (overlapping)",
    )
    _log_log(
        axis, "filter size p", f"N for recovery {settings['target_recovery']}", "filters needed against filter size"
    )
    axis.minorticks_off()
    axis.set_xticks(p, [f"{k}x{k}x3" for k in settings["filter_sizes"]])

    axis = figure.add_subplot(grid[0, 4:])
    for name, color in (("fcn", "tab:red"), ("cnn", "tab:green")):
        units = np.array(arrays[f"{name}_units"], dtype=float)
        label = (
            "FCN hidden units"
            if name == "fcn"
            else f"CNN filters ({settings['kernel_size']}x{settings['kernel_size']}, no overlap)"
        )
        axis.plot(units, tangent_squared(arrays[f"{name}_values"]), "o", color=color, label=label)
        line = np.geomspace(units.min() / 2, units.max() * 2, 10)
        axis.plot(line, float(arrays[f"{name}_amplitude"]) / line, color=color, alpha=0.6)
    _log_log(
        axis,
        "units N",
        "tan^2 (1/recovery^2 - 1)",
        f"FCN vs CNN at {settings['fcn_input_size']} px: FCN "
        f"needs {metrics['fcn_over_cnn_units']:.0f}x (d/p = {metrics['d_over_p']:.0f})",
    )

    panels: list[tuple[Picture, str, str]] = [
        (data.tensor("picture").permute(1, 2, 0).numpy(), "input", ""),
        (data.tensor("limit"), "limit image x_lim", "min-max"),
    ]
    shown = zip(data.tensor("shown_counts").tolist(), data.tensor("shown_maps"), arrays["shown_recovery"])
    panels += [(gbp, f"GBP, N = {count}", f"recovery {value:.3f}") for count, gbp, value in shown]
    for column, (picture, title, caption) in enumerate(panels[:6]):
        display = MINMAX if column == 1 else CLIP_99  # the limit image is an image, stretched as one
        map_panel(figure.add_subplot(grid[1, column]), picture, title, caption, display)
    save_figure(figure, path, display=CLIP_99)


EXPERIMENT = Experiment(
    name="recovery",
    title="Theorem 1: GBP recovers the image; the recovery law 1 - recovery ~ 1/N, filter size and the FCN",
    full=FULL,
    quick=QUICK,
    claims=CLAIMS,
    measure=measure,
    draw=draw,
    group="theory",
    tiny={
        **FULL,
        "input_size": 64,
        "num_filters": [16, 64, 256, 1024],
        "seeds": [0, 1],
        "shown_filters": [16, 1024],
        "filter_sizes": [3, 5, 7],
        "filter_sweep_filters": [256],
        "fcn_input_size": 32,
        "fcn_hidden": [256, 1024],
        "fcn_cnn_filters": [16, 64],
    },
    catches=("plain-gradient", "zero-gbp"),
)
