"""Units on the command line and in the audit, with a user's model file.

- ``unit-distance`` on a folder of images and a model file: the database, the curves and the
  summary; a rerun resumes; a bad layer is one line and status 2 and writes nothing; two
  torchrun processes hold the one-process run's rows.
- ``units``: units.json and the page, bad channels in one line.
- ``visualize --targets`` names units beside logits.
- The audit's unit-distance panel: the theory's claims judged on the model, failing when GBP
  is computed as the plain gradient.
"""

from __future__ import annotations

import json
import os
import pathlib
import sqlite3
import subprocess
import sys
import textwrap

import pytest
from cli_runner import run_cli
from sabotage import sabotaged

from backpropvis.audit import run_audit
from backpropvis.images.samples import load_image, sample_names
from backpropvis.models import ModelSpec

MODEL_FILE = textwrap.dedent('''
    import torch
    from torch import nn


    def build(classes=10):
        """A VGG-like net: [conv-ReLU] x2, pool, conv-ReLU, pool, dense-ReLU-dense (32 px inputs)."""
        torch.manual_seed(3)
        features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(inplace=True),
            nn.MaxPool2d(2), nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        )
        classifier = nn.Sequential(nn.Linear(16 * 8 * 8, 32), nn.ReLU(inplace=True), nn.Linear(32, classes))
        return nn.Sequential(features, nn.Flatten(), classifier)
''')
LAYERS = "0.0,0.5,2.0"


@pytest.fixture
def user_files(tmp_path: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    """The model file and a folder of the six sample photos as PNG."""
    model_file = tmp_path / "usernet.py"
    model_file.write_text(MODEL_FILE)
    images = tmp_path / "images"
    images.mkdir()
    for name in sample_names():
        load_image(name).save(images / f"{name}.png")
    return model_file, images


def model_flags(model_file: pathlib.Path) -> list[str]:
    return ["--model", f"{model_file}:build", "--input-size", "32", "--workers", "0"]


def rows(db: pathlib.Path) -> list[tuple]:
    with sqlite3.connect(db) as connection:
        return connection.execute(
            "SELECT image, method, first_logit, second_logit, first_name, class_distance FROM results "
            "ORDER BY image, method"
        ).fetchall()


def test_unit_distance_on_a_model_file_writes_curves_and_resumes(user_files, tmp_path, capsys) -> None:
    model_file, images = user_files
    db = tmp_path / "out" / "units.sqlite"
    argv = ["unit-distance", "--images", str(images), "--layers", LAYERS, "--db", str(db), *model_flags(model_file)]
    status, out, err = run_cli([*argv, "--limit", "4"], capsys)
    assert status == 0, err
    assert "4 images measured now" in out and "0.5" in out
    status, out, err = run_cli(argv, capsys)
    assert status == 0, err
    assert "2 images measured now" in out and "4 before, 6 in all" in out
    summary = json.loads((tmp_path / "out" / "units.json").read_text())
    assert summary["layers"] == LAYERS.split(",") and summary["images"] == 6
    assert (tmp_path / "out" / "units.png").stat().st_size > 10_000
    assert len(rows(db)) == 6 * 3 * 3
    typo = [*argv[:3], "--layers", "0.0,0.9", "--db", str(tmp_path / "typo.sqlite"), *model_flags(model_file)]
    status, _, err = run_cli(typo, capsys)
    assert status == 2 and err.count("\n") == 1 and "no layer named '0.9'" in err
    assert not (tmp_path / "typo.sqlite").exists()


def test_torchrun_ranks_hold_the_one_process_rows(user_files, tmp_path, capsys) -> None:
    model_file, images = user_files
    flags = ["--images", str(images), "--layers", LAYERS, *model_flags(model_file), "--batch-size", "2"]
    status, _, err = run_cli(["unit-distance", *flags, "--db", str(tmp_path / "one.sqlite")], capsys)
    assert status == 0, err
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    command += ["-m", "backpropvis", "unit-distance", *flags, "--db", str(tmp_path / "ranks.sqlite")]
    done = subprocess.run(
        command, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    ranked = sorted(rows(tmp_path / "ranks.rank-0.sqlite") + rows(tmp_path / "ranks.rank-1.sqlite"))
    alone = rows(tmp_path / "one.sqlite")
    assert [row[:5] for row in ranked] == [row[:5] for row in alone]  # the same units, drawn per image
    assert all(abs(a[5] - b[5]) <= 1e-4 * max(1.0, abs(b[5])) for a, b in zip(ranked, alone))


def test_units_on_a_model_file_writes_the_view(user_files, tmp_path, capsys) -> None:
    model_file, images = user_files
    out = tmp_path / "view"
    argv = ["units", "--images", str(images), "--layer", "0.5", "--channels", "0-2,7", "--top", "3", "--out", str(out)]
    status, stdout, err = run_cli([*argv, *model_flags(model_file)], capsys)
    assert status == 0, err
    summary = json.loads((out / "units.json").read_text())
    assert list(summary["channels"]) == ["0", "1", "2", "7"]
    for tops in summary["channels"].values():
        assert len(tops) == 3 and all({"image", "activation"} <= set(top) for top in tops)
        assert [top["activation"] for top in tops] == sorted((top["activation"] for top in tops), reverse=True)
    assert "index.html" in stdout and (out / "index.html").is_file()
    status, _, err = run_cli(
        [*argv[:-2], "--channels", "5-2", "--out", str(tmp_path / "bad"), *model_flags(model_file)], capsys
    )
    assert status == 2 and err.count("\n") == 1 and "0-15" in err


def test_visualize_names_units_beside_logits(user_files, tmp_path, capsys) -> None:
    model_file, _ = user_files
    out = tmp_path / "maps"
    argv = ["visualize", "tabby", "--targets", "max,0.5:3@4,6,0.5:max", "--out", str(out), *model_flags(model_file)]
    status, stdout, err = run_cli(argv[:-2], capsys)
    assert status == 0, err
    maps = json.loads((out / "summary.json").read_text())["maps"]
    names = [entry["target_name"] for entry in maps if entry["method"] == "gbp"]
    assert names[1] == "0.5:3@4,6" and names[2].startswith("0.5:")
    status, _, err = run_cli(
        [*argv[:3], "max,0.5:99", "--out", str(tmp_path / "bad"), *model_flags(model_file)[:4]], capsys
    )
    assert status == 2 and "channel 99 is outside layer '0.5''s 16 channels" in err


def test_the_audit_panel_judges_the_theory_and_catches_the_plain_gradient(user_files, tmp_path) -> None:
    model_file, images = user_files
    common = dict(few_images=6, workers=0, progress=False, unit_layers=["0.0", "0.5", "2.0"])
    model = ModelSpec(f"{model_file}:build", input_size=32)
    honest = run_audit(images, tmp_path / "honest", model=model, **common)
    panel = honest["unit_distance"]
    assert panel["layers"] == ["0.0", "0.5", "2.0"] and panel["images"] == 6
    held = {claim["id"] for claim in panel["claims"] if claim["holds"]}
    assert "gbp_stops_depending_on_the_unit" in held
    page = (tmp_path / "honest" / "index.html").read_text()
    assert "Is the map about the unit?" in page and (tmp_path / "honest" / "figures" / "unit-distance.png").is_file()
    with sabotaged("plain-gradient"):
        broken = run_audit(images, tmp_path / "broken", model=model, **common)
    failing = {claim["id"] for claim in broken["unit_distance"]["claims"] if not claim["holds"]}
    assert held & failing
