"""The maps step: each method's maps of the few images for the class-distance step's two
logits (:func:`~backpropvis.audit.cascade.example_maps`), so the page shows the pictures
behind the Figure 7 statistic. No verdict reads it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .cascade import example_maps
from .figures import draw_maps
from .saved import StepData
from .step import AuditContext, AuditStep

__all__ = ["MapsStep", "MAPS_SHOWN"]

MAPS_SHOWN = 3
"""Images in the maps figure (at most; noise maps make large PNGs, and the page embeds them)."""


class MapsStep(AuditStep):
    """Each method's maps of the few images for the two logits of the class-distance step."""

    name = "maps"

    def measure(self, context: AuditContext) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
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

    def figures(self, data: StepData, context: AuditContext, folder: Path) -> list[tuple[Path, str]]:
        assert context.probes is not None
        probes = context.probes
        path = draw_maps(
            data, probes.pixels, probes.keys[:MAPS_SHOWN], context.methods, folder / "maps.png", context.title[:110]
        )
        return [
            (
                path,
                "Each method's maps of the first images for the two logits the class-distance step uses, shown as the "
                "paper shows them (min-max over the whole map); under the second, the class distance of the two.",
            )
        ]
