"""Pictures of maps: display normalisations, PNG files, labelled grids and figure text that fits.

Maps stay raw and signed everywhere else; this is the one place where they are scaled
for the eye. Two normalisations (a :class:`Display`), each named in the captions of the
pictures it draws:

- :data:`CLIP_99` (the default): the map divided by the 99th percentile of |map|,
  clipped to [-1, 1], 0 drawn mid-grey, as Adebayo et al. (2018) and Sixt et al. (2020)
  show maps: a handful of large values (EfficientNet-Lite0's GBP map of the tabby: the
  largest |value| is 10x the 99th percentile) no longer turn the rest into flat grey.
- :data:`MINMAX`: the paper's original code (global min-max over H x W x 3, no abs, no
  per-channel treatment), still available by name.
"""

from __future__ import annotations

import os
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch
from PIL import Image

from .core.files import replacing
from .core.metrics import minmax_normalize
from .core.rules import METHOD_LABELS

__all__ = [
    "Picture",
    "Display",
    "CLIP_99",
    "MINMAX",
    "DISPLAYS",
    "METHOD_LABELS",
    "to_display",
    "save_png",
    "save_grid",
    "pyplot",
    "save_figure",
    "figure_title",
    "map_panel",
    "similarity_caption",
    "fit_text",
    "clipped_texts",
]

Picture = Union[torch.Tensor, np.ndarray]
"""A picture: an [H, W, 3] uint8 array, or a [3, H, W] / [H, W, 3] tensor or array in [0, 1]."""


@dataclass(frozen=True)
class Display:
    """How a signed map becomes a picture.

    Attributes:
        name: how the CLI and captions call it ("clip99", "minmax").
        percentile: q in (0, 100]: the map is divided by the q-th percentile of |map| over
            H x W x 3, clipped to [-1, 1] and drawn with 0 mid-grey (a map whose
            percentile is 0, a sparse one, is divided by max |map| instead); None: the
            paper's global min-max (smallest value black, largest white, no abs).
    """

    name: str
    percentile: Optional[float]

    @property
    def caption(self) -> str:
        """The normalisation in words, for every figure that draws maps with it."""
        if self.percentile is None:
            return "maps shown min-max over H x W x 3 (the paper's display)"
        return f"maps shown / {self.percentile:g}th percentile of |map|, clipped to [-1, 1], 0 = grey"

    def scale(self, map_: np.ndarray) -> np.ndarray:
        """[3, H, W] (or any shape) float array -> same shape, float64 in [0, 1]."""
        values = np.asarray(map_, dtype=np.float64)
        if self.percentile is None:
            return minmax_normalize(torch.from_numpy(values), sample_dims=values.ndim).numpy()
        magnitude = np.abs(values)
        bound = float(np.percentile(magnitude, self.percentile)) or float(magnitude.max())
        if bound <= 0.0:  # an all-zero map: all grey
            return np.full_like(values, 0.5)
        return 0.5 + 0.5 * np.clip(values / bound, -1.0, 1.0)


CLIP_99 = Display("clip99", 99.0)
"""The default display: |map| clipped at its 99th percentile, 0 mid-grey (Adebayo et al. 2018; Sixt et al. 2020)."""

MINMAX = Display("minmax", None)
"""The paper's display: global min-max over H x W x 3 (its original code)."""

DISPLAYS: dict[str, Display] = {display.name: display for display in (CLIP_99, MINMAX)}
"""The displays by name (the CLI's ``--display``)."""


