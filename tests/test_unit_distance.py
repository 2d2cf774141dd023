"""Unit distance through the class-distance store, against independent references.

- A stored row's units are the hand-computed ones (the most active channel at its peak; the
  random channel from the image's own generator) and its distance is the one of Captum's
  ``NeuronGuidedBackprop`` / ``NeuronGradient`` maps of those two neurons.
- A run stopped halfway and resumed equals an uninterrupted one, bit for bit.
- The theory study's claims hold on a random VGG-16 at tiny size, and its figure is drawn
  (what a broken method does to them: tests/test_sabotage.py, which runs every study).
"""

from __future__ import annotations

import dataclasses
import math
import sqlite3
import warnings

import pytest
import torch
from test_unit_targets import small_vgg

from backpropvis.core.errors import BackpropvisError, StoreError, TargetError
from backpropvis.experiments import THEORY, RunContext, run_experiment
from backpropvis.images.sets import Samples
from backpropvis.models import describe_module
from backpropvis.models.init import generator_for
from backpropvis.models.preprocessing import IMAGENET
from backpropvis.stats import (
    format_unit_distance,
    read_database,
    run_class_distance,
    run_unit_distance,
    summarize_unit_distance,
)

captum_attr = pytest.importorskip("captum.attr")

LAYERS = ["features.2", "features.5", "classifier.0"]


def run(db, limit=None, layers=LAYERS, **options):
    return run_unit_distance(
        Samples(2, 0),
        db,
        layers=layers,
        model=describe_module(small_vgg(), "small-vgg", "random", 32),
        batch_size=3,
        workers=0,
        progress=False,
        limit=limit,
        **options,
    )


def rows_of(db) -> list[tuple]:
    with sqlite3.connect(db) as connection:
        return connection.execute("SELECT * FROM results ORDER BY image, method").fetchall()


def unit_l2_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double().flatten(), b.double().flatten()
    return float((a / a.norm() - b / b.norm()).norm())


def test_a_stored_row_is_the_distance_of_captums_maps_of_the_two_units(tmp_path) -> None:
    db = tmp_path / "units.sqlite"
    run(db, limit=4)
    stored = {(row["image"], row["method"]): row for row in read_database(db).results}
    model = small_vgg()
    samples = Samples(2, 0)
    preprocess = IMAGENET.resized(32)
    for key in samples.keys()[:4]:
        x = preprocess(samples.load(key))[None]
        with torch.no_grad():
            activation = model.features[:6](x)[0]  # features.5 (a convolution) [16, 16, 16]
        peaks = activation.flatten(1).amax(dim=1)
        channel = int(peaks.argmax())
        flat = int(activation[channel].flatten().argmax())
        y, x_ = divmod(flat, 16)
        draws = generator_for(0, "unit pairs", key)  # the first layer draws first
        offsets = [int(torch.randint(0, 7, (1,), generator=draws))]  # features.2: 8 channels
        offset = int(torch.randint(0, 15, (1,), generator=draws))  # features.5: 16 channels
        other = offset + (offset >= channel)
        row = stored[(key, "gbp@features.5")]
        assert (row["first_logit"], row["second_logit"]) == (channel, other), key
        assert row["first_name"] == f"features.5:{channel}@{y},{x_}" and offsets
        for method, explainer in (("gbp", captum_attr.NeuronGuidedBackprop), ("saliency", captum_attr.NeuronGradient)):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                maps = [
                    explainer(model, model.features[5]).attribute(x.clone(), neuron_selector=(unit, y, x_))
                    for unit in (channel, other)
                ]
            expected = unit_l2_distance(*maps)
            assert math.isclose(stored[(key, f"{method}@features.5")]["class_distance"], expected, rel_tol=1e-4)


def test_a_resumed_run_equals_an_uninterrupted_one(tmp_path) -> None:
    first = run(tmp_path / "resumed.sqlite", limit=5)  # stops after 5 of 8 images, as after a kill
    assert first.done_now == 5
    resumed = run(tmp_path / "resumed.sqlite")
    assert (resumed.already_done, resumed.done_now) == (5, 3)
    run(tmp_path / "whole.sqlite")
    whole, again = rows_of(tmp_path / "whole.sqlite"), rows_of(tmp_path / "resumed.sqlite")
    assert len(whole) == 8 * 3 * len(LAYERS)
    assert [row[1:] for row in again] == [row[1:] for row in whole]


def test_other_layers_are_another_run_and_a_class_distance_database_is_not_summarized(tmp_path) -> None:
    db = tmp_path / "units.sqlite"
    run(db, limit=2)
    with pytest.raises(StoreError, match="pairs"):
        run(db, limit=2, layers=LAYERS[:2])
    with pytest.raises(TargetError, match="no layer named 'features.55'"):
        run(tmp_path / "typo.sqlite", layers=["features.55"])
    assert not (tmp_path / "typo.sqlite").exists()  # a typo leaves no database to clash with the corrected run
    with pytest.raises(BackpropvisError, match="layer is named twice"):
        run(tmp_path / "twice.sqlite", layers=["features.2", "features.2"])
    logits = tmp_path / "logits.sqlite"
    model = describe_module(small_vgg(), "small-vgg", "random", 32)
    run_class_distance(Samples(0, 0), logits, model=model, workers=0, progress=False, limit=2)
    with pytest.raises(BackpropvisError, match="class-distance run, not a unit-distance run"):
        summarize_unit_distance([logits])


def test_the_summary_has_one_curve_per_method_over_the_layers(tmp_path) -> None:
    db = tmp_path / "units.sqlite"
    run(db)
    summary = summarize_unit_distance([db])
    assert summary["layers"] == LAYERS and set(summary["methods"]) == {"saliency", "deconvnet", "gbp"}
    stored = read_database(db).results
    for method, curves in summary["methods"].items():
        for number, layer in enumerate(LAYERS):
            values = [row["class_distance"] for row in stored if row["method"] == f"{method}@{layer}"]
            assert math.isclose(curves["distance"]["mean"][number], sum(values) / len(values), rel_tol=1e-12)
            assert curves["distance"]["low"][number] <= curves["distance"]["mean"][number]
            assert curves["distance"]["mean"][number] <= curves["distance"]["high"][number]
    assert summary["photos"] == 6 and "fewer than 20" in " ".join(summary["notes"])
    assert "classifier.0" in format_unit_distance(summary)


def test_the_theory_study_holds_at_tiny_size_and_draws_its_curves(tmp_path) -> None:
    experiment = dataclasses.replace(THEORY["unit-distance"], quick=THEORY["unit-distance"].tiny)
    result = run_experiment(experiment, RunContext(out=tmp_path, quick=True, progress=False))
    failing = [claim.id for claim in result.claims if not claim.holds]
    assert not failing, failing
    assert (tmp_path / "figure.png").stat().st_size > 10_000
    metrics = result.metrics
    assert metrics["gbp_distance_classifier.3"] < metrics["gbp_distance_features.2"]  # conv1_2 -> fc2
