"""Figure 3 (b, c): the weights into two fc1 neurons of trained VGG-16 have nearly
identical, narrow, roughly Gaussian histograms.

This is why (Eq. 9) the dense layers barely change GBP and DeconvNet: every fc1
neuron sees the convolutional features through statistically alike weights. The
neurons are rows ``neurons`` (0-based) of fc1's weight matrix [4096, 25088]. The
difference is measured by the two-sample Kolmogorov-Smirnov statistic
(:func:`backpropvis.metrics.ks_statistic`). VGG-specific: skipped without a trained
VGG-16 checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, cast

import torch
from torch import nn

from ..metrics import ks_statistic
from ..models import vgg16
from ..render import figure_title, pyplot, save_figure
from .base import Claim, Experiment, FigureData, Measurement, RunContext, Skip
from .networks import vgg16_checkpoint, vgg16_note

__all__ = ["EXPERIMENT", "NO_VGG16"]

NO_VGG16 = (
    "needs the trained VGG-16 checkpoint (torchvision's vgg16-397923af.pth: pass --vgg16-weights PATH or put it "
    "in the torch hub cache); no honest VGG-shaped substitute is bundled"
)


def measure(settings: Mapping[str, Any], context: RunContext) -> Measurement:
    """Histograms, means, standard deviations and the KS statistic of the two neurons' weights."""
    checkpoint = vgg16_checkpoint(context)
    if checkpoint is None:
        raise Skip(NO_VGG16)
    model = vgg16(checkpoint, seed=context.seed)
    first, second = (int(neuron) for neuron in settings["neurons"])
    weights = cast(nn.Linear, model.layer("fc1")).weight.detach()  # [4096, 25088]: row i = the weights into neuron i
    samples = {first: weights[first].clone(), second: weights[second].clone()}
    del model, weights

    metrics = {"ks_statistic": ks_statistic(samples[first], samples[second])}
    for neuron, values in samples.items():
        metrics[f"mean_{neuron}"] = float(values.double().mean())
        metrics[f"std_{neuron}"] = float(values.double().std())
    note = vgg16_note(checkpoint)
    return Measurement(
        metrics=metrics,
        model="vgg16",
        weights=str(checkpoint),
        notes=(f"fc1 neurons {first} and {second} counted from 0 (rows of classifier.0.weight).",)
        + tuple(filter(None, [note])),
        figure={"neurons": [first, second], "weights": torch.stack([samples[first], samples[second]]),
                "note": note or ""},
    )


def draw(data: FigureData, path: Path) -> None:
    """Each neuron's histogram (the paper's b and c), then both empirical CDFs overlaid."""
    plt = pyplot()
    metrics, bins = data.metrics, data.settings["bins"]
    samples = dict(zip(data.tensor("neurons").tolist(), data.tensor("weights")))  # neuron -> its incoming weights
    values = torch.cat(list(samples.values()))
    low, high = float(values.quantile(0.0005)), float(values.quantile(0.9995))
    figure, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    for axis, (neuron, sample) in zip(axes, samples.items()):
        axis.hist(sample.numpy(), bins=bins, range=(low, high), color="tab:blue")
        axis.set_title(f"fc1 neuron {neuron}: mean {metrics[f'mean_{neuron}']:.2e}, std {metrics[f'std_{neuron}']:.2e}",
                       fontsize=9)
        axis.set_xlabel("incoming weight", fontsize=9)
        axis.set_ylabel("count", fontsize=9)
    for neuron, sample in samples.items():
        ordered = torch.sort(sample).values
        axes[2].plot(ordered.numpy(), torch.linspace(0, 1, len(ordered)).numpy(), label=f"neuron {neuron}")
    axes[2].set_xlim(low, high)
    axes[2].set_title(f"empirical CDFs: Kolmogorov-Smirnov statistic {metrics['ks_statistic']:.4f}", fontsize=9)
    axes[2].set_xlabel("incoming weight", fontsize=9)
    axes[2].set_ylabel("fraction of weights below", fontsize=9)
    axes[2].legend(fontsize=8)
    title = figure_title("Figure 3: histograms of the weights into two fc1 neurons", data.model, data.weights,
                         data.text("note"))
    save_figure(figure, path, title)


EXPERIMENT = Experiment(
    name="fig3",
    title="Trained VGG-16: two fc1 neurons' incoming weights have nearly the same histogram",
    full={"neurons": (26, 44), "bins": 100},
    quick={"neurons": (26, 44), "bins": 100},
    claims=(
        Claim(
            "fc1_histograms_alike",
            "The two-sample Kolmogorov-Smirnov statistic between the weights into fc1 neurons 26 and 44 is below 0.1",
            "ks_statistic", "<", 0.1,
        ),
    ),
    measure=measure,
    draw=draw,
)
