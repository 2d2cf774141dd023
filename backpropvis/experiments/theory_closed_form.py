"""Theory study "closed-form": Lemma 1 (Eq. 4) and the pooled forms (Eq. 6, 7) against the engine.

The engine back-propagates through the random three-layer CNN with its rules; the
closed forms of :mod:`backpropvis.theory.closed_forms` unfold the image into patches, weight each
filter by h(V[:, k]) and the forward mask (and, with pooling, by the pool's switches)
and fold back, with no backward pass. The two share only the weights; both run in
float64. The study also measures how often Eq. 7's assumption ("chosen by the pool
<=> w.y > 0") fails, the cases the paper blames for DeconvNet's texture.

What the claims catch (``tests/test_sabotage.py``): any broken method (the plain
gradient in place of DeconvNet and GBP, or a zero map of any method) makes the engine
disagree with the closed form stated from Eq. 2 in :mod:`backpropvis.theory.closed_forms`, so
"closed form equals engine" fails (a relative error of order 1).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import torch
from tqdm.auto import tqdm

from ..core.rules import METHOD_LABELS, PAPER_METHODS
from ..engine import attribute_many
from ..render import CLIP_99, Picture, map_panel, pyplot, save_figure
from ..theory.closed_forms import closed_form_map, switch_disagreement
from ..theory.limits import recovery
from .base import Claim, Experiment, FigureData, Measurement, RunContext
from .random_cnn import random_cnn

__all__ = ["EXPERIMENT"]


def _config(num_filters: int, kernel_size: int, stride: int, pool, input_size: int) -> dict:
    return {
        "num_filters": num_filters,
        "kernel_size": kernel_size,
        "stride": stride,
        "pool": pool,
        "input_size": input_size,
    }


FULL: dict[str, Any] = {
    "configurations": [
        _config(256, 7, 2, None, 224),
        _config(256, 7, 2, 2, 224),
        _config(64, 3, 1, None, 64),
        _config(64, 3, 1, 2, 64),
        _config(32, 5, 2, 3, 96),
        _config(128, 11, 4, None, 128),
        _config(16, 7, 3, 2, 50),
    ],
    "seeds": [0, 1],  # offsets added to the run's seed
    "targets": [0, 1],
    "num_classes": 2,
    "shown": _config(256, 7, 2, 2, 224),
    "pool_sizes": [2, 3, 4],
}
"""The paper's CNN (N = 256, 7 x 7, stride 2, 224) with and without a 2 x 2 pool, and
smaller ones varying N, filter size, stride and pool; two seeds, two logits each.
Only V[:, k] of the targets matters, so the readout has 2 logits, not 1000."""

QUICK: dict[str, Any] = {
    **FULL,
    "configurations": [
        _config(64, 7, 2, None, 112),
        _config(64, 7, 2, 2, 112),
        _config(16, 3, 1, 2, 48),
        _config(24, 5, 3, None, 40),
    ],
    "seeds": [0],
    "shown": _config(128, 7, 2, 2, 112),
}

CLAIMS = (
    Claim(
        "closed_form_equals_engine",
        "Lemma 1 (Eq. 4) and Eq. 6 computed from the weights equal the engine's maps for every method, "
        "configuration, seed and target (largest relative L2 error)",
        "max_relative_error",
        "<",
        1e-5,
    ),
    Claim(
        "pooling_turns_deconvnet_into_recovery",
        "with max-pooling DeconvNet recovers part of the image (Eq. 6-7: it takes GBP's form): its recovery "
        "rises by at least 0.1 over the unpooled CNN",
        "deconvnet_recovery_gain_from_pool",
        ">=",
        0.1,
    ),
)


def _relative_error(closed: torch.Tensor, engine: torch.Tensor) -> float:
    return float((closed - engine).norm() / engine.norm().clamp_min(1e-300))


def _compare(
    config: Mapping[str, Any], seed: int, settings: Mapping[str, Any], context: RunContext, keep_maps: bool = True
) -> tuple[dict, dict]:
    """Relative errors per method (max over targets) of the float64 engine, and of the
    float32 engine (keys "<method>_float32"), and (``keep_maps``) the maps of the first target."""
    cnn = random_cnn(context, seed=seed, num_classes=settings["num_classes"], **config)
    targets = list(settings["targets"])
    single = attribute_many(cnn.model, cnn.inputs, targets, list(PAPER_METHODS), precision=context.precision)
    model = cnn.model.double()
    inputs = cnn.inputs.double()
    engine = attribute_many(model, inputs, targets, list(PAPER_METHODS), precision=context.precision)
    filters = model.conv.weight.detach()
    columns = model.readout.columns(settings["targets"]).to(inputs)
    geometry = {"stride": config["stride"], "padding": config["kernel_size"] // 2, "pool": config["pool"]}
    errors: dict[str, float] = {}
    shown: dict[str, Any] = {}
    for method in PAPER_METHODS:
        errors[method] = errors[f"{method}_float32"] = 0.0
        for number, column in enumerate(columns):
            closed = closed_form_map(inputs[0], filters, column, method, **geometry)
            errors[method] = max(errors[method], _relative_error(closed, engine[method][number, 0]))
            errors[f"{method}_float32"] = max(
                errors[f"{method}_float32"], _relative_error(closed, single[method][number, 0].double())
            )
            if number == 0 and keep_maps:
                shown[method] = {"engine": engine[method][0, 0].cpu(), "closed": closed.cpu()}
                if config["pool"]:
                    shown[method]["approximate"] = closed_form_map(
                        inputs[0], filters, column, method, approximate_pool=True, **geometry
                    ).cpu()
    shown["limit"] = cnn.limit
    shown["inputs"], shown["filters"] = inputs[0], filters
    return errors, shown


def _run_key(config: Mapping[str, Any], seed: int) -> tuple:
    """A configuration and seed as a dictionary key."""
    return tuple(sorted(config.items())), seed


def _switch_metrics(pool_sizes: Sequence[int], shown_config: Mapping[str, Any], pooled: dict) -> dict[str, float]:
    """Per pool size, how often Eq. 7's assumption fails on the shown configuration's inputs and
    filters (:func:`~backpropvis.theory.closed_forms.switch_disagreement`): in total, and each way."""
    disagreements: dict[str, float] = {}
    for pool in pool_sizes:
        found = switch_disagreement(
            pooled["inputs"],
            pooled["filters"],
            stride=shown_config["stride"],
            padding=shown_config["kernel_size"] // 2,
            pool=pool,
        )
        disagreements[f"switch_disagreement_pool{pool}"] = found.total
        disagreements[f"chosen_but_inactive_pool{pool}"] = found.chosen_but_inactive
        disagreements[f"active_but_not_chosen_pool{pool}"] = found.active_but_not_chosen
    return disagreements


def _figure(pooled: dict, unpooled: dict) -> dict[str, Any]:
    """What the figure draws: the engine's, Eq. 6's and Eq. 7's maps with the pool, Eq. 6's without."""
    return {
        "methods": list(PAPER_METHODS),
        # [M, 3, S, S] each; float32 is all the display needs (it normalises in float32)
        "engine": torch.stack([pooled[method]["engine"] for method in PAPER_METHODS]).float(),
        "closed": torch.stack([pooled[method]["closed"] for method in PAPER_METHODS]).float(),
        "approximate": torch.stack([pooled[method]["approximate"] for method in PAPER_METHODS]).float(),
        "unpooled": torch.stack([unpooled[method]["closed"] for method in PAPER_METHODS]).float(),
        # [M, S, S] float64: |engine - Eq. 6| summed over channels, at float64 round-off
        "difference": torch.stack(
            [(pooled[method]["engine"] - pooled[method]["closed"]).abs().sum(0) for method in PAPER_METHODS]
        ),
    }


def measure(settings: Mapping[str, Any], context: RunContext) -> Measurement:
    metrics: dict[str, float] = {}
    per_method: dict[str, float] = {}
    runs = [(config, seed) for config in settings["configurations"] for seed in settings["seeds"]]
    shown_config = dict(settings["shown"])
    unpooled_config = {**shown_config, "pool": None}
    shown_runs: dict[tuple, Optional[dict]] = {
        _run_key(shown_config, context.seed): None,
        _run_key(unpooled_config, context.seed): None,
    }
    for config, seed in tqdm(runs, desc="closed form vs engine", disable=not context.progress):
        key = _run_key(config, context.seed + seed)
        errors, shown = _compare(config, context.seed + seed, settings, context, keep_maps=key in shown_runs)
        if key in shown_runs:  # the figure's configuration is one of the compared ones: keep its maps
            shown_runs[key] = shown
        for method, error in errors.items():
            per_method[method] = max(per_method.get(method, 0.0), error)
    for method, error in per_method.items():
        metrics[f"max_relative_error_{method}"] = error
    metrics["max_relative_error"] = max(per_method[method] for method in PAPER_METHODS)
    metrics["max_relative_error_float32"] = max(per_method[f"{method}_float32"] for method in PAPER_METHODS)
    metrics["comparisons"] = len(runs) * len(settings["targets"]) * len(PAPER_METHODS)

    pooled, unpooled = (
        shown_runs[_run_key(config, context.seed)] or _compare(config, context.seed, settings, context)[1]
        for config in (shown_config, unpooled_config)
    )
    limit = pooled["limit"]
    for method in PAPER_METHODS:
        metrics[f"recovery_{method}_pool"] = float(recovery(pooled[method]["closed"], limit))
        metrics[f"recovery_{method}_no_pool"] = float(recovery(unpooled[method]["closed"], limit))
        metrics[f"eq7_cosine_to_eq6_{method}"] = float(
            recovery(pooled[method]["approximate"], pooled[method]["closed"])
        )
    metrics["deconvnet_recovery_gain_from_pool"] = (
        metrics["recovery_deconvnet_pool"] - metrics["recovery_deconvnet_no_pool"]
    )

    metrics.update(_switch_metrics(settings["pool_sizes"], shown_config, pooled))

    notes = (
        f"Eq. 7's assumption fails for {metrics['switch_disagreement_pool2']:.1%} of the (filter, position) pairs "
        f"under a 2 x 2 pool: {metrics['active_but_not_chosen_pool2']:.1%} are active but lose to a larger output "
        f"of their window, {metrics['chosen_but_inactive_pool2']:.1%} are chosen from a window of zeros. "
        "So Eq. 7 is far from Eq. 6 (see eq7_cosine_to_eq6_*): Eq. 7's DeconvNet is GBP-like, the exact "
        "pooled DeconvNet recovers much less of the image. The float64 engine and closed form share the "
        "im2col arithmetic, so they can agree bit for bit; max_relative_error_float32 compares the float32 engine.",
    )
    shown = _figure(pooled, unpooled)
    return Measurement(
        metrics, "three-layer CNN (random)", f"random (seeds {list(settings['seeds'])})", notes, figure=shown
    )


def draw(data: FigureData, path: Path) -> None:
    """Rows: the methods (engine, Eq. 6, their difference, Eq. 7, no pool); below, Eq. 7's
    failure rate per pool window and the largest errors against the engine."""
    metrics, config, methods = data.metrics, data.settings["shown"], data.texts("methods")
    plt = pyplot()
    figure = plt.figure(figsize=(13, 10))
    grid = figure.add_gridspec(4, 5, height_ratios=[1, 1, 1, 0.9])
    columns = ("engine (pool 2)", "Eq. 6 closed form", "|engine - Eq. 6|", "Eq. 7 approximation", "no pool (Eq. 4)")
    for row, method in enumerate(methods):
        difference = data.tensor("difference")[row]
        scale = float(difference.max())
        panels: tuple[tuple[Picture, str], ...] = (
            (data.tensor("engine")[row], ""),
            (data.tensor("closed")[row], f"recovery {metrics[f'recovery_{method}_pool']:.2f}"),
            ((difference / scale).numpy() if scale > 0 else difference.numpy(), f"max |diff| {scale:.1e}"),
            (data.tensor("approximate")[row], f"cos to Eq. 6 {metrics[f'eq7_cosine_to_eq6_{method}']:.2f}"),
            (data.tensor("unpooled")[row], f"recovery {metrics[f'recovery_{method}_no_pool']:.2f}"),
        )
        for column, (picture, caption) in enumerate(panels):
            axis = figure.add_subplot(grid[row, column])
            map_panel(axis, picture, columns[column] if row == 0 else "", caption)
            if column == 0:
                axis.set_ylabel(METHOD_LABELS[method], fontsize=10)
    axis = figure.add_subplot(grid[3, :3])
    pools = data.settings["pool_sizes"]
    labels = [f"{pool} x {pool}" for pool in pools]
    active = [metrics[f"active_but_not_chosen_pool{pool}"] for pool in pools]
    chosen = [metrics[f"chosen_but_inactive_pool{pool}"] for pool in pools]
    axis.bar(labels, active, label="w.y > 0 but not chosen by the pool")
    axis.bar(labels, chosen, bottom=active, label="chosen by the pool but w.y <= 0")
    axis.set_ylabel("fraction of (i, j)")
    axis.set_ylim(0, 1.4 * max(a + c for a, c in zip(active, chosen)))
    axis.set_xlabel("pool window")
    axis.set_title("How often Eq. 7's assumption (chosen <=> w.y > 0) fails", fontsize=10)
    axis.legend(fontsize=8, loc="upper left", ncol=2)
    axis = figure.add_subplot(grid[3, 3:])
    positions = torch.arange(len(methods)).numpy()
    for offset, (suffix, label, color) in enumerate(
        (("", "float64 engine", "tab:green"), ("_float32", "float32 engine", "tab:olive"))
    ):
        errors = [max(metrics[f"max_relative_error_{method}{suffix}"], 1e-17) for method in methods]
        axis.bar(positions + 0.4 * offset - 0.2, errors, width=0.4, color=color, label=label, bottom=1e-18)
    axis.set_xticks(positions, [METHOD_LABELS[m] for m in methods])
    axis.axhline(1e-5, color="tab:red", linestyle="--", label="claim: < 1e-5")
    axis.set_yscale("log")
    axis.set_ylim(1e-18, 1e-3)
    axis.set_title(f"closed form (float64) vs engine, {int(metrics['comparisons'])} maps", fontsize=10)
    axis.set_ylabel("largest relative L2 error\n(0 drawn as 1e-17)")
    axis.legend(fontsize=8)
    figure.suptitle(
        f"Lemma 1 / Eq. 6-7: random CNN, N = {config['num_filters']}, "
        f"{config['kernel_size']} x {config['kernel_size']} filters, stride {config['stride']}, "
        f"{config['input_size']} px",
        fontsize=11,
    )
    save_figure(figure, path, display=CLIP_99)


EXPERIMENT = Experiment(
    name="closed-form",
    title="Lemma 1 and Eq. 6-7: every method's closed form against the engine, and Eq. 7's failure rate",
    full=FULL,
    quick=QUICK,
    claims=CLAIMS,
    measure=measure,
    draw=draw,
    group="theory",
    tiny={
        "configurations": [_config(8, 7, 2, None, 24), _config(12, 3, 1, 2, 21)],
        "seeds": [0, 1],
        "targets": [0, 1],
        "num_classes": 2,
        "shown": _config(64, 7, 2, 2, 64),
        "pool_sizes": [2, 3],
    },
    catches=("plain-gradient", "zero-gbp", "zero-deconvnet", "zero-saliency"),
)
