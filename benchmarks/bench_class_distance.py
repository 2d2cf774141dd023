"""Throughput and memory of a streamed class-distance run (``backpropvis class-distance``).

Writes ``--images`` synthetic JPEGs (seeded crops of the bundled samples, 200-320
pixels a side) into a temporary folder, runs
:func:`backpropvis.stats.run_class_distance` over them twice (the first ``--images //
4`` then, resumed, the rest) and reports images/s and the peak resident memory after
each part: a flat memory means the run streams. Prints one JSON line.

Run ``python benchmarks/bench_class_distance.py`` (CPU: EfficientNet-Lite0 at 64 pixels,
a few minutes on 2 cores) or, on a GPU, ``python benchmarks/bench_class_distance.py
--device cuda --size 224 --images 2000 --batch-size 64 --workers 8``.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from backpropvis.images import SAMPLES
from backpropvis.stats import run_class_distance


def write_images(root: Path, count: int, seed: int = 0) -> None:
    """``count`` JPEGs: random crops of the samples, mirrored half of the time, resized."""
    generator = np.random.default_rng(seed)
    pictures = [Image.fromarray(load()).convert("RGB") for load in SAMPLES.values()]
    for number in range(count):
        picture = pictures[number % len(pictures)]
        width, height = picture.size
        fraction = generator.uniform(0.5, 1.0)
        side_w, side_h = int(width * fraction), int(height * fraction)
        left, top = int(generator.integers(0, width - side_w + 1)), int(generator.integers(0, height - side_h + 1))
        crop = picture.crop((left, top, left + side_w, top + side_h))
        if generator.random() < 0.5:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        size = (int(generator.integers(200, 320)), int(generator.integers(200, 320)))
        crop.resize(size).save(root / f"{number:06d}.jpg", quality=90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--model", default="efficientnet-lite0")
    parser.add_argument("--weights", default="imagenet")
    parser.add_argument("--size", type=int, default=64, help="input crop size")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        root, db = Path(folder) / "images", Path(folder) / "results.sqlite"
        root.mkdir()
        write_images(root, args.images)
        parts = []
        for limit in (max(1, args.images // 4), args.images):
            started = time.perf_counter()
            report = run_class_distance(
                root, db, model=args.model, weights=args.weights, input_size=args.size, limit=limit,
                batch_size=args.batch_size, workers=args.workers, device=args.device, progress=False,
            )
            parts.append({
                "images": report.done_now, "seconds": round(time.perf_counter() - started, 2),
                "images_per_second": round(report.images_per_second, 3),
                "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            })
    print(json.dumps({"settings": vars(args), "parts": parts}))


if __name__ == "__main__":
    main()
