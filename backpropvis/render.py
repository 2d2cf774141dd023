"""Pictures of maps: the paper's display normalisation, PNG files and labelled grids.

Maps stay raw and signed everywhere else; this is the one place where they are
normalised for the eye, with the original code's rule (global min-max over
H x W x 3, no abs, no per-channel treatment).
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch
from PIL import Image

from .files import replacing
from .metrics import minmax_normalize
from .rules import METHOD_LABELS

__all__ = [
    "Picture",
    "METHOD_LABELS",
    "to_display",
    "save_png",
    "save_grid",
    "pyplot",
    "save_figure",
    "figure_title",
    "map_panel",
    "similarity_caption",
]

Picture = Union[torch.Tensor, np.ndarray]
"""A picture: an [H, W, 3] uint8 array, or a [3, H, W] / [H, W, 3] tensor or array in [0, 1]."""


def to_display(map_: torch.Tensor) -> np.ndarray:
    """[3, H, W] raw map -> [H, W, 3] uint8 after the paper's min-max normalisation."""
    scaled = minmax_normalize(map_.detach().cpu().float())
    return (scaled.permute(1, 2, 0).numpy() * 255.0).round().astype(np.uint8)


def _as_uint8(picture: Picture) -> np.ndarray:
    if isinstance(picture, torch.Tensor):
        tensor = picture.detach().cpu()
        if tensor.dim() == 3 and tensor.shape[0] in (1, 3):
            tensor = tensor.permute(1, 2, 0)
        array = tensor.numpy()
    else:
        array = picture
    if array.dtype != np.uint8:
        array = (np.clip(array, 0.0, 1.0) * 255.0).round().astype(np.uint8)
    return array.squeeze(-1) if array.ndim == 3 and array.shape[-1] == 1 else array


def save_png(picture: Picture, path: Union[str, os.PathLike]) -> Path:
    """Write an [H, W, 3] uint8 array (or a [3, H, W] / [H, W, 3] tensor in [0, 1]) as PNG."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(_as_uint8(picture)).save(path)
    return path


def save_grid(
    pictures: Sequence[Sequence[Optional[Picture]]],
    path: Union[str, os.PathLike],
    *,
    row_labels: Sequence[str] = (),
    column_labels: Sequence[str] = (),
    panel_labels: Optional[Sequence[Sequence[str]]] = None,
    title: Optional[str] = None,
    panel_size: float = 2.2,
) -> Path:
    """A labelled grid of pictures as one PNG.

    Args:
        pictures: rows of pictures ([H, W, 3] uint8 arrays, or tensors in [0, 1]);
            ``None`` leaves a panel empty.
        path: where to write the PNG.
        row_labels, column_labels: written left of each row / above each column.
        panel_labels: a caption under each panel (same nesting as ``pictures``).
        title: the figure's title.
    """
    plt = pyplot()
    rows, columns = len(pictures), max(len(row) for row in pictures)
    caption_lines = max((label.count("\n") + 1 for row in (panel_labels or []) for label in row if label), default=0)
    title_lines = title.count("\n") + 1 if title else 0
    height_for_text = 0.2 + 0.2 * title_lines + 0.15 * caption_lines * rows  # room for the title and captions
    figure, axes = plt.subplots(
        rows,
        columns,
        figsize=(panel_size * columns + 0.8, panel_size * rows + height_for_text),
        squeeze=False,
        layout="constrained",  # unlike tight_layout, it makes room for the title and for captions under images
    )
    for r in range(rows):
        for c in range(columns):
            axis = axes[r][c]
            axis.set_xticks([])
            axis.set_yticks([])
            picture = pictures[r][c] if c < len(pictures[r]) else None
            if picture is None:  # an empty panel keeps its row and column labels
                for spine in axis.spines.values():
                    spine.set_visible(False)
            else:
                axis.imshow(_as_uint8(picture), cmap="gray" if _as_uint8(picture).ndim == 2 else None)
            if r == 0 and c < len(column_labels):
                axis.set_title(column_labels[c], fontsize=9)
            if c == 0 and r < len(row_labels):
                axis.set_ylabel(row_labels[r], fontsize=9)
            if panel_labels is not None and c < len(panel_labels[r]) and panel_labels[r][c]:
                axis.set_xlabel(panel_labels[r][c], fontsize=7)
    if title:
        figure.suptitle(title, fontsize=10)
    with replacing(path) as partial:
        figure.savefig(partial, dpi=110)
    plt.close(figure)
    return Path(path)


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(figure, path: Union[str, os.PathLike], title: Optional[str] = None) -> Path:
    """Title (optional), lay out, write as PNG (atomically) and close a matplotlib figure."""
    if title:
        figure.suptitle(title, fontsize=10)
    if figure.get_layout_engine() is None:  # a figure made with layout="constrained" keeps its own
        figure.tight_layout()
    with replacing(path) as partial:
        figure.savefig(partial, dpi=100)
    pyplot().close(figure)
    return Path(path)


def figure_title(headline: str, model: str, weights: str, note: Optional[str] = None, width: int = 110) -> str:
    """A figure's title: the headline, the model and weights used, and a note (e.g. why a
    stand-in network was used), wrapped, so that the picture alone says which network drew it."""
    lines = [headline, f"model: {model}, weights: {weights}"]
    if note:
        lines += textwrap.wrap(note, width)
    return "\n".join(lines)


def map_panel(axis, picture: Picture, title: str = "", caption: str = "") -> None:
    """Draw a raw [3, H, W] map (the paper's min-max display) or an [H, W] / [H, W, 3]
    array in [0, 1] on a matplotlib ``axis``, without ticks."""
    if isinstance(picture, torch.Tensor) and picture.dim() == 3 and picture.shape[0] == 3:
        shown = to_display(picture)
    else:
        shown = np.asarray(picture)
    axis.imshow(shown, cmap="gray" if shown.ndim == 2 else None)
    axis.set_xticks([])
    axis.set_yticks([])
    if title:
        axis.set_title(title, fontsize=9)
    if caption:
        axis.set_xlabel(caption, fontsize=8)


def similarity_caption(similarity: float, name: str = "input sim.") -> str:
    """ "input sim. +0.61": the number printed under a panel."""
    return f"{name} {similarity:+.2f}"
