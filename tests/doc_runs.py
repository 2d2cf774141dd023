"""How tests/test_docs.py runs the documentation's examples, as data: the tiny sizes each command gets
on top of what the page shows, the placeholder paths a reader replaces with their own files (made here,
tiny), the few examples that cannot run in a test and why, and what a Python block needs first."""

from __future__ import annotations

import textwrap
from pathlib import Path

import torch
from PIL import Image

from backpropvis.images.samples import load_image

TINY = {
    # Appended to every example of the command; argparse keeps an option's last value, so these
    # shrink what the page shows (image count, input size, steps) without changing what it asks.
    "visualize": ["--input-size", "32"],
    "audit": ["--input-size", "32", "--crops", "0", "--limit", "2", "--few-images", "1", "--fgsm-steps", "8"],
    "class-distance": ["--input-size", "32", "--crops", "0", "--limit", "2", "--batch-size", "2", "--workers", "0"],
    "unit-distance": ["--input-size", "32", "--crops", "0", "--limit", "2", "--workers", "0"],
    "units": [
        "--input-size",
        "32",
        "--crops",
        "0",
        "--limit",
        "2",
        "--workers",
        "0",
        "--channels",
        "0-1",
        "--top",
        "1",
    ],
    "sanity": ["--quick", "--count", "2", "--input-size", "32"],
    "theory": ["--quick"],
    "summarize": ["--resamples", "20"],
}

SANITY_TINY = {
    # Protocol settings that only exist in one protocol (``--set`` refuses unknown names).
    "adebayo2018": ["--set", "seeds=1", "--set", "independent=false", "--set", "data=false"],
    "sixt2020": ["--set", "seeds=1"],
}

EXAMPLE_TINY = {
    # (page, the command as typed, its start): sizes for one example, after the command's.
    ("docs/units.md", "backpropvis visualize tabby --model vgg16 --targets max,features.28:12@5,7"): [
        "--input-size",
        "128",  # conv5_3 is 8 x 8 there: the example's neuron (5, 7) exists
    ],
}

WORDS = {
    # A word of an example that names a reader's own data, and what stands in for it here.
    "~/imagenet/val": "val",
    "/data/val": "val",
}

SKIPPED = {
    # (page, the command as typed, its start): why the example is not run here (each is run at a tiny
    # size by the test named).
    ("README.md", "backpropvis reproduce"): "every figure, minutes even --quick (tiny: test_sabotage.py)",
    ("docs/report.md", "backpropvis reproduce"): "as the README's",
    ("docs/reproduce.md", "backpropvis reproduce"): "figures at --quick or full size: minutes to an hour",
    ("docs/class-distance.md", "torchrun"): "several processes or machines (tests/test_dataset.py runs two)",
    ("docs/class-distance.md", "backpropvis summarize 'results.rank-*"): "the files of the torchrun example above",
    ("docs/units.md", "torchrun"): "several processes and CUDA (tests/test_units_cli.py runs two on the CPU)",
    ("docs/theory.md", "backpropvis theory"): "theory studies, 30 s or more even --quick (tiny: test_sabotage.py)",
    ("docs/commands.md", "backpropvis visualize tabby --model torchvision.models"): (
        "torchvision and a download of its weights, neither a dependency"
    ),
}


def substituted(words: list[str]) -> list[str]:
    """An example's words as run here: placeholders replaced; torchvision's trained VGG-16 (a 528 MB
    download) replaced by its random twin, which has the same layers."""
    words = [WORDS.get(word, word) for word in words]
    if "vgg16" in words and "--weights" in words and words[words.index("--weights") + 1] == "imagenet":
        words[words.index("--weights") + 1] = "random"
    return words


def tiny(words: list[str], page: str, typed: str) -> list[str]:
    """The words with the tiny sizes of their command, protocol and example appended."""
    extra = list(TINY.get(words[0], []))
    if words[0] == "sanity":
        extra += SANITY_TINY.get(words[words.index("--protocol") + 1], [])
    for (where, start), sizes in EXAMPLE_TINY.items():
        if where == page and typed.startswith(start):
            extra += sizes
    return words + extra


MY_NET = '''\
"""A user's model file, as the documentation's examples name it: a small CNN."""
import torch


def build(classes=10):
    features = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1),
        torch.nn.{activation}(),
        torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(8, 16, 3, padding=1),
        torch.nn.{activation}(),
        torch.nn.AdaptiveAvgPool2d(1),
    )
    model = torch.nn.Sequential()
    model.features = features
    model.flatten = torch.nn.Flatten()
    model.classifier = torch.nn.Linear(16, classes)
    return model
'''


def make_placeholders(folder: Path) -> None:
    """The files the examples name as a reader's own, tiny: images, a model file, its weights."""
    for name in ("val", "photos"):
        (folder / name / "cats").mkdir(parents=True)
        for sample in ("tabby", "coffee"):
            load_image(sample).resize((40, 30)).save(folder / name / "cats" / f"{sample}.jpg")
    Image.open(folder / "val" / "cats" / "tabby.jpg").save(folder / "my_photo.jpg")
    (folder / "my_net.py").write_text(MY_NET.format(activation="ReLU"))
    (folder / "my_silu_net.py").write_text(MY_NET.format(activation="SiLU"))
    (folder / "my_package").mkdir()
    (folder / "my_package" / "__init__.py").write_text("")
    (folder / "my_package" / "models.py").write_text(MY_NET.format(activation="ReLU").replace("build", "make_net"))
    namespace: dict = {}
    exec(MY_NET.format(activation="ReLU"), namespace)  # noqa: S102 - our own text above
    torch.manual_seed(0)
    state = namespace["build"]().state_dict()
    for name in ("my_net.pth", "ckpt.pth"):
        torch.save(state, folder / name)


PYTHON_SETUP = {
    # (page, ordinal of its python block): code run first in the page's namespace, for the names a
    # block takes from the reader's session.
    ("docs/report.md", 0): "import torch\nmap_ = torch.randn(3, 32, 32)  # a raw map [3, H, W]",
    ("docs/smooth-activations.md", 0): textwrap.dedent(
        """\
        import torch, importlib.util
        spec = importlib.util.spec_from_file_location("my_silu_net", "my_silu_net.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        model = module.build(classes=1000).eval()
        x = torch.randn(1, 3, 32, 32)
        """
    ),
}

PYTHON_TINY = {
    # (page, ordinal): (text of the block, what replaces it here) for the sizes; each must occur.
    ("docs/python-api.md", 0): [("model.preprocessing(", "model.preprocessing.resized(32)(")],
    ("docs/units.md", 0): [("model.preprocessing(", "model.preprocessing.resized(128)(")],  # (5, 7) in conv5_3
    ("docs/smooth-activations.md", 0): [('"my_silu_net.py:build"', '"my_silu_net.py:build", input_size=32')],
    ("docs/sanity.md", 0): [('size="quick"', 'size="tiny", count=2')],
    ("docs/sanity-kindermans-sixt.md", 0): [
        ('weights="imagenet")', 'weights="imagenet", input_size=32)'),
        ('size="quick"', 'size="tiny", count=2'),
    ],
}
