"""``backpropvis audit``: the paper's diagnostics on a user's model, with a verdict per method.

- The paper's conclusions come out on its networks at small sizes: on the bundled trained
  EfficientNet-Lite0 and on a random VGG-16, saliency is class-sensitive, GBP and DeconvNet
  are not (Figure 7), and the other verdicts say what the paper's Figures 8 and 9 say.
- A broken method changes the verdicts: GBP computed as the plain gradient is judged
  class-sensitive, a zero GBP map neither class-sensitive nor showing the image.
- A model file written here (F.relu, max-pooling, BatchNorm) and the same file as
  MODULE:CALLABLE go through the command line; rerunning resumes; user errors are one
  line and status 2 with nothing already written lost; a crash in step 3 keeps step 1; a kept
  step of another shape (an older version's) is measured again, saying why.
- The page opens in headless Chromium with its verdict cells and figures.
"""

from __future__ import annotations

import json
import math
import pathlib
import shutil
import sqlite3
import sys
import textwrap

import pytest
from browser import CHROMIUM, SKIP_REASON, pixels_near, screenshot
from cli_runner import run_cli
from PIL import Image
from sabotage import sabotaged

import backpropvis.audit.adversarial_step
import backpropvis.audit.randomization_step
from backpropvis.audit import AUDIT_FILE, CLASS_DISTANCE_DB, VERDICTS, run_audit
from backpropvis.audit.probes import load_probes
from backpropvis.audit.verdicts import METRICS, SALIENCY_FRACTION, SMALLEST_CHANGE
from backpropvis.images.samples import load_image, sample_names
from backpropvis.images.sets import Samples, list_images
from backpropvis.models import IMAGENET, ModelSpec, describe_module
from backpropvis.report.page import INDEX_FILE

MODEL_FILE = textwrap.dedent('''
    import torch
    import torch.nn.functional as F
    from torch import nn


    class UserNet(nn.Module):
        """conv 3->8, BatchNorm, F.relu, max-pool -> conv 8->16, F.relu, max-pool -> dense to `classes` logits."""

        def __init__(self, classes=10, size=32):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
            self.bn1 = nn.BatchNorm2d(8)
            self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
            self.fc = nn.Linear(16 * (size // 4) ** 2, classes)

        def forward(self, x):
            x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)
            x = F.max_pool2d(F.relu(self.conv2(x)), 2)
            return self.fc(torch.flatten(x, 1))


    def build(classes=10, size=32):
        return UserNet(classes, size)
''')
SIZE = 32
PAPER = {"saliency": True, "deconvnet": False, "gbp": False}
"""The paper's Figure 7 verdict: saliency class-sensitive, DeconvNet and GBP not."""


def _verdicts(audit: dict, name: str) -> dict[str, bool]:
    return {method: entry[name] for method, entry in audit["verdicts"].items()}


@pytest.fixture(scope="module")
def lite0_audit(tmp_path_factory) -> tuple[pathlib.Path, dict]:
    """The bundled trained EfficientNet-Lite0 audited on the bundled samples at 64 px."""
    out = tmp_path_factory.mktemp("lite0") / "audit"
    audit = run_audit(
        Samples(),
        out,
        model=ModelSpec("efficientnet-lite0", weights="imagenet", input_size=64),
        few_images=2,
        workers=0,
        progress=False,
    )
    return out, audit


def test_trained_efficientnet_gets_the_papers_verdicts(lite0_audit) -> None:
    """Figure 7: saliency class-sensitive, GBP and DeconvNet not; Figure 9's dense layers do not
    matter to GBP (redrawing the classifier leaves it) but do to saliency; Figure 8: an adversarial
    prediction changes saliency's map, not GBP's or DeconvNet's."""
    out, audit = lite0_audit
    assert _verdicts(audit, "class_sensitive") == PAPER
    assert _verdicts(audit, "follows_model") == PAPER
    assert _verdicts(audit, "changes_with_adversarial") == PAPER
    written = json.loads((out / AUDIT_FILE).read_text())
    assert written["verdicts"] == json.loads(json.dumps(audit["verdicts"]))  # what was returned is what was written
    for entry in written["verdicts"].values():
        claims = entry["criteria"]["class_sensitive"]["claims"]
        assert {claim["threshold"] for claim in claims} == {SALIENCY_FRACTION, SMALLEST_CHANGE}
        for claim in claims:  # each criterion with its threshold, its value, and its verdict on that value
            assert claim["value"] == entry["numbers"][claim["metric"]] and claim["metric"] in METRICS
        assert entry["class_sensitive"] == all(claim["holds"] for claim in claims)
    # the numbers behind the verdict, from the same database the class-distance command writes
    numbers = written["verdicts"]["gbp"]["numbers"]
    assert numbers["class_distance_low"] <= numbers["class_distance"] <= numbers["class_distance_high"]
    assert written["class_distance"]["images"] == len(sample_names())
    assert written["thresholds"][0]["name"] == "class_sensitive"


