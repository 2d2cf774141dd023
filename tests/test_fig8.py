"""Figure 8 at its tiny size: every image attacked at the declared steps, the smallest
flipping step found by search checked against separate FGSM attacks, and the fraction of
adversarial examples on which each statement holds."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from backpropvis.attacks.fgsm import fgsm
from backpropvis.experiments import PAPER, RunContext, fig8, run_experiment
from backpropvis.experiments.networks import input_pipeline
from backpropvis.images.samples import load_image
from backpropvis.models import efficientnet_lite0


@pytest.fixture
def no_hub_checkpoint(monkeypatch, tmp_path):
    """An empty torch hub cache, so that no real VGG-16 checkpoint is found (the stand-in runs, as in CI)."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))


def test_fig8_every_image_at_every_declared_step(tmp_path, no_hub_checkpoint):
    settings = PAPER["fig8"].tiny
    experiment = dataclasses.replace(PAPER["fig8"], quick=settings)
    result = run_experiment(experiment, RunContext(out=tmp_path / "fig8", quick=True, seed=0, progress=False))
    metrics, details = result.metrics, result.details
    assert details["categories"] == ["smallest", "1", "2", "4"]
    assert details["steps_255"] == sorted({*settings["ladder"], *settings["fixed"]})
    assert any("'tabby' replaces the paper's 'panda'" in note for note in result.notes)

    # The smallest flipping step of each image, checked against separate FGSM attacks on the model alone.
    model = efficientnet_lite0()
    pipeline = input_pipeline(model, settings["size"])
    for image in settings["images"]:
        pixels = pipeline.unnormalize(pipeline.batch([load_image(image)]))
        with torch.no_grad():
            original = int(model(pipeline.normalize(pixels)).argmax())
        assert details["original_classes"][image][0] == original

        def predicted(step: float, pixels: torch.Tensor = pixels, original: int = original) -> int:
            adversarial = fgsm(
                lambda batch: model(pipeline.normalize(batch)), pixels, original, step / 255, bounds=(0.0, 1.0)
            )
            with torch.no_grad():
                return int(model(pipeline.normalize(adversarial)).argmax())

        flipping = [step for step in sorted(settings["ladder"]) if predicted(step) != original]
        entries = [entry for entry in details["per_image"]["smallest"] if entry["image"] == image]
        if flipping:
            assert [entry["step"] for entry in entries] == [flipping[0]], image
            assert entries[0]["flipped"] and entries[0]["predicted"] != original
        else:
            assert entries == []
        fixed = next(entry for entry in details["per_image"]["1"] if entry["image"] == image)
        assert fixed["flipped"] == (predicted(1.0) != original)

    # per step: the fraction of adversarial examples on which each statement holds
    for key in details["categories"]:
        examples = [entry for entry in details["per_image"][key] if entry["flipped"]]
        assert metrics[f"adversarial_examples_at_{key}"] == len(examples)
        for statement in fig8.STATEMENTS:
            expected = sum(entry["holds"][statement] for entry in examples) / len(examples)
            assert metrics[f"{statement}_fraction_at_{key}"] == pytest.approx(expected)
        for entry in examples:  # the statements read the class distances as declared
            distance = entry["distance"]
            assert entry["holds"]["saliency_3x_gbp"] == (distance["saliency"] >= 3 * distance["gbp"] > 0)
            assert entry["holds"]["gbp_unchanged"] == (distance["gbp"] < 2**0.5 / 3)
    verdicts = {claim.id: claim.holds for claim in result.claims}
    assert verdicts["saliency_3x_deconvnet_at_smallest"] and verdicts["saliency_3x_gbp_at_smallest"]
    assert (tmp_path / "fig8" / "figure.png").is_file()


def test_tiny_settings_keep_every_full_setting():
    assert set(PAPER["fig8"].tiny) == set(PAPER["fig8"].full) == set(PAPER["fig8"].quick)
    assert PAPER["fig8"].tiny["fixed"] == PAPER["fig8"].full["fixed"]  # the claims name the fixed steps
