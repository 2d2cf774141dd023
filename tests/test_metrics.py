"""Metrics against closed-form values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from backpropvis.core.metrics import (
    class_distance,
    class_distance_minmax,
    cosine_similarity,
    expected_normal_maximum,
    input_similarity,
    minmax_normalize,
    noise_similarity_std,
    pairwise_cosine_similarity,
    ratio,
)
from backpropvis.images.samples import load_image


def seeded_maps(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_class_distance_closed_forms() -> None:
    a = seeded_maps(3, 4, 5)
    assert float(class_distance(a, a)) == pytest.approx(0.0, abs=1e-12)
    assert float(class_distance(a, -a)) == pytest.approx(2.0)
    assert float(class_distance(a, 7.5 * a)) == pytest.approx(0.0, abs=1e-12)  # scale-invariant
    assert float(class_distance(0.01 * a, -3 * a)) == pytest.approx(2.0)
    # orthogonal maps: ||u - v|| = sqrt(2); 60 degrees apart: sqrt(2 - 2 cos 60) = 1
    e1, e2 = torch.zeros(1, 2, 2), torch.zeros(1, 2, 2)
    e1[0, 0, 0], e2[0, 1, 1] = 1.0, 4.0
    assert float(class_distance(e1, e2)) == pytest.approx(math.sqrt(2.0))
    sixty = torch.tensor([[[1.0, math.sqrt(3.0)]]])
    assert float(class_distance(torch.tensor([[[2.0, 0.0]]]), sixty)) == pytest.approx(1.0)


def test_pairwise_cosine_similarity_closed_forms_and_every_pair() -> None:
    # hand-made: e1, 3 * e1, e2 and -e1 + e2 (135 degrees from e1)
    e1, e2 = torch.zeros(1, 2, 2), torch.zeros(1, 2, 2)
    e1[0, 0, 0], e2[0, 1, 1] = 1.0, 1.0
    maps = torch.stack([e1, 3 * e1, e2, e2 - e1])  # [4, 1, 2, 2]
    half = 1 / math.sqrt(2.0)
    expected = torch.tensor(
        [
            [1.0, 1.0, 0.0, -half],
            [1.0, 1.0, 0.0, -half],
            [0.0, 0.0, 1.0, half],
            [-half, -half, half, 1.0],
        ],
        dtype=torch.float64,
    )
    assert torch.allclose(pairwise_cosine_similarity(maps), expected, atol=1e-12)
    # batched over leading dims, each entry the cosine of that pair (a zero map: 0)
    sets = seeded_maps(2, 5, 3, 4, 4, seed=3)
    sets[1, 2] = 0.0
    matrix = pairwise_cosine_similarity(sets)
    assert matrix.shape == (2, 5, 5)
    for batch in range(2):
        for i in range(5):
            for j in range(5):
                one = sets[batch, i].flatten().numpy()
                other = sets[batch, j].flatten().numpy()
                norms = float(torch.tensor(one).norm() * torch.tensor(other).norm())
                reference = float(one @ other) / norms if norms > 0 else 0.0
                assert float(matrix[batch, i, j]) == pytest.approx(reference, abs=1e-12)


def test_class_distance_is_batched_over_leading_dims() -> None:
    a, b = seeded_maps(2, 3, 3, 4, 4, seed=1), seeded_maps(2, 3, 3, 4, 4, seed=2)
    distances = class_distance(a, b)
    assert distances.shape == (2, 3) and distances.dtype == torch.float64
    for t in range(2):
        for s in range(3):
            cosine = torch.dot(a[t, s].flatten().double(), b[t, s].flatten().double()) / (
                a[t, s].norm() * b[t, s].norm()
            )
            assert float(distances[t, s]) == pytest.approx(math.sqrt(2 - 2 * float(cosine)))


def test_minmax_normalize_is_the_papers_display_rule() -> None:
    # global over C x H x W, no abs: [-2, 0, 2, 6] -> [0, 0.25, 0.5, 1]
    maps = torch.tensor([[[-2.0, 0.0], [2.0, 6.0]]])
    torch.testing.assert_close(minmax_normalize(maps), torch.tensor([[[0.0, 0.25], [0.5, 1.0]]], dtype=torch.float64))
    # per sample in a batch, not across it
    batch = torch.stack([maps, 10 * maps + 1])
    torch.testing.assert_close(minmax_normalize(batch)[1], minmax_normalize(maps))
    assert torch.equal(minmax_normalize(torch.full((3, 2, 2), 5.0)), torch.zeros(3, 2, 2, dtype=torch.float64))


def test_class_distance_minmax_closed_forms() -> None:
    a = seeded_maps(3, 4, 4, seed=3)
    assert float(class_distance_minmax(a, 2.0 * a + 3.0)) == pytest.approx(0.0, abs=1e-12)  # affine-invariant
    # [-1, 3] -> [0, 1]; its negative [1, -3] -> [1, 0]: orthogonal, sqrt(2)
    assert float(class_distance_minmax(torch.tensor([[[-1.0, 3.0]]]), torch.tensor([[[1.0, -3.0]]]))) == pytest.approx(
        math.sqrt(2)
    )
    # unlike the raw distance, a sign flip is not distance 2 after min-max
    assert float(class_distance(a, -a)) == pytest.approx(2.0)
    assert float(class_distance_minmax(a, -a)) < 1.9


def test_input_similarity_centres_each_channel() -> None:
    image = seeded_maps(3, 8, 8, seed=4)
    offsets = torch.tensor([5.0, -40.0, 300.0]).view(3, 1, 1)
    assert float(input_similarity(image + offsets, image)) == pytest.approx(1.0)
    assert float(input_similarity(0.2 * image + offsets, image)) == pytest.approx(1.0)
    assert float(input_similarity(-3.0 * image + offsets, image)) == pytest.approx(-1.0)
    # with one global mean the per-channel offsets would dominate: the plain cosine is far from 1
    assert float(cosine_similarity(image + offsets - (image + offsets).mean(), image - image.mean())) < 0.5


def test_input_similarity_hand_computed() -> None:
    # channel 0 of the image: [[1, 0], [0, 0]] -> centred [[.75, -.25], [-.25, -.25]], norm^2 .75
    # channel 0 of the map:   [[0, 1], [0, 0]] -> centred [[-.25, .75], [-.25, -.25]], norm^2 .75
    # dot = -.1875 - .1875 + .0625 + .0625 = -.25, cosine = -.25 / .75 = -1/3 (other channels 0)
    image, maps = torch.zeros(3, 2, 2), torch.zeros(3, 2, 2)
    image[0, 0, 0], maps[0, 0, 1] = 1.0, 1.0
    maps[1] += 9.0  # a constant channel: nothing left after centring
    assert float(input_similarity(maps, image)) == pytest.approx(-1.0 / 3.0)


def test_input_similarity_broadcasts_the_batch() -> None:
    images = seeded_maps(2, 3, 5, 5, seed=5)
    maps = torch.stack([images + 1.0, -images, seeded_maps(2, 3, 5, 5, seed=6)])  # [T=3, B=2, 3, 5, 5]
    similarity = input_similarity(maps, images)
    assert similarity.shape == (3, 2)
    torch.testing.assert_close(similarity[0], torch.ones(2, dtype=torch.float64))
    torch.testing.assert_close(similarity[1], -torch.ones(2, dtype=torch.float64))
    assert similarity[2].abs().max() < 0.5


def test_cosine_similarity_of_a_zero_map_is_zero() -> None:
    assert float(cosine_similarity(torch.zeros(3, 2, 2), seeded_maps(3, 2, 2))) == 0.0


def test_ratio_is_nan_where_the_denominator_means_nothing() -> None:
    assert ratio(3.0, 1.5) == 2.0
    assert ratio(-1.0, 4.0) == -0.25
    for denominator in (0.0, -0.0, -2.0, math.inf, -math.inf, math.nan):
        assert math.isnan(ratio(1.0, denominator)), denominator
    assert math.isnan(ratio(math.nan, 1.0))


def test_a_zero_map_fails_a_ratio_claim() -> None:
    # Issue 10: GBP maps of zeros have class distance 0; "saliency / GBP >= 5" must not hold.
    from backpropvis.core.claims import Claim

    saliency = seeded_maps(2, 3, 4, 4, seed=7)
    zero_gbp = torch.zeros(2, 3, 4, 4)
    gbp_distance = float(class_distance(zero_gbp[0], zero_gbp[1]))
    value = ratio(float(class_distance(saliency[0], saliency[1])), gbp_distance)
    assert gbp_distance == 0.0 and math.isnan(value)
    assert not Claim("saliency_5x_gbp", "", "saliency_over_gbp", ">=", 5.0).evaluate({"saliency_over_gbp": value}).holds


# --- what "noise" means --------------------------------------------------------------------


def _monte_carlo_similarity_std(image: torch.Tensor, draw, count: int = 400) -> float:
    """The standard deviation of input_similarity(noise, image) over seeded noise maps ``draw(generator)``."""
    generator = torch.Generator().manual_seed(0)
    values = torch.tensor([float(input_similarity(draw(generator), image)) for _ in range(count)])
    return float(values.std())


def test_noise_similarity_std_of_white_noise_is_one_over_sqrt_n() -> None:
    image = seeded_maps(3, 24, 24, seed=1).cumsum(-1)  # any fixed image
    white = _monte_carlo_similarity_std(image, lambda g: torch.randn(3, 24, 24, generator=g, dtype=torch.float64))
    expected = 1.0 / math.sqrt(3 * (24 * 24 - 1))
    assert noise_similarity_std(image) == pytest.approx(expected)
    assert white == pytest.approx(expected, rel=0.1)  # 400 draws: the estimate's own spread is 3.5 %
    # given one white map, the spectrum-aware value is the same up to the map's own periodogram noise
    assert noise_similarity_std(image, torch.randn(3, 24, 24, generator=torch.Generator().manual_seed(5))) == (
        pytest.approx(expected, rel=0.1)
    )


def test_noise_similarity_std_of_smooth_noise_follows_the_map_spectrum() -> None:
    """Smooth noise (white noise averaged over 5 x 5 windows) meets a photo by chance far more
    often than white noise; the spectrum-aware standard deviation predicts by how much."""
    image = torch.from_numpy(np.asarray(load_image("tabby").resize((40, 40)), dtype=np.float64)).permute(2, 0, 1)

    def smooth(generator: torch.Generator) -> torch.Tensor:
        noise = torch.randn(3, 1, 44, 44, generator=generator, dtype=torch.float64)
        return torch.nn.functional.avg_pool2d(noise, 5, 1)[:, 0]  # [3, 40, 40]

    measured = _monte_carlo_similarity_std(image, smooth)
    predicted = float(
        np.mean([noise_similarity_std(image, smooth(torch.Generator().manual_seed(100 + k))) for k in range(20)])
    )
    assert measured > 3 * noise_similarity_std(image)  # not white
    assert predicted == pytest.approx(measured, rel=0.12)
    assert math.isnan(noise_similarity_std(image, torch.zeros(3, 40, 40)))  # a zero map is not noise


def test_expected_normal_maximum_against_closed_form_and_sampling() -> None:
    assert expected_normal_maximum(1) == pytest.approx(0.0, abs=1e-9)
    assert expected_normal_maximum(2) == pytest.approx(1.0 / math.sqrt(math.pi))  # E[max(Z1, Z2)] = 1 / sqrt(pi)
    draws = torch.randn(4000, 1000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert expected_normal_maximum(1000) == pytest.approx(float(draws.max(dim=1).values.mean()), abs=0.02)
    with pytest.raises(ValueError):
        expected_normal_maximum(0)


def test_small_samples_are_flagged_below_20_and_only_there():
    from backpropvis.core.metrics import SMALL_SAMPLE, small_sample_note

    assert SMALL_SAMPLE == 20
    assert small_sample_note(3) == "from 3 images only (fewer than 20): read the interval as a rough guide"
    assert small_sample_note(1, "photos") == "from 1 photo only (fewer than 20): read the interval as a rough guide"
    assert small_sample_note(19) is not None and small_sample_note(20) is None and small_sample_note(5000) is None
