"""Shared fixtures. Keep this file small: helpers for one test module live in that module."""

from __future__ import annotations

import pytest
import torch

import backpropvis


@pytest.fixture
def generator() -> torch.Generator:
    """A CPU generator seeded with 0: every random draw of a test is seeded."""
    return torch.Generator().manual_seed(0)


@pytest.fixture(scope="session")
def vgg16_random() -> torch.nn.Module:
    """VGG-16 with the paper's random init, seed 0 (about 4 s to draw; shared, never modify it)."""
    return backpropvis.models.vgg16(weights="random", seed=0)
