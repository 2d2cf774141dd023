"""Speed and memory of ``backpropvis.attribute_many`` against Captum 0.9, side by side.

In ONE process, on the same model, inputs and targets, for 3 methods x T targets:

1. times ``attribute_many`` (one forward, batched backward passes) against Captum's
   ``Saliency(abs=False)``, ``Deconvolution`` and ``GuidedBackprop`` called once per
   method per target (the way a Captum user writes it), alternating the two
   ``--repeats`` times; reports each median and their ratio;
2. checks both give the same maps (relative error; float32 must be under 1e-5) and,
   for TF32 / bfloat16, each map's cosine with the float32 map and the change of the
   class distance between the two targets' maps;
3. counts the FLOPs of the work (one forward plus one input-gradient backward per
   method and target: torch's FlopCounterMode over conv and matmul ops) and reports
   achieved FLOP/s and its fraction of a matrix-product peak measured in this run;
4. reports peak memory (CPU: resident set sampled every 0.5 ms, glibc told to return
   large blocks at once; GPU: max allocated) of ours, Captum's, and one plain
   forward plus one backward at the same batch size;
5. writes everything as JSON and prints a table last.

Run ``python benchmarks/bench_engine.py`` (CPU defaults, under 5 minutes on 2 cores)
or ``python benchmarks/bench_engine.py --device cuda`` on a GPU.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import threading
import time
import warnings
from pathlib import Path

if os.environ.get("MALLOC_MMAP_THRESHOLD_") is None and __name__ == "__main__":
    # Large blocks straight from mmap, so the resident set falls when tensors are freed
    # and a peak measured in one call is not hidden by what an earlier call left cached.
    os.environ["MALLOC_MMAP_THRESHOLD_"] = "131072"
    os.execv(sys.executable, [sys.executable, *sys.argv])

import torch
from torch.utils.flop_counter import FlopCounterMode

import backpropvis
from backpropvis.images import load_image
from backpropvis.metrics import class_distance, cosine_similarity
from backpropvis.models import efficientnet_lite0, three_layer_cnn, vgg16

warnings.filterwarnings("ignore", category=UserWarning, module="captum")
METHODS = ("saliency", "deconvnet", "gbp")


class PeakMemory:
    """Peak memory of a block above its starting level: GPU max allocated, or the CPU
    resident set sampled by a thread (``peak`` in bytes after the block)."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.peak = device, 0

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.start = torch.cuda.memory_allocated()
            return self
        self.start = self._rss()
        self.highest, self.running = self.start, True

        def sample() -> None:
            while self.running:
                self.highest = max(self.highest, self._rss())
                time.sleep(0.0005)

        self.thread = threading.Thread(target=sample, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated() - self.start
            return
        self.running = False
        self.thread.join()
        self.peak = max(self.highest, self._rss()) - self.start


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(function, device: torch.device):
    synchronize(device)
    start = time.perf_counter()
    result = function()
    synchronize(device)
    return result, time.perf_counter() - start


def captum_maps(model, inputs: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
    """Captum, one call per method per target: name -> [T, B, ...]."""
    from captum.attr import Deconvolution, GuidedBackprop, Saliency

    explainers = {"saliency": Saliency(model), "deconvnet": Deconvolution(model), "gbp": GuidedBackprop(model)}
    maps = {}
    for name, explainer in explainers.items():
        options = {"abs": False} if name == "saliency" else {}
        maps[name] = torch.stack([explainer.attribute(inputs, target=target, **options) for target in targets])
    return maps


def captum_modifies(model) -> bool:
    """Whether Captum's DeconvNet / GBP reach every activation of ``model``: Captum hooks
    ``nn.ReLU`` modules only, so a ReLU6 (EfficientNet-Lite0) keeps its plain gradient
    there and its maps are not the methods' maps (only saliency is comparable)."""
    activations = (torch.nn.ReLU6, torch.nn.Hardtanh, torch.nn.LeakyReLU, torch.nn.PReLU)
    return not any(isinstance(module, activations) for module in model.modules())


def plain_forward_backward(model, inputs: torch.Tensor) -> None:
    """One plain forward and one input-gradient backward: the memory reference."""
    x = inputs.detach().requires_grad_(True)
    logits = model(x)
    torch.autograd.grad(logits[:, 0].sum(), x)


def count_flops(model, inputs: torch.Tensor) -> tuple[int, int]:
    """(forward FLOPs, one input-gradient backward's FLOPs) over conv and matmul ops."""
    x = inputs.detach().requires_grad_(True)
    with FlopCounterMode(display=False) as counter:
        logits = model(x)
    forward = counter.get_total_flops()
    with FlopCounterMode(display=False) as counter:
        torch.autograd.grad(logits[:, 0].sum(), x)
    return forward, counter.get_total_flops()


def matmul_peak(device: torch.device, dtype: torch.dtype, tf32: bool = False) -> float:
    """Measured FLOP/s of a large square matrix product on ``device``."""
    size = 2048 if device.type == "cpu" else 8192
    a = torch.randn(size, size, device=device, dtype=dtype, generator=None)
    b = torch.randn(size, size, device=device, dtype=dtype)
    saved = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    try:
        a @ b
        repeats = 3 if device.type == "cpu" else 20
        _, seconds = timed(lambda: [a @ b for _ in range(repeats)], device)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = saved
    return 2 * size**3 * repeats / seconds


def relative_error(ours: torch.Tensor, reference: torch.Tensor) -> float:
    """The largest ||ours - reference|| / ||reference|| over maps [T, B, ...]."""
    difference = (ours - reference).flatten(2).norm(dim=-1)
    return float((difference / reference.flatten(2).norm(dim=-1).clamp_min(1e-30)).max())


def make_inputs(model, size: int, batch: int, device: torch.device) -> torch.Tensor:
    """The tabby image at ``size`` px, repeated with small seeded noise per sample."""
    image = model.preprocessing.resized(size)(load_image("tabby"))
    noise = torch.randn((batch, *image.shape), generator=torch.Generator().manual_seed(0)) * 0.1
    return (image + noise).to(device)


def bench_case(label: str, model, size: int, batch: int, num_targets: int, args, peaks: dict) -> dict:
    device = torch.device(args.device)
    inputs = make_inputs(model, size, batch, device)
    if args.channels_last and device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
        inputs = inputs.contiguous(memory_format=torch.channels_last)
    target_spec = ["max"] + ["random"] * (num_targets - 1)

    def ours(precision: str = "float32"):
        generator = torch.Generator().manual_seed(0)
        return backpropvis.attribute_many(
            model, inputs, target_spec, METHODS, generator=generator, precision=precision, max_batch=args.max_batch
        )

    reference = ours()
    targets = reference.targets
    times = {"ours": [], "captum": []}
    captum_result = None
    for _ in range(args.repeats):
        _, seconds = timed(ours, device)
        times["ours"].append(seconds)
        captum_result, seconds = timed(lambda: captum_maps(model, inputs, targets), device)
        times["captum"].append(seconds)
    median = {name: statistics.median(values) for name, values in times.items()}

    with PeakMemory(device) as memory_plain:
        plain_forward_backward(model, inputs)
    with PeakMemory(device) as memory_ours:
        ours()
    with PeakMemory(device) as memory_captum:
        captum_maps(model, inputs, targets)

    forward_flops, backward_flops = count_flops(model, inputs)
    work = forward_flops + len(METHODS) * num_targets * backward_flops
    peak = peaks["float32"]
    result = {
        "case": label, "size": size, "batch": batch, "targets": num_targets, "methods": len(METHODS),
        "seconds_ours": median["ours"], "seconds_captum": median["captum"],
        "all_seconds": times, "speedup": median["captum"] / median["ours"],
        "images_per_second_ours": batch / median["ours"], "images_per_second_captum": batch / median["captum"],
        "max_relative_error": {
            name: relative_error(reference[name], captum_result[name])
            for name in METHODS if name == "saliency" or captum_modifies(model)
        },
        "captum_modifies_every_activation": captum_modifies(model),
        "flops_forward": forward_flops, "flops_backward": backward_flops, "flops_work": work,
        "achieved_flops_per_second": work / median["ours"], "matmul_peak_flops_per_second": peak,
        "fraction_of_peak": work / median["ours"] / peak,
        "peak_memory_bytes": {"plain_forward_backward": memory_plain.peak, "ours": memory_ours.peak, "captum": memory_captum.peak},
        "memory_ratio_to_plain": memory_ours.peak / max(memory_plain.peak, 1),
    }
    if device.type == "cuda" or args.precisions:
        result["precisions"] = {}
        for precision in ("tf32", "bfloat16") if device.type == "cuda" else ("bfloat16",):
            maps = ours(precision)
            seconds = statistics.median([timed(lambda: ours(precision), device)[1] for _ in range(args.repeats)])
            cosines = {name: float(cosine_similarity(maps[name].float(), reference[name]).min()) for name in METHODS}
            distance_change = {
                name: float((class_distance(maps[name][0], maps[name][1]) - class_distance(reference[name][0], reference[name][1])).abs().max())
                for name in METHODS
            } if num_targets >= 2 else {}
            key = "tf32" if precision == "tf32" else "bfloat16"
            result["precisions"][precision] = {
                "seconds": seconds, "images_per_second": batch / seconds, "min_cosine_to_float32": cosines,
                "class_distance_change": distance_change,
                "fraction_of_peak": work / seconds / peaks.get(key, peak),
            }
    return result


def bench_paper_cnn(args) -> dict:
    """The paper-size three-layer CNN: all 1000 logits, then max and random maps for all
    three methods (forward pass included), with the peak resident set."""
    device = torch.device(args.device)
    model = three_layer_cnn(seed=0).to(device)
    inputs = make_inputs(model, 224, 1, device)
    with PeakMemory(device) as memory:
        maps, seconds = timed(
            lambda: backpropvis.attribute_many(model, inputs, ["max", "random"], METHODS, generator=torch.Generator().manual_seed(0)),
            device,
        )
    rss = PeakMemory._rss() if device.type == "cpu" else torch.cuda.max_memory_allocated()
    return {
        "case": "cnn3 paper size (256 filters 7x7 s2, 224 px, 1000 logits, 3.2 G readout weights)",
        "seconds": seconds, "peak_memory_increase_bytes": memory.peak, "resident_after_bytes": rss,
        "targets": [int(t) for t in maps.targets[:, 0]],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-batch", type=int, default=None, help="engine's maps per backward pass (default: its own)")
    parser.add_argument("--channels-last", action="store_true", help="channels_last model and inputs (CUDA)")
    parser.add_argument("--precisions", action="store_true", help="also bfloat16 on CPU (slow)")
    parser.add_argument("--cases", default=None, help="comma-separated case labels to run (default: all for the device)")
    parser.add_argument("--out", default=None, help="JSON output (default: benchmarks/results/<device>.json)")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)

    peaks = {"float32": matmul_peak(device, torch.float32)}
    if device.type == "cuda":
        peaks["tf32"] = matmul_peak(device, torch.float32, tf32=True)
        peaks["bfloat16"] = matmul_peak(device, torch.bfloat16)

    vgg = vgg16("random", seed=0).to(device)
    lite = efficientnet_lite0().to(device)
    if device.type == "cpu":
        cases = [
            ("vgg16-random 112px b2 T2", vgg, 112, 2, 2),
            ("vgg16-random 112px b2 T8", vgg, 112, 2, 8),
            ("vgg16-random 224px b4 T2", vgg, 224, 4, 2),
            ("efficientnet-lite0 224px b4 T2", lite, 224, 4, 2),
        ]
    else:
        cases = [
            ("vgg16-random 224px b32 T2", vgg, 224, 32, 2),
            ("vgg16-random 224px b32 T8", vgg, 224, 32, 8),
            ("vgg16-random 224px b128 T2", vgg, 224, 128, 2),
            ("efficientnet-lite0 224px b32 T2", lite, 224, 32, 2),
        ]
    checkpoint = Path(torch.hub.get_dir()) / "checkpoints" / "vgg16-397923af.pth"
    if checkpoint.is_file():
        trained = vgg16(checkpoint).to(device)
        cases.insert(1, (cases[0][0].replace("random", "imagenet"), trained, *cases[0][2:]))
    if args.cases:
        wanted = set(args.cases.split(","))
        cases = [case for case in cases if case[0] in wanted or case[0].split()[0] in wanted]

    results = []
    for label, model, size, batch, num_targets in cases:
        print(f"running {label} ...", flush=True)
        results.append(bench_case(label, model, size, batch, num_targets, args, peaks))
    if not args.cases or "cnn3" in args.cases:
        print("running cnn3 paper size ...", flush=True)
        paper_cnn = bench_paper_cnn(args)
    else:
        paper_cnn = None

    report = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads",
        "torch": torch.__version__, "captum": __import__("captum").__version__, "backpropvis": backpropvis.__version__,
        "python": platform.python_version(), "matmul_peak_flops_per_second": peaks,
        "default_max_batch": backpropvis.engine.DEFAULT_MAX_BATCH, "max_batch": args.max_batch,
        "cases": results, "paper_cnn": paper_cnn,
    }
    out = Path(args.out or Path(__file__).parent / "results" / f"{device.type}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")

    print(f"\n{report['device']}, torch {report['torch']}, captum {report['captum']}; matmul peak "
          + ", ".join(f"{k} {v / 1e9:.0f} GFLOP/s" for k, v in peaks.items()))
    print(f"{'case':<34}{'ours s':>8}{'captum s':>10}{'speedup':>9}{'max rel err':>13}{'% peak':>8}{'mem/plain':>10}")
    for r in results:
        compared = "" if r["captum_modifies_every_activation"] else " (saliency only: Captum skips ReLU6)"
        print(f"{r['case']:<34}{r['seconds_ours']:>8.3f}{r['seconds_captum']:>10.3f}{r['speedup']:>8.2f}x"
              f"{max(r['max_relative_error'].values()):>13.1e}{100 * r['fraction_of_peak']:>7.1f}%{r['memory_ratio_to_plain']:>9.2f}x{compared}")
        for precision, p in r.get("precisions", {}).items():
            print(f"  {precision:<32}{p['seconds']:>8.3f}{'':>10}{r['seconds_ours'] / p['seconds']:>8.2f}x"
                  f"  min cos {min(p['min_cosine_to_float32'].values()):.4f}, {100 * p['fraction_of_peak']:.1f}% of its peak")
    if paper_cnn:
        print(f"{'cnn3 paper size, 1000 logits + 3x2 maps':<42}{paper_cnn['seconds']:>8.1f} s, peak "
              f"+{paper_cnn['peak_memory_increase_bytes'] / 2**30:.2f} GiB above the process before the call")
    print(f"wrote {out}")


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
