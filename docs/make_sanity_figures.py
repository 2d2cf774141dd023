"""The README's three sanity figures, from real runs of ``backpropvis.sanity`` on the bundled models.

One run per protocol (seed 0; every setting below is said in ``sanity-figures.json``):

- ``adebayo2018``: the trained digits VGG on 32 held-out digits (32 x 32 px), 3 seeds of the redraw per
  step, 2 random-label models (the ``quick`` settings otherwise): the cascading randomisation's curves
  (four metrics, with the controls) above the first digit's maps at every cascading step;
- ``kindermans2017``: the trained digits VGG on 8 held-out digits, shifts -1 and +0.5 (``quick``): how
  far each map moves when the first layer absorbs the shift, above the maps under each shift;
- ``sixt2020``: EfficientNet-Lite0 (ImageNet weights) on the 6 bundled photos at 224 px (``quick``): the
  SSIM over the cascading randomisation and the cosine similarity convergence, above the maps.

The figures are the sanity package's own drawings (``sanity.figures.draw_with_maps`` around the page's
curves), so the README shows what ``backpropvis sanity`` draws on its page. Writes
``docs/images/sanity-<protocol>.png`` and ``docs/images/sanity-figures.json`` (the numbers the README's
table cites, the claims' verdicts, the settings and the seconds each run took); prints them. Each run's
folder (``sanity.json``, ``index.html``, its steps) is kept under ``--work``: the same command again reads
the finished steps back. About 6 minutes on one CPU core (``OMP_NUM_THREADS=1``).

    python docs/make_sanity_figures.py                          # writes docs/images/
    python docs/make_sanity_figures.py --tiny --out /tmp/tiny   # every protocol on the digits VGG, tiny
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from PIL import Image
from tqdm.auto import tqdm

from backpropvis.images.sets import ImageSource, Samples
from backpropvis.models import ModelSpec
from backpropvis.sanity import SanityResult, StepResult
from backpropvis.sanity.figures import draw_curves, draw_with_maps
from backpropvis.sanity.kindermans_page import draw_kindermans_bars
from backpropvis.sanity.run import SanityOptions, run_sanity
from backpropvis.sanity.sixt_page import draw_sixt_curves

IMAGES = Path(__file__).resolve().parent / "images"
NUMBERS_FILE = "sanity-figures.json"
COLOURS = 256
"""Palette of the written PNGs (the maps' grey levels and the curves' colours fit; keeps each file small)."""

DIGITS = ModelSpec("digits-vgg", weights="trained")
WORK = Path(tempfile.gettempdir()) / "backpropvis-sanity-figures"
"""Where the runs' folders go by default."""


@dataclasses.dataclass(frozen=True)
class FigureRun:
    """One protocol's run for the README: the model, the images, the settings beside ``quick``'s, and
    which series its figure shows (None: every one)."""

    protocol: str
    model: ModelSpec
    images: ImageSource
    settings: dict[str, Any]
    series: Optional[tuple[str, ...]]
    draw: Callable[[SanityResult, Any], Any]
    beside: bool = False


RUNS: tuple[FigureRun, ...] = (
    FigureRun(
        "adebayo2018",
        DIGITS,
        None,
        {"images": 32, "seeds": 3, "data_seeds": 2},
        ("cascading",),
        lambda result, into: draw_curves(result, series=("cascading",), into=into),
    ),
    FigureRun(
        "kindermans2017", DIGITS, None, {}, None, lambda result, into: draw_kindermans_bars(result, into=into), True
    ),
    FigureRun(
        "sixt2020",
        ModelSpec("efficientnet-lite0", weights="imagenet"),
        Samples(),
        {},
        ("cascading",),
        lambda result, into: draw_sixt_curves(result, into=into),
    ),
)


def tiny_runs() -> tuple[FigureRun, ...]:
    """The same figures at the test suite's size: every protocol on the digits VGG (no random-label
    model is trained: the figure shows the cascading series only)."""
    settings = {"adebayo2018": {"data": False}}
    return tuple(
        dataclasses.replace(run, model=DIGITS, images=None, settings=settings.get(run.protocol, {})) for run in RUNS
    )


def write_png(result: SanityResult, run: FigureRun, path: Path) -> Path:
    """The protocol's figure above its map grid, written as a palette PNG of ``COLOURS`` colours."""
    with tempfile.TemporaryDirectory() as folder:
        drawn = draw_with_maps(
            result, lambda into: run.draw(result, into), Path(folder) / path.name, run.series, run.beside
        )
        with Image.open(drawn) as image:
            small = image.convert("RGB").quantize(colors=COLOURS, method=Image.Quantize.FASTOCTREE)
    buffer = io.BytesIO()
    small.save(buffer, format="PNG", optimize=True)
    path.write_bytes(buffer.getvalue())
    return path


