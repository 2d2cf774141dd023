"""The ``visualize`` job: maps of images for chosen methods and targets, as PNGs and JSON.

Everything a user can get wrong (model, weights, images, targets, device) is checked
before the first file is written, and ``summary.json`` is written last, atomically,
so a folder with a summary is always complete.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence, Union

import torch
from tqdm.auto import tqdm

from .devices import resolve_device
from .engine import attribute_many
from .files import make_folder, write_json
from .images import class_name, load_image
from .metrics import input_similarity
from .models import build_model
from .render import save_grid, save_png, to_display
from .rules import PAPER_METHODS, resolve_rules
from .targets import Target

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
    model: str = "vgg16",
    weights: str = "random",
    methods: Sequence[str] = PAPER_METHODS,
    targets: Sequence[Target] = ("max", "random"),
    seed: int = 0,
    device: str = "cpu",
    out: Union[str, os.PathLike] = "visualize-out",
) -> dict:
    """Compute and save every (image, method, target) map.

    Writes ``out/<image>_<method>_<target>.png`` (display-normalised maps),
    ``out/grid.png`` (rows: image x target; columns: the input and each method) and
    ``out/summary.json``; returns the summary.
    """
    rules = resolve_rules(methods)
    torch_device = resolve_device(device)
    pictures = [(source, load_image(source)) for source in images]
    network = build_model(model, weights, seed).to(torch_device)
    out = make_folder(out)  # a file in the way is an error before the long part, not after
    generator = torch.Generator().manual_seed(seed)

    results = []
    for source, picture in tqdm(pictures, desc="images", unit="image", disable=len(pictures) < 2):
        inputs = network.preprocessing(picture)[None].to(torch_device)
        maps = attribute_many(network, inputs, list(targets), rules, generator=generator)
        results.append((source, inputs, maps))

    summary = {"model": model, "weights": network.weights_description, "seed": seed, "images": [], "maps": []}
    grid_rows, row_labels, panel_labels = [], [], []
    names_used: set[str] = set()
    for source, inputs, maps in results:
        name = _unique(_slug(Path(source).stem if os.path.sep in source or Path(source).suffix else source), names_used)
        predicted = int(maps.logits[0].argmax())
        summary["images"].append({"image": source, "predicted": predicted, "predicted_name": class_name(predicted)})
        display_input = network.preprocessing.unnormalize(inputs[0].cpu())
        for target_number, target in enumerate(targets):
            index = int(maps.targets[target_number, 0])
            row, captions = [display_input], [f"predicted: {class_name(predicted)}"]
            for rule in rules:
                map_ = maps[rule.name][target_number, 0].cpu()
                png = save_png(to_display(map_), out / f"{name}_{rule.name}_{_slug(str(target))}-{index}.png")
                similarity = float(input_similarity(map_, inputs[0].cpu()))
                summary["maps"].append({
                    "image": source, "method": rule.name, "target": str(target), "target_index": index,
                    "target_name": class_name(index), "min": float(map_.min()), "max": float(map_.max()),
                    "input_similarity": similarity, "png": png.name,
                })
                row.append(to_display(map_))
                captions.append(f"similarity {similarity:.2f}")
            grid_rows.append(row)
            row_labels.append(f"{name}\n{target}: {class_name(index)}")
            panel_labels.append(captions)
    save_grid(
        grid_rows, out / "grid.png", row_labels=row_labels, column_labels=["input"] + [rule.name for rule in rules],
        panel_labels=panel_labels, title=f"{model} ({network.weights_description})",
    )
    write_json(summary, out / "summary.json")
    return summary
