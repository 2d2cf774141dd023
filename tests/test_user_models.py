"""A user's own model from the command line: ``PATH.py:CALLABLE`` and ``MODULE:CALLABLE``
(backpropvis.models.load_model), their weights, eval mode, preprocessing, output selection,
compiled modules, and the weights' fingerprint.

The model files are written by the tests: a small CNN with ``F.relu``, max-pooling,
BatchNorm and Dropout. Its maps are checked against ``tiny_nets.reference_map``, an
explicit backward pass that never runs the engine.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from cli_runner import run_cli
from PIL import Image
from tiny_nets import RELU, reference_map, seeded_
from torch import nn

import backpropvis
from backpropvis.core.errors import ModelError, WeightsError
from backpropvis.core.saved_maps import load_maps
from backpropvis.images.samples import load_image
from backpropvis.models import load_model, select_output, weights_fingerprint

MODEL_FILE = textwrap.dedent('''
    import torch
    import torch.nn.functional as F
    from torch import nn


    class SmallNet(nn.Module):
        """conv 3->6, BatchNorm, F.relu, max-pool 2 -> conv 6->8, torch.relu, max-pool 2 -> Dropout -> dense."""

        def __init__(self, classes=7, width=16):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
            self.bn1 = nn.BatchNorm2d(6)
            self.conv2 = nn.Conv2d(6, 8, 3, padding=1)
            self.drop = nn.Dropout(0.5)
            self.fc = nn.Linear(8 * (width // 4) ** 2, classes)

        def forward(self, x):
            x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)
            x = F.max_pool2d(torch.relu(self.conv2(x)), 2)
            return self.fc(self.drop(torch.flatten(x, 1)))


    def build(classes=7, width=16):
        return SmallNet(classes, width)


    class Both(SmallNet):
        def forward(self, x):
            logits = super().forward(x)
            return {"logits": logits, "features": x.mean()}


    def as_dict(classes=7):
        return Both(classes)


    def compiled(classes=7):
        return torch.compile(SmallNet(classes))


    def not_a_model():
        return "a string"
''')
SIZE = 16
RULES = {"saliency": ("identity", "activation"), "deconvnet": ("relu", "one"), "gbp": ("relu", "activation")}
"""Each method's (h, g) of Eq. 1-2, in the reference's words."""


def steps_of(model: nn.Module) -> list:
    """SmallNet as the reference's list of layers (its BatchNorm and Dropout in eval mode)."""
    pool = nn.MaxPool2d(2)
    return [model.conv1, model.bn1, RELU, pool, model.conv2, RELU, pool, lambda x: torch.flatten(x, 1), model.fc]


def relative_error(value: torch.Tensor, reference: torch.Tensor) -> float:
    return float((value - reference).norm() / reference.norm())


@pytest.fixture
def model_file(tmp_path: pathlib.Path) -> pathlib.Path:
    path = tmp_path / "smallnet.py"
    path.write_text(MODEL_FILE)
    return path


@pytest.fixture
def model_module(tmp_path: pathlib.Path, monkeypatch) -> str:
    """The same file as an importable module on sys.path (a name no other test uses)."""
    folder = tmp_path / "site"
    folder.mkdir()
    (folder / "user_smallnet_module.py").write_text(MODEL_FILE)
    monkeypatch.syspath_prepend(str(folder))
    yield "user_smallnet_module"
    sys.modules.pop("user_smallnet_module", None)


def trained_weights(model_file: pathlib.Path, path: pathlib.Path, seed: int, classes: int = 7) -> pathlib.Path:
    """A state dict of SmallNet with seeded values (running statistics included), saved to ``path``."""
    model = load_model(f"{model_file}:build", model_args={"classes": classes}).module
    torch.save(seeded_(model, seed).state_dict(), path)
    return path


