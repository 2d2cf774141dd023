"""What a new user meets first: ``backpropvis`` alone and ``--version``, every option's help
with its default, output folders that cannot be written, a 100000 x 3 px PNG, and what
``visualize`` says (class distances per image, raw maps saved as arrays, --precision)."""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys
import tempfile

import numpy as np
import pytest
import torch
from cli_runner import run_cli
from PIL import Image

import backpropvis
import backpropvis.jobs.visualize
from backpropvis.cli import build_parser
from backpropvis.core.saved_maps import load_maps
from backpropvis.images.samples import load_image
from backpropvis.models import IMAGENET

LITE = ["--model", "efficientnet-lite0", "--weights", "imagenet"]


# --- the command itself -----------------------------------------------------------------------


def test_backpropvis_alone_prints_the_help_and_version_prints_the_version() -> None:
    alone = subprocess.run([sys.executable, "-m", "backpropvis"], capture_output=True, text=True, timeout=120)
    assert alone.returncode == 0, alone.stderr
    assert alone.stdout.startswith("usage: backpropvis") and "required" not in alone.stderr
    for command in ("visualize", "class-distance", "summarize", "reproduce", "theory"):
        assert command in alone.stdout
    command = [sys.executable, "-m", "backpropvis", "--version"]
    version = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert version.returncode == 0 and version.stdout.strip() == f"backpropvis {backpropvis.__version__}"


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_option_of_every_command_has_a_help_with_its_default() -> None:
    """Each option says what it is and, unless it is a flag or required, what it defaults to:
    the default's value itself when it has one."""
    for name, command in _commands(build_parser()).items():
        for action in command._actions:
            if isinstance(action, argparse._HelpAction) or not action.option_strings:
                continue
            option = f"{name} {action.option_strings[0]}"
            assert action.help, option
            text = action.help % {"default": action.default}
            if action.nargs == 0 or action.required:  # flags and required options have no default
                continue
            assert "default" in text, option
            if action.default is not None:
                assert f"default: {action.default}" in text or f"default {action.default}" in text, (option, text)


# --- weight files that are not state dicts -----------------------------------------------------------


