"""The digits VGG: its data (scikit-learn's digits, upsampled, a fixed stratified split),
the shipped checkpoint, its random twin, deterministic training and the retraining command."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

import backpropvis
from backpropvis.core.errors import ModelError, WeightsError
from backpropvis.models import DigitsVGG, build_model, digits_vgg, load_digits_split
from backpropvis.models.digits_data import DIGITS_PREPROCESSING
from backpropvis.models.digits_training import TrainingSettings, accuracy, main, save_checkpoint, train_digits_vgg
from backpropvis.models.digits_vgg import DIGITS_VGG_LAYERS, digits_vgg_checkpoint

sklearn_datasets = pytest.importorskip("sklearn.datasets")


@pytest.fixture(scope="module")
def test_digits():
    return load_digits_split("test")


def test_split_is_a_stratified_partition_of_scikit_learns_digits(test_digits):
    reference = sklearn_datasets.load_digits()
    train = load_digits_split("train")
    test_positions, train_positions = set(test_digits.indices.tolist()), set(train.indices.tolist())
    assert not test_positions & train_positions and len(test_positions | train_positions) == 1797
    for digits in (train, test_digits):
        assert torch.equal(digits.labels, torch.from_numpy(reference.target[digits.indices.numpy()]))
    counts = np.bincount(reference.target)
    assert np.array_equal(np.bincount(test_digits.labels.numpy()), np.round(0.2 * counts).astype(int))
    assert torch.equal(load_digits_split("test").indices, test_digits.indices)  # fixed, not redrawn per call
    with pytest.raises(ModelError, match="split"):
        load_digits_split("validation")


def test_images_are_the_upsampled_digits_in_the_models_scale(test_digits):
    reference = sklearn_datasets.load_digits()
    assert test_digits.inputs.shape == (len(test_digits), 3, 32, 32) and test_digits.inputs.dtype == torch.float32
    first = test_digits.images[0]
    assert first.size == (32, 32) and first.mode == "RGB"
    pixels = torch.from_numpy(np.asarray(first, dtype=np.float32) / 255).permute(2, 0, 1)
    assert torch.allclose(DIGITS_PREPROCESSING.unnormalize(test_digits.inputs[0]), pixels, atol=1e-6)
    # each 4 x 4 block of the bilinear upsampling averages close to its 8 x 8 source pixel (0-16 -> 0-1)
    blocks = pixels[0].reshape(8, 4, 8, 4).mean((1, 3))
    source = torch.from_numpy(reference.images[int(test_digits.indices[0])] / 16).float()
    assert float((blocks - source).abs().mean()) < 0.08
    assert float(torch.corrcoef(torch.stack([blocks.flatten(), source.flatten()]))[0, 1]) > 0.95


def test_shipped_checkpoint_classifies_the_held_out_digits(test_digits):
    path = digits_vgg_checkpoint()
    assert path.is_file() and path.stat().st_size < 300_000
    model = digits_vgg("trained")
    assert isinstance(model, DigitsVGG) and not model.training
    assert accuracy(model, test_digits) >= 0.97  # 0.983 when it was written
    assert model.class_names[7] == "7" and model.preprocessing == DIGITS_PREPROCESSING
    assert "trained" in model.weights_description


def test_built_by_name_with_trained_random_or_a_path(tmp_path):
    trained = build_model("digits-vgg", "trained")
    twin = build_model("digits-vgg", "random", seed=2)
    assert "random (seed 2)" in twin.weights_description
    path = tmp_path / "copy.pt"
    save_checkpoint(trained, path)
    loaded = build_model("digits-vgg", str(path))
    for key, value in trained.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)
        assert not torch.equal(twin.state_dict()[key], value)
    torch.save({"conv1_1.weight": torch.zeros(1)}, tmp_path / "wrong.pt")
    with pytest.raises(WeightsError, match="does not fit"):
        build_model("digits-vgg", str(tmp_path / "wrong.pt"))


def test_random_twin_has_the_paper_init():
    twin = digits_vgg("random", seed=0)
    weights = torch.cat([twin.get_submodule(name).weight.detach().flatten() for name in DIGITS_VGG_LAYERS]).double()
    truncated = stats.truncnorm(-2.0, 2.0, scale=0.1)
    assert float(weights.std()) == pytest.approx(truncated.std(), rel=0.02)  # 42 k values
    assert float(weights.abs().max()) <= 0.2 + 1e-7
    assert all(torch.count_nonzero(twin.get_submodule(name).bias) == 0 for name in DIGITS_VGG_LAYERS)
    assert not torch.equal(twin.fc1.weight, digits_vgg("random", seed=1).fc1.weight)


def test_maps_of_the_trained_net_equal_captums(test_digits):
    """One nn.ReLU module per activation, so Captum's hooks see every one: an independent
    reference for all three methods on this network."""
    captum_attr = pytest.importorskip("captum.attr")
    model = digits_vgg("trained")
    x, target = test_digits.inputs[:3], test_digits.labels[:3]
    ours = backpropvis.attribute_many(model, x, [target], ["saliency", "deconvnet", "gbp"])
    references = {
        "saliency": captum_attr.Saliency(model).attribute(x.clone(), target=target, abs=False),
        "deconvnet": captum_attr.Deconvolution(model).attribute(x.clone(), target=target),
        "gbp": captum_attr.GuidedBackprop(model).attribute(x.clone(), target=target),
    }
    for method, reference in references.items():
        error = float((ours[method][0] - reference).norm() / reference.norm())
        assert error < 1e-5, method
    assert float((ours["gbp"][0] - ours["saliency"][0]).norm() / ours["gbp"][0].norm()) > 0.1


def test_training_is_deterministic_and_learns():
    settings = TrainingSettings(epochs=3, train_images=512, seed=4)
    first = train_digits_vgg(settings, progress=False)
    state = torch.random.get_rng_state()
    second = train_digits_vgg(settings, progress=False)
    assert torch.equal(torch.random.get_rng_state(), state)  # no global random draw
    for key, value in first.model.state_dict().items():
        assert torch.equal(second.model.state_dict()[key], value), key
    # 24 steps on 512 digits: far from the shipped 98 %, but above chance (10 %)
    assert first.losses[-1] < 0.8 * first.losses[0] and first.test_accuracy > 0.25


def test_retraining_command_writes_the_same_file_twice(tmp_path, capsys):
    arguments = ["--epochs", "1", "--train-images", "128", "--seed", "1"]
    assert main([*arguments, "--out", str(tmp_path / "a.pt")]) == 0
    assert main([*arguments, "--out", str(tmp_path / "b.pt")]) == 0
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()
    assert "test accuracy" in capsys.readouterr().out
    loaded = digits_vgg(tmp_path / "a.pt")
    assert isinstance(loaded, nn.Module) and str(tmp_path / "a.pt") in loaded.weights_description
    assert main(["--epochs", "0", "--out", str(tmp_path / "c.pt")]) == 2
    assert "epochs must be at least 1" in capsys.readouterr().err and not (tmp_path / "c.pt").exists()
