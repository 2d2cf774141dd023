"""Speed and memory of ``backpropvis.attribute_many`` against Captum 0.9, like with like.

In ONE process, on the same model, inputs and targets, for 3 methods x T targets, and
for each precision at the SAME precision on both sides:

- ``float32``: ours with ``precision="float32"`` against Captum with TF32 off (exact
  IEEE float32 on both sides);
- ``tf32`` (CUDA): ours with ``precision="tf32"`` against Captum with TF32 on for
  matrix products and cuDNN convolutions;
- ``bfloat16``: ours with ``precision="bfloat16"`` against Captum under the same
  ``torch.autocast(dtype=torch.bfloat16)``.

For each (case, precision) it

1. times ours, Captum (``Saliency(abs=False)``, ``Deconvolution``, ``GuidedBackprop``,
   one call per method per target, as a Captum user writes it) and the floor (one
   forward pass that keeps its graph, then one plain input-gradient backward pass per
   map, no rule at all), alternating them ``--repeats`` times; reports medians, the
   speedup over Captum and ours as a fraction of the floor (on a CPU from the
   process's CPU time, which other processes on a shared machine do not inflate; the
   wall-time speedup is kept as ``wall_speedup_over_captum``);
2. checks the maps agree per method (relative error of each map's norm against
   Captum's at the same precision; Captum hooks ``nn.ReLU`` only, so on a ReLU6 net
   only saliency is comparable) and, for TF32 / bfloat16, each map's cosine with our
   exact float32 map;
3. counts the FLOPs (one forward plus one input-gradient backward per map: torch's
   FlopCounterMode over conv and matmul ops) against a matrix-product peak measured in
   this run at that precision;
4. measures peak memory (CPU: resident set sampled every 0.5 ms with glibc returning
   large blocks at once; GPU: max allocated) of ours, Captum's, and one plain forward
   plus one input-gradient backward at the same batch size and precision.

A case that runs out of GPU memory is recorded as such and the run goes on. Results go
to ``benchmarks/results/<device>.json`` and a table is printed last.

Run ``python benchmarks/bench_engine.py`` (CPU, about 4 minutes on 2 cores) or
``python benchmarks/bench_engine.py --device cuda`` on a GPU (add ``--channels-last``
and ``--cudnn-benchmark`` for the fastest GPU settings; they apply to every side).
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
from typing import Any, Callable

if os.environ.get("MALLOC_MMAP_THRESHOLD_") is None and __name__ == "__main__":
    # Large blocks straight from mmap, so the resident set falls when tensors are freed
    # and a peak measured in one call is not hidden by what an earlier call left cached.
    os.environ["MALLOC_MMAP_THRESHOLD_"] = "131072"
    os.execv(sys.executable, [sys.executable, *sys.argv])

import torch
from torch.utils.flop_counter import FlopCounterMode

import backpropvis
from backpropvis.core.metrics import cosine_similarity
from backpropvis.core.rules import PAPER_METHODS
from backpropvis.engine.precision import Arithmetic
from backpropvis.images.samples import load_image
from backpropvis.models import efficientnet_lite0, three_layer_cnn, vgg16

warnings.filterwarnings("ignore", category=UserWarning, module="captum")


class PeakMemory:
    """Peak memory of a block above its starting level: GPU max allocated, or the CPU
    resident set sampled by a thread (``peak`` in bytes after the block)."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.peak = device, 0

    @staticmethod
    def rss() -> int:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.start = torch.cuda.memory_allocated()
            return self
        self.start = self.rss()
        self.highest, self.running = self.start, True

        def sample() -> None:
            while self.running:
                self.highest = max(self.highest, self.rss())
                time.sleep(0.0005)

        self.thread = threading.Thread(target=sample, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated() - self.start
            return
        self.running = False
        self.thread.join()
        self.peak = max(self.highest, self.rss()) - self.start


def global_precision(precision: str, device: torch.device) -> Arithmetic:
    """The arithmetic Captum and the floor run under, matching ours at ``precision``:
    the engine's own :class:`~backpropvis.engine.precision.Arithmetic` (TF32 off for
    float32, on for tf32, through the global flags; bfloat16 autocast), entered around
    code that is not the engine."""
    return Arithmetic(precision, device.type)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(function: Callable[[], Any], device: torch.device) -> tuple[Any, float]:
    synchronize(device)
    start = time.perf_counter()
    result = function()
    synchronize(device)
    return result, time.perf_counter() - start


def process_seconds(function: Callable[[], Any]) -> float:
    """CPU time of this process (all its threads) spent in ``function``: on a CPU shared
    with other processes it leaves out the time the scheduler gave to them."""
    start = time.process_time()
    function()
    return time.process_time() - start


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


def floor_maps(model, inputs: torch.Tensor, targets: torch.Tensor, maps_per_target: int) -> torch.Tensor:
    """The floor: one forward keeping its graph, then one plain input-gradient backward
    pass per map (no rule): what any shared-forward engine must at least do."""
    x = inputs.detach().requires_grad_(True)
    logits = model(x)
    seeds = torch.zeros((len(targets), *logits.shape), dtype=logits.dtype, device=logits.device)
    seeds.scatter_(2, targets.unsqueeze(-1), 1.0)
    grads = []
    for seed in seeds:
        for _ in range(maps_per_target):
            grads.append(torch.autograd.grad(logits, x, seed, retain_graph=True)[0])
    return torch.stack(grads)


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


def matmul_peak(device: torch.device, precision: str) -> float:
    """Measured FLOP/s of a large square matrix product on ``device`` at ``precision``."""
    size = 2048 if device.type == "cpu" else 8192
    generator = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(size, size, device=device, generator=generator)
    b = torch.randn(size, size, device=device, generator=generator)
    if precision == "bfloat16":
        a, b = a.bfloat16(), b.bfloat16()
    with global_precision("tf32" if precision == "tf32" else "float32", device):
        a @ b
        repeats = 3 if device.type == "cpu" else 20
        _, seconds = timed(lambda: [a @ b for _ in range(repeats)], device)
    return 2 * size**3 * repeats / seconds


def relative_error(ours: torch.Tensor, reference: torch.Tensor) -> float:
    """The largest ||ours - reference|| / ||reference|| over maps [T, B, ...]."""
    difference = (ours.float() - reference.float()).flatten(2).norm(dim=-1)
    return float((difference / reference.float().flatten(2).norm(dim=-1).clamp_min(1e-30)).max())


def make_inputs(model, size: int, batch: int, device: torch.device) -> torch.Tensor:
    """The tabby image at ``size`` px, repeated with small seeded noise per sample."""
    image = model.preprocessing.resized(size)(load_image("tabby"))
    noise = torch.randn((batch, *image.shape), generator=torch.Generator().manual_seed(0)) * 0.1
    return (image + noise).to(device)


def bench_precision(model, inputs, target_spec, precision: str, exact, args, work: int, peaks: dict) -> dict:
    """One (case, precision): ours, Captum and the floor at that precision, side by side."""
    device = inputs.device

    def ours():
        return backpropvis.attribute_many(
            model,
            inputs,
            target_spec,
            PAPER_METHODS,
            generator=torch.Generator().manual_seed(0),
            precision=precision,
            max_batch=args.max_batch,
        )

    targets = exact.targets

    def captum():
        with global_precision(precision, device):
            return captum_maps(model, inputs, targets)

    def floor():
        with global_precision(precision, device):
            return floor_maps(model, inputs, targets, len(PAPER_METHODS))

    maps, captum_result = ours(), captum()
    floor()  # warm-up (cuDNN algorithm choice, allocator)
    times: dict[str, list[float]] = {"ours": [], "captum": [], "floor": []}
    cpu_times: dict[str, list[float]] = {"ours": [], "captum": [], "floor": []}
    for _ in range(args.repeats):
        for name, function in (("ours", ours), ("captum", captum), ("floor", floor)):
            if device.type == "cpu":
                start = time.perf_counter()
                cpu_times[name].append(process_seconds(function))
                times[name].append(time.perf_counter() - start)
            else:
                times[name].append(timed(function, device)[1])
    median = {name: statistics.median(values) for name, values in times.items()}
    # on a CPU, ratios of process CPU time (robust to other processes on a shared machine)
    ratio_basis = median
    if cpu_times["ours"]:
        ratio_basis = {name: statistics.median(values) for name, values in cpu_times.items()}

    memory = {}
    for name, function in (
        ("plain_forward_backward", lambda: _under(precision, device, lambda: plain_forward_backward(model, inputs))),
        ("ours", ours),
        ("captum", captum),
    ):
        with PeakMemory(device) as peak:
            function()
        memory[name] = peak.peak
    compared = [name for name in PAPER_METHODS if name == "saliency" or captum_modifies(model)]
    return {
        "seconds": median,
        "all_seconds": times,
        "all_process_cpu_seconds": cpu_times,
        "ratios_from": "process CPU time" if cpu_times["ours"] else "wall time",
        "speedup_over_captum": ratio_basis["captum"] / ratio_basis["ours"],
        "fraction_of_floor": ratio_basis["floor"] / ratio_basis["ours"],
        "wall_speedup_over_captum": median["captum"] / median["ours"],
        "images_per_second": {name: len(inputs) / seconds for name, seconds in median.items()},
        "relative_error_to_captum": {name: relative_error(maps[name], captum_result[name]) for name in compared},
        "min_cosine_to_exact_float32": {
            name: float(cosine_similarity(maps[name].float(), exact[name].float()).min()) for name in PAPER_METHODS
        },
        "fraction_of_matmul_peak": work / median["ours"] / peaks[precision],
        "peak_memory_bytes": memory,
        "memory_ratio_to_plain": memory["ours"] / max(memory["plain_forward_backward"], 1),
        "captum_memory_ratio_to_plain": memory["captum"] / max(memory["plain_forward_backward"], 1),
    }


def _under(precision: str, device: torch.device, function: Callable[[], Any]) -> Any:
    with global_precision(precision, device):
        return function()


def bench_case(label: str, model, size: int, batch: int, num_targets: int, args, peaks: dict) -> dict:
    device = torch.device(args.device)
    inputs = make_inputs(model, size, batch, device)
    if args.channels_last and device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
        inputs = inputs.contiguous(memory_format=torch.channels_last)
    target_spec = ["max"] + ["random"] * (num_targets - 1)
    exact = backpropvis.attribute_many(
        model, inputs, target_spec, PAPER_METHODS, generator=torch.Generator().manual_seed(0), precision="float32"
    )
    forward_flops, backward_flops = count_flops(model, inputs)
    work = forward_flops + len(PAPER_METHODS) * num_targets * backward_flops
    result: dict[str, Any] = {
        "case": label,
        "size": size,
        "batch": batch,
        "targets": num_targets,
        "methods": len(PAPER_METHODS),
        "captum_modifies_every_activation": captum_modifies(model),
        "flops_forward": forward_flops,
        "flops_backward": backward_flops,
        "flops_work": work,
        "precisions": {},
    }
    for precision in args.precision_list:
        print(f"  {precision} ...", flush=True)
        try:
            measured = bench_precision(model, inputs, target_spec, precision, exact, args, work, peaks)
            measured["goals"] = goals_of(result, precision, measured, device.type)
            result["precisions"][precision] = measured
        except torch.cuda.OutOfMemoryError as error:
            result["precisions"][precision] = {"out_of_memory": str(error).splitlines()[0]}
        finally:
            if device.type == "cuda":
                torch.cuda.empty_cache()
    return result


def bench_paper_cnn(args) -> dict:
    """The paper-size three-layer CNN: all 1000 logits, then max and random maps for all
    three methods (forward pass included), with the peak resident set."""
    device = torch.device(args.device)
    model = three_layer_cnn(seed=0).to(device)
    inputs = make_inputs(model, 224, 1, device)
    with PeakMemory(device) as memory:
        maps, seconds = timed(
            lambda: backpropvis.attribute_many(
                model,
                inputs,
                ["max", "random"],
                PAPER_METHODS,
                generator=torch.Generator().manual_seed(0),
                precision="float32",
            ),
            device,
        )
    return {
        "case": "cnn3 paper size (256 filters 7x7 s2, 224 px, 1000 logits, 3.2 G readout weights)",
        "seconds": seconds,
        "peak_memory_increase_bytes": memory.peak,
        "targets": [int(t) for t in maps.targets[:, 0]],
    }


def cases_for(device: torch.device) -> list[tuple]:
    """(label, model, size, batch, targets) for the device."""
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
    return cases


def print_table(report: dict) -> None:
    print(
        f"\n{report['device']}, torch {report['torch']}, captum {report['captum']}; matmul peak "
        + ", ".join(f"{k} {v / 1e9:.0f} GFLOP/s" for k, v in report["matmul_peak_flops_per_second"].items())
    )
    if any(r.get("ratios_from") == "process CPU time" for case in report["cases"] for r in case["precisions"].values()):
        print("seconds: wall-time medians; speedup and fraction of floor: from process CPU time (shared CPU)")
    print(
        f"{'case':<34}{'precision':>10}{'ours s':>9}{'captum s':>10}{'floor s':>9}{'speedup':>9}"
        f"{'of floor':>9}{'rel err':>9}{'% peak':>8}{'mem/plain':>10}{'captum':>8}"
    )
    for case in report["cases"]:
        for precision, r in case["precisions"].items():
            if "out_of_memory" in r:
                print(f"{case['case']:<34}{precision:>10}  out of GPU memory")
                continue
            seconds = r["seconds"]
            only = "" if case["captum_modifies_every_activation"] else "  (saliency only: Captum skips ReLU6)"
            print(
                f"{case['case']:<34}{precision:>10}{seconds['ours']:>9.3f}{seconds['captum']:>10.3f}"
                f"{seconds['floor']:>9.3f}{r['speedup_over_captum']:>8.2f}x{100 * r['fraction_of_floor']:>8.0f}%"
                f"{max(r['relative_error_to_captum'].values()):>9.1e}{100 * r['fraction_of_matmul_peak']:>7.1f}%"
                f"{r['memory_ratio_to_plain']:>9.2f}x{r['captum_memory_ratio_to_plain']:>7.2f}x{only}"
            )
    print_cosines(report)
    print_goals(report)
    paper_cnn = report.get("paper_cnn")
    if paper_cnn:
        print(
            f"cnn3 paper size, 1000 logits + 3x2 maps: {paper_cnn['seconds']:.1f} s, peak "
            f"+{paper_cnn['peak_memory_increase_bytes'] / 2**30:.2f} GiB above the process before the call"
        )


def print_cosines(report: dict) -> None:
    """Each method's cosine to the exact float32 map (minimum over targets and images),
    for the precisions that are not exact float32."""
    rows = [
        (case["case"], precision, r["min_cosine_to_exact_float32"])
        for case in report["cases"]
        for precision, r in case["precisions"].items()
        if precision != "float32" and "out_of_memory" not in r
    ]
    if not rows:
        return
    names = list(rows[0][2])
    print(f"\n{'cosine to exact float32 (min)':<34}{'precision':>10}" + "".join(f"{name:>11}" for name in names))
    for label, precision, cosines in rows:
        print(f"{label:<34}{precision:>10}" + "".join(f"{cosines[name]:>11.4f}" for name in names))


GOALS = {
    "speedup_over_captum": {"cpu T2": 2.0, "cpu T8": 2.5},
    "memory_ratio_to_plain": 1.3,
    "min_cosine_to_exact_float32": 0.99,
    "fraction_of_floor": 0.9,
}
"""Issue 19's targets: speed over Captum on the CPU (VGG-16 112 px b2) at T=2 and T=8,
GPU memory over a plain forward+backward, each method's cosine at TF32 / bfloat16, and
the fraction of the floor (EfficientNet-Lite0)."""


def goals_of(case: dict, precision: str, r: dict, device_type: str) -> dict[str, dict]:
    """Issue 19's goals that apply to one (case, precision): name -> value, goal, met."""
    goals: dict[str, dict] = {}
    if device_type == "cpu" and precision == "float32" and case["case"].startswith("vgg16-random 112px"):
        goal = GOALS["speedup_over_captum"].get(f"cpu T{case['targets']}")
        if goal:
            goals["speedup_over_captum"] = {"value": r["speedup_over_captum"], "goal": goal}
    if device_type == "cuda" and case["targets"] == 8:
        goals["memory_ratio_to_plain"] = {"value": r["memory_ratio_to_plain"], "goal": GOALS["memory_ratio_to_plain"]}
    if precision != "float32":
        goals["min_cosine_to_exact_float32"] = {
            "value": min(r["min_cosine_to_exact_float32"].values()),
            "goal": GOALS["min_cosine_to_exact_float32"],
        }
    if case["case"].startswith("efficientnet"):
        goals["fraction_of_floor"] = {"value": r["fraction_of_floor"], "goal": GOALS["fraction_of_floor"]}
    for name, entry in goals.items():
        lower_is_better = name == "memory_ratio_to_plain"
        entry["met"] = entry["value"] <= entry["goal"] if lower_is_better else entry["value"] >= entry["goal"]
    return goals


def print_goals(report: dict) -> None:
    lines = [
        f"{case['case']:<34}{precision:>10}  {name} {goal['value']:.3f} (goal {goal['goal']}): "
        + ("met" if goal["met"] else "NOT met")
        for case in report["cases"]
        for precision, r in case["precisions"].items()
        for name, goal in r.get("goals", {}).items()
    ]
    if lines:
        print("\nissue 19's goals")
        print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--max-batch", type=int, default=None, help="engine's maps per backward pass (default: its own)"
    )
    parser.add_argument(
        "--precisions",
        default=None,
        help="comma-separated: float32, tf32, bfloat16 (default: float32 on CPU, all three on CUDA)",
    )
    parser.add_argument("--channels-last", action="store_true", help="channels_last model and inputs (CUDA)")
    parser.add_argument("--cudnn-benchmark", action="store_true", help="torch.backends.cudnn.benchmark = True")
    parser.add_argument("--cases", default=None, help="comma-separated case labels or model names (default: all)")
    parser.add_argument("--out", default=None, help="JSON output (default: benchmarks/results/<device>.json)")
    parser.add_argument("--size", type=int, default=None, help="every case at this image size (default: the case's)")
    args = parser.parse_args()
    device = torch.device(args.device)
    default = "float32" if device.type == "cpu" else "float32,tf32,bfloat16"
    args.precision_list = (args.precisions or default).split(",")
    torch.backends.cudnn.benchmark = args.cudnn_benchmark

    peaks = {precision: matmul_peak(device, precision) for precision in args.precision_list}
    cases = cases_for(device)
    if args.cases:
        wanted = set(args.cases.split(","))
        cases = [case for case in cases if case[0] in wanted or case[0].split()[0] in wanted]
    if args.size:  # gpu_check.sh's dry run: every case at a tiny size
        cases = [
            (label.replace(f"{size}px", f"{args.size}px"), model, args.size, *rest)
            for label, model, size, *rest in cases
        ]
    results = []
    for label, model, size, batch, num_targets in cases:
        print(f"running {label} ...", flush=True)
        results.append(bench_case(label, model, size, batch, num_targets, args, peaks))
    paper_cnn = None
    if device.type == "cpu" and (not args.cases or "cnn3" in args.cases):
        print("running cnn3 paper size ...", flush=True)
        paper_cnn = bench_paper_cnn(args)

    report = {
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads",
        "torch": torch.__version__,
        "captum": __import__("captum").__version__,
        "backpropvis": backpropvis.__version__,
        "python": platform.python_version(),
        "matmul_peak_flops_per_second": peaks,
        "channels_last": args.channels_last,
        "cudnn_benchmark": args.cudnn_benchmark,
        "max_batch": args.max_batch,
        "cases": results,
        "paper_cnn": paper_cnn,
    }
    out = Path(args.out or Path(__file__).parent / "results" / f"{device.type}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print_table(report)
    print(f"wrote {out}")


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
