"""The maps step: each method's maps of the few images for the two logits the class-distance
database uses for them (:func:`backpropvis.stats.choose_pairs`, seeded by the image's key),
so the page shows the pictures behind the Figure 7 statistic (:func:`example_maps`).
No verdict reads it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from torch import nn

from ..core.metrics import class_distance
from ..core.rules import METHOD_LABELS
from ..engine import PrecisionLike, attribute_many
from ..images.samples import logit_name
from ..render import CLIP_99, Picture, save_grid, to_display
from ..stats import choose_pairs
from .results import StepResult
from .step import AuditContext, AuditStep

__all__ = ["MapsStep", "MapsResult", "MAPS_SHOWN", "example_maps", "draw_maps"]

MAPS_SHOWN = 3
"""Images in the maps figure (at most; noise maps make large PNGs, and the page embeds them)."""


@dataclass(frozen=True)
class MapsResult(StepResult):
    """Each method's maps of the few images for their two logits.

    Attributes:
        targets: [2][B] the logit indices (first and second logit of each image).
        target_names: [2][B] their class names.
        maps: [M, 2, B, C, H, W] the maps (methods in order, raw and signed).
    """

    targets: list[list[int]]
    target_names: list[list[str]]
    maps: np.ndarray


def example_maps(
    model: nn.Module,
    inputs: torch.Tensor,
    keys: Sequence[str],
    methods: Sequence[str],
    *,
    pairs: str,
    seed: int,
    precision: PrecisionLike,
) -> MapsResult:
    """Each method's maps of ``inputs`` [B, C, H, W] for the database's two logits per image."""
    with torch.no_grad():
        logits = model(inputs)
    chosen = choose_pairs(pairs, logits, keys, seed).to(inputs.device)  # [2, B]
    maps = attribute_many(model, inputs, [chosen[0], chosen[1]], methods, precision=precision)
    num_logits = maps.logits.shape[1]
    return MapsResult(
        targets=chosen.cpu().tolist(),
        target_names=[[logit_name(int(index), num_logits) for index in row] for row in chosen.cpu()],
        maps=torch.stack([maps[method].cpu() for method in methods]).numpy(),
    )


class MapsStep(AuditStep[MapsResult]):
    """Each method's maps of the few images for the two logits of the class-distance step."""

    name = "maps"
    result_type = MapsResult

    def measure(self, context: AuditContext) -> MapsResult:
        assert context.probes is not None and context.inputs is not None
        settings = context.settings
        return example_maps(
            context.module,
            context.inputs,
            context.probes.keys,
            context.methods,
            pairs=settings.pairs,
            seed=settings.seed,
            precision=settings.precision,
        )

    def figures(self, result: MapsResult, context: AuditContext, folder: Path) -> list[tuple[Path, str]]:
        assert context.probes is not None
        probes = context.probes
        path = draw_maps(
            result, probes.pixels, probes.keys[:MAPS_SHOWN], context.methods, folder / "maps.png", context.title[:110]
        )
        return [
            (
                path,
                "Each method's maps of the first images for the two logits the class-distance step uses, shown as the "
                "paper shows them (min-max over the whole map); under the second, the class distance of the two.",
            )
        ]


def draw_maps(
    result: MapsResult, pixels: torch.Tensor, keys: Sequence[str], methods: Sequence[str], path: Path, title: str
) -> Path:
    """Rows: each image for its first logit, then its second; columns: the image, then each
    method's map (the paper's min-max display), captioned with the class distance of the two."""
    maps = torch.from_numpy(np.array(result.maps))  # [M, 2, B, C, H, W]
    rows: list[list[Optional[Picture]]] = []
    row_labels, captions = [], []
    for image, key in enumerate(keys):
        for logit in range(2):
            rows.append(
                [pixels[image] if logit == 0 else None]
                + [to_display(maps[number, logit, image]) for number in range(len(methods))]
            )
            row_labels.append(f"{key}\nlogit {result.targets[logit][image]}: {result.target_names[logit][image]}"[:60])
            if logit == 0:
                captions.append([""] * (1 + len(methods)))
            else:
                distances = [
                    float(class_distance(maps[number, 0, image], maps[number, 1, image]))
                    for number in range(len(methods))
                ]
                captions.append([""] + [f"class distance {value:.3f}" for value in distances])
    return save_grid(
        rows,
        path,
        row_labels=row_labels,
        column_labels=["image"] + [METHOD_LABELS.get(method, method) for method in methods],
        panel_labels=captions,
        title=title,
        panel_size=1.9,
        display=CLIP_99,
    )