def test_a_model_file_in_visualize_gives_the_reference_maps(model_file, tmp_path, capsys) -> None:
    """PATH.py:CALLABLE with --model-args and a weights file: the saved maps are the explicit
    backward pass's on the model in eval mode, the inputs are ImageNet-normalised at --input-size."""
    weights = trained_weights(model_file, tmp_path / "w.pth", seed=1, classes=5)
    out = tmp_path / "out"
    argv = [
        "visualize",
        "tabby",
        "--model",
        f"{model_file}:build",
        "--model-args",
        '{"classes": 5}',
        "--weights",
        str(weights),
        "--input-size",
        str(SIZE),
        "--targets",
        "max,3",
        "--out",
        str(out),
        "--save-maps",
        str(tmp_path / "maps.npz"),
    ]
    status, stdout, err = run_cli(argv, capsys)
    assert status == 0, err
    assert "put in eval mode" in stdout and "BatchNorm2d 'bn1'" in stdout and "Dropout 'drop'" in stdout
    assert "ImageNet mean/std" in stdout and f"centre crop {SIZE}" in stdout  # the default preprocessing, stated
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"] == f"{model_file}:build" and summary["model_args"] == {"classes": 5}
    assert summary["model_source"].startswith("file sha256:")
    assert summary["notes"][0].startswith("put in eval mode")

    saved = load_maps(tmp_path / "maps.npz")
    # the input: PIL resize of the shorter side to round(16 * 256 / 224) = 18, centre crop 16, ImageNet mean/std
    picture = load_image("tabby")
    width, height = picture.size
    resized = picture.resize((round(width * 18 / height), 18), Image.BILINEAR)
    left = (resized.size[0] - SIZE) // 2
    pixels = np.asarray(resized.crop((left, 1, left + SIZE, 1 + SIZE)), dtype=np.float32) / 255
    expected = (pixels - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(saved["inputs"][0].permute(1, 2, 0).numpy(), expected, atol=1e-5)

    model = load_model(f"{model_file}:build", model_args={"classes": 5}).module
    model.load_state_dict(torch.load(weights, weights_only=True))
    model.eval()
    x = saved["inputs"]
    with torch.no_grad():
        logits = model(x)
    assert relative_error(saved["logits"], logits) < 1e-6
    assert saved["target_indices"][:, 0].tolist() == [int(logits.argmax()), 3]
    for number, method in enumerate(saved["methods"]):
        h, g = RULES[method]
        for target_number, target in enumerate(saved["target_indices"][:, 0]):
            reference = reference_map(steps_of(model), x, target.view(1), h, g)
            assert relative_error(saved["maps"][number, target_number], reference) < 1e-5, method


def test_a_module_callable_in_class_distance_and_its_identity(model_module, model_file, tmp_path, capsys) -> None:
    """MODULE:CALLABLE through class-distance; resuming with other weights of the same class, or
    other arguments, is refused naming the setting; the same command resumes."""
    db = tmp_path / "runs.sqlite"
    first = trained_weights(model_file, tmp_path / "first.pth", seed=1)
    second = trained_weights(model_file, tmp_path / "second.pth", seed=2)
    common = [
        "class-distance",
        "--samples",
        "--limit",
        "2",
        "--db",
        str(db),
        "--workers",
        "0",
        "--input-size",
        str(SIZE),
        "--model",
        f"{model_module}:build",
        "--model-args",
        '{"classes": 7}',
    ]
    status, stdout, err = run_cli([*common, "--weights", str(first)], capsys)
    assert status == 0, err
    assert "2 images measured now, 0 failed" in stdout and f"{model_module}:build" in stdout

    status, _, err = run_cli([*common, "--weights", str(second)], capsys)
    assert status == 2 and len(err.strip().splitlines()) == 1
    assert "the weights (SHA-256 of the state dict)" in err and "--model " not in err

    wrong_args = [*common[:-1], '{"classes": 7, "width": 16}']
    status, _, err = run_cli([*wrong_args, "--weights", str(first)], capsys)
    assert status == 2 and "--model-args" in err

    status, stdout, err = run_cli([*common, "--weights", str(first)], capsys)
    assert status == 0, err
    assert "0 images measured now, 0 failed" in stdout and "2 before" in stdout

    from backpropvis.stats import read_database

    stored = read_database(db)
    expected = load_model(f"{model_module}:build", model_args={"classes": 7}, weights=first)
    assert stored.settings.model == f"{model_module}:build"
    assert json.loads(stored.settings.model_args) == {"classes": 7}
    assert stored.settings.model_source == f"module {model_module}"
    assert stored.settings.weights_fingerprint == expected.fingerprint
    assert {row["first_name"] for row in stored.results} <= {f"class {k}" for k in range(7)}  # not ImageNet names


def test_fingerprint_is_the_same_in_another_process_and_changes_with_one_value(model_file, tmp_path) -> None:
    weights = trained_weights(model_file, tmp_path / "w.pth", seed=3)
    here = load_model(f"{model_file}:build", weights=weights).fingerprint
    script = (
        f"from backpropvis.models import load_model; "
        f"print(load_model({str(model_file) + ':build'!r}, weights={str(weights)!r}).fingerprint)"
    )
    there = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert there.returncode == 0, there.stderr
    assert there.stdout.strip() == here and here.startswith("sha256:") and len(here) == 7 + 64

    state = torch.load(weights, weights_only=True)
    state["bn1.running_mean"][2] += 1e-3  # a buffer, not a parameter: still another model
    torch.save(state, tmp_path / "changed.pth")
    assert load_model(f"{model_file}:build", weights=tmp_path / "changed.pth").fingerprint != here
    model = load_model(f"{model_file}:build", weights=weights).module
    assert weights_fingerprint(model.double()) != here  # the dtype is part of it


def test_random_weights_are_seeded_and_leave_the_global_rng_alone(model_file) -> None:
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = load_model(f"{model_file}:build", seed=5)
    assert torch.equal(torch.get_rng_state(), before)
    b = load_model(f"{model_file}:build", seed=5)
    c = load_model(f"{model_file}:build", seed=6)
    assert a.fingerprint == b.fingerprint != c.fingerprint
    assert a.weights_description == "as built (torch seed 5)"


def test_output_selector_picks_the_logits_of_a_dict_tuple_or_object(generator) -> None:
    class Plain(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = seeded_(nn.Sequential(nn.Flatten(), nn.Linear(12, 6), nn.ReLU(), nn.Linear(6, 4)), 0)

        def forward(self, x):
            return self.body(x)

    class Holder:
        def __init__(self, logits):
            self.logits = logits

    plain = Plain()
    wrapped = {
        "dict": (lambda x: {"aux": x.sum(), "logits": plain(x)}, "logits"),
        "tuple": (lambda x: (x.mean(), plain(x)), "1"),
        "object": (lambda x: Holder(plain(x)), "logits"),
    }
    x = torch.randn(2, 3, 2, 2, generator=generator)
    expected = backpropvis.attribute_many(plain, x, ["max", 2], ["saliency", "gbp"])
    for name, (forward, key) in wrapped.items():
        module = type(name, (nn.Module,), {"forward": lambda self, x, f=forward: f(x)})()
        module.inner = plain
        maps = backpropvis.attribute_many(select_output(module, key), x, ["max", 2], ["saliency", "gbp"])
        for method in ("saliency", "gbp"):
            assert torch.equal(maps[method], expected[method]), name

    module = type("Pair", (nn.Module,), {"forward": lambda self, x: (x.mean(), plain(x))})()
    with pytest.raises(ModelError, match="tuple of 2; select the logits by an index from 0 to 1"):
        select_output(module, "logits")(x)
    with pytest.raises(ModelError, match="no key 'logit'; its keys are: aux, logits"):
        select_output(type("D", (nn.Module,), {"forward": lambda self, x: {"aux": 1, "logits": x}})(), "logit")(x)
    with pytest.raises(ModelError, match="already returns a tensor"):
        select_output(plain, "logits")(x)


def test_cli_output_option_and_a_model_returning_a_dict(model_file, tmp_path, capsys) -> None:
    model = ["--model", f"{model_file}:as_dict", "--input-size", str(SIZE), "--targets", "max"]
    status, _, err = run_cli(["visualize", *model, "--output", "logits", "--out", str(tmp_path / "ok")], capsys)
    assert status == 0, err
    assert json.loads((tmp_path / "ok" / "summary.json").read_text())["output"] == "logits"
    status, _, err = run_cli(["visualize", *model, "--output", "probabilities", "--out", str(tmp_path / "bad")], capsys)
    assert status == 2 and "no key 'probabilities'; its keys are: logits, features" in err


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--model", "{file}:compiled"], "compiled with torch.compile"),
        (["--model", "{file}:not_a_model"], "returned a str, not a torch.nn.Module"),
        (["--model", "{file}:missing"], "has no 'missing'"),
        (["--model", "{file}:build", "--model-args", '{"clases": 3}'], "unexpected keyword argument 'clases'"),
        (["--model", "{file}:build", "--model-args", "classes=3"], "--model-args is not valid JSON"),
        (["--model", "{file}:build", "--weights", "imagenet"], "--weights imagenet is for the built-in models"),
        (["--model", "{folder}/absent.py:build"], "absent.py does not exist"),
        (["--model", "no_such_module_here:build"], "cannot import module no_such_module_here"),
        (["--model", "vgg16", "--model-args", '{"classes": 3}'], "built-in model and takes no --model-args"),
        (["--model", "{file}:build", "--weights", "{folder}/other.pth"], "key fc.weight has shape [3, 128]"),
    ],
)
def test_bad_user_models_are_one_line(argv, says, model_file, tmp_path, capsys) -> None:
    torch.save(
        nn.ModuleDict(
            {
                "conv1": nn.Conv2d(3, 6, 3),
                "bn1": nn.BatchNorm2d(6),
                "conv2": nn.Conv2d(6, 8, 3),
                "fc": nn.Linear(128, 3),
            }
        ).state_dict(),
        tmp_path / "other.pth",
    )
    argv = [part.replace("{file}", str(model_file)).replace("{folder}", str(tmp_path)) for part in argv]
    status, _, err = run_cli(["visualize", *argv, "--input-size", str(SIZE), "--out", str(tmp_path / "out")], capsys)
    assert status == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert says in err, err
    assert not (tmp_path / "out" / "summary.json").exists()


