"""The Zeiler & Fergus view of a layer: per channel its top images and their projections.

:func:`run_units` streams the images (:func:`~backpropvis.stats.top_units.scan_top_units`,
resumable), then, per channel, cuts from each top image the unit's receptive field
(:mod:`~backpropvis.theory.receptive_fields`) and the same patch of the unit's DeconvNet, GBP and
saliency maps (one :func:`~backpropvis.engine.attribute_many` call per image, for every
unit it is a top image of: :class:`~backpropvis.core.targets.Unit` targets at the peak's
position). It writes ``units.json`` and a self-contained ``index.html`` (patches as PNG files
beside it; nothing fetched from the network).
"""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Optional, Sequence, Union

import torch

from ..audit.probes import display_pixels
from ..core.errors import ImageError
from ..core.files import make_folder, write_json, write_text
from ..core.rules import METHOD_LABELS
from ..core.targets import Unit
from ..engine import Precision, PrecisionLike, attribute_many
from ..engine.receipt import DEFAULT_THRESHOLD, check_threshold, collect_receipt
from ..images.sets import ImageSource, read_image
from ..models import LoadedModel
from ..render import save_png, to_display
from ..report.page import receipt_notes
from ..stats.top_units import DEFAULT_STREAMING, ScanResult, Streaming, UnitScan, scan_top_units
from ..theory.receptive_fields import ReceptiveField, receptive_field

__all__ = ["run_units", "write_units_view", "UNITS_JSON", "PROJECTIONS"]

UNITS_JSON = "units.json"
PROJECTIONS: tuple[str, ...] = ("deconvnet", "gbp", "saliency")
"""The methods shown beside each patch, in the page's order (Zeiler & Fergus's first)."""


def run_units(
    images: ImageSource,
    out: Union[str, os.PathLike],
    model: LoadedModel,
    scan: UnitScan,
    streaming: Streaming = DEFAULT_STREAMING,
    precision: PrecisionLike = Precision.DEFAULT,
    receipt_threshold: float = DEFAULT_THRESHOLD,
) -> Path:
    """Scan ``images`` for the top images of ``scan.layer``'s channels and write the view in
    ``out`` (``units.json``, ``index.html``, ``patches/``; the scan's state ``scan.json``).
    Returns the page's path. Arguments as :func:`~backpropvis.stats.top_units.scan_top_units`;
    ``precision``: the engine's arithmetic for the projections; at TF32 or bfloat16 the first
    image's projections are also computed in float32, and ``units.json``'s ``precision_receipt``
    names the methods under ``receipt_threshold`` (:mod:`backpropvis.engine.receipt`)."""
    out = make_folder(out)
    check_threshold(receipt_threshold)  # refused before the scan, not after
    result = scan_top_units(images, out / "scan.json", model, scan, streaming)
    return write_units_view(
        result, images, out, model, device=streaming.device, precision=precision, receipt_threshold=receipt_threshold
    )