def to_display(map_: torch.Tensor, display: Display = CLIP_99) -> np.ndarray:
    """[3, H, W] raw map -> [H, W, 3] uint8, scaled by ``display`` (default :data:`CLIP_99`)."""
    array = map_.detach().cpu().double().numpy() if isinstance(map_, torch.Tensor) else np.asarray(map_)
    scaled = display.scale(array)
    return (np.moveaxis(scaled, 0, -1) * 255.0).round().astype(np.uint8)


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
    display: Optional[Display] = None,
) -> Path:
    """A labelled grid of pictures as one PNG.

    Args:
        pictures: rows of pictures ([H, W, 3] uint8 arrays, or tensors in [0, 1]);
            ``None`` leaves a panel empty.
        path: where to write the PNG.
        row_labels, column_labels: written left of each row / above each column.
        panel_labels: a caption under each panel (same nesting as ``pictures``).
        title: the figure's title (wrapped to the figure's width).
        display: the normalisation the maps were drawn with, named under the grid (None: not named).
    """
    plt = pyplot()
    rows, columns = len(pictures), max(len(row) for row in pictures)
    caption_lines = max((label.count("\n") + 1 for row in (panel_labels or []) for label in row if label), default=0)
    width = panel_size * columns + 0.8
    title = fit_text(title, width, 10) if title else title
    title_lines = (title.count("\n") + 1 if title else 0) + (display is not None)
    height_for_text = 0.2 + 0.2 * title_lines + 0.15 * caption_lines * rows  # room for the title and captions
    figure, axes = plt.subplots(
        rows,
        columns,
        figsize=(width, panel_size * rows + height_for_text),
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
    _fit_titles(figure, display)
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


def save_figure(
    figure, path: Union[str, os.PathLike], title: Optional[str] = None, display: Optional[Display] = None
) -> Path:
    """Title (optional; wrapped to the figure's width, as is a title the figure already has),
    the maps' ``display`` named under the figure (optional), lay out, write as PNG
    (atomically) and close a matplotlib figure."""
    if title:
        figure.suptitle(title, fontsize=10)
    _fit_titles(figure, display)
    if figure.get_layout_engine() is None:  # a figure made with layout="constrained" keeps its own
        figure.tight_layout()
    with replacing(path) as partial:
        figure.savefig(partial, dpi=100)
    pyplot().close(figure)
    return Path(path)


def _fit_titles(figure, display: Optional[Display]) -> None:
    """Wrap the figure's title to its width; name ``display`` under the figure."""
    title = figure._suptitle  # matplotlib keeps the suptitle's Text here (no public getter of the Text)
    if title is not None:
        title.set_text(fit_text(title.get_text(), figure.get_figwidth(), title.get_fontsize()))
    if display is not None:
        figure.supxlabel(fit_text(display.caption, figure.get_figwidth(), 8), fontsize=8)


def figure_title(headline: str, model: str, weights: str, note: Optional[str] = None, width: int = 110) -> str:
    """A figure's title: the headline, the model and weights used, and a note (e.g. why a
    stand-in network was used), wrapped, so that the picture alone says which network drew it."""
    lines = [headline, f"model: {model}, weights: {weights}"]
    if note:
        lines += textwrap.wrap(note, width)
    return "\n".join(lines)


def map_panel(axis, picture: Picture, title: str = "", caption: str = "", display: Display = CLIP_99) -> None:
    """Draw a raw [3, H, W] map (scaled by ``display``) or an [H, W] / [H, W, 3]
    array in [0, 1] on a matplotlib ``axis``, without ticks."""
    if isinstance(picture, torch.Tensor) and picture.dim() == 3 and picture.shape[0] == 3:
        shown = to_display(picture, display)
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


def fit_text(text: str, width_inches: float, fontsize: float) -> str:
    """``text`` with every line wrapped to fit ``width_inches`` at ``fontsize`` points
    (DejaVu Sans averages about 0.6 em a character; a little margin is kept)."""
    characters = max(20, int((width_inches - 0.3) * 72.0 / (0.6 * fontsize)))
    return "\n".join(wrapped for line in text.split("\n") for wrapped in (textwrap.wrap(line, characters) or [""]))


def clipped_texts(figure) -> list[str]:
    """The texts of a matplotlib ``figure`` that do not lie wholly inside it, after its
    layout: [] when nothing is cut off at the edges. Draws the figure (at its own dpi)
    with matplotlib's renderer and compares the bounding box of every text it draws
    (titles, labels, captions, legends, tick labels within the axis' view) with the
    figure's, to a pixel."""
    from matplotlib.text import Text

    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    frame = figure.bbox
    undrawn = {id(text) for text in _undrawn_tick_labels(figure)}
    outside = []
    for text in figure.findobj(Text):
        if id(text) in undrawn or not text.get_visible() or not text.get_text().strip():
            continue
        box = text.get_window_extent(renderer)
        if box.x0 < frame.x0 - 1 or box.y0 < frame.y0 - 1 or box.x1 > frame.x1 + 1 or box.y1 > frame.y1 + 1:
            outside.append(text.get_text())
    return outside


def _undrawn_tick_labels(figure) -> list:
    """Tick labels matplotlib keeps but does not draw: those of ticks outside the axis' view."""
    labels = []
    for axes in figure.axes:
        for axis in (axes.xaxis, axes.yaxis):
            low, high = sorted(axis.get_view_interval())
            span = (high - low) * 1e-9
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                if not low - span <= tick.get_loc() <= high + span:
                    labels += [tick.label1, tick.label2]
    return labels
