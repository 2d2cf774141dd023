"""The randomisation step: each map's change as the model's stages are redrawn at random from
the top down (Figure 9 read from the top; Adebayo et al. 2018), measured by
:func:`~backpropvis.audit.cascade.cascading_randomization`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import torch

from ..core.metrics import ratio
from .cascade import cascading_randomization
from .figures import draw_randomization
from .saved import StepData
from .step import AuditContext, AuditStep

__all__ = ["RandomizationStep"]


class RandomizationStep(AuditStep):
    """Cascading randomisation: does a method's map follow the model's weights?"""

    name = "randomization"

    def measure(self, context: AuditContext) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        assert context.inputs is not None
        settings = context.settings
        return cascading_randomization(
            context.module,
            context.inputs,
            context.methods,
            seed=settings.seed,
            precision=settings.precision,
            progress=context.progress,
        )

    def verdict_numbers(self, data: StepData, method: str, reference: str) -> dict[str, float]:
        top = {name: _mean(values[0]) for name, values in data.numbers["distance"].items()}
        return {"top_redrawn_distance": top[method], "top_redrawn_over_saliency": ratio(top[method], top[reference])}

    def figures(self, data: StepData, context: AuditContext, folder: Path) -> list[tuple[Path, str]]:
        title = f"cascading randomisation: {context.title}"[:110]
        curves, maps = folder / "randomization.png", folder / "randomization-maps.png"
        draw_randomization(data, context.methods, curves, maps, title)
        return [
            (
                curves,
                "Cascading randomisation (Figure 9 read from the top; Adebayo et al. 2018): the class distance between "
                "each method's map in the trained model and with the stages redrawn at random from the top down, for "
                "the trained model's predicted class (thick: mean over the images; thin: each image; dotted: sqrt 2, "
                "unrelated maps).",
            ),
            (
                maps,
                "The first image's maps along the cascade, with each map's distance to the trained one and its input "
                "similarity.",
            ),
        ]


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan
