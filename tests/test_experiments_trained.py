"""The trained-network figures (2, 3, 9) at tiny sizes: their claims, numbers
cross-checked against plain autograd and SciPy, and the VGG-specific ones (3, 9) on a
FAKE "trained" VGG-16 checkpoint (seeded random weights with torchvision's keys).
Figures 7 and 8: test_fig7.py and test_fig8.py.

The fake checkpoint only exercises the code paths: what fig3's and fig9's claims say
about VGG-16 means something only with the real ImageNet checkpoint.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.stats import ks_2samp

from backpropvis import rules
from backpropvis.experiments import PAPER, RunContext, run_experiment
from backpropvis.experiments.networks import trained_network
from backpropvis.images import load_image
from backpropvis.models import VGG16, efficientnet_lite0
from backpropvis.rules import Rule

TINY = {
    "fig2": dict(PAPER["fig2"].quick, size=96),
    "fig3": dict(PAPER["fig3"].quick),
    "fig9": dict(PAPER["fig9"].quick, size=32, layers=("conv1_1", "conv5_1", "fc3")),
}
FC1_ROWS = (26, 44)


@pytest.fixture
def no_hub_checkpoint(monkeypatch, tmp_path):
    """An empty torch hub cache, so that no real VGG-16 checkpoint is found."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))


@pytest.fixture(scope="module")
def fake_vgg16(tmp_path_factory):
    """(path, fc1 rows 26 and 44): a seeded random state dict with VGG-16's keys and shapes."""
    with torch.device("meta"):
        shapes = VGG16().state_dict()
    generator = torch.Generator().manual_seed(1)
    state = {key: torch.randn(value.shape, generator=generator) * 0.01 for key, value in shapes.items()}
    path = tmp_path_factory.mktemp("fake-vgg16") / "fake-vgg16.pth"
    torch.save(state, path)
    rows = state["classifier.0.weight"][list(FC1_ROWS)].clone()
    del state
    yield path, rows
    path.unlink()


def run_tiny(name, out, changes=None, **context):
    experiment = dataclasses.replace(PAPER[name], quick=dict(TINY[name], **(changes or {})))
    return run_experiment(experiment, RunContext(out=out / name, quick=True, seed=0, progress=False, **context))


def verdicts(result) -> dict[str, bool]:
    return {claim.id: claim.holds for claim in result.claims}


def test_fig2_claims_hold_and_saliency_distance_matches_plain_autograd(tmp_path, no_hub_checkpoint):
    result = run_tiny("fig2", tmp_path)
    assert verdicts(result) == {"saliency_5x_gbp": True, "saliency_2x_deconvnet": True}
    assert result.model == "efficientnet-lite0" and any("stands in" in note for note in result.notes)
    assert Image.open(tmp_path / "fig2" / "figure.png").size[0] > 800

    # Independent reference: saliency is the plain gradient; its class distance by hand.
    model = efficientnet_lite0()
    x = model.preprocessing.resized(96).batch([load_image("tabby")]).requires_grad_(True)
    logits = model(x)
    top = int(logits.argmax())
    (max_gradient,) = torch.autograd.grad(logits[0, top], x, retain_graph=True)
    (other_gradient,) = torch.autograd.grad(logits[0, 482], x)
    a, b = max_gradient.flatten().double().numpy(), other_gradient.flatten().double().numpy()
    expected = np.linalg.norm(a / np.linalg.norm(a) - b / np.linalg.norm(b))
    assert result.details["targets"] == [top, 482, 560]
    assert result.metrics["distance_saliency_482"] == pytest.approx(expected, abs=1e-4)


def test_fig2_claims_fail_when_gbp_is_the_plain_gradient(tmp_path, no_hub_checkpoint, monkeypatch):
    # Sabotage: "gbp" computed with saliency's rule. Its maps are then saliency's, so the
    # ratio of their class distances is 1 and the claim that saliency's is 5x GBP's fails.
    monkeypatch.setitem(rules.RULES, "gbp", Rule("gbp", h="identity", g="activation"))
    result = run_tiny("fig2", tmp_path)
    assert result.metrics["distance_gbp"] == pytest.approx(result.metrics["distance_saliency"], rel=1e-6)
    assert result.metrics["saliency_over_gbp"] == pytest.approx(1.0, rel=1e-6)
    assert verdicts(result)["saliency_5x_gbp"] is False


def test_fig3_and_fig9_skip_without_a_trained_vgg16(tmp_path, no_hub_checkpoint):
    for name in ("fig3", "fig9"):
        result = run_tiny(name, tmp_path)
        assert result.skipped and "--vgg16-weights" in result.skipped and result.claims == []


def test_fig3_on_a_fake_checkpoint_matches_scipy(tmp_path, fake_vgg16):
    path, rows = fake_vgg16
    result = run_tiny("fig3", tmp_path, vgg16_weights=path)
    assert verdicts(result) == {"fc1_histograms_alike": True}  # same distribution by construction
    assert any("mean something only with the ImageNet-trained checkpoint" in note for note in result.notes)
    assert result.metrics["ks_statistic"] == pytest.approx(ks_2samp(rows[0].numpy(), rows[1].numpy()).statistic)
    for row, neuron in zip(rows, FC1_ROWS):
        assert result.metrics[f"mean_{neuron}"] == pytest.approx(float(row.double().mean()))
        assert result.metrics[f"std_{neuron}"] == pytest.approx(float(row.double().std()))
    assert (tmp_path / "fig3" / "figure.png").is_file()


def test_fig9_on_a_fake_checkpoint(tmp_path, fake_vgg16):
    path, _ = fake_vgg16
    result = run_tiny("fig9", tmp_path, vgg16_weights=path)
    assert verdicts(result) == {"conv5_1_closer_than_conv1_1": True}
    assert any("not torchvision's vgg16-397923af.pth" in note for note in result.notes)
    assert result.metrics["distance_upto_fc3"] == 0.0  # trained up to the last layer is the trained network
    assert result.metrics["similarity_upto_fc3"] == result.metrics["similarity_full"]
    assert result.metrics["distance_upto_conv1_1"] > result.metrics["distance_upto_conv5_1"] > 0.0
    assert (tmp_path / "fig9" / "figure.png").is_file()


def test_trained_network_prefers_vgg16_weights_and_says_when_the_file_is_not_torchvisions(tmp_path, fake_vgg16):
    path, rows = fake_vgg16
    network = trained_network(RunContext(out=tmp_path, vgg16_weights=path))
    assert network.name == "vgg16" and str(path) in network.weights
    assert torch.equal(network.model.layer("fc1").weight[list(FC1_ROWS)], rows)
    assert "not torchvision's vgg16-397923af.pth" in network.note
