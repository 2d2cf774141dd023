"""The trained-network figures (2, 3, 9) at tiny sizes: their claims, numbers cross-checked
against plain autograd, Captum and SciPy. Figures 2, 3 and 9 run offline on the bundled
EfficientNet-Lite0 and the digits VGG; with a VGG-16 checkpoint they use it, as the tests show
on a FAKE "trained" VGG-16 checkpoint (seeded random weights with torchvision's keys).
Figures 7 and 8: test_fig7.py and test_fig8.py.

The fake checkpoint only exercises the code paths: what fig3's and fig9's claims say
about VGG-16 means something only with the real ImageNet checkpoint.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest
import torch
from captum.attr import Deconvolution, GuidedBackprop, Saliency
from PIL import Image
from scipy.stats import ks_2samp

from backpropvis.core import rules
from backpropvis.core.rules import Rule
from backpropvis.experiments import PAPER, RunContext, run_experiment
from backpropvis.experiments.networks import trained_network
from backpropvis.images.samples import load_image
from backpropvis.models import VGG16, digits_vgg, efficientnet_lite0, load_digits_split

TINY = {
    "fig2": dict(PAPER["fig2"].tiny),
    "fig3": dict(PAPER["fig3"].tiny),
    "fig9": dict(PAPER["fig9"].tiny),
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


def unit(vector: np.ndarray) -> np.ndarray:
    return vector / np.linalg.norm(vector)


def digits_batch(count: int) -> torch.Tensor:
    """[count, 3, 32, 32]: the first held-out test digits, as the experiments take them."""
    return load_digits_split("test").inputs[:count]


def test_fig2_saliency_distances_match_plain_autograd_in_both_networks(tmp_path, no_hub_checkpoint):
    result = run_tiny("fig2", tmp_path)
    held = verdicts(result)
    assert held["imagenet_saliency_5x_gbp"] and held["imagenet_saliency_2x_deconvnet"] and held["maps_nonzero"]
    assert result.model == "efficientnet-lite0 and digits-vgg"
    assert any("stands in" in note for note in result.notes) and any("digits VGG" in note for note in result.notes)
    assert Image.open(tmp_path / "fig2" / "figure.png").size[0] > 800

    # Independent reference: saliency is the plain gradient; its class distance by hand.
    efficientnet = efficientnet_lite0()
    digits = digits_vgg()
    cases = [
        ("imagenet", efficientnet, efficientnet.preprocessing.resized(96).batch([load_image("tabby")]), 482),
        ("digits", digits, digits_batch(2)[1:], 5),
    ]
    for key, model, x, other in cases:
        x = x.clone().requires_grad_(True)
        logits = model(x)
        top = int(logits.argmax())
        (max_gradient,) = torch.autograd.grad(logits[0, top], x, retain_graph=True)
        (other_gradient,) = torch.autograd.grad(logits[0, other], x)
        a, b = max_gradient.flatten().double().numpy(), other_gradient.flatten().double().numpy()
        assert result.details[key]["targets"][:2] == [top, other]
        assert result.metrics[f"{key}_distance_saliency_{other}"] == pytest.approx(
            np.linalg.norm(unit(a) - unit(b)), abs=1e-4
        )


def test_fig2_claims_fail_when_gbp_is_the_plain_gradient(tmp_path, no_hub_checkpoint, monkeypatch):
    # Sabotage: "gbp" computed with saliency's rule. Its maps are then saliency's, so the
    # ratio of their class distances is 1 and the claim that saliency's is 5x GBP's fails.
    monkeypatch.setitem(rules.RULES, "gbp", Rule("gbp", h="identity", g="activation"))
    result = run_tiny("fig2", tmp_path)
    for key in ("imagenet", "digits"):
        assert result.metrics[f"{key}_distance_gbp"] == pytest.approx(
            result.metrics[f"{key}_distance_saliency"], rel=1e-6
        )
        assert result.metrics[f"{key}_saliency_over_gbp"] == pytest.approx(1.0, rel=1e-6)
        assert verdicts(result)[f"{key}_saliency_5x_gbp"] is False


def mean_pairwise_cosine(maps: np.ndarray) -> float:
    """[L, D] -> the mean cosine over every pair of rows, pair by pair."""
    return float(np.mean([unit(a) @ unit(b) for a, b in itertools.combinations(maps, 2)]))


def test_fig3_cosines_over_the_logits_match_captum_and_the_histograms_scipy(tmp_path, no_hub_checkpoint):
    result = run_tiny("fig3", tmp_path)
    assert result.model == "efficientnet-lite0 and digits-vgg"
    assert any("stands in" in note for note in result.notes)
    assert any("its histograms are of its only dense layer, _fc" in note for note in result.notes)
    assert {"imagenet_gbp_same_for_every_logit", "digits_fc1_histograms_alike"} <= set(verdicts(result))
    assert (tmp_path / "fig3" / "figure.png").is_file()

    # The digits VGG's maps of its 10 logits, by Captum (one call per logit), compared pair by pair.
    model, x = digits_vgg(), digits_batch(TINY["fig3"]["digits_images"])
    assert result.details["digits"]["logits"] == list(range(10))
    explainers = {"saliency": Saliency(model), "deconvnet": Deconvolution(model), "gbp": GuidedBackprop(model)}
    for method, explainer in explainers.items():
        options = {"abs": False} if method == "saliency" else {}
        maps = np.stack([explainer.attribute(x, target=k, **options).detach().double().numpy() for k in range(10)])
        expected = np.mean([mean_pairwise_cosine(maps[:, image].reshape(10, -1)) for image in range(len(x))])
        assert result.metrics[f"digits_{method}_cosine"] == pytest.approx(expected, abs=1e-4)

    # The histograms' KS statistics by SciPy; the twins' rows are the random twins' own layers.
    efficientnet = efficientnet_lite0()
    twin = digits_vgg("random", seed=0)
    samples = {
        "imagenet_dense_ks": efficientnet._fc.weight[[26, 44]],
        "digits_fc1_ks": model.fc1.weight[[26, 44]],
        "digits_fc1_ks_random_twin": twin.fc1.weight[[26, 44]],
        "digits_fc2_ks": model.fc2.weight[[2, 4]],
        "digits_fc2_ks_random_twin": twin.fc2.weight[[2, 4]],
    }
    for metric, rows in samples.items():
        rows = rows.detach().numpy()
        assert result.metrics[metric] == pytest.approx(ks_2samp(rows[0], rows[1]).statistic), metric
    assert result.details["imagenet_dense"]["layer"] == "_fc"


def test_fig3_on_a_fake_checkpoint_reads_vgg16s_fc1(tmp_path, fake_vgg16, vgg16_random):
    path, rows = fake_vgg16
    result = run_tiny("fig3", tmp_path, vgg16_weights=path)
    assert result.model == "vgg16 and digits-vgg" and result.details["imagenet_dense"]["layer"] == "fc1"
    assert any("mean something only with the ImageNet-trained checkpoint" in note for note in result.notes)
    assert result.metrics["imagenet_dense_ks"] == pytest.approx(ks_2samp(rows[0].numpy(), rows[1].numpy()).statistic)
    twin_rows = vgg16_random.layer("fc1").weight[list(FC1_ROWS)].detach().numpy()  # the random VGG-16, seed 0
    assert result.metrics["imagenet_dense_ks_random_twin"] == pytest.approx(
        ks_2samp(twin_rows[0], twin_rows[1]).statistic
    )
    assert len(result.details["imagenet"]["logits"]) == TINY["fig3"]["logits"]
    assert (tmp_path / "fig3" / "figure.png").is_file()


def gbp_of_max(model: torch.nn.Module, x: torch.Tensor) -> np.ndarray:
    """[B, D]: Captum's GBP of each image for its own max logit."""
    target = model(x).argmax(dim=1)
    return GuidedBackprop(model).attribute(x, target=target).detach().flatten(1).double().numpy()


def test_fig9_runs_offline_and_its_distances_match_captum_on_a_network_built_by_hand(tmp_path, no_hub_checkpoint):
    result = run_tiny("fig9", tmp_path)
    assert result.model == "efficientnet-lite0 and digits-vgg"
    assert any("stands in" in note for note in result.notes)
    assert any("re-estimated on the six bundled photos" in note for note in result.notes)
    assert list(result.details["imagenet"]["stages"]) == ["stem", "stage 2", "stage 4", "stage 6", "head", "classifier"]
    assert list(result.details["digits"]["stages"]) == ["Conv1-1", "Conv2-1", "Conv3-1", "FC1", "FC2"]
    assert (tmp_path / "fig9" / "figure.png").is_file()
    metrics = result.metrics
    # one network reached two ways: only the last stage redrawn = trained up to the one before
    assert metrics["digits_diamond_fc2"] == pytest.approx(metrics["digits_star_fc1"], abs=1e-12)
    assert metrics["imagenet_diamond_classifier"] == pytest.approx(metrics["imagenet_star_head"], abs=1e-12)
    assert metrics["digits_dense_top"] == metrics["digits_star_conv3_1"]  # fc1 and fc2 redrawn
    assert metrics["imagenet_dense_top"] == metrics["imagenet_star_head"]  # the classifier redrawn

    # Independent reference: the digits VGG trained up to Conv3-1, built by hand from the trained
    # network and its random twin's fc1 and fc2, GBP by Captum, class distance by NumPy.
    x = digits_batch(TINY["fig9"]["digits_images"])
    trained, twin = digits_vgg(), digits_vgg("random", seed=0)
    partly = digits_vgg()
    partly.fc1.load_state_dict(twin.fc1.state_dict())
    partly.fc2.load_state_dict(twin.fc2.state_dict())
    reference, redrawn = gbp_of_max(trained, x), gbp_of_max(partly, x)
    expected = np.mean([np.linalg.norm(unit(a) - unit(b)) for a, b in zip(reference, redrawn)])
    assert metrics["digits_star_conv3_1"] == pytest.approx(expected, abs=1e-4)


