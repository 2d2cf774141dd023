"""The adversarial sweep (Figure 8's test) against separate calls: FGSM on each image
alone, each map from its own engine call, the class distance between them."""

from __future__ import annotations

import torch
from tiny_nets import seeded_
from torch import nn

import backpropvis
from backpropvis.attacks.fgsm import fgsm
from backpropvis.attacks.sweep import fgsm_sweep
from backpropvis.core.metrics import class_distance

MEAN, STD = 0.45, 0.25


def normalize(pixels: torch.Tensor) -> torch.Tensor:
    return (pixels - MEAN) / STD


def tiny_classifier() -> nn.Module:
    model = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(6 * 4 * 4, 12),
        nn.ReLU(),
        nn.Linear(12, 4),
    )
    return seeded_(model, 51, scale=0.6).double().eval()


def test_the_sweep_equals_separate_attacks_and_separate_maps() -> None:
    model = tiny_classifier()
    pixels = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    steps = [64.0, 0.0, 8.0]
    sweep = fgsm_sweep(model, pixels, normalize, steps)
    assert sweep.steps == (0.0, 8.0, 64.0)  # declared steps, sorted

    def on_pixels(batch: torch.Tensor) -> torch.Tensor:
        return model(normalize(batch))

    for image in range(3):
        alone = pixels[image : image + 1]
        predicted = int(on_pixels(alone).argmax())
        assert int(sweep.original[image]) == predicted
        before = {method: backpropvis.attribute(model, normalize(alone), "max", method) for method in sweep.distance}
        for number, step in enumerate(sweep.steps):
            attacked = fgsm(on_pixels, alone, predicted, step / 255.0, bounds=(0.0, 1.0))
            torch.testing.assert_close(sweep.adversarial[number, image], attacked[0])
            assert int(sweep.predicted[number, image]) == int(on_pixels(attacked).argmax())
            for method, distances in sweep.distance.items():
                after = backpropvis.attribute(model, normalize(attacked), "max", method)
                expected = float(class_distance(before[method], after)[0])
                assert abs(float(distances[number, image]) - expected) < 1e-9
    assert float(max(distances[0].abs().max() for distances in sweep.distance.values())) < 1e-12  # a 0 step


def test_the_smallest_flipping_step_is_the_first_step_whose_prediction_differs() -> None:
    model = tiny_classifier()
    pixels = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    sweep = fgsm_sweep(model, pixels, normalize, [1.0, 16.0, 64.0, 255.0])
    for image, smallest in enumerate(sweep.smallest_flipping_step()):
        changed = [bool(flag) for flag in sweep.predicted[:, image] != sweep.original[image]]
        assert smallest == (changed.index(True) if any(changed) else None)
    assert any(step is not None for step in sweep.smallest_flipping_step())  # a full-range step flips something
