"""Figure 7 at its tiny size: one pipeline for every image source (a folder with bad files,
the samples and their crops, the held-out digits), five bar groups, intervals over source
photos, resumable databases."""

from __future__ import annotations

import dataclasses
import sqlite3

import pytest
import torch

from backpropvis.core.errors import ImageError
from backpropvis.experiments import PAPER, RunContext, fig7, run_experiment
from backpropvis.images.samples import load_image, sample_names
from backpropvis.images.sets import Digits, Samples

METHODS = ("saliency", "deconvnet", "gbp")


@pytest.fixture
def no_hub_checkpoint(monkeypatch, tmp_path):
    """An empty torch hub cache, so that no real VGG-16 checkpoint is found (the stand-ins run, as in CI)."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))


def run_tiny(out, changes=None, **context):
    experiment = dataclasses.replace(PAPER["fig7"], quick=dict(PAPER["fig7"].tiny, **(changes or {})))
    return run_experiment(experiment, RunContext(out=out / "fig7", quick=True, seed=0, progress=False, **context))


def test_fig7_over_an_image_folder_skips_bad_files_and_claims_hold(tmp_path, no_hub_checkpoint):
    folder = tmp_path / "images"
    (folder / "class-a").mkdir(parents=True)
    (folder / "class-b").mkdir()
    for number, name in enumerate(sample_names()[:4]):
        load_image(name).resize((160, 120)).save(folder / ("class-a" if number % 2 else "class-b") / f"{name}.png")
    (folder / "class-b" / "broken.jpg").write_bytes(b"not a jpeg")
    (folder / "class-a" / "labels.txt").write_text("not an image")
    result = run_tiny(tmp_path, {"max_images": 8}, images=folder)  # every file of the folder
    assert result.metrics["images"] == 4 and result.metrics["random_photos"] == 4  # each file is its own photo
    assert any("1 unreadable" in note for note in result.notes)
    verdicts = {claim.id: claim.holds for claim in result.claims}
    assert len(verdicts) == 13
    for claim in (
        "random_saliency_3x_gbp",
        "trained_saliency_3x_gbp",
        "trained_saliency_3x_deconvnet",
        "twin_saliency_3x_gbp",
        "trained_gbp_class_insensitive",
    ):
        assert verdicts[claim], claim
    assert [net["label"] for net in result.details["networks"]] == list(fig7.GROUPS)
    assert result.details["networks"][-1]["images"] == "digits-test"  # the digits networks see the digits
    for net in fig7.GROUPS:
        for method in METHODS:
            mean = result.metrics[f"{net}_{method}_distance"]
            assert 0.0 <= result.metrics[f"{net}_{method}_ci_low"] <= mean <= result.metrics[f"{net}_{method}_ci_high"]
            assert mean <= 2.0
    assert (tmp_path / "fig7" / "figure.png").is_file()


def test_fig7_over_a_folder_of_only_broken_images_is_a_user_error(tmp_path, no_hub_checkpoint):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ImageError, match="none of the 1 images could be read"):
        run_tiny(tmp_path, images=tmp_path / "images")


def test_fig7_over_the_samples_crops_and_digits_resumes_from_its_databases(tmp_path, no_hub_checkpoint):
    result = run_tiny(tmp_path, {"crops": 2, "max_images": None, "digits_images": 5})
    keys = Samples(crops=2, seed=0).keys()
    assert result.metrics["images"] == len(keys) and sorted(result.details["images"]) == sorted(keys)
    assert result.metrics["random_photos"] == len(sample_names())  # 8 images, 6 photos: crops are not independent
    assert result.metrics["digits_trained_images"] == 5 == result.metrics["digits_trained_photos"]
    assert any("6 bundled sample images and 2 seeded random crops" in note for note in result.notes)
    databases = sorted(path.name for path in (tmp_path / "fig7").glob("*.sqlite"))
    assert len(databases) == 5
    assert sum("samples+2crops-seed0" in name for name in databases) == 3
    assert sum(Digits().setting in name for name in databases) == 2
    again = run_tiny(tmp_path, {"crops": 2, "max_images": None, "digits_images": 5})  # read back, not recomputed
    assert again.metrics == result.metrics
    for name in databases:
        with sqlite3.connect(tmp_path / "fig7" / name) as connection:
            done = [row[0] for row in connection.execute("SELECT images_done FROM sessions ORDER BY id")]
            assert done == [5 if "digits" in name else len(keys), 0], name


def test_tiny_settings_keep_every_full_setting():
    assert set(PAPER["fig7"].tiny) == set(PAPER["fig7"].full) == set(PAPER["fig7"].quick)
