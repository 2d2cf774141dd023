"""What the trained-network figures (2, 7, 8, 9) share: the methods in the paper's row
order, how a figure names the network it used (and why a stand-in was used), and the
ratio their claims compare.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path
from typing import Any, Mapping, Optional, Union

__all__ = ["METHODS", "METHOD_LABELS", "figure_title", "ratio", "pyplot", "save_figure"]

METHODS: tuple[str, ...] = ("saliency", "deconvnet", "gbp")
"""The paper's row order in Figures 2 and 8 (and the bar order of Figure 7)."""

METHOD_LABELS: Mapping[str, str] = {"saliency": "Saliency", "deconvnet": "DeconvNet", "gbp": "GBP"}

_EPS = 1e-12


def figure_title(headline: str, model: str, weights: str, note: Optional[str] = None, width: int = 110) -> str:
    """A figure's title: the headline, the model and weights used, and the stand-in note
    (wrapped), so that the picture alone says which network drew it."""
    lines = [headline, f"model: {model}, weights: {weights}"]
    if note:
        lines += textwrap.wrap(note, width)
    return "\n".join(lines)


def ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator`` with the denominator kept away from 0 (a claim of the
    form "a is at least k times b" reads this)."""
    return float(numerator) / max(float(denominator), _EPS)


def pyplot() -> Any:
    """matplotlib.pyplot on the file-only Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(figure: Any, title: str, path: Union[str, os.PathLike]) -> Path:
    """Title, lay out, write as PNG and close a matplotlib figure; returns the path."""
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    pyplot().close(figure)
    return Path(path)