def test_a_module_given_to_the_api_keeps_its_mode_and_gets_the_default_preprocessing(model_file, tmp_path) -> None:
    from backpropvis.models import describe_module
    from backpropvis.stats import read_database, run_class_distance

    model = load_model(f"{model_file}:build").module.train()
    described = describe_module(model, input_size=SIZE)
    assert described.preprocessing(load_image("tabby")).shape == (3, SIZE, SIZE)
    assert model.training  # the API uses the module as it is
    with pytest.raises(ModelError, match="compiled with torch.compile"):
        describe_module(torch.compile(model.eval()))
    report = run_class_distance(
        None,
        tmp_path / "api.sqlite",
        model=describe_module(model.eval(), input_size=SIZE),
        limit=1,
        workers=0,
        progress=False,
    )
    assert report.done_now == 1
    assert read_database(tmp_path / "api.sqlite").settings.weights_fingerprint == weights_fingerprint(model)


def test_torchvision_models_when_installed(tmp_path, capsys) -> None:
    pytest.importorskip("torchvision")
    argv = [
        "visualize",
        "--model",
        "torchvision.models:resnet18",
        "--model-args",
        '{"num_classes": 10}',
        "--input-size",
        "64",
        "--targets",
        "max",
        "--methods",
        "gbp",
        "--out",
        str(tmp_path / "out"),
    ]
    status, stdout, err = run_cli(argv, capsys)
    assert status == 0, err
    assert "torchvision.models:resnet18" in stdout


def test_a_weights_file_missing_a_key_names_it(model_file, tmp_path) -> None:
    state = load_model(f"{model_file}:build").module.state_dict()
    del state["fc.weight"]
    torch.save(state, tmp_path / "partial.pth")
    with pytest.raises(WeightsError, match="does not fit SmallNet: key fc.weight is missing"):
        load_model(f"{model_file}:build", weights=tmp_path / "partial.pth")
