"""Adebayo et al.'s similarities checked against independent references: scikit-image's
SSIM, HOG and Sobel, scipy's Spearman and Pearson, and normalisations computed by hand
with numpy from the authors' description."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import pearsonr, spearmanr
from skimage.feature import hog
from skimage.filters import sobel
from skimage.metrics import structural_similarity

from backpropvis.core.metrics import SMALL_SAMPLE, small_sample_note
from backpropvis.sanity.similarity import (
    SSIM_DATA_RANGE,
    abs_grayscale,
    diverging,
    edge_maps,
    hog_cell,
    hog_similarity,
    similarities,
    spearman,
    ssim,
)
from backpropvis.sanity.summary import summarize_values


def hand_made(height: int = 40, width: int = 36) -> tuple[torch.Tensor, torch.Tensor]:
    """Two sets of 3 maps [3, 3, H, W]: a ramp, a bright square, stripes; and the same
    with a shifted square, transposed stripes and noise."""
    y, x = torch.meshgrid(
        torch.arange(height, dtype=torch.float64), torch.arange(width, dtype=torch.float64), indexing="ij"
    )
    ramp = (x + y) / (height + width)
    square = ((x > 8) & (x < 20) & (y > 10) & (y < 24)).double()
    stripes = (torch.sin(x / 2.0) > 0).double()
    noise = torch.rand(3, height, width, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    first = torch.stack([ramp.expand(3, -1, -1), square.expand(3, -1, -1), stripes.expand(3, -1, -1)])
    moved = square.roll(5, dims=1)
    turned = (torch.sin(y / 2.0) > 0).double()
    second = torch.stack(
        [ramp.expand(3, -1, -1) * 0.7 + 0.3 * noise, moved.expand(3, -1, -1), turned.expand(3, -1, -1)]
    )
    return first, second


def test_ssim_equals_scikit_image() -> None:
    first, second = hand_made()
    ours = ssim(first, second)
    for index in range(len(first)):
        reference = structural_similarity(
            first[index].permute(1, 2, 0).numpy(),
            second[index].permute(1, 2, 0).numpy(),
            gaussian_weights=True,
            channel_axis=-1,
            data_range=SSIM_DATA_RANGE,
        )
        assert ours[index] == pytest.approx(reference, abs=1e-10)
    assert ssim(first, first) == pytest.approx(np.ones(3))
    assert ours[2] < 0.9  # stripes against turned stripes: not the same picture


def test_ssim_refuses_maps_smaller_than_its_window() -> None:
    with pytest.raises(ValueError, match="at least 11"):
        ssim(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8))


def test_hog_similarity_is_pearson_of_scikit_image_hog() -> None:
    first, second = hand_made(48, 48)
    cell = hog_cell(48)
    ours = hog_similarity(first, second)
    for index in range(len(first)):
        features = [
            hog(maps[index].permute(1, 2, 0).numpy(), pixels_per_cell=(cell, cell), channel_axis=-1)
            for maps in (first, second)
        ]
        assert ours[index] == pytest.approx(pearsonr(*features)[0], abs=1e-10)
    # vertical stripes and horizontal stripes have orthogonal gradients: their HOGs disagree
    assert ours[2] < 0.2 and hog_similarity(first, first) == pytest.approx(np.ones(3))
    assert hog_cell(299) == 16 and hog_cell(224) == 12 and hog_cell(32) == 2


def test_spearman_equals_scipy_with_ties() -> None:
    first, second = hand_made()
    ours = spearman(first, second)
    for index in range(len(first)):
        assert ours[index] == pytest.approx(spearmanr(first[index].flatten(), second[index].flatten())[0], abs=1e-12)
    constant = torch.zeros(1, 3, 4, 4)
    assert math.isnan(spearman(constant, torch.rand(1, 3, 4, 4))[0])  # no ranks to correlate


def test_normalisations_as_the_authors_describe_them() -> None:
    maps = torch.randn(2, 3, 10, 12, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    grey = abs_grayscale(maps).numpy()
    signed = diverging(maps).numpy()
    for index in range(2):
        summed_abs = np.abs(maps[index].numpy()).sum(0)
        low, high = summed_abs.min(), np.percentile(summed_abs, 99)
        np.testing.assert_allclose(grey[index], np.clip((summed_abs - low) / (high - low), 0, 1))
        summed = maps[index].numpy().sum(0)
        span = abs(np.percentile(summed, 99))
        np.testing.assert_allclose(signed[index], np.clip(summed / span, -1, 1))
    assert (grey == 1.0).sum() >= 2  # the top 1% clipped into ties


def test_edge_maps_equal_scikit_image_sobel() -> None:
    image = torch.rand(2, 3, 20, 24, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    ours = edge_maps(image)
    for index in range(2):
        for channel in range(3):
            np.testing.assert_allclose(ours[index, channel].numpy(), sobel(image[index, channel].numpy()), atol=1e-12)


def test_similarities_of_a_map_with_itself_are_one_and_shapes_must_match() -> None:
    first, _ = hand_made()
    values = similarities(first, first)
    assert set(values) == {"spearman_abs", "spearman_signed", "ssim", "hog"}
    for name, row in values.items():
        assert row == pytest.approx(np.ones(3)), name
    with pytest.raises(ValueError, match="one shape"):
        similarities(first, first[:, :, :-1])


def test_summaries_average_seeds_per_image_and_flag_small_samples() -> None:
    summary = summarize_values([[0.2, 0.4, math.nan], [0.4, 0.6, math.nan]])
    assert summary.values[:2] == pytest.approx((0.3, 0.5)) and math.isnan(summary.values[2])
    assert summary.count == 2 and summary.mean == pytest.approx(0.4)
    assert 0.3 <= summary.low <= summary.mean <= summary.high <= 0.5
    assert "from 2 images only" in (summary.small_sample or "")
    many = summarize_values(np.linspace(0, 1, SMALL_SAMPLE))
    assert many.small_sample is None and small_sample_note(SMALL_SAMPLE - 1) is not None
    single = summarize_values([0.7])
    assert single.count == 1 and math.isnan(single.low)
