"""Throughput and memory of a streamed class-distance run (``backpropvis class-distance``).

Writes ``--images`` synthetic JPEGs (seeded crops of the bundled samples, 200-320
pixels a side) into a temporary folder, runs
:func:`backpropvis.stats.run_class_distance` over them twice (the first ``--images //
4`` then, resumed, the rest) and reports images/s and the peak resident memory after
each part: a flat memory means the run streams. Prints one JSON line.

On a GPU it also reports the memory still allocated on the device after each part
(``torch.cuda.memory_allocated``): a run that leaked its batches' graphs would grow it.
``--folder DIR`` writes the images there and keeps them (e.g. for a torchrun run next).

Run ``python benchmarks/bench_class_distance.py`` (CPU: EfficientNet-Lite0 at 64 pixels,
a few minutes on 2 cores) or, on a GPU, ``python benchmarks/bench_class_distance.py
--device cuda --model vgg16 --weights random --size 224 --images 2000 --batch-size 64 --workers 8``.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from backpropvis.images import SAMPLES
from backpropvis.models import ModelSpec
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
    parser.add_argument("--precision", default="default", help="engine precision (default: PyTorch's flags)")
    parser.add_argument(
        "--folder", default=None, help="write the images here and keep them (default: a temporary folder)"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        root, db = Path(args.folder or Path(folder) / "images"), Path(folder) / "results.sqlite"
        root.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        write_images(root, args.images)
        written = round(time.perf_counter() - started, 2)
        parts = []
        for limit in (max(1, args.images // 4), args.images):
            started = time.perf_counter()
            report = run_class_distance(
                root,
                db,
                model=ModelSpec(args.model, weights=args.weights, input_size=args.size),
                limit=limit,
                batch_size=args.batch_size,
                workers=args.workers,
                device=args.device,
                progress=False,
                precision=args.precision,
            )
            parts.append(
                {
                    "images": report.done_now,
                    "seconds": round(time.perf_counter() - started, 2),
                    "images_per_second": round(report.images_per_second, 3),
                    "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                    "cuda_allocated_mib": round(torch.cuda.memory_allocated() / 2**20, 1)
                    if torch.cuda.is_available()
                    else None,
                }
            )
    print(json.dumps({"settings": vars(args), "seconds_writing_images": written, "parts": parts}))


if __name__ == "__main__":
    main()
