"""Claims that a broken method cannot pass: every experiment, run at its tiny settings with
the engine deliberately broken in each way it declares (``Experiment.catches``), has at
least one claim that does not hold; and every experiment declares the two sabotages the
project requires of all of them that look at the broken method.

The honest tiny runs are shared with a rendering check: every experiment's figure, redrawn
from its tiny run's figure data, has every text inside the picture (no clipped title)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from matplotlib.figure import Figure
from sabotage import sabotaged

from backpropvis.core.rules import PAPER_METHODS
from backpropvis.experiments import PAPER, THEORY, RunContext, run_experiment
from backpropvis.experiments.base import FIGURE_FILE
from backpropvis.jobs.suite import redraw
from backpropvis.render import clipped_texts
from backpropvis.report.page import write_result

EXPERIMENTS = {**PAPER, **THEORY}


@pytest.fixture
def no_hub_checkpoint(monkeypatch, tmp_path):
    """No trained VGG-16 in the torch hub cache: the offline stand-ins run, as in CI."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))


def run_tiny(name: str, out, progress: bool = False):
    experiment = EXPERIMENTS[name]
    experiment = dataclasses.replace(experiment, quick=experiment.tiny or experiment.quick)
    return run_experiment(experiment, RunContext(out=out / name, quick=True, seed=0, progress=progress))


CASES = [(name, kind) for name, experiment in EXPERIMENTS.items() for kind in experiment.catches]


def test_every_experiment_declares_what_it_catches() -> None:
    """At least the plain gradient in place of every method; GBP's zero map wherever GBP
    is looked at (an experiment that does not compute GBP cannot catch it)."""
    for name, experiment in EXPERIMENTS.items():
        assert experiment.tiny, f"{name} declares no tiny settings"
        assert "plain-gradient" in experiment.catches, f"{name} does not catch the plain gradient"
        assert "zero-gbp" in experiment.catches, f"{name} does not catch a zero GBP map"
    assert set(PAPER_METHODS) >= {kind.removeprefix("zero-") for _, kind in CASES if kind.startswith("zero-")}


@pytest.fixture(scope="module")
def honest_runs(tmp_path_factory):
    """Each experiment run once honestly at its tiny settings, on demand (every sabotage
    of an experiment is compared with the same honest run)."""
    cache = {}

    def run(name: str):
        if name not in cache:
            with pytest.MonkeyPatch.context() as patch:  # no trained VGG-16 in the hub cache, as in CI
                hub = tmp_path_factory.mktemp("hub")
                patch.setattr(torch.hub, "get_dir", lambda: str(hub))
                folder = tmp_path_factory.mktemp(f"{name}-honest")
                cache[name] = run_tiny(name, folder), folder / name
        return cache[name]

    return run


@pytest.mark.parametrize("name, kind", CASES, ids=[f"{name}-{kind}" for name, kind in CASES])
def test_a_broken_method_fails_a_claim(name: str, kind: str, tmp_path, no_hub_checkpoint, honest_runs) -> None:
    honest, _ = honest_runs(name)
    assert not honest.skipped, f"{name} was skipped: {honest.skipped}"
    with sabotaged(kind):
        broken = run_tiny(name, tmp_path / "broken")
    failing = [claim.id for claim in broken.claims if not claim.holds]
    assert failing, f"{name}: every claim still holds with {kind}"
    # what fails must be something the honest run got right: the sabotage, not a finding, is caught
    held = {claim.id for claim in honest.claims if claim.holds}
    assert held & set(failing), f"{name}: under {kind} only claims that already fail honestly fail ({failing})"


@pytest.mark.parametrize("name", list(EXPERIMENTS))
def test_no_text_of_a_figure_is_clipped(name: str, honest_runs, monkeypatch) -> None:
    """Every title, label and caption of the figure lies inside it, measured by matplotlib's
    renderer on the figure as drawn from the tiny run's data (fig4's title was cut on both sides)."""
    honest, folder = honest_runs(name)
    write_result(honest, folder.parent)  # metrics.json beside figure_data.npz: a result folder redraw reads
    clipped: list[str] = []
    original = Figure.savefig

    def checked_savefig(figure, *args, **kwargs):
        clipped.extend(clipped_texts(figure))  # after the draw function's layout, before writing
        return original(figure, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", checked_savefig)
    redraw(folder)
    assert (folder / FIGURE_FILE).is_file()
    assert not clipped, f"{name}: text outside the figure: {clipped}"