def test_random_vgg16_gets_the_papers_verdicts(vgg16_random, tmp_path) -> None:
    """The random VGG-16 of Figures 6-7: saliency class-sensitive, GBP and DeconvNet not, and GBP
    shows the image (its input similarity, the paper's recovery in random networks)."""
    model = describe_module(vgg16_random, "vgg16", "random", input_size=64)
    audit = run_audit(Samples(), tmp_path / "audit", model=model, few_images=2, workers=0, progress=False)
    assert _verdicts(audit, "class_sensitive") == PAPER
    assert _verdicts(audit, "follows_model") == PAPER
    assert audit["verdicts"]["gbp"]["recovers_image"] is True
    assert audit["verdicts"]["saliency"]["recovers_image"] is False


def test_a_broken_method_changes_the_verdicts(lite0_audit, tmp_path) -> None:
    """GBP computed as the plain gradient is class-sensitive like saliency; a zero GBP map is
    neither class-sensitive nor an image, whatever the honest run said."""
    _, honest = lite0_audit
    assert honest["verdicts"]["gbp"]["class_sensitive"] is False
    common = dict(
        model=ModelSpec("efficientnet-lite0", weights="imagenet", input_size=64),
        limit=3,
        few_images=1,
        workers=0,
        progress=False,
    )
    with sabotaged("plain-gradient"):
        broken = run_audit(Samples(), tmp_path / "plain", **common)
    assert _verdicts(broken, "class_sensitive") == {"saliency": True, "deconvnet": True, "gbp": True}
    assert broken["verdicts"]["gbp"]["follows_model"] is True
    with sabotaged("zero-gbp"):
        zero = run_audit(Samples(), tmp_path / "zero", **common)
    assert zero["verdicts"]["gbp"]["class_sensitive"] is False and zero["verdicts"]["gbp"]["recovers_image"] is False
    assert zero["verdicts"]["saliency"]["class_sensitive"] is True


def test_a_kept_step_of_another_shape_is_measured_again_and_the_notes_say_why(lite0_audit, tmp_path) -> None:
    """A steps/<name>.json that does not fit the step's result type (here a field gone, as an
    older version would have written it) is measured again, saying so; the others are read back."""
    out, audit = lite0_audit
    copy = tmp_path / "audit"
    shutil.copytree(out, copy)
    kept = copy / "steps" / "maps.json"
    written = json.loads(kept.read_text())
    del written["numbers"]["target_names"]
    kept.write_text(json.dumps(written))
    model = ModelSpec("efficientnet-lite0", weights="imagenet", input_size=64)
    again = run_audit(Samples(), copy, model=model, few_images=2, workers=0, progress=False)
    assert again["maps"]["reused"] is False and again["randomization"]["reused"] is True
    assert any("steps/maps.json" in note and "target_names" in note for note in again["notes"])
    assert {**again["maps"], "reused": False} == {**audit["maps"], "reused": False}
    assert again["verdicts"] == audit["verdicts"]


# --- a user's model through the command line ---------------------------------------------------------


