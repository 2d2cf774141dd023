"""Rendering: the display normalisations (clipped at the 99th percentile; the paper's min-max), PNG files,
labelled grids, texts that fit their figure."""

from __future__ import annotations

import pathlib

import numpy as np
import torch
from PIL import Image

from backpropvis.render import (
    CLIP_99,
    DISPLAYS,
    MINMAX,
    clipped_texts,
    fit_text,
    pyplot,
    save_grid,
    save_png,
    to_display,
)


def test_the_papers_min_max_display_is_global_min_max_without_abs() -> None:
    # one global min (-2) and max (6) over all three channels: (v + 2) / 8 * 255
    map_ = torch.tensor([[[-2.0, 0.0]], [[2.0, 6.0]], [[-2.0, -2.0]]])  # [3, 1, 2]
    picture = to_display(map_, MINMAX)
    assert picture.shape == (1, 2, 3) and picture.dtype == np.uint8
    expected = np.array([[[0, 128, 0], [64, 255, 0]]], dtype=np.uint8)  # 63.75 -> 64, 127.5 -> 128
    assert np.array_equal(picture, expected)
    # a sign flip is not the same picture (no abs), and a constant map is black
    assert not np.array_equal(to_display(-map_, MINMAX), picture)
    assert np.array_equal(to_display(torch.full((3, 4, 4), 3.0), MINMAX), np.zeros((4, 4, 3), dtype=np.uint8))


def test_the_default_display_clips_at_the_99th_percentile_of_the_magnitude() -> None:
    """A map of 10,000 values in [-1, 1] and 14 values of 50 (a handful of large values, as in
    EfficientNet-Lite0's GBP map): min-max squeezes the rest into a few grey levels, the
    default display keeps their contrast. Checked against numpy's percentile by hand."""
    generator = torch.Generator().manual_seed(0)
    map_ = torch.rand((3, 60, 60), generator=generator, dtype=torch.float64) * 2 - 1
    map_.view(-1)[:14] = 50.0
    bound = np.percentile(np.abs(map_.numpy()), 99)  # independent reference
    expected = np.round((0.5 + 0.5 * np.clip(map_.numpy() / bound, -1, 1)) * 255).astype(np.uint8)
    picture = to_display(map_)
    assert to_display(map_, CLIP_99).tobytes() == picture.tobytes()
    assert np.array_equal(picture, np.moveaxis(expected, 0, -1))
    assert 0.95 < bound <= 1.0  # the 14 outliers do not move the 99th percentile
    # contrast kept: the bulk spans almost all 256 levels; min-max gives it about 10 of them
    assert len(np.unique(picture)) > 200
    assert len(np.unique(to_display(map_, MINMAX))) < 15
    # zero is mid-grey, a sign flip mirrors the picture around it, an all-zero map is grey
    assert np.array_equal(to_display(-map_).astype(int), 255 - picture.astype(int))
    assert (to_display(torch.zeros(3, 4, 4)) == 128).all()
    # a sparse map (99th percentile of |map| is 0) is scaled by its largest value instead
    sparse = torch.zeros(3, 20, 20)
    sparse[0, 0, 0] = -4.0
    assert to_display(sparse)[0, 0, 0] == 0 and (to_display(sparse)[1:, 1:] == 128).all()


def test_every_display_names_itself_in_words() -> None:
    assert "99th percentile" in CLIP_99.caption and "min-max" in MINMAX.caption
    assert DISPLAYS == {"clip99": CLIP_99, "minmax": MINMAX}


def test_clipped_texts_finds_a_title_wider_than_its_figure(tmp_path: pathlib.Path) -> None:
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(3, 2), layout="constrained")
    axis.set_xticks([])
    axis.set_yticks([])
    axis.set_title("a title far too long for a three-inch figure, cut off at both of its sides")
    assert clipped_texts(figure) == ["a title far too long for a three-inch figure, cut off at both of its sides"]
    axis.set_title(fit_text(axis.get_title(), 3, 12))
    assert clipped_texts(figure) == []
    plt.close(figure)


def test_save_png_round_trips(tmp_path: pathlib.Path) -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    path = save_png(pixels, tmp_path / "deep" / "a.png")  # creates the folder
    assert np.array_equal(np.asarray(Image.open(path)), pixels)
    tensor = torch.tensor(pixels).permute(2, 0, 1).float() / 255.0  # [3, H, W] in [0, 1]
    assert np.array_equal(np.asarray(Image.open(save_png(tensor, tmp_path / "b.png"))), pixels)


def test_save_grid_writes_a_labelled_png(tmp_path: pathlib.Path) -> None:
    red, blue = np.zeros((8, 8, 3), dtype=np.uint8), np.zeros((8, 8, 3), dtype=np.uint8)
    red[..., 0], blue[..., 2] = 255, 255
    path = save_grid(
        [[red, blue], [blue, None]],
        tmp_path / "grid.png",
        row_labels=["one", "two"],
        column_labels=["a", "b"],
        panel_labels=[["x", "y"], ["z", ""]],
        title="a grid",
    )
    grid = np.asarray(Image.open(path).convert("RGB")).astype(int)
    assert grid.shape[0] > 100 and grid.shape[1] > 100
    # both colours are drawn: pure red and pure blue pixels exist
    assert ((grid[..., 0] > 240) & (grid[..., 1] < 15) & (grid[..., 2] < 15)).any()
    assert ((grid[..., 2] > 240) & (grid[..., 0] < 15) & (grid[..., 1] < 15)).any()