def _summary(step: StepResult, method: str, metric: str, control: str = "") -> dict[str, Any]:
    source = step.controls[method][control] if control else step.methods[method]
    summary = source[metric]
    return {"mean": _round(summary.mean), "low": _round(summary.low), "high": _round(summary.high)}


def _round(value: float) -> Optional[float]:
    return None if math.isnan(value) else round(float(value), 4)


def adebayo_numbers(result: SanityResult) -> dict[str, Any]:
    """|Spearman| with the trained map: the top layer redrawn, every layer redrawn, random labels."""
    cascading = result.series("cascading")
    numbers = {
        f"{method}_{where}": _summary(step, method, "spearman_abs")
        for method in result.methods
        for where, step in (("top", cascading[1]), ("all", cascading[-1]))
    }
    numbers["saliency_top_vs_edges"] = _summary(cascading[1], "saliency", "spearman_abs", "edge map")
    numbers["gbp_top_ssim"] = _summary(cascading[1], "gbp", "ssim")
    numbers["saliency_top_ssim"] = _summary(cascading[1], "saliency", "ssim")
    for step in result.series("data"):
        numbers.update({f"{method}_data": _summary(step, method, "spearman_abs") for method in result.methods})
    return numbers


def kindermans_numbers(result: SanityResult) -> dict[str, Any]:
    """The largest relative change of each map over images and shifts; gradient x input's smallest
    and, at the first shift, its mean."""
    numbers: dict[str, Any] = {f"{name}": _round(value) for name, value in result.claim_values.items()}
    shifted = [step for step in result.steps if not step.label.startswith("no shift")]
    numbers["gradient_x_input_first_shift"] = _summary(shifted[0], "gradient_x_input", "max_rel_diff")
    numbers["first_shift"] = shifted[0].label
    return numbers


def sixt_numbers(result: SanityResult) -> dict[str, Any]:
    """The CSC at the activation nearest the input (and the Gaussian control there), the SSIM with
    the top group redrawn."""
    bottom = result.series("csc")[-2]  # the last step is the input itself
    numbers: dict[str, Any] = {"bottom_layer": bottom.label}
    for method in result.methods:
        numbers[f"{method}_csc_bottom"] = _summary(bottom, method, "csc")
        numbers[f"{method}_ssim_top"] = _summary(result.series("cascading")[1], method, "ssim")
    numbers["gaussian_csc_bottom"] = _summary(bottom, result.methods[0], "csc", "random vectors")
    return numbers


NUMBERS: dict[str, Callable[[SanityResult], dict[str, Any]]] = {
    "adebayo2018": adebayo_numbers,
    "kindermans2017": kindermans_numbers,
    "sixt2020": sixt_numbers,
}


def make_figures(
    out: Path, work: Path, runs: Sequence[FigureRun], size: str = "quick", count: Optional[int] = None
) -> dict[str, Any]:
    """Run every protocol of ``runs`` (folders under ``work``, each with its ``index.html`` but at the
    tiny size), write its PNG in ``out`` and the numbers to ``out/sanity-figures.json``; returns that
    document."""
    out.mkdir(parents=True, exist_ok=True)
    document: dict[str, Any] = {"size": size, "seed": 0, "protocols": {}}
    for run in tqdm(runs, desc="sanity figures", unit="protocol"):
        started = time.perf_counter()
        options = SanityOptions(size=size, settings=run.settings or None, count=count, seed=0, page=size != "tiny")
        result, claims = run_sanity(
            run.protocol, work / run.protocol, images=run.images, model=run.model, options=options
        )
        path = write_png(result, run, out / f"sanity-{run.protocol}.png")
        document["protocols"][run.protocol] = {
            "figure": path.name,
            "model": result.model,
            "weights": result.weights,
            "images": len(result.steps[0].methods[result.methods[0]][result.metrics[0]].values),
            "settings": result.settings,
            "numbers": NUMBERS[run.protocol](result),
            "claims": {claim["id"]: claim["holds"] for claim in claims},
            "seconds": round(time.perf_counter() - started, 1),
        }
    (out / NUMBERS_FILE).write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    return document


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=IMAGES, help="where the PNGs and the JSON go")
    parser.add_argument("--work", type=Path, default=WORK, help="the runs' folders (resumable)")
    parser.add_argument("--tiny", action="store_true", help="the test suite's size: digits VGG only, 2 images")
    arguments = parser.parse_args(argv)
    runs, size, count = (tiny_runs(), "tiny", 2) if arguments.tiny else (RUNS, "quick", None)
    started = time.perf_counter()
    document = make_figures(arguments.out, arguments.work, runs, size, count)
    for name, entry in document["protocols"].items():
        print(f"{name}: {entry['model']}, {entry['images']} images, {entry['seconds']} s; claims {entry['claims']}")
        print(json.dumps(entry["numbers"], indent=1))
    print(f"wrote {arguments.out}; {time.perf_counter() - started:.0f} s in all", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
