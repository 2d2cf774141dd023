"""The experiment contract catches mistakes: an unknown metric in a claim is an error, a
registered module that cannot be imported is an error, and measuring and drawing are
separate steps (a figure is redrawn from its result folder without computing anything)."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
import types

import numpy as np
import pytest
import torch
from PIL import Image

import backpropvis.experiments.method_maps
from backpropvis.core.errors import BackpropvisError
from backpropvis.experiments import (
    PAPER,
    Claim,
    Experiment,
    FigureData,
    Measurement,
    RunContext,
    UnknownMetricError,
    collect_experiments,
    run_experiment,
    select,
)
from backpropvis.jobs.suite import redraw, run_suite

TINY_FIG4 = dict(PAPER["fig4"].quick, input_size=48, num_filters=64, hidden=256)


def toy(claims, figure=None, drawn=None) -> Experiment:
    """An experiment measuring a = 1 and b = NaN; its draw records the FigureData it got."""

    def measure(settings, context):
        return Measurement({"a": 1.0, "b": math.nan}, "toy", "none", figure=figure or {})

    def draw(data: FigureData, path) -> None:
        if drawn is not None:
            drawn.append(data)
        Image.new("RGB", (4, 4)).save(path)

    return Experiment("toy", "a toy", {}, {}, tuple(claims), measure, draw)


def test_a_claim_on_a_metric_that_was_not_measured_is_an_error(tmp_path):
    experiment = toy([Claim("fine", "a is 1", "a", ">=", 1.0), Claim("typo", "c is big", "c", ">", 0.0)])
    with pytest.raises(UnknownMetricError, match="'typo' reads metric 'c'.*measured: a, b"):
        run_experiment(experiment, RunContext(out=tmp_path / "toy"))
    assert not (tmp_path / "toy" / "figure.png").exists()  # refused before anything was drawn
    # a measured NaN is a finding: the claim does not hold
    result = run_experiment(toy([Claim("nan", "b is big", "b", ">", 0.0)]), RunContext(out=tmp_path / "nan"))
    assert [claim.holds for claim in result.claims] == [False] and result.figure == "figure.png"


def test_draw_reads_the_saved_figure_data(tmp_path):
    drawn: list[FigureData] = []
    figure = {"map": torch.arange(6.0).reshape(2, 3), "label": "tabby", "names": ["a", "bc"], "count": 3}
    run_experiment(toy([], figure, drawn), RunContext(out=tmp_path / "toy"))
    (data,) = drawn
    assert torch.equal(data.tensor("map"), torch.arange(6.0).reshape(2, 3))
    assert data.text("label") == "tabby" and data.texts("names") == ["a", "bc"] and int(data.arrays["count"]) == 3
    assert data.metrics["a"] == 1.0 and data.model == "toy"
    with np.load(tmp_path / "toy" / "figure_data.npz", allow_pickle=False) as saved:  # no pickle needed
        assert sorted(saved.files) == ["count", "label", "map", "names"]
    with pytest.raises(TypeError, match="'odd' must be numbers or strings"):
        run_experiment(toy([], {"odd": {"a": 1}}), RunContext(out=tmp_path / "odd"))


def test_a_figure_is_redrawn_from_its_result_folder_without_computing(tmp_path, monkeypatch):
    experiment = dataclasses.replace(PAPER["fig4"], quick=TINY_FIG4)
    run_suite([experiment], tmp_path, quick=True, progress=False)
    folder = tmp_path / "fig4"
    original = np.asarray(Image.open(folder / "figure.png"))
    (folder / "figure.png").unlink()
    page = (tmp_path / "index.html").read_text()

    def no_maps(*args, **kwargs):
        raise AssertionError("redraw computed maps")

    monkeypatch.setattr(backpropvis.experiments.method_maps, "attribute_many", no_maps)
    assert redraw(folder) == folder / "figure.png"
    assert np.array_equal(np.asarray(Image.open(folder / "figure.png")), original)
    assert (tmp_path / "index.html").read_text() == page  # the report is rebuilt with the same figure
    assert json.loads((folder / "metrics.json").read_text())["figure"] == "figure.png"

    (tmp_path / "empty").mkdir()
    with pytest.raises(BackpropvisError, match="not an experiment's result folder"):
        redraw(tmp_path / "empty")


def test_a_selection_runs_in_the_papers_figure_order_whatever_the_order_asked():
    chosen = select(PAPER, ["fig8", "fig2", "fig6"])
    assert [experiment.name for experiment in chosen] == ["fig2", "fig6", "fig8"]
    numbers = [int(name.removeprefix("fig")) for name in PAPER]
    assert numbers == sorted(numbers) and [experiment.name for experiment in select(PAPER, ["all"])] == list(PAPER)
    with pytest.raises(BackpropvisError, match="unknown experiment 'fig1'"):
        select(PAPER, ["fig2", "fig1"])


def test_the_registry_refuses_modules_without_an_experiment():
    stray = types.ModuleType("backpropvis.experiments.stray")
    with pytest.raises(TypeError, match="stray must declare EXPERIMENT"):
        collect_experiments([stray], "paper")
    twice = types.ModuleType("twice")
    twice.EXPERIMENT = PAPER["fig4"]
    with pytest.raises(ValueError, match="two experiments are named 'fig4'"):
        collect_experiments([twice, twice], "paper")
    with pytest.raises(TypeError, match="group 'theory'"):
        collect_experiments([twice], "theory")


def test_a_registered_module_that_cannot_be_imported_is_an_error():
    code = "import sys; sys.modules['backpropvis.experiments.fig5'] = None; import backpropvis.experiments"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "backpropvis.experiments.fig5" in done.stderr
