"""The class-distance command against the engine's own throughput, in one run.

Writes ``--images`` synthetic JPEGs (``--image-size``, default ImageNet's typical 500 x
375: smooth random colour fields plus noise, several processes) into a folder, then:

1. **engine**: :func:`backpropvis.engine.attribute_many` alone, on images decoded
   beforehand and already on the device, at the same model, batch size, precision,
   pairs and methods as the command (one warm-up batch, then as many batches as the
   command's next part computes, one wait for the device at the end), before and after
   every resumed part of the command, so that a machine whose load drifts (a shared CPU)
   weighs on both sides alike;
2. **command**: :func:`backpropvis.stats.run_class_distance` over the folder in parts,
   about the first quarter (whole batches: start-up, not compared) then the rest resumed
   (what a user's run does after a crash) in ``--rounds`` parts of whole batches, the engine
   measured between every two, with the peak resident memory and the device memory after each part.

It reports both throughputs and their ratio (each resumed part over the engine measured just
before and after it, the median over the rounds: 1.0 means the pipeline costs nothing), as
one JSON line; ``--out FILE`` writes it there too. CPU (the issue's case, about a minute on
2 cores; ``--images 400 --rounds 4`` for a steadier number)::

    python benchmarks/bench_class_distance.py --images 96 --size 128 --batch-size 16

GPU (``benchmarks/gpu_check.sh`` runs this)::

    python benchmarks/bench_class_distance.py --device cuda --model vgg16 --weights random --size 224 \\
        --images 10000 --batch-size 128 --workers 15 --precision tf32
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from backpropvis.core.rules import resolve_rule
from backpropvis.engine import attribute_many
from backpropvis.models import load_model
from backpropvis.stats import list_images, run_class_distance
from backpropvis.stats.decoding import ImageSet, batch_loader, decoding_workers
from backpropvis.stats.measuring import PairTargets
from backpropvis.stats.pairs import pair_draws
from backpropvis.stats.streaming import device_layout


def _write_some(job: tuple[str, int, int, int, int]) -> None:
    folder, start, stop, width, height = job
    for number in range(start, stop):
        generator = np.random.default_rng(number)
        w, h = (width, height) if number % 4 else (height, width)  # a quarter portrait
        field = generator.random((h // 32 + 2, w // 32 + 2, 3)) * 255
        picture = Image.fromarray(field.astype(np.uint8)).resize((w, h), Image.Resampling.BICUBIC)
        noisy = np.asarray(picture, dtype=np.int16) + generator.integers(-24, 25, (h, w, 3), dtype=np.int16)
        Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(Path(folder) / f"{number:06d}.jpg", quality=90)


def write_images(root: Path, count: int, width: int, height: int, processes: int) -> None:
    """``count`` seeded JPEGs of width x height (a quarter of them height x width)."""
    step = max(1, -(-count // (processes * 4)))
    jobs = [(str(root), start, min(start + step, count), width, height) for start in range(0, count, step)]
    if processes <= 1:
        for job in jobs:
            _write_some(job)
        return
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        pool.map(_write_some, jobs)


def engine_rate(args: argparse.Namespace, root: Path, loaded, batches: int) -> dict:
    """Images/s of attribute_many alone on pre-decoded device tensors (see the module docstring)."""
    device = torch.device(args.device)
    keys = list_images(root)[: min(4 * args.batch_size, args.images)]
    dataset = ImageSet(root, keys, loaded.preprocessing)
    blocks = [
        list(range(start, min(start + args.batch_size, len(keys)))) for start in range(0, len(keys), args.batch_size)
    ]
    rules = [resolve_rule(method) for method in args.methods.split(",")]
    network = loaded.module.to(device)
    with device_layout(network, device) as layout:
        decoded = []
        for batch in batch_loader(dataset, blocks, decoding_workers(args.workers, device), args.batch_size):
            inputs = loaded.preprocessing.from_pixels(batch.pixels.to(device))
            inputs[len(batch.keys) :] = 0
            decoded.append((batch.keys, inputs.contiguous(memory_format=layout)))
        num_classes = None

        def one(number: int) -> int:
            nonlocal num_classes
            names, inputs = decoded[number % len(decoded)]
            draws = None if num_classes is None else pair_draws(args.pairs, names, args.seed, num_classes)
            pairs = PairTargets(args.pairs, names, args.seed, draws)
            maps = attribute_many(network, inputs, pairs.targets(), rules, precision=args.precision)
            num_classes = maps.logits.shape[1]
            return len(names)

        one(0)  # warm-up: cuDNN's benchmark, allocator
        _wait(device)
        started, images, cpu = time.perf_counter(), 0, _cpu_seconds()
        for number in range(batches):
            images += one(number + 1)
        _wait(device)
        seconds, cpu = time.perf_counter() - started, _cpu_seconds() - cpu
    return {
        "images": images,
        "batches": batches,
        "seconds": round(seconds, 3),
        "images_per_second": images / seconds,
        "cpu_seconds_per_image": cpu / images,
    }


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (DataLoader workers), user + system."""
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(part.ru_utime + part.ru_stime for part in usage)