class Whole(torch.nn.Module):
    """A model saved whole with torch.save(model), as users do."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(2, 2)


def test_weight_files_that_are_not_state_dicts_say_what_they_are(tmp_path, capsys) -> None:
    """A pickled whole model, a tensor, a training checkpoint, a text file, a NumPy file, an
    empty file: one line in our words, never torch's advice to turn weights_only off, no
    terminal escape codes."""
    torch.save(Whole(), tmp_path / "whole.pth")
    torch.save(torch.zeros(3, 4), tmp_path / "tensor.pth")
    torch.save({"epoch": 3, "model": Whole().state_dict()}, tmp_path / "checkpoint.pth")
    (tmp_path / "notes.pth").write_text("hello")
    np.save(tmp_path / "array.npy", np.zeros(3))
    (tmp_path / "empty.pth").write_bytes(b"")
    expected = {
        "whole.pth": ["pickled Python object of class", "Whole", "torch.save(model.state_dict(), PATH)"],
        "tensor.pth": ["single tensor of shape [3, 4]"],
        "checkpoint.pth": ["keys epoch, model", "'model' looks like a state dict"],
        "notes.pth": ["not a PyTorch file"],
        "array.npy": ["NumPy array file"],
        "empty.pth": ["empty"],
    }
    for name, fragments in expected.items():
        argv = [
            "visualize",
            "--model",
            "efficientnet-lite0",
            "--weights",
            str(tmp_path / name),
            "--out",
            str(tmp_path / "o"),
        ]
        status, _, err = run_cli(argv, capsys)
        assert status == 2 and err.count("\n") == 1, (name, err)
        assert "weights_only" not in err and "\x1b" not in err and "Traceback" not in err, (name, err)
        for fragment in fragments:
            assert fragment in err, (name, fragment, err)


# --- output folders that cannot be written -------------------------------------------------------


@pytest.fixture
def unwritable_folder(tmp_path: pathlib.Path) -> pathlib.Path:
    """An existing folder this process cannot write in: chmod 555 for an ordinary user; for
    root (who writes anywhere) sysfs, which refuses new files even to root."""
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    for candidate in (locked, pathlib.Path("/sys/kernel")):
        if not candidate.is_dir():
            continue
        try:
            with tempfile.NamedTemporaryFile(dir=candidate):
                pass
        except OSError:
            return candidate
    pytest.skip("no folder here refuses this process's writes")


@pytest.mark.parametrize("command", [["visualize", *LITE, "--input-size", "32"], ["reproduce", "fig4", "--quick"]])
def test_an_output_folder_that_cannot_be_written_is_one_line_before_any_work(
    command, unwritable_folder, capsys, monkeypatch
) -> None:
    def no_work(*args, **kwargs):
        raise AssertionError("maps were computed before the output folder was checked")

    monkeypatch.setattr(backpropvis.jobs.visualize, "attribute_many", no_work)
    status, _, err = run_cli([*command, "--out", str(unwritable_folder)], capsys)
    assert status == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "output folder" in err and str(unwritable_folder) in err


def test_save_maps_to_an_unusable_path_is_refused_before_any_work(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(backpropvis.jobs.visualize, "attribute_many", lambda *a, **k: pytest.fail("computed"))
    (tmp_path / "folder.npz").mkdir()
    for path, says in [(tmp_path / "maps.csv", "must end with .npz or .pt"), (tmp_path / "folder.npz", "is a folder")]:
        status, _, err = run_cli(["visualize", *LITE, "--save-maps", str(path), "--out", str(tmp_path / "o")], capsys)
        assert status == 2 and says in err, err


# --- a 100000 x 3 pixel PNG ---------------------------------------------------------------------------


@pytest.fixture
def strip_png(tmp_path: pathlib.Path) -> pathlib.Path:
    """A strip of 100000 x 3 pixels (a few kB as PNG; 8.5 G pixels x 256 if resized whole)."""
    path = tmp_path / "strip" / "strip.png"
    path.parent.mkdir()
    pixels = np.zeros((3, 100000, 3), dtype=np.uint8)
    pixels[:, :, 0] = (np.arange(100000) // 1000 % 2 * 255)[None]
    Image.fromarray(pixels).save(path)
    return path


@pytest.fixture
def bounded_resize(monkeypatch) -> list[tuple[int, int]]:
    """Every PIL resize of the test, refused when its output exceeds 4 x 256 x 256 pixels."""
    sizes: list[tuple[int, int]] = []
    original = Image.Image.resize

    def resize(self, size, *args, **kwargs):
        sizes.append(tuple(size))
        assert size[0] * size[1] <= 4 * 256 * 256, f"resizing {self.size} to {size}"
        return original(self, size, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "resize", resize)
    return sizes


def test_preprocessing_an_extreme_strip_keeps_memory_bounded(strip_png, bounded_resize) -> None:
    picture = load_image(strip_png)
    inputs = IMAGENET(picture)
    assert inputs.shape == (3, 224, 224) and bounded_resize
    # the centre of the strip, 3 px tall stretched to 256: the columns follow its 1000-px stripes
    red = IMAGENET.unnormalize(inputs)[0]
    assert torch.allclose(red, red[:1].expand_as(red), atol=1 / 255)  # every row alike


def test_an_elongated_image_is_cropped_as_if_resized_whole() -> None:
    """Resizing only the crop's region (an image over 4:1) equals resize-then-crop, done here
    by PIL on the whole image, to one level of 255."""
    pixels = np.random.default_rng(0).integers(0, 256, (60, 1500, 3), dtype=np.uint8)
    picture = Image.fromarray(pixels)
    preprocessing = IMAGENET.resized(48)  # crop 48, shorter side round(48 * 256 / 224) = 55
    width = round(1500 * 55 / 60)
    whole = np.asarray(picture.resize((width, 55), Image.BILINEAR), dtype=np.float32) / 255
    left, top = (width - 48) // 2, (55 - 48) // 2
    expected = whole[top : top + 48, left : left + 48]
    got = preprocessing.unnormalize(preprocessing(picture)).permute(1, 2, 0).numpy()
    assert np.abs(got - expected).max() <= 1.01 / 255


def test_visualize_and_class_distance_take_the_strip(strip_png, bounded_resize, tmp_path, capsys) -> None:
    status, stdout, err = run_cli(
        ["visualize", str(strip_png), *LITE, "--targets", "max", "--methods", "gbp", "--out", str(tmp_path / "out")],
        capsys,
    )
    assert status == 0, err
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["images"][0]["image"] == str(strip_png)
    status, stdout, err = run_cli(
        [
            "class-distance",
            "--images",
            str(strip_png.parent),
            *LITE,
            "--input-size",
            "32",
            "--workers",
            "0",
            "--db",
            str(tmp_path / "strip.sqlite"),
        ],
        capsys,
    )
    assert status == 0, err
    assert "1 images measured now, 0 failed (" in stdout


# --- what visualize says ---------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".npz", ".pt"])
def test_visualize_reports_class_distances_and_saves_the_raw_maps(suffix, tmp_path, capsys) -> None:
    out, maps_file = tmp_path / "out", tmp_path / f"maps{suffix}"
    argv = [
        "visualize",
        "tabby",
        "coffee",
        *LITE,
        "--input-size",
        "64",
        "--targets",
        "max,random,281",
        "--out",
        str(out),
        "--save-maps",
        str(maps_file),
    ]
    status, stdout, err = run_cli(argv, capsys)
    assert status == 0, err
    summary = json.loads((out / "summary.json").read_text())
    saved = load_maps(maps_file)
    if suffix == ".pt":  # a plain state of tensors and lists, readable with weights_only
        assert set(torch.load(maps_file, weights_only=True)) == set(saved)
    assert saved["methods"] == ["saliency", "deconvnet", "gbp"] and saved["targets"] == ["max", "random", "281"]
    assert saved["images"] == ["tabby", "coffee"]
    assert saved["maps"].shape == (3, 3, 2, 3, 64, 64) and saved["logits"].shape == (2, 1000)

    # the raw maps are the engine's, for the same inputs
    model = backpropvis.models.efficientnet_lite0()
    targets = [saved["target_indices"][0], 281]
    reference = backpropvis.attribute_many(model, saved["inputs"], targets, ["saliency", "gbp"])
    for number, method in ((0, "saliency"), (2, "gbp")):
        for target, saved_target in ((0, 0), (1, 2)):  # max and 281 were the saved targets 0 and 2
            expected = reference[method][target]
            error = (saved["maps"][number, saved_target] - expected).norm() / expected.norm()
            assert error < 1e-5, (method, target)
    assert torch.equal(saved["target_indices"][0], saved["logits"].argmax(dim=1))

    # per image, method and pair of targets: || a / |a| - b / |b| || of the saved maps
    assert len(summary["class_distances"]) == 2 * 3 * 3  # images x methods x pairs of 3 targets
    for entry in summary["class_distances"]:
        image = saved["images"].index(entry["image"])
        method = saved["methods"].index(entry["method"])
        first, second = (saved["targets"].index(target) for target in entry["targets"])
        a = saved["maps"][method, first, image].double().numpy().ravel()
        b = saved["maps"][method, second, image].double().numpy().ravel()
        assert entry["class_distance"] == pytest.approx(
            np.linalg.norm(a / np.linalg.norm(a) - b / np.linalg.norm(b)), rel=1e-6
        )
        assert entry["target_indices"] == [
            int(saved["target_indices"][first, image]),
            int(saved["target_indices"][second, image]),
        ]
        line = next(
            line
            for line in stdout.splitlines()
            if line.startswith(entry["image"])
            and f"{entry['method']} {entry['targets'][0]} (" in line
            and f"vs {entry['targets'][1]} (" in line
        )
        assert f"{entry['class_distance']:.4f}" in line
    map_lines = [line for line in stdout.splitlines() if "input similarity" in line]
    assert len(map_lines) == 2 * 3 * 3 and all(line.split()[0] in ("tabby", "coffee") for line in map_lines)
    # the paper's finding on a trained net: max vs 281 moves saliency far more than GBP
    distances = {
        (entry["image"], entry["method"]): entry["class_distance"]
        for entry in summary["class_distances"]
        if entry["targets"] == ["max", "random"]
    }
    assert distances[("coffee", "saliency")] > 3 * distances[("coffee", "gbp")]


@pytest.mark.parametrize(
    ("choice", "passed"), [("default", "default"), ("float32", "float32"), ("bfloat16", "bfloat16")]
)
def test_precision_is_passed_to_the_engine(choice, passed, tmp_path, capsys, monkeypatch) -> None:
    seen = []
    original = backpropvis.jobs.visualize.attribute_many

    def spy(*args, **kwargs):
        seen.append(kwargs.get("precision"))
        return original(*args, **kwargs)

    monkeypatch.setattr(backpropvis.jobs.visualize, "attribute_many", spy)
    status, _, err = run_cli(
        [
            "visualize",
            *LITE,
            "--input-size",
            "32",
            "--targets",
            "max",
            "--precision",
            choice,
            "--out",
            str(tmp_path / "out"),
        ],
        capsys,
    )
    assert status == 0, err
    assert seen == [passed]
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["precision"] == choice
