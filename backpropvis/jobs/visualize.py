"""The ``visualize`` job: maps of images for chosen methods and targets, as PNGs and JSON.

Everything a user can get wrong (model, weights, images, targets, device, output
folder) is checked before the first map is computed, and ``summary.json`` is written
last, atomically, so a folder with a summary is always complete. Besides the pictures
it measures, per image and method, the class distance between the targets' maps (the
paper's Figure 7 statistic: how much the map changes with the class), and can save
the raw maps as arrays (:mod:`~backpropvis.core.saved_maps`).
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import torch
from tqdm.auto import tqdm

from ..core import saved_maps
from ..core.devices import resolve_device
from ..core.files import make_folder, write_json
from ..core.metrics import class_distance, input_similarity
from ..core.rules import PAPER_METHODS, resolve_rules
from ..core.targets import Target
from ..engine import Precision, PrecisionLike, attribute_many
from ..engine.receipt import DEFAULT_THRESHOLD, check_threshold, collect_receipt
from ..images.samples import load_image, logit_name
from ..models import LoadedModel, ModelLike, as_loaded
from ..render import CLIP_99, Display, save_grid, save_png, to_display

__all__ = ["visualize"]


def _slug(text: str) -> str:
    return "".join(character if character.isalnum() or character in "-_" else "-" for character in text).strip("-")


def _unique(name: str, used: set[str]) -> str:
    """``name``, or ``name-2``, ``name-3``, ... if taken (a/cat.png and b/cat.png), recorded in ``used``."""
    candidate, number = name, 2
    while candidate in used:
        candidate, number = f"{name}-{number}", number + 1
    used.add(candidate)
    return candidate


def visualize(
    images: Sequence[str] = ("tabby",),
    model: ModelLike = "efficientnet-lite0",
    methods: Sequence[str] = PAPER_METHODS,
    targets: Sequence[Target] = ("max", "random"),
    seed: int = 0,
    device: str = "cpu",
    out: Union[str, os.PathLike] = "visualize-out",
    *,
    precision: PrecisionLike = Precision.DEFAULT,
    save_maps: Union[str, os.PathLike, None] = None,
    display: Display = CLIP_99,
    on_model: Optional[Callable[[LoadedModel], None]] = None,
    receipt_threshold: float = DEFAULT_THRESHOLD,
) -> dict:
    """Compute and save every (image, method, target) map.

    Writes ``out/<image>_<method>_<target>.png`` (maps scaled by ``display``),
    ``out/grid.png`` (rows: image x target; columns: the input and each method) and
    ``out/summary.json``; returns the summary, which holds per map its numbers and per
    (image, method, pair of targets) the class distance between the two maps
    (``class_distances``).

    Args:
        model: a name (default: the bundled ImageNet-trained EfficientNet-Lite0; "vgg16":
            the paper's random VGG-16), a :class:`~backpropvis.models.ModelSpec` (built with
            ``seed``), a :class:`~backpropvis.models.LoadedModel` or a module (see
            :func:`backpropvis.models.as_loaded`).
        precision: the engine's arithmetic, a :class:`~backpropvis.engine.Precision` or its name.
        save_maps: also write the raw maps, targets and logits there (.npz or .pt).
        display: how maps become pictures (:data:`~backpropvis.render.CLIP_99`, or the
            paper's :data:`~backpropvis.render.MINMAX`); named under grid.png and in the summary.
        on_model: called with the model once it is built, before the first map.
        receipt_threshold: at TF32 or bfloat16 the first image's maps are also computed in
            float32; ``precision_receipt`` in the summary (None otherwise) gives each method's
            cosine to them and names those under this (:mod:`backpropvis.engine.receipt`).
    """
    rules = resolve_rules(methods)
    precision = Precision.parse(precision)
    check_threshold(receipt_threshold)
    torch_device = resolve_device(device)
    pictures = [(source, load_image(source)) for source in images]
    maps_path = saved_maps.check_maps_path(save_maps) if save_maps is not None else None
    model = as_loaded(model, seed)
    if on_model is not None:
        on_model(model)
    network = model.module.to(torch_device)
    out = make_folder(out)  # a file in the way or no permission is an error before the long part, not after
    generator = torch.Generator().manual_seed(seed)

    results = []
    with collect_receipt(receipt_threshold) as receipts:  # the first image's maps again in float32 (TF32, bfloat16)
        for source, picture in tqdm(pictures, desc="images", unit="image", disable=len(pictures) < 2):
            inputs = model.preprocessing(picture)[None].to(torch_device)
            maps = attribute_many(network, inputs, list(targets), rules, generator=generator, precision=precision)
            results.append((source, inputs, maps))

    receipt = receipts.receipt.as_dict() if receipts.receipt is not None else None
    summary = {**_summary_head(model, precision, seed), "display": display.name, "precision_receipt": receipt}
    grid_rows, row_labels, panel_labels = _rows(summary, results, model, targets, rules, out, display)
    save_grid(
        grid_rows,
        out / "grid.png",
        row_labels=row_labels,
        column_labels=["input"] + [rule.name for rule in rules],
        panel_labels=panel_labels,
        title=model.title if model.smooth_note is None else f"{model.title}\n{model.smooth_note}",
        display=display,
    )
    if maps_path is not None:
        summary["saved_maps"] = str(_save_arrays(maps_path, results, targets, rules))
    write_json(summary, out / "summary.json")
    return summary


def _rows(
    summary: dict, results: list, model: LoadedModel, targets: Sequence[Target], rules, out: Path, display: Display
) -> tuple:
    """Each image's maps written as PNGs and entered in ``summary``; returns the grid's rows,
    row labels and panel labels (one row per image and target)."""
    grid_rows: list[list[Any]] = []
    row_labels: list[str] = []
    panel_labels: list[list[str]] = []
    names_used: set[str] = set()
    for source, inputs, maps in results:
        name = _unique(_slug(Path(source).stem if os.path.sep in source or Path(source).suffix else source), names_used)
        predicted, num_logits = int(maps.logits[0].argmax()), maps.logits.shape[1]
        summary["images"].append(
            {"image": source, "predicted": predicted, "predicted_name": logit_name(predicted, num_logits)}
        )
        display_input = _display(model, inputs[0].cpu())
        for target_number, target in enumerate(targets):
            panels, entries = _target_row(maps, target_number, target, rules, inputs, out / name, display)
            summary["maps"] += [{"image": source, **entry} for entry in entries]
            grid_rows.append([display_input, *panels])
            row_labels.append(f"{name}\n{target}: {_target_of(maps, target_number)[1]}")
            panel_labels.append(
                [f"predicted: {logit_name(predicted, num_logits)}"]
                + [f"similarity {entry['input_similarity']:.2f}" for entry in entries]
            )
        summary["class_distances"] += _class_distances(source, maps, targets, rules)
    return grid_rows, row_labels, panel_labels


def _summary_head(model: LoadedModel, precision: Precision, seed: int) -> dict[str, Any]:
    """``summary.json`` before its maps: the model, the precision and the seed."""
    return {
        "model": model.name,
        "model_args": dict(model.args),
        "model_source": model.source,
        "weights": model.weights_description,
        "weights_fingerprint": model.fingerprint,
        "output": model.output,
        "preprocessing": model.preprocessing_description,
        "notes": list(model.notes),
        "smooth_activations": model.smooth.as_dict(),
        "precision": precision.value,
        "seed": seed,
        "images": [],
        "maps": [],
        "class_distances": [],
    }


def _target_row(
    maps, target_number: int, target: Target, rules, inputs: torch.Tensor, stem: Path, display: Display
) -> tuple[list[Any], list[dict[str, Any]]]:
    """One target's maps of one image: written as ``<stem>_<method>_<target>-<index>.png``;
    returns the display maps and one summary entry per method (without the image)."""
    index, target_name = _target_of(maps, target_number)
    panels, entries = [], []
    for rule in rules:
        map_ = maps[rule.name][target_number, 0].cpu()
        panel = to_display(map_, display)
        png = save_png(panel, stem.parent / f"{stem.name}_{rule.name}_{_slug(str(target))}-{index}.png")
        entries.append(
            {
                "method": rule.name,
                "target": str(target),
                "target_index": index,
                "target_name": target_name,
                "min": float(map_.min()),
                "max": float(map_.max()),
                "input_similarity": float(input_similarity(map_, inputs[0].cpu())),
                "png": png.name,
            }
        )
        panels.append(panel)
    return panels, entries


def _save_arrays(path: Path, results: list, targets: Sequence[Target], rules) -> Path:
    """The raw maps of every image, their targets, logits and inputs, as arrays (:mod:`.saved_maps`)."""
    return saved_maps.save_maps(
        path,
        maps={rule.name: torch.cat([maps[rule.name] for _, _, maps in results], dim=1) for rule in rules},
        targets=[str(target) for target in targets],
        images=[source for source, _, _ in results],
        target_indices=torch.cat([maps.targets for _, _, maps in results], dim=1),
        logits=torch.cat([maps.logits for _, _, maps in results]),
        inputs=torch.cat([inputs for _, inputs, _ in results]),
    )


def _class_distances(source: str, maps, targets: Sequence[Target], rules) -> list[dict]:
    """Per method and pair of targets, the class distance between the two maps of one image."""
    entries = []
    for first, second in itertools.combinations(range(len(targets)), 2):
        indices = [_target_of(maps, number)[0] for number in (first, second)]
        for rule in rules:
            pair = maps[rule.name][[first, second], 0]  # [2, C, H, W]
            entries.append(
                {
                    "image": source,
                    "method": rule.name,
                    "targets": [str(targets[first]), str(targets[second])],
                    "target_indices": indices,
                    "class_distance": float(class_distance(pair[0], pair[1])),
                }
            )
    return entries


def _target_of(maps, number: int) -> tuple[int, str]:
    """The index and name behind the first sample's map of target ``number``: a logit and its
    class name, or a unit's channel and ``LAYER:CHANNEL@Y,X``."""
    unit = maps.units.get(number)
    if unit is not None:
        return int(unit.channel[0]), unit.name(0)
    index = int(maps.targets[number, 0])
    return index, logit_name(index, maps.logits.shape[1])


def _display(model: LoadedModel, inputs: torch.Tensor) -> torch.Tensor:
    """The input [C, H, W] as pixels in [0, 1]: undone by the preprocessing when it can, else min-max."""
    unnormalize = getattr(model.preprocessing, "unnormalize", None)
    if callable(unnormalize):
        return unnormalize(inputs)
    return (inputs - inputs.min()) / (inputs.max() - inputs.min()).clamp_min(1e-12)
