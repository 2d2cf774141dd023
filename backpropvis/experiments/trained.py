"""What the trained-network figures (2, 7, 8, 9) share: the methods in the paper's row
order, how a figure names the network it used (and why a stand-in was used), and the
ratio their claims compare.
"""

from __future__ import annotations

import textwrap
from typing import Optional

__all__ = ["METHODS", "figure_title", "ratio"]

METHODS: tuple[str, ...] = ("saliency", "deconvnet", "gbp")
"""The paper's row order in Figures 2 and 8 (and the bar order of Figure 7)."""


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