def _wait(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def part_limits(args: argparse.Namespace) -> list[int]:
    """Where each part of the command stops: about the first quarter of the images (whole
    batches, so that the later parts' batches are full, as the engine's are), then ``--rounds``
    resumed parts of whole batches, the last ending at ``--images``."""
    first = _first_part(args)
    batches = -(-(args.images - first) // args.batch_size)
    rounds = max(1, min(args.rounds, batches))
    return [first] + [
        min(args.images, first + args.batch_size * (batches * number // rounds)) for number in range(1, rounds + 1)
    ]


def command_part(args: argparse.Namespace, root: Path, db: Path, loaded, limit: int) -> dict:
    """The command run (or resumed) up to ``limit`` images. With ``--sync-debug`` (CUDA) the
    last part counts the operations that made Python wait for the device
    (``torch.cuda.set_sync_debug_mode``)."""
    counting = args.sync_debug and limit == args.images and torch.cuda.is_available()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if counting:
            torch.cuda.set_sync_debug_mode("warn")
        started, cpu = time.perf_counter(), _cpu_seconds()
        try:
            report = _command(args, root, db, loaded, limit)
        finally:
            if counting:
                torch.cuda.set_sync_debug_mode("default")
    waits = [str(warning.message).splitlines()[0] for warning in caught if "synchroniz" in str(warning.message)]
    return {
        "images": report.done_now,
        "failed": report.failed_now,
        "seconds_loop": round(report.seconds, 3),
        "cpu_seconds_per_image": (_cpu_seconds() - cpu) / max(1, report.done_now),
        "seconds_wall": round(time.perf_counter() - started, 3),
        "images_per_second": round(report.images_per_second, 3),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "cuda_allocated_mib": round(torch.cuda.memory_allocated() / 2**20, 1) if torch.cuda.is_available() else None,
        "synchronizations": len(waits) if counting else None,
        "synchronizations_kinds": sorted(set(waits))[:5] if counting else None,
        "receipt": report.receipt.as_dict() if report.receipt is not None else None,
    }


def _first_part(args: argparse.Namespace) -> int:
    """The images of the command's first part: about a quarter, in whole batches."""
    return min(args.images, args.batch_size * max(1, args.images // 4 // args.batch_size))


def _command(args: argparse.Namespace, root: Path, db: Path, loaded, limit: int):
    return run_class_distance(
        root,
        db,
        model=loaded,
        limit=limit,
        batch_size=args.batch_size,
        workers=args.workers,
        device=args.device,
        progress=False,
        precision=args.precision,
        methods=args.methods.split(","),
        pairs=args.pairs,
        seed=args.seed,
    )


def _mean_cpu(*runs: dict) -> float:
    """CPU seconds per image over several runs together."""
    return sum(run["cpu_seconds_per_image"] * run["images"] for run in runs) / sum(run["images"] for run in runs)


def _mean_rate(*runs: dict) -> float:
    """Images/s over several runs together (total images over total seconds)."""
    return sum(run["images"] for run in runs) / sum(run["seconds"] for run in runs)


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--image-size", default="500x375", help="WIDTHxHEIGHT of the JPEGs (default: %(default)s)")
    parser.add_argument("--model", default="efficientnet-lite0")
    parser.add_argument("--weights", default="imagenet")
    parser.add_argument("--size", type=int, default=128, help="input crop size")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="decoding processes (default: the command's, 0 on the CPU, 2 on a GPU)",
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="default", help="engine precision (default: PyTorch's flags)")
    parser.add_argument("--methods", default="saliency,deconvnet,gbp")
    parser.add_argument("--pairs", default="max-random")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--folder", default=None, help="write the images here and keep them (default: temporary)")
    parser.add_argument("--writers", type=int, default=os.cpu_count() or 1, help="processes writing the JPEGs")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="resumed parts of the command, each between two engine measurements; the ratio is their median "
        "(default: %(default)s)",
    )
    parser.add_argument("--out", default=None, help="also write the JSON line to this file")
    parser.add_argument(
        "--sync-debug", action="store_true", help="CUDA: count what makes Python wait for the device (second part)"
    )
    return parser.parse_args()


def main() -> None:
    args = _arguments()
    width, height = (int(side) for side in args.image_size.lower().split("x"))
    with tempfile.TemporaryDirectory() as folder:
        root, db = Path(args.folder or Path(folder) / "images"), Path(folder) / "results.sqlite"
        root.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        write_images(root, args.images, width, height, args.writers)
        written = round(time.perf_counter() - started, 2)
        loaded = load_model(args.model, weights=args.weights, input_size=args.size, seed=args.seed)
        limits = part_limits(args)
        parts = [command_part(args, root, db, loaded, limits[0])]  # the first part: start-up, not compared
        engines = []
        for done, limit in zip(limits, limits[1:]):  # engine, command part, engine, ...: alternating
            engines.append(engine_rate(args, root, loaded, -(-(limit - done) // args.batch_size)))
            parts.append(command_part(args, root, db, loaded, limit))
        engines.append(engine_rate(args, root, loaded, -(-(limits[-1] - limits[-2]) // args.batch_size)))
    # each resumed part against the engine just before and just after it (a drifting load weighs on both)
    ratios = [part["images_per_second"] / _mean_rate(*engines[k : k + 2]) for k, part in enumerate(parts[1:])]
    cpu_ratios = [_mean_cpu(*engines[k : k + 2]) / part["cpu_seconds_per_image"] for k, part in enumerate(parts[1:])]
    engine = {"before": engines[0], "after": engines[-1], "rounds": engines, "images_per_second": _mean_rate(*engines)}
    result = {
        "settings": vars(args),
        "torch": torch.__version__,
        "device_name": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "cpu",
        "threads": torch.get_num_threads(),
        "seconds_writing_images": written,
        "engine": engine,
        "command": parts,
        "round_ratios": [round(ratio, 3) for ratio in ratios],
        "ratio": round(float(np.median(ratios)), 3),
        # CPU work per image, engine over command: what a dedicated machine's ratio would be where the
        # CPU is the limit (a shared machine's wall-clock ratio follows its load)
        "cpu_work_ratio": round(float(np.median(cpu_ratios)), 3),
    }
    line = json.dumps(result)
    print(line)
    if args.out:
        Path(args.out).write_text(line + "\n")


if __name__ == "__main__":
    main()
