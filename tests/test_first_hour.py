"""The traps of a newcomer's first hour, each fixed and kept fixed: the output folders the
README's commands write are ignored by git (``git status`` stays clean after them);
``visualize``'s first picture comes from a trained network (the random VGG-16 one flag away);
a method the command line cannot name is answered with the names it can; the model line is
printed before the first image is read; done and failed images are counted apart."""

from __future__ import annotations

import json
import pathlib
import shutil
import subprocess

import pytest
from cli_runner import run_cli

import backpropvis.stats.runner

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="not a git checkout")
@pytest.mark.parametrize("folder", ["report", "reproduce-out", "theory-out", "visualize-out", "audit-out"])
def test_the_commands_output_folders_are_ignored_by_git(folder: str) -> None:
    """git itself decides (check-ignore), for a file the command writes there."""
    written = f"{folder}/index.html"
    checked = subprocess.run(["git", "check-ignore", "-q", written], cwd=ROOT, capture_output=True, timeout=60)
    assert checked.returncode == 0, f"{written} is not ignored by .gitignore"
    source = subprocess.run(["git", "check-ignore", "-q", "backpropvis/report/page.py"], cwd=ROOT, timeout=60)
    assert source.returncode == 1  # the package's report module is not caught by the pattern


def test_visualize_draws_with_the_trained_network_unless_asked_for_the_random_vgg16(tmp_path, capsys) -> None:
    """No model flag: the bundled ImageNet-trained EfficientNet-Lite0, which calls the tabby a cat
    (ImageNet's cat classes are 281-285); ``--model vgg16``: the paper's random VGG-16."""
    status, stdout, err = run_cli(
        ["visualize", "--methods", "gbp", "--targets", "max", "--out", str(tmp_path / "a")], capsys
    )
    assert status == 0, err
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["model"] == "efficientnet-lite0" and "imagenet" in summary["weights"]
    assert 281 <= summary["images"][0]["predicted"] <= 285
    assert stdout.splitlines()[0].startswith("model: efficientnet-lite0")
    assert summary["display"] == "clip99"
    arguments = ["visualize", "--model", "vgg16", "--input-size", "32", "--methods", "gbp", "--targets", "max"]
    status, _, err = run_cli([*arguments, "--out", str(tmp_path / "b")], capsys)
    assert status == 0, err
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert summary["model"] == "vgg16" and summary["weights"] == "random (seed 0)"


@pytest.mark.parametrize("command", ["visualize", "class-distance", "audit"])
def test_an_unknown_method_is_answered_with_the_names_the_command_line_takes(command, tmp_path, capsys) -> None:
    arguments = {"visualize": [], "class-distance": ["--samples", "--db", str(tmp_path / "r.sqlite")]}
    arguments["audit"] = ["--samples", "--out", str(tmp_path / "audit")]
    status, stdout, err = run_cli([command, *arguments[command], "--methods", "gbp,lrp"], capsys)
    assert status == 2 and stdout == ""
    assert err.strip().count("\n") == 0
    assert "'lrp'" in err and "saliency, deconvnet, gbp" in err and "--methods" in err
    assert "Rule" not in err  # the library's "or pass a Rule" is not something a flag can do


def test_class_distance_says_its_model_before_the_first_batch(tmp_path, capsys, monkeypatch) -> None:
    measure, printed_before = backpropvis.stats.runner._measure, []

    def first_batch(*args, **kwargs):
        if not printed_before:
            printed_before.append(capsys.readouterr().out)
        return measure(*args, **kwargs)

    monkeypatch.setattr(backpropvis.stats.runner, "_measure", first_batch)
    arguments = ["class-distance", "--samples", "--model", "efficientnet-lite0", "--input-size", "32"]
    status, _, err = run_cli([*arguments, "--workers", "0", "--limit", "2", "--db", str(tmp_path / "r.sqlite")], capsys)
    assert status == 0, err
    assert printed_before and printed_before[0].startswith("model: efficientnet-lite0 (imagenet")
    assert "; preprocessing: " in printed_before[0].splitlines()[0]
