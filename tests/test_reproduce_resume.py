"""``reproduce`` resumes per figure: a figure made the same way (settings, seed, device,
precision, inputs, version) is kept and said so in one line; anything else is rerun; Ctrl-C
writes the page of what finished and says how to resume, and the rerun finishes only what
was missing. Fast experiments stand in for the paper's (their measure counts its calls)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from backpropvis import experiments
from backpropvis.cli import main
from backpropvis.core.errors import Interrupted
from backpropvis.experiments.base import Claim, Measurement
from backpropvis.jobs.suite import run_suite
from backpropvis.render import save_png


def _counting(calls: list[str], interrupt: set[str]):
    def measure(settings, context):
        name = context.out.name
        if name in interrupt:
            raise KeyboardInterrupt  # Ctrl-C in the middle of this experiment
        calls.append(name)
        return Measurement({"a": 1.0 + context.seed}, "m", "w", figure={"x": np.zeros(2)})

    return measure


def _draw(data, path) -> None:
    save_png(np.zeros((4, 4, 3), dtype=np.uint8), path)


def _fakes(calls: list[str], interrupt: set[str] = frozenset()) -> list[experiments.Experiment]:
    return [
        experiments.Experiment(
            name,
            f"{name} title",
            full={"size": 10},
            quick={"size": 2},
            claims=(Claim("a_big", "a is at least 1.5", "a", ">=", 1.5),),
            measure=_counting(calls, set(interrupt)),
            draw=_draw,
        )
        for name in ("fig2", "fig3", "fig4")
    ]


def test_a_figure_made_the_same_way_is_kept_and_anything_else_rerun(tmp_path):
    calls: list[str] = []
    said: list[str] = []
    first = run_suite(_fakes(calls), tmp_path, quick=True, progress=False, say=said.append)
    assert calls == ["fig2", "fig3", "fig4"] and said == []
    again = run_suite(_fakes(calls), tmp_path, quick=True, progress=False, say=said.append)
    assert calls == ["fig2", "fig3", "fig4"]  # nothing recomputed
    assert len(said) == 3 and all("kept" in line and "\n" not in line for line in said)
    assert [result.to_json() for result in again] == [result.to_json() for result in first]
    # each difference reruns: another seed, the full settings, another precision, another image
    for options in (
        {"seed": 1},
        {"quick": False},
        {"quick": True, "precision": "default"},
        {"quick": True, "image": "x"},
    ):
        calls.clear()
        run_suite(_fakes(calls), tmp_path, progress=False, say=said.append, **{"quick": True, **options})
        assert calls == ["fig2", "fig3", "fig4"], options
    # a missing figure or a damaged metrics.json reruns that figure only
    calls.clear()
    (tmp_path / "fig3" / "figure.png").unlink()
    (tmp_path / "fig4" / "metrics.json").write_text("{not json")
    run_suite(_fakes(calls), tmp_path, quick=True, image="x", progress=False, say=said.append)
    assert calls == ["fig3", "fig4"]
    # resume=False recomputes everything
    calls.clear()
    run_suite(_fakes(calls), tmp_path, quick=True, image="x", progress=False, resume=False)
    assert calls == ["fig2", "fig3", "fig4"]


def test_a_kept_figure_is_judged_by_the_current_claims(tmp_path):
    calls: list[str] = []
    assert not run_suite(_fakes(calls), tmp_path, quick=True, progress=False)[0].claims[0].holds  # a = 1 < 1.5
    looser = [
        dataclasses.replace(experiment, claims=(Claim("a_big", "a is at least 0.5", "a", ">=", 0.5),))
        for experiment in _fakes(calls)
    ]
    kept = run_suite(looser, tmp_path, quick=True, progress=False, say=lambda line: None)
    assert len(calls) == 3 and kept[0].claims[0].holds
    assert json.loads((tmp_path / "fig2" / "metrics.json").read_text())["claims"][0]["holds"] is True


def test_ctrl_c_writes_the_page_of_what_finished_and_the_rerun_finishes_only_the_rest(tmp_path):
    calls: list[str] = []
    with pytest.raises(KeyboardInterrupt) as stopped:  # (a bare Ctrl-C on a version without resuming)
        run_suite(_fakes(calls, interrupt={"fig3"}), tmp_path, quick=True, progress=False)
    assert isinstance(stopped.value, Interrupted)  # still a KeyboardInterrupt, saying what was kept
    message = str(stopped.value)
    assert "fig3 was stopped" in message and "fig2" in message and "Run the same command again" in message
    page = (tmp_path / "index.html").read_text(encoding="utf-8")
    assert "<section id='fig2'>" in page and "<section id='fig3'>" not in page
    calls.clear()
    said: list[str] = []
    run_suite(_fakes(calls), tmp_path, quick=True, progress=False, say=said.append)
    assert calls == ["fig3", "fig4"] and len(said) == 1 and said[0].startswith("fig2: kept")


def test_the_command_says_what_it_kept_and_how_to_resume(tmp_path, capsys, monkeypatch):
    calls: list[str] = []
    for fake in _fakes(calls, interrupt={"fig4"}):
        monkeypatch.setitem(experiments.PAPER, fake.name, fake)
    command = ["reproduce", "fig2", "fig3", "fig4", "--quick", "--out", str(tmp_path)]
    assert main(command) == 130
    error = [line for line in capsys.readouterr().err.splitlines() if line.startswith("backpropvis:")]  # no bars
    assert len(error) == 1 and "interrupted: fig4 was stopped" in error[0] and "resume from fig4" in error[0]
    for fake in _fakes(calls):
        monkeypatch.setitem(experiments.PAPER, fake.name, fake)
    calls.clear()
    assert main(command) == 0
    printed = capsys.readouterr()
    assert calls == ["fig4"]
    kept_lines = [line for line in (printed.out + printed.err).splitlines() if "kept from" in line]
    assert [line.split(":")[0] for line in kept_lines] == ["fig2", "fig3"]
    calls.clear()
    assert main([*command, "--fresh"]) == 0  # recomputes everything
    assert calls == ["fig2", "fig3", "fig4"] and "kept from" not in capsys.readouterr().out