@pytest.fixture
def user_files(tmp_path: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    """The model file, and a folder of four sample photos as PNG (one in a subfolder) and a broken file."""
    model_file = tmp_path / "usernet.py"
    model_file.write_text(MODEL_FILE)
    images = tmp_path / "images"
    (images / "more").mkdir(parents=True)
    for number, name in enumerate(sample_names()[:4]):
        folder = images / "more" if number == 3 else images
        load_image(name).save(folder / f"{name}.png")
    (images / "broken.jpg").write_bytes(b"not a jpeg")
    return model_file, images


def _audit_argv(model: str, images: pathlib.Path, out: pathlib.Path, *extra: str) -> list[str]:
    return [
        "audit",
        "--images",
        str(images),
        "--model",
        model,
        "--model-args",
        json.dumps({"classes": 10}),
        "--input-size",
        str(SIZE),
        "--out",
        str(out),
        "--few-images",
        "2",
        "--workers",
        "0",
        *extra,
    ]


def _rows(database: pathlib.Path) -> list[tuple]:
    with sqlite3.connect(database) as connection:
        return connection.execute("SELECT image, method, class_distance FROM results ORDER BY image, method").fetchall()


def test_a_model_file_through_the_command_line(user_files, tmp_path, capsys) -> None:
    """PATH.py:CALLABLE with F.relu, max-pooling and BatchNorm: every method judged, the numbers
    from the resumable database (the broken file recorded, not fatal); the same command again
    computes nothing new and says so."""
    model_file, images = user_files
    out = tmp_path / "out"
    status, stdout, err = run_cli(_audit_argv(f"{model_file}:build", images, out), capsys)
    assert status == 0, err
    assert "put in eval mode" in stdout and "BatchNorm2d 'bn1'" in stdout  # the CLI says what it did to the model
    assert "4 of the images under" in stdout and "1 could not be read" in stdout
    audit = json.loads((out / AUDIT_FILE).read_text())
    assert list(audit["verdicts"]) == ["saliency", "deconvnet", "gbp"]
    for entry in audit["verdicts"].values():
        assert isinstance(entry["class_sensitive"], bool)
        assert {verdict.name for verdict in VERDICTS} <= set(entry)
        assert entry["summary"] in stdout  # the verdicts in words, printed
    rows = _rows(out / CLASS_DISTANCE_DB)
    names = sample_names()[:4]
    expected = {f"{name}.png" for name in names[:3]} | {f"more/{names[3]}.png"}
    assert len(rows) == 4 * 3 and {row[0] for row in rows} == expected
    assert audit["model"]["source"].startswith("file sha256:") and audit["images"]["failed"] == 1
    page = (out / INDEX_FILE).read_text()
    assert page.count("<img ") == 6 and "http://" not in page and "https://" not in page  # six figures: five and units

    status, stdout, err = run_cli(_audit_argv(f"{model_file}:build", images, out), capsys)
    assert status == 0, err
    assert "already in class-distance.sqlite" in stdout and "kept from an earlier run" in stdout
    assert _rows(out / CLASS_DISTANCE_DB) == rows
    again = json.loads((out / AUDIT_FILE).read_text())
    assert again["verdicts"] == audit["verdicts"]


def test_a_module_callable_through_the_command_line(user_files, tmp_path, capsys, monkeypatch) -> None:
    """MODULE:CALLABLE (the same file, importable from the current folder), with --limit."""
    model_file, images = user_files
    monkeypatch.chdir(model_file.parent)
    out = tmp_path / "module-out"
    try:
        status, stdout, err = run_cli(_audit_argv("usernet:build", images, out, "--limit", "2"), capsys)
    finally:
        sys.modules.pop("usernet", None)
    assert status == 0, err
    audit = json.loads((out / AUDIT_FILE).read_text())
    assert audit["model"]["source"] == "module usernet"
    assert audit["class_distance"]["images"] == 1 and audit["class_distance"]["failures"] == 1  # "broken.jpg"


def test_user_errors_are_one_line_and_status_2_and_keep_what_was_written(user_files, tmp_path, capsys) -> None:
    model_file, images = user_files
    out = tmp_path / "out"
    status, _, err = run_cli(
        _audit_argv(f"{model_file}:build", images, out, "--limit", "1", "--few-images", "1"), capsys
    )
    assert status == 0, err
    kept = {path: path.read_bytes() for path in (out / CLASS_DISTANCE_DB, out / AUDIT_FILE)}
    in_the_way = tmp_path / "a-file"
    in_the_way.write_text("")
    cases = {
        "images folder": _audit_argv(f"{model_file}:build", tmp_path / "missing", tmp_path / "o1"),
        "output folder": _audit_argv(f"{model_file}:build", images, in_the_way),
        "--few-images": _audit_argv(f"{model_file}:build", images, tmp_path / "o2", "--few-images", "0"),
        "unknown method": _audit_argv(f"{model_file}:build", images, tmp_path / "o3", "--methods", "gbp,magic"),
        "does not exist": _audit_argv(str(tmp_path / "nope.py:build"), images, tmp_path / "o4"),
        "--crops goes with --samples": _audit_argv(f"{model_file}:build", images, tmp_path / "o5", "--crops", "3"),
        "--fgsm-steps": _audit_argv(f"{model_file}:build", images, tmp_path / "o6", "--fgsm-steps", "1,two"),
    }
    # another model into a folder holding an audit: refused, naming what differs and what to do
    other_model = _audit_argv(f"{model_file}:build", images, out, "--limit", "1", "--few-images", "1")
    other_model[other_model.index("--model-args") + 1] = json.dumps({"classes": 7})
    cases["another --out"] = other_model
    for expected, argv in cases.items():
        status, _, err = run_cli(argv, capsys)
        assert status == 2, (expected, err)
        assert err.count("\n") == 1 and err.startswith("backpropvis: error:") and expected in err, (expected, err)
    assert "--model-args" in err  # the differing setting is named
    assert {path: path.read_bytes() for path in kept} == kept


def test_a_crash_in_step_3_keeps_step_1_and_the_rerun_continues(user_files, tmp_path, monkeypatch) -> None:
    model_file, images = user_files
    out = tmp_path / "out"
    options = dict(
        model=ModelSpec(f"{model_file}:build", model_args={"classes": 10}, input_size=SIZE),
        few_images=2,
        workers=0,
        progress=False,
    )

    def crash(*args, **kwargs):
        raise RuntimeError("a bug in step 3")

    monkeypatch.setattr(backpropvis.audit.randomization_step, "cascading_randomization", crash)
    with pytest.raises(RuntimeError, match="a bug in step 3"):
        run_audit(images, out, **options)
    rows = _rows(out / CLASS_DISTANCE_DB)
    assert len(rows) == 4 * 3  # step 1's database is whole
    partial = json.loads((out / AUDIT_FILE).read_text())
    for entry in partial["verdicts"].values():  # what is known is judged; what is not says so
        assert isinstance(entry["class_sensitive"], bool) and entry["follows_model"] is None
        assert "run the same command again" in entry["criteria"]["follows_model"]["says"]

    monkeypatch.undo()
    audit = run_audit(images, out, **options)
    assert audit["images"]["resumed_with"] == 5 and _rows(out / CLASS_DISTANCE_DB) == rows
    assert audit["maps"]["reused"] is True and audit["randomization"]["reused"] is False
    assert all(isinstance(entry["follows_model"], bool) for entry in audit["verdicts"].values())
    assert {key: entry["class_sensitive"] for key, entry in audit["verdicts"].items()} == {
        key: entry["class_sensitive"] for key, entry in partial["verdicts"].items()
    }


def test_ctrl_c_in_a_later_step_says_what_is_kept_and_how_to_go_on(user_files, tmp_path, capsys, monkeypatch) -> None:
    model_file, images = user_files
    out = tmp_path / "out"

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(backpropvis.audit.adversarial_step, "adversarial_numbers", interrupted)
    status, _, err = run_cli(_audit_argv(f"{model_file}:build", images, out), capsys)
    last = err.strip().splitlines()[-1]  # after the progress bars: one line
    assert status == 130 and last.startswith("backpropvis: interrupted: during the adversarial step")
    assert "(maps, randomization)" in last and "run the same command again" in last
    assert len(_rows(out / CLASS_DISTANCE_DB)) == 4 * 3
    assert json.loads((out / AUDIT_FILE).read_text())["verdicts"]["gbp"]["follows_model"] is not None


def test_the_few_images_are_spread_over_the_list(tmp_path) -> None:
    """An ImageFolder tree gives the costly steps images of several classes, not the first
    class's; an unreadable one is replaced by the next readable image of the list."""
    for label in ("a", "b", "c"):
        (tmp_path / label).mkdir()
        for number in range(3):
            Image.new("RGB", (8, 8), (40 * number, 80, 120)).save(tmp_path / label / f"{number}.png")
    (tmp_path / "b" / "1.png").write_bytes(b"broken")  # the middle of the list
    keys = list_images(tmp_path)
    probes = load_probes(tmp_path, keys, IMAGENET.resized(8), 3)
    assert probes.keys == ("a/0.png", "a/1.png", "c/2.png") and probes.inputs.shape == (3, 3, 8, 8)
    assert load_probes(tmp_path, keys, IMAGENET.resized(8), 1).keys == ("a/0.png",)
    assert len(load_probes(tmp_path, keys, IMAGENET.resized(8), 20).keys) == 8  # every readable one


def test_json_holds_no_nan(lite0_audit) -> None:
    """audit.json is strict JSON: a number that is not measured is null, never NaN."""
    out, _ = lite0_audit
    json.loads((out / AUDIT_FILE).read_text(), parse_constant=lambda name: pytest.fail(f"{name} in audit.json"))
    assert not any(
        isinstance(value, float) and math.isnan(value)
        for entry in json.loads((out / AUDIT_FILE).read_text())["verdicts"].values()
        for value in entry["numbers"].values()
        if value is not None
    )


# --- the page in a browser -------------------------------------------------------------------------------

YES_GREEN = (200, 239, 200)  # the page's #c8efc8
NO_RED = (247, 198, 198)  # the page's #f7c6c6


@pytest.mark.skipif(CHROMIUM is None, reason=SKIP_REASON)
def test_the_page_renders_in_headless_chromium(lite0_audit, tmp_path) -> None:
    """The verdict cells (green yes, red no) and the embedded figures are drawn, from the file alone."""
    out, audit = lite0_audit
    page = out / INDEX_FILE
    copy = tmp_path / "alone.html"  # the page alone, away from its figures folder: it must still show them
    copy.write_bytes(page.read_bytes())
    picture = screenshot(copy, tmp_path, height=5000)
    assert picture.shape[:2] == (5000, 1280)
    assert pixels_near(picture, YES_GREEN) > 2000  # saliency's yes cells and the criteria that hold
    assert pixels_near(picture, NO_RED) > 2000  # GBP's and DeconvNet's no cells
    figures = picture[1500:]  # below the tables: the figures, drawn (maps are far from flat)
    assert float(figures.std()) > 30.0
    assert audit["verdicts"]["gbp"]["class_sensitive"] is False
