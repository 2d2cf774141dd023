"""Image sources: the bundled samples with seeded crops (fig7's default images) and the
held-out digits, read by key through the class-distance pipeline; a crop is checked against
its photo, found by search, and a digit against scikit-learn's raw pixels."""

from __future__ import annotations

import re

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from backpropvis.cli import main
from backpropvis.core.errors import ImageError
from backpropvis.images.samples import load_image, sample_names
from backpropvis.images.sets import Digits, Samples, list_images, read_image, source_photo
from backpropvis.models import describe_module, digits_vgg, three_layer_cnn, three_layer_fcn
from backpropvis.stats import read_database, run_class_distance

PHOTOS = sample_names()


def _window_of(photo: np.ndarray, crop: np.ndarray) -> bool:
    """Whether ``crop`` [s, s, 3] is a window of ``photo`` [H, W, 3], searched over every position."""
    side = crop.shape[0]
    rows = sliding_window_view(photo, (side, 3), axis=(1, 2))[:, :, 0]  # [H, W - s + 1, s, 3]
    starts = np.argwhere((rows == crop[0]).all(axis=(2, 3)))
    return any(
        y + side <= photo.shape[0] and np.array_equal(photo[y : y + side, x : x + side], crop) for y, x in starts
    )


def test_crop_keys_name_their_photo_and_are_seeded():
    keys = Samples(crops=26, seed=3).keys()
    assert keys[: len(PHOTOS)] == PHOTOS and len(keys) == len(PHOTOS) + 26
    for key in keys[len(PHOTOS) :]:
        assert re.fullmatch(r"[a-z]+#crop\d\d", key) and source_photo(key) in PHOTOS, key
    assert [source_photo(key) for key in PHOTOS] == PHOTOS
    assert Samples(crops=26, seed=3).keys() == keys
    assert Samples(crops=10, seed=3).keys() == keys[: len(PHOTOS) + 10]  # a longer list extends a shorter one
    other = Samples(crops=26, seed=4)
    assert other.keys() != keys or not np.array_equal(
        np.asarray(other.load(keys[-1])), np.asarray(Samples(26, 3).load(keys[-1]))
    )
    assert list_images(Samples(26, 3), limit=8) == keys[:8]
    assert list_images(None) == PHOTOS


@pytest.mark.parametrize("number", [0, 5])
def test_a_crop_is_a_square_window_of_its_photo(number):
    samples = Samples(crops=6, seed=0)
    key = samples.keys()[len(PHOTOS) + number]
    crop = np.asarray(samples.load(key))
    photo = np.asarray(load_image(source_photo(key)))
    side = crop.shape[0]
    assert crop.shape == (side, side, 3)
    assert 0.35 * min(photo.shape[:2]) - 1 <= side <= 0.9 * min(photo.shape[:2])
    assert _window_of(photo, crop) or _window_of(photo, crop[:, ::-1])  # mirrored half of the time
    assert np.array_equal(np.asarray(samples.load(key)), crop)  # the same pixels every time


def test_unknown_keys_are_refused():
    samples = Samples(crops=3, seed=0)
    crop = samples.keys()[-1]
    wrong_photo = next(name for name in PHOTOS if name != source_photo(crop)) + crop[crop.index("#") :]
    for key in ("lena", crop.replace("#crop02", "#crop03"), wrong_photo, "tabby#cropx"):
        with pytest.raises(ImageError, match="is not an image of the 6 bundled sample images and 3 seeded"):
            samples.load(key)
        assert read_image(samples, key).picture is None
    with pytest.raises(ImageError, match="0 or more"):
        Samples(crops=-1)


def test_samples_with_crops_run_through_the_class_distance_pipeline(tmp_path):
    samples = Samples(crops=2, seed=0)
    common = dict(
        methods=["saliency", "gbp"],
        pairs="random-random",
        seed=0,
        batch_size=4,
        workers=0,
        progress=False,
    )
    cnn, fcn = three_layer_cnn(num_filters=8, input_size=32, seed=0), three_layer_fcn(hidden=16, input_size=32, seed=0)
    run_class_distance(samples, tmp_path / "a.sqlite", model=describe_module(cnn, "cnn", "random"), **common)
    run_class_distance(samples, tmp_path / "b.sqlite", model=describe_module(fcn, "fcn", "random"), **common)
    first, second = read_database(tmp_path / "a.sqlite"), read_database(tmp_path / "b.sqlite")
    assert sorted({row["image"] for row in first.results}) == sorted(samples.keys())
    assert first.settings.images == "samples+2crops-seed0" and not first.failures
    # the pair of logits depends on the seed and the image's key only: the same in both networks
    pairs = {(row["image"], row["first_logit"], row["second_logit"]) for row in first.results}
    assert pairs == {(row["image"], row["first_logit"], row["second_logit"]) for row in second.results}


def test_cli_crops_go_with_samples(tmp_path, capsys):
    assert main(["class-distance", "--images", str(tmp_path), "--crops", "2", "--db", str(tmp_path / "x.sqlite")]) == 2
    assert "--crops goes with --samples" in capsys.readouterr().err


def test_digits_keys_name_their_position_in_scikit_learns_digits():
    """A digit's key is its index in load_digits(): its picture is that digit, upsampled
    (checked against scikit-learn's raw 8 x 8 pixels, averaged back down to 8 x 8)."""
    from sklearn.datasets import load_digits

    raw = load_digits().images  # [1797, 8, 8], grey levels 0-16
    digits = Digits()
    keys = digits.keys()
    assert len(keys) == len(set(keys)) > 300 and keys == sorted(keys)
    assert all(re.fullmatch(r"digit\d{4}", key) and source_photo(key) == key for key in keys)  # each its own photo
    for key in (keys[0], keys[-1]):
        picture = np.asarray(digits.load(key), dtype=np.float64)  # [32, 32, 3]
        assert picture.shape == (32, 32, 3) and np.array_equal(picture[..., 0], picture[..., 2])
        shrunk = picture[..., 0].reshape(8, 4, 8, 4).mean(axis=(1, 3)) / 255 * 16
        other = raw[int(key[5:]) + 1]
        assert np.abs(shrunk - raw[int(key[5:])]).mean() < np.abs(shrunk - other).mean()
        assert np.corrcoef(shrunk.ravel(), raw[int(key[5:])].ravel())[0, 1] > 0.9
    assert list_images(digits, limit=3) == keys[:3]
    assert set(Digits("train").keys()).isdisjoint(keys)  # held out: not among the training digits
    assert read_image(digits, "digit9999").picture is None and "is not an image of" in read_image(digits, "x").reason
    with pytest.raises(ImageError, match="unknown digits split"):
        Digits("validation")


def test_digits_run_through_the_class_distance_pipeline(tmp_path):
    run_class_distance(
        Digits(),
        tmp_path / "d.sqlite",
        model=describe_module(digits_vgg("trained"), "digits-vgg", "trained"),
        methods=["saliency", "gbp"],
        pairs="random-random",
        seed=0,
        limit=6,
        batch_size=4,
        workers=0,
        progress=False,
    )
    stored = read_database(tmp_path / "d.sqlite")
    assert stored.settings.images == "digits-test" and not stored.failures
    assert sorted({row["image"] for row in stored.results}) == Digits().keys()[:6]
    assert {row["first_logit"] for row in stored.results} | {row["second_logit"] for row in stored.results} <= set(
        range(10)
    )
