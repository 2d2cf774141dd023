"""metrics.ks_statistic against SciPy's two-sample Kolmogorov-Smirnov test."""

from __future__ import annotations

import pytest
import torch
from scipy.stats import ks_2samp

from backpropvis.core.metrics import ks_statistic


@pytest.mark.parametrize("shift, scale", [(0.0, 1.0), (0.1, 1.2), (2.0, 1.0)])
def test_matches_scipy_on_continuous_samples(generator, shift, scale):
    a = torch.randn(1000, generator=generator)
    b = torch.randn(700, generator=generator) * scale + shift
    assert ks_statistic(a, b) == pytest.approx(ks_2samp(a.numpy(), b.numpy()).statistic, abs=1e-12)


def test_matches_scipy_with_ties_and_hand_cases(generator):
    a = torch.randint(0, 5, (100,), generator=generator).float()
    b = torch.randint(0, 6, (80,), generator=generator).float()
    assert ks_statistic(a, b) == pytest.approx(ks_2samp(a.numpy(), b.numpy()).statistic, abs=1e-12)
    assert ks_statistic(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.0])) == 0.0
    assert ks_statistic(torch.tensor([0.0, 1.0]), torch.tensor([5.0, 6.0, 7.0])) == 1.0
    assert ks_statistic(torch.tensor([0.0, 2.0]), torch.tensor([1.0, 3.0])) == 0.5
