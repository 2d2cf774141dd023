"""Cost and effect of ``smooth="rule"`` on a SiLU network (docs/smooth-activations.md).

An EfficientNet-style stack (conv, SiLU, squeeze-excite with a sigmoid gate, 8 blocks,
random seeded weights) at 64 px, batch 4, 3 methods x 2 targets. It times
``attribute_many`` with ``smooth="rule"`` (f' computed in the forward pass, one multiply
per backward) against the same network with ReLU in place of SiLU (the paper's rule, the
engine's usual path) and against saliency alone with ``smooth="gradient"`` (2 maps, no
rule at all), alternating them ``--repeats`` times (medians). Then it says how far the
rule's DeconvNet and GBP maps are from the true gradient, which is what every method
amounts to at the SiLUs with ``smooth="gradient"`` (cosine over each map).

Run ``python benchmarks/bench_smooth.py`` (CPU, under a minute on 2 cores).
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch
from torch import nn

import backpropvis

METHODS = ("saliency", "deconvnet", "gbp")


class Block(nn.Module):
    """conv 3x3 -> act -> x * sigmoid(dense(mean(x))) (squeeze-excite), with a skip."""

    def __init__(self, channels: int, act: type[nn.Module]) -> None:
        super().__init__()
        self.conv, self.act = nn.Conv2d(channels, channels, 3, padding=1), act()
        self.squeeze, self.excite = nn.Linear(channels, channels // 4), nn.Linear(channels // 4, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.conv(x))
        gate = torch.sigmoid(self.excite(self.act(self.squeeze(y.mean((2, 3))))))
        return x + y * gate[:, :, None, None]


def network(act: type[nn.Module], channels: int = 32, blocks: int = 8) -> nn.Module:
    torch.manual_seed(0)
    layers = [nn.Conv2d(3, channels, 3, stride=2, padding=1), act()]
    layers += [Block(channels, act) for _ in range(blocks)]
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, 10)]
    return nn.Sequential(*layers).eval()


def timed(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args()
    x = torch.randn(4, 3, args.size, args.size, generator=torch.Generator().manual_seed(1))
    silu, relu = network(nn.SiLU), network(nn.ReLU)
    calls = {
        "SiLU, saliency only": lambda: backpropvis.attribute_many(silu, x, [0, 1], ["saliency"], smooth="gradient"),
        "SiLU, smooth='rule'": lambda: backpropvis.attribute_many(silu, x, [0, 1], METHODS, smooth="rule"),
        "ReLU (paper's rule)": lambda: backpropvis.attribute_many(relu, x, [0, 1], METHODS),
    }
    warnings.simplefilter("ignore")  # smooth="gradient" says what it let through
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(args.repeats):
        for name, call in calls.items():
            times[name].append(timed(call))
    for name, values in times.items():
        print(f"{name:26s} median {statistics.median(values) * 1000:8.1f} ms over {args.repeats}")
    ruled = calls["SiLU, smooth='rule'"]()
    for method in METHODS:
        cosine = torch.nn.functional.cosine_similarity(ruled[method].flatten(2), ruled["saliency"].flatten(2), dim=2)
        print(
            f"{method:10s} rule mode, cosine with the true gradient per map: {cosine.min():+.3f} to {cosine.max():+.3f}"
        )


if __name__ == "__main__":
    main()
