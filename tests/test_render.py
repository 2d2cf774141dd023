"""Rendering: the paper's display normalisation, PNG files, labelled grids."""

from __future__ import annotations

import pathlib

import numpy as np
import torch
from PIL import Image

from backpropvis.render import save_grid, save_png, to_display


def test_to_display_is_global_min_max_without_abs() -> None:
    # one global min (-2) and max (6) over all three channels: (v + 2) / 8 * 255
    map_ = torch.tensor([[[-2.0, 0.0]], [[2.0, 6.0]], [[-2.0, -2.0]]])  # [3, 1, 2]
    picture = to_display(map_)
    assert picture.shape == (1, 2, 3) and picture.dtype == np.uint8
    expected = np.array([[[0, 128, 0], [64, 255, 0]]], dtype=np.uint8)  # 63.75 -> 64, 127.5 -> 128
    assert np.array_equal(picture, expected)
    # a sign flip is not the same picture (no abs), and a constant map is black
    assert not np.array_equal(to_display(-map_), picture)
    assert np.array_equal(to_display(torch.full((3, 4, 4), 3.0)), np.zeros((4, 4, 3), dtype=np.uint8))


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
