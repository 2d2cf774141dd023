"""FGSM against a closed form: for logits W x + c the cross-entropy gradient is
W^T (softmax(W x + c) - onehot(label)), so the step's sign is known exactly."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from backpropvis.attacks.fgsm import fgsm
from backpropvis.core.errors import InputError, TargetError


def _linear(generator: torch.Generator, features: int = 12, classes: int = 5) -> torch.nn.Linear:
    layer = torch.nn.Linear(features, classes)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(classes, features, generator=generator))
        layer.bias.copy_(torch.randn(classes, generator=generator))
    return layer


def test_untargeted_step_is_the_sign_of_the_closed_form_gradient_and_raises_the_loss(generator):
    model = _linear(generator)
    x = torch.randn(4, 12, generator=generator)
    labels = model(x).argmax(dim=1)
    epsilon = 0.03
    adversarial = fgsm(model, x, labels, epsilon)

    with torch.no_grad():
        residual = F.softmax(model(x), dim=1) - F.one_hot(labels, 5).float()
        expected = x + epsilon * (residual @ model.weight).sign()
        assert torch.allclose(adversarial, expected, atol=1e-7)
        assert (adversarial - x).abs().amax(dim=1) == pytest.approx([epsilon] * 4, abs=1e-7)
        before = F.cross_entropy(model(x), labels, reduction="none")
        after = F.cross_entropy(model(adversarial), labels, reduction="none")
    assert bool((after > before).all())


def test_targeted_step_lowers_the_target_loss_and_bounds_clip(generator):
    model = _linear(generator)
    x = torch.rand(3, 12, generator=generator)
    target = 2
    adversarial = fgsm(model, x, target, 0.05, targeted=True, bounds=(0.0, 1.0))
    with torch.no_grad():
        labels = torch.full((3,), target)
        assert bool(
            (
                F.cross_entropy(model(adversarial), labels, reduction="none")
                < F.cross_entropy(model(x), labels, reduction="none")
            ).all()
        )
    assert float(adversarial.min()) >= 0.0 and float(adversarial.max()) <= 1.0
    assert float((adversarial - x).abs().max()) == pytest.approx(0.05, abs=1e-6)  # interior pixels moved by epsilon


def test_fgsm_leaves_the_input_alone_and_refuses_bad_arguments(generator):
    model = _linear(generator)
    x = torch.randn(2, 12, generator=generator)
    copy = x.clone()
    fgsm(model, x, 0, 0.1)
    assert torch.equal(x, copy) and not x.requires_grad
    with pytest.raises(TargetError):
        fgsm(model, x, 5, 0.1)
    with pytest.raises(TargetError):
        fgsm(model, x, torch.tensor([0, 1, 2]), 0.1)
    with pytest.raises(InputError):
        fgsm(model, x, 0, -0.1)
    with pytest.raises(InputError):
        fgsm(model, x.long(), 0, 0.1)