def test_fig9_on_a_fake_checkpoint_uses_the_papers_vgg16_stages(tmp_path, fake_vgg16):
    path, _ = fake_vgg16
    result = run_tiny("fig9", tmp_path, vgg16_weights=path)
    assert result.model == "vgg16 and digits-vgg"
    assert any("not torchvision's vgg16-397923af.pth" in note for note in result.notes)
    assert not any("batch norm" in note for note in result.notes)  # neither network has any
    assert list(result.details["imagenet"]["stages"]) == ["Conv1-1", "Conv3-1", "Conv5-1", "FC3"]
    metrics = result.metrics
    assert metrics["imagenet_dense_top"] == metrics["imagenet_star_conv5_1"]  # the paper's Conv5-1* vs FC3*
    assert {f"imagenet_diamond_{stage}" for stage in ("conv1_1", "conv3_1", "conv5_1", "fc3")} <= set(metrics)
    assert "redrawn" in result.details["imagenet"]["variants"]["star Conv5-1"]
    assert (tmp_path / "fig9" / "figure.png").is_file()


def test_trained_network_prefers_vgg16_weights_and_says_when_the_file_is_not_torchvisions(tmp_path, fake_vgg16):
    path, rows = fake_vgg16
    network = trained_network(RunContext(out=tmp_path, vgg16_weights=path))
    assert network.name == "vgg16" and str(path) in network.weights
    assert torch.equal(network.model.layer("fc1").weight[list(FC1_ROWS)], rows)
    assert "not torchvision's vgg16-397923af.pth" in network.note
