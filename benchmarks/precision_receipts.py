"""The precision receipt table: each method's cosine to float32 at TF32 and bfloat16.

For every model and precision, one batch of the bundled sample photos and seeded crops
of them goes through :func:`backpropvis.engine.attribute_many` for the predicted and a
random other logit, watched by :func:`backpropvis.engine.receipt.collect_receipt`, which
recomputes the maps in float32 as every command does: per method the minimum and median cosine over the
batch's maps. Prints a table, writes JSON (``--out``).

    python benchmarks/precision_receipts.py --device cuda --size 224 --images 32   # gpu_check.sh
    python benchmarks/precision_receipts.py --size 32 --images 8 --models efficientnet-lite0  # dry run, CPU
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from backpropvis.core.rules import resolve_rule
from backpropvis.engine import attribute_many
from backpropvis.engine.receipt import DEFAULT_THRESHOLD, collect_receipt
from backpropvis.images.sets import Samples, read_image
from backpropvis.models import load_model

MODELS = {"vgg16": "random", "efficientnet-lite0": "imagenet"}
"""Model -> the weights it is measured with."""


def receipts(args: argparse.Namespace) -> list[dict]:
    device = torch.device(args.device)
    rules = [resolve_rule(name) for name in ("saliency", "deconvnet", "gbp")]
    source = Samples(crops=max(0, args.images - 6), seed=0)
    keys = source.keys()[: args.images]
    rows = []
    for name in args.models.split(","):
        weights = MODELS[name]
        loaded = load_model(name, weights=weights, input_size=args.size)
        network = loaded.module.to(device)
        inputs = torch.stack([loaded.preprocessing(read_image(source, key).picture) for key in keys]).to(device)
        for precision in args.precisions.split(","):
            generator = torch.Generator().manual_seed(0)
            with collect_receipt(args.threshold) as receipts:
                attribute_many(network, inputs, ["max", "random"], rules, generator=generator, precision=precision)
            receipt = receipts.receipt
            assert receipt is not None, f"no receipt at {precision}"
            for entry in receipt.methods:
                rows.append(
                    {
                        "model": f"{name} ({weights})",
                        "precision": precision,
                        "method": entry.method,
                        "min_cosine": entry.minimum,
                        "median_cosine": entry.median,
                        "under_threshold": entry.method in receipt.below(),
                        "maps": receipt.maps,
                    }
                )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--images", type=int, default=32, help="batch: the 6 samples, then seeded crops")
    parser.add_argument("--precisions", default="tf32,bfloat16")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated, of: " + ", ".join(MODELS))
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD)
    parser.add_argument("--out", default=None, help="JSON output")
    args = parser.parse_args()
    rows = receipts(args)
    print(f"{'model':<32}{'precision':>10}{'method':>11}{'min cos':>10}{'median':>10}")
    for row in rows:
        flag = f"  under {args.threshold:g}" if row["under_threshold"] else ""
        print(
            f"{row['model']:<32}{row['precision']:>10}{row['method']:>11}"
            f"{row['min_cosine']:>10.4f}{row['median_cosine']:>10.4f}{flag}"
        )
    if args.out:
        Path(args.out).write_text(json.dumps({"settings": vars(args), "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
