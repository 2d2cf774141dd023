"""``backpropvis visualize``: the files it writes, and one clear line (exit status 2, no
traceback, no summary.json) for every mistake a user can make."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import torch
from cli_runner import run_cli
from PIL import Image
from torch import nn

import backpropvis
import backpropvis.jobs.visualize
from backpropvis.core.metrics import input_similarity
from backpropvis.images.samples import class_name, load_image

METHODS = ("saliency", "deconvnet", "gbp")


def assert_one_line_error(status: int, err: str, out_dir: pathlib.Path, *fragments: str) -> None:
    assert status == 2
    assert err.startswith("backpropvis") and err.endswith("\n") and err.count("\n") == 1, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    assert not (out_dir / "summary.json").exists()


def test_visualize_writes_maps_grid_and_summary(tmp_path: pathlib.Path, capsys) -> None:
    photos = [tmp_path / folder / "photo.png" for folder in ("a", "b")]  # one file name, two folders
    for seed, photo in enumerate(photos):
        photo.parent.mkdir()
        Image.fromarray(np.random.default_rng(seed).integers(0, 256, (90, 120, 3), dtype=np.uint8)).save(photo)
    out = tmp_path / "out"
    argv = [
        "visualize",
        "tabby",
        *map(str, photos),
        "--model",
        "efficientnet-lite0",
        "--weights",
        "imagenet",
        "--targets",
        "max,281",
        "--out",
        str(out),
    ]
    status, stdout, err = run_cli(argv, capsys)
    assert status == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"] == "efficientnet-lite0" and "imagenet" in summary["weights"] and summary["seed"] == 0
    assert [image["image"] for image in summary["images"]] == ["tabby", *map(str, photos)]
    for image in summary["images"]:
        assert image["predicted_name"] == class_name(image["predicted"])
    assert 281 <= summary["images"][0]["predicted"] <= 285  # the tabby is a cat
    assert len(summary["maps"]) == 3 * len(METHODS) * 2  # images x methods x targets
    assert len({entry["png"] for entry in summary["maps"]}) == len(summary["maps"])  # no map overwrites another
    for entry in summary["maps"]:
        assert {"method", "target_index", "target_name", "min", "max", "input_similarity", "png"} <= set(entry)
        assert entry["method"] in METHODS and entry["target_name"] == class_name(entry["target_index"])
        assert entry["min"] <= entry["max"] and -1.0 <= entry["input_similarity"] <= 1.0
        predicted = next(image["predicted"] for image in summary["images"] if image["image"] == entry["image"])
        assert entry["target_index"] == (predicted if entry["target"] == "max" else 281)
        picture = np.asarray(Image.open(out / entry["png"]))
        assert picture.shape == (224, 224, 3) and picture.min() == 0 and picture.max() == 255  # min-max display
    assert len(list(out.glob("*.png"))) == len(summary["maps"]) + 1  # the maps and grid.png
    assert Image.open(out / "grid.png").size[0] > 4 * 100
    assert "tabby" in stdout and "summary.json" in stdout

    # the numbers are the API's: the same model on the same input
    model = backpropvis.models.efficientnet_lite0()
    x = model.preprocessing(load_image("tabby"))[None]
    maps = backpropvis.attribute_many(model, x, [281], ["gbp"])
    entry = next(e for e in summary["maps"] if e["image"] == "tabby" and e["method"] == "gbp" and e["target"] == "281")
    assert entry["min"] == pytest.approx(float(maps["gbp"].min()), rel=1e-5)
    assert entry["max"] == pytest.approx(float(maps["gbp"].max()), rel=1e-5)
    assert entry["input_similarity"] == pytest.approx(float(input_similarity(maps["gbp"][0, 0], x[0])), abs=1e-5)


def test_python_m_backpropvis_is_the_entry_point(tmp_path: pathlib.Path) -> None:
    """The default model and weights (the bundled ImageNet-trained EfficientNet-Lite0) on the default
    image, in a fresh process."""
    out = tmp_path / "out"
    command = [
        sys.executable,
        "-m",
        "backpropvis",
        "visualize",
        "--methods",
        "gbp",
        "--targets",
        "max",
        "--out",
        str(out),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"] == "efficientnet-lite0" and summary["weights"].startswith("imagenet")
    assert summary["images"][0]["image"] == "tabby"  # the default image
    assert [entry["png"] for entry in summary["maps"]] == [p.name for p in out.glob("tabby_gbp_*.png")]

    missing = subprocess.run(
        [
            sys.executable,
            "-m",
            "backpropvis",
            "visualize",
            str(tmp_path / "absent.jpg"),
            "--out",
            str(tmp_path / "bad"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert_one_line_error(missing.returncode, missing.stderr, tmp_path / "bad", "absent.jpg")


# --- user errors ------------------------------------------------------------------------------


def partial_vgg16_file(path: pathlib.Path) -> pathlib.Path:
    """VGG-16 keys in order, correct up to features.7, then features.10.weight of the wrong shape."""
    state = {
        "features.0.weight": torch.zeros(64, 3, 3, 3),
        "features.0.bias": torch.zeros(64),
        "features.2.weight": torch.zeros(64, 64, 3, 3),
        "features.2.bias": torch.zeros(64),
        "features.5.weight": torch.zeros(128, 64, 3, 3),
        "features.5.bias": torch.zeros(128),
        "features.7.weight": torch.zeros(128, 128, 3, 3),
        "features.7.bias": torch.zeros(128),
        "features.10.weight": torch.zeros(256, 128, 1, 1),
    }
    torch.save(state, path)
    return path


@pytest.mark.parametrize(
    ("case", "fragments"),
    [
        ("missing file", ["absent.png"]),
        ("not an image", ["notes.jpg", "not an image"]),
        ("unknown sample", ["zebra"]),
        ("target outside the logits", ["1000", "outside"]),
        ("unknown target", ["best"]),
        ("vgg weights of the wrong shape", ["features.10.weight", "[256, 128, 1, 1]"]),
        ("efficientnet weights of the wrong shape", ["_blocks.3._depthwise_conv.weight"]),
        ("weights of another model", ["_conv_stem.weight", "missing"]),
        ("corrupt weights", ["corrupt.pth", "cannot read"]),
        ("missing weights", ["absent.pth", "does not exist"]),
        ("unknown model", ["--model", "resnet50"]),
        ("random-only model with weights", ["cnn3", "random"]),
        ("unknown method", ["lrp"]),
        ("repeated method", ["distinct", "gbp"]),
        ("no method", ["no method", "saliency, deconvnet, gbp"]),
        ("unknown device", ["quantum"]),
    ],
)
def test_user_errors_are_one_line_and_status_2(case: str, fragments: list[str], tmp_path: pathlib.Path, capsys) -> None:
    out = tmp_path / "out"
    lite = ["--model", "efficientnet-lite0", "--weights"]
    (tmp_path / "notes.jpg").write_text("not a picture")
    (tmp_path / "corrupt.pth").write_bytes(b"\x80\x02garbage" * 50)
    if case == "efficientnet weights of the wrong shape":
        state = backpropvis.models.efficientnet_lite0(None).state_dict()
        state["_blocks.3._depthwise_conv.weight"] = state["_blocks.3._depthwise_conv.weight"][:, :, :2]
        torch.save(state, tmp_path / "lite.pth")
    if case == "weights of another model":
        torch.save(nn.Linear(2, 2).state_dict(), tmp_path / "linear.pth")
    argv = {
        "missing file": [str(tmp_path / "absent.png")],
        "not an image": [str(tmp_path / "notes.jpg")],
        "unknown sample": ["zebra"],
        "target outside the logits": ["--targets", "max,1000", *lite, "imagenet"],
        "unknown target": ["--targets", "max,best"],
        "vgg weights of the wrong shape": [
            "--model",
            "vgg16",
            "--weights",
            str(partial_vgg16_file(tmp_path / "vgg.pth")),
        ],
        "efficientnet weights of the wrong shape": [*lite, str(tmp_path / "lite.pth")],
        "weights of another model": [*lite, str(tmp_path / "linear.pth")],
        "corrupt weights": [*lite, str(tmp_path / "corrupt.pth")],
        "missing weights": [*lite, str(tmp_path / "absent.pth")],
        "unknown model": ["--model", "resnet50"],
        "random-only model with weights": ["--model", "cnn3", "--weights", "imagenet"],
        "unknown method": ["--methods", "gbp,lrp"],
        "repeated method": ["--methods", "gbp,saliency,gbp"],
        "no method": ["--methods", ","],
        "unknown device": ["--device", "quantum"],
    }[case]
    status, _, err = run_cli(["visualize", *argv, "--out", str(out)], capsys)
    assert_one_line_error(status, err, out, *fragments)


def test_a_model_with_no_activation_is_one_line(tmp_path: pathlib.Path, capsys) -> None:
    (tmp_path / "linear.py").write_text(
        "from torch import nn\n\ndef build():\n    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10))\n"
    )
    model = ["--model", f"{tmp_path / 'linear.py'}:build", "--input-size", "32"]
    status, _, err = run_cli(["visualize", *model, "--methods", "gbp", "--out", str(tmp_path / "out")], capsys)
    assert_one_line_error(status, err, tmp_path / "out", "no ReLU-like activation")
    # saliency alone is the plain gradient and is allowed
    argv = ["visualize", *model, "--methods", "saliency", "--targets", "3", "--out", str(tmp_path / "ok")]
    status, _, err = run_cli(argv, capsys)
    assert status == 0, err
    summary = json.loads((tmp_path / "ok" / "summary.json").read_text())
    assert summary["maps"][0]["target_index"] == 3


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_on_a_machine_without_it_is_one_line(tmp_path: pathlib.Path, capsys) -> None:
    status, _, err = run_cli(["visualize", "--device", "cuda", "--out", str(tmp_path / "out")], capsys)
    assert_one_line_error(status, err, tmp_path / "out", "cuda")


@pytest.mark.parametrize("below", [False, True], ids=["out is a file", "out is below a file"])
def test_an_output_folder_blocked_by_a_file_is_one_line(below: bool, tmp_path: pathlib.Path, capsys) -> None:
    blocker = tmp_path / "results"
    blocker.write_text("a file, not a folder")
    out = blocker / "sub" if below else blocker
    status, _, err = run_cli(
        ["visualize", "--model", "efficientnet-lite0", "--weights", "imagenet", "--out", str(out)], capsys
    )
    assert_one_line_error(status, err, tmp_path, "results", "output folder")
    assert blocker.read_text() == "a file, not a folder"


def test_imagenet_weights_without_cache_or_network_is_one_line(tmp_path: pathlib.Path, capsys, monkeypatch) -> None:
    """No cached checkpoint and a download that dies halfway: one line, and no half file
    left in the cache to be taken for the checkpoint next time."""
    import urllib.error

    def broken_download(url: str, destination: str, progress: bool = True) -> None:
        pathlib.Path(destination).write_bytes(b"half a checkpoint")
        raise urllib.error.URLError("network unreachable")

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", broken_download)
    arguments = ["visualize", "--model", "vgg16", "--weights", "imagenet", "--out", str(tmp_path / "out")]
    status, _, err = run_cli(arguments, capsys)
    assert_one_line_error(status, err, tmp_path / "out", "vgg16-397923af.pth", "checkpoint's path")
    assert list((tmp_path / "hub").rglob("*.pth")) == []


def test_the_backpropvis_command_is_installed() -> None:
    from importlib.metadata import entry_points

    scripts = {entry.name: entry.value for entry in entry_points(group="console_scripts")}
    assert scripts.get("backpropvis") == "backpropvis.cli:main"
