"""``backpropvis reproduce``: bad input is one line and status 2, before anything runs;
a run whose experiments are skipped still completes with status 0, a report and a
summary table; results already written are never lost."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from backpropvis import experiments
from backpropvis.cli import main
from backpropvis.experiments.base import Claim, ExperimentResult, Skip
from backpropvis.report.page import summary_table


@pytest.fixture(autouse=True)
def no_hub_checkpoint(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))


@pytest.mark.parametrize(
    "arguments, says",
    [
        (["fig1"], "unknown experiment 'fig1'"),
        (["--images", "{tmp}/no-such-folder"], "does not exist"),
        (["--images", "{tmp}/empty-folder"], "no images"),
        (["--vgg16-weights", "{tmp}/missing.pth"], "does not exist"),
        (["--vgg16-weights", "{tmp}/junk.pth"], "cannot read weights file"),
        (["--vgg16-weights", "{tmp}/small.pth"], "does not fit VGG16"),
        (["--seed", "x"], "invalid int value"),
        (["--out", "{tmp}/junk.pth"], "cannot use"),
    ],
)
def test_bad_input_is_one_line_and_status_2(tmp_path, capsys, arguments, says):
    (tmp_path / "junk.pth").write_bytes(b"this is not a checkpoint")
    (tmp_path / "empty-folder").mkdir()
    torch.save({"features.0.weight": torch.zeros(2, 3, 3, 3)}, tmp_path / "small.pth")
    out = tmp_path / "out"
    argv = ["reproduce", "fig3", "--out", str(out)] + [argument.format(tmp=tmp_path) for argument in arguments]
    if arguments[0] == "fig1":
        argv.remove("fig3")
    assert _status(argv) == 2
    captured = capsys.readouterr()
    assert says in captured.err and len(captured.err.strip().splitlines()) == 1 and "Traceback" not in captured.err
    assert not out.exists() and not (tmp_path / "junk.pth" / "fig3").exists()  # refused before anything ran


def _status(argv: list[str]) -> int:
    """main()'s exit status, whether it returns it or argparse exits with it."""
    try:
        return main(argv)
    except SystemExit as exit:
        return exit.code


def test_skipped_experiments_complete_with_a_report_and_keep_earlier_results(tmp_path, capsys, monkeypatch):
    # every paper figure runs offline now: two are made to skip, as an experiment that cannot run here does
    def cannot_run(settings, context):
        raise Skip("needs the trained VGG-16 (made to skip by this test)")

    for name in ("fig3", "fig9"):
        monkeypatch.setitem(experiments.PAPER, name, dataclasses.replace(experiments.PAPER[name], measure=cannot_run))
    out = tmp_path / "out"
    earlier = out / "fig2" / "metrics.json"
    earlier.parent.mkdir(parents=True)
    earlier.write_text(
        json.dumps(
            {
                "experiment": "fig2",
                "title": "an earlier run",
                "group": "paper",
                "model": "m",
                "weights": "w",
                "settings": {},
                "seconds": 1.0,
                "claims": [],
                "metrics": {},
            }
        )
    )
    assert main(["reproduce", "fig3", "fig9", "--quick", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "fig3" in printed and "fig9" in printed and "skipped: needs the trained VGG-16" in printed
    assert "0 of 0 claims hold; 2 experiment(s) skipped; 0 s" in printed
    for name in ("fig3", "fig9"):
        written = json.loads((out / name / "metrics.json").read_text())
        assert written["experiment"] == name and written["skipped"] and written["claims"] == []
    page = (out / "index.html").read_text()
    assert "an earlier run" in page and "Skipped: needs the trained VGG-16" in page
    assert json.loads(earlier.read_text())["title"] == "an earlier run"


def test_summary_table_lists_every_claim_with_its_verdict():
    claims = [
        Claim("big", "b is big", "b", ">=", 3.0).evaluate({"b": 4.25}),
        Claim("small", "s is small", "s", "<", 0.1).evaluate({"s": 0.5}),
    ]
    table = summary_table(
        [
            ExperimentResult("fig7", "t", "paper", "m", "w", {}, 12.0, claims, {}),
            ExperimentResult("fig9", "t", "paper", "-", "-", {}, 0.5, [], {}, skipped="no weights"),
        ]
    )
    lines = table.splitlines()
    assert lines[0].split() == ["experiment", "claim", "value", "threshold", "holds"]
    assert lines[1].split() == ["fig7", "big", "4.25", ">=", "3", "yes"]
    assert lines[2].split() == ["fig7", "small", "0.5", "<", "0.1", "NO"]
    assert lines[3].split() == ["fig9", "skipped:", "no", "weights"]
    assert lines[4] == "1 of 2 claims hold; 1 experiment(s) skipped; 12 s"
