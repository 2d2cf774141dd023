"""The protocols as extra experiments of ``reproduce``: run by the suite, shown in the report
under their own heading after the paper's figures, their figures redrawn from saved data."""

from __future__ import annotations

import dataclasses
import json

from backpropvis.jobs.suite import redraw, run_suite
from backpropvis.report.page import INDEX_FILE
from backpropvis.sanity.experiments import SANITY


def test_a_protocol_runs_in_the_suite_under_its_own_heading(tmp_path) -> None:
    experiment = SANITY["adebayo2018-digits"]
    tiny = dataclasses.replace(experiment, quick=experiment.tiny)
    [result] = run_suite([tiny], tmp_path, quick=True, progress=False)
    assert result.group == "sanity" and not result.skipped and result.claims
    page = (tmp_path / INDEX_FILE).read_text()
    assert "Sanity protocols of the field" in page and "adebayo2018-digits" in page
    folder = tmp_path / "adebayo2018-digits"
    assert (folder / "sanity.json").is_file() and not (folder / "index.html").exists()
    saved = json.loads((folder / "metrics.json").read_text())
    assert saved["details"]["sanity"]["protocol"] == "adebayo2018"
    figure = folder / "figure.png"
    figure.unlink()
    assert redraw(folder) == figure and figure.is_file() and (folder / "figure-maps.png").is_file()
