"""What each batch-norm policy of ``backpropvis.models.randomization`` does to EfficientNet-Lite0.

For the trained EfficientNet-Lite0 and every partly random network of Figure 9 (star
row: trained up to a stage; diamond row: only that stage redrawn; and the fully
random twin), under each policy ("reestimate", "identity", "keep"), on the six
bundled photos at 224 px:

- the logits' scale: their standard deviation over the 1000 classes, median over the
  images, divided by the trained network's (1 = the trained scale);
- the fraction of ReLU6 inputs in the linear range 0 < y < 6 (below it the unit is
  off, above it saturated; the backward pass is zero in both for saliency and GBP);
- GBP's max-logit map norm, median over the images, relative to the trained network's
  (0 = the map vanished).

Re-estimation calibrates on the same six photos and their mirror images (what
``calibration_inputs`` gives). Each network is measured in a fresh worker process
(``attribute_many`` on EfficientNet-Lite0 keeps about 0.6 GB per call alive on torch
2.13 CPU with the engine of this commit, so 39 calls in one process run out of memory).
Writes ``benchmarks/results/randomization_batchnorm.json`` and prints a table. About 4
minutes on 2 idle CPU cores.

    python benchmarks/randomization_batchnorm.py
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import multiprocessing
import statistics
import time
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

import backpropvis
from backpropvis.images.samples import load_image, sample_names
from backpropvis.models import efficientnet_lite0
from backpropvis.models.efficientnet import EFFICIENTNET_LITE0_STAGES
from backpropvis.models.randomization import (
    BATCH_NORM_POLICIES,
    only_redrawn,
    randomized,
    trained_up_to,
)


def measure(model: nn.Module, inputs: torch.Tensor) -> dict[str, float]:
    """Logits' std per image, the ReLU6 linear-range fraction, and GBP's map norm per image."""
    inside, total = [0], [0]

    def count(_module: nn.Module, args: tuple, _output: torch.Tensor) -> None:
        y = args[0]
        inside[0] += int(((y > 0) & (y < 6)).sum())
        total[0] += y.numel()

    handles = [module.register_forward_hook(count) for module in model.modules() if isinstance(module, nn.ReLU6)]
    try:
        with torch.no_grad():
            logits = model(inputs)
    finally:
        for handle in handles:
            handle.remove()
    gbp = backpropvis.attribute_many(model, inputs, ["max"], ["gbp"])["gbp"][0]  # [B, 3, H, W]
    return {
        "logit_std": statistics.median(logits.std(dim=1).tolist()),
        "relu6_linear_fraction": inside[0] / total[0],
        "gbp_norm": statistics.median(gbp.flatten(1).norm(dim=1).tolist()),
    }


VARIANTS = {"random twin": randomized, "*": trained_up_to, "<>": only_redrawn}


def measure_variant(kind: str, stage_label: str | None, policy: str, seed: int) -> dict[str, float]:
    """Build one network (``kind`` a key of VARIANTS) and measure it on the bundled photos."""
    trained = efficientnet_lite0()
    inputs = trained.preprocessing.batch([load_image(name) for name in sample_names()])
    if stage_label is None:
        return measure(trained, inputs)
    options = {"seed": seed, "batch_norm": policy}
    build = VARIANTS[kind]
    model = build(trained, **options) if kind == "random twin" else build(trained, stage_label, **options)
    return measure(model, inputs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "randomization_batchnorm.json"))
    args = parser.parse_args()
    started = time.perf_counter()
    jobs = [("trained", None, "-")]
    jobs += [("random twin", "every layer", policy) for policy in BATCH_NORM_POLICIES]
    for stage in EFFICIENTNET_LITE0_STAGES:  # the labels alone: no checkpoint read in this process
        jobs += [(kind, stage.label, policy) for kind in ("*", "<>") for policy in BATCH_NORM_POLICIES]
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context, max_tasks_per_child=1) as pool:
        futures = [
            pool.submit(measure_variant, kind, label if kind != "trained" else None, policy, args.seed)
            for kind, label, policy in jobs
        ]
        results = [future.result() for future in tqdm(futures, desc="networks", unit="network")]
    rows = []
    for (kind, label, policy), result in zip(jobs, results):
        name = kind if kind in ("trained", "random twin") else f"{label}{kind}"
        rows.append({"variant": name, "policy": policy, **result})
    reference = rows[0]
    for row in rows:
        row["logit_std_ratio"] = row["logit_std"] / reference["logit_std"]
        row["gbp_norm_ratio"] = row["gbp_norm"] / reference["gbp_norm"]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(
        json.dumps(
            {
                "model": "efficientnet-lite0 (imagenet)",
                "images": sample_names(),
                "seed": args.seed,
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
                "seconds": time.perf_counter() - started,
                "rows": rows,
            },
            indent=2,
        )
    )
    print(f"{'variant':16} {'policy':10} {'logit std / trained':>20} {'ReLU6 linear':>13} {'GBP norm / trained':>19}")
    for row in rows:
        print(
            f"{row['variant']:16} {row['policy']:10} {row['logit_std_ratio']:20.3g} "
            f"{row['relu6_linear_fraction']:13.3f} {row['gbp_norm_ratio']:19.3g}"
        )


if __name__ == "__main__":
    main()