def write_units_view(
    result: ScanResult,
    images: ImageSource,
    out: Path,
    model: LoadedModel,
    methods: Sequence[str] = PROJECTIONS,
    device: Union[str, torch.device] = "cpu",
    precision: PrecisionLike = Precision.DEFAULT,
    receipt_threshold: float = DEFAULT_THRESHOLD,
) -> Path:
    """``units.json`` and ``index.html`` of a finished scan (projections computed here, the first
    image's also in float32 at TF32 or bfloat16: ``precision_receipt``)."""
    layer = result.settings["layer"]
    network = model.module.to(torch.device(device))
    by_image: dict[str, list[tuple[int, int]]] = {}
    for channel, tops in result.channels.items():
        for rank, top in enumerate(tops):
            by_image.setdefault(top.image, []).append((channel, rank))
    field: Optional[ReceptiveField] = None
    boxes: dict[tuple[int, int], tuple[int, int, int, int]] = {}
    with collect_receipt(receipt_threshold) as receipts:
        for key, places in sorted(by_image.items()):
            pixels = _decoded(images, key, model).to(device)
            field = field or receptive_field(network, pixels[None], layer)
            units = [Unit(layer, channel, result.channels[channel][rank].position or None) for channel, rank in places]
            maps = attribute_many(network, pixels[None], units, methods, precision=precision)  # [T, 1, 3, S, S]
            for number, (channel, rank) in enumerate(places):
                box = field.box(result.channels[channel][rank].position, pixels.shape[1:])
                boxes[channel, rank] = box
                stem = out / "patches" / f"c{channel}-{rank}"
                save_png(_cut(display_pixels(pixels[None], model.preprocessing)[0], box), f"{stem}-image.png")
                for method in methods:
                    save_png(to_display(_cut(maps[method][number, 0], box)), f"{stem}-{method}.png")
    summary = {
        "model": model.name,
        "weights": model.weights_description,
        "layer": layer,
        "receptive_field": None if field is None else {"size": field.size, "jump": field.jump, "dense": field.dense},
        "images": result.images,
        "failures": result.failures,
        "channels": {
            str(channel): [
                {
                    "image": top.image,
                    "activation": top.activation,
                    "position": list(top.position),
                    "box": boxes[channel, rank],
                }
                for rank, top in enumerate(tops)
            ]
            for channel, tops in sorted(result.channels.items())
        },
        "precision_receipt": receipts.receipt.as_dict() if receipts.receipt is not None else None,
    }
    write_json(summary, out / UNITS_JSON)
    return write_text(_page(summary, methods), out / "index.html")


def _decoded(images: ImageSource, key: str, model: LoadedModel) -> torch.Tensor:
    read = read_image(images, key)
    if read.picture is None:
        raise ImageError(f"top image {key} can no longer be read: {read.reason}")
    return model.preprocessing(read.picture)


def _cut(picture: torch.Tensor, box: tuple[int, int, int, int]) -> torch.Tensor:
    top, left, bottom, right = box
    return picture[:, top:bottom, left:right]


_STYLE = """
body { font-family: sans-serif; margin: 1.5em; color: #222; }
h2 { font-size: 1.05em; margin: 1.2em 0 0.4em; }
.tops { display: flex; flex-wrap: wrap; gap: 10px; }
figure { margin: 0; padding: 4px; border: 1px solid #ccc; background: #fafafa; }
figure img { width: 72px; height: 72px; image-rendering: pixelated; margin-right: 2px; }
figcaption { font-size: 0.75em; max-width: 310px; overflow-wrap: anywhere; }
.legend span { display: inline-block; width: 74px; font-size: 0.8em; }
.note.warning { color: #a00; font-weight: bold; }
"""


def _page(summary: dict, methods: Sequence[str]) -> str:
    """The page: per channel a row of figures, each the image patch and its projections."""
    legend = "".join(f"<span>{html.escape(name)}</span>" for name in ["image", *(METHOD_LABELS[m] for m in methods)])
    field = summary["receptive_field"]
    field_text = "the whole image" if field is None or field["dense"] else f"{field['size'][0]} x {field['size'][1]} px"
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>units of {html.escape(summary['layer'])}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(summary['model'])}: layer {html.escape(summary['layer'])}</h1>",
        f"<p>{summary['images']} images scanned; per channel the images with the highest activation, highest "
        f"first: the unit's receptive field ({field_text}) and its projections, each min-max scaled.</p>",
        receipt_notes(summary["precision_receipt"]),
        f"<p class='legend'>{legend}</p>",
    ]
    for channel, tops in summary["channels"].items():
        parts.append(f"<h2>channel {channel}</h2><div class='tops'>")
        for rank, top in enumerate(tops):
            pictures = "".join(
                f"<img src='patches/c{channel}-{rank}-{name}.png' alt='{name}'>" for name in ["image", *methods]
            )
            caption = f"{html.escape(top['image'])}: activation {top['activation']:.3g} at {top['position']}"
            parts.append(f"<figure>{pictures}<figcaption>{caption}</figcaption></figure>")
        parts.append("</div>")
    parts.append("</body></html>")
    return "\n".join(parts)
