"""Nothing of a call outlives it, and what a call does to global state is undone.

- Weak references to the activation outputs of a residual net (ReLUs written as
  ``F.relu``, ``torch.relu`` and ``.relu_()``) are dead right after ``attribute_many``
  returns or raises (bad target, an exception inside the model, a refused activation,
  KeyboardInterrupt), with the garbage collector off: freed by reference counting.
- 30 calls leave the resident set flat (a child process with glibc returning large
  blocks at once), and CUDA's allocated memory flat where a GPU is present.
- Precision: the default follows PyTorch's global flags; "float32" forces IEEE float32
  during the call and restores the flags afterwards, also when the call raises.
- Models the engine cannot serve correctly are refused or warned about: compiled
  modules, non-tensor outputs, training mode.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap
import weakref

import pytest
import torch
import torch.nn.functional as F
from tiny_nets import seeded_
from torch import nn

import backpropvis
from backpropvis.core.errors import ModelError, TargetError, UnsupportedActivationError
from backpropvis.engine import TrainingModeWarning

METHODS = ("saliency", "deconvnet", "gbp")


class ResidualNet(nn.Module):
    """conv -> F.relu -> [conv -> torch.relu -> conv] + skip -> .relu_() -> pool -> dense.

    Every activation output gets a weak reference in ``self.outputs``; ``fail`` (an
    exception class) makes the forward pass raise it after the activations ran.
    Shapes: [B, 3, 8, 8] -> [B, 5].
    """

    def __init__(self) -> None:
        super().__init__()
        self.stem, self.inner, self.outer = (
            nn.Conv2d(3, 4, 3, padding=1),
            nn.Conv2d(4, 4, 3, padding=1),
            nn.Conv2d(4, 4, 3, padding=1),
        )
        self.fc = nn.Linear(4, 5)
        seeded_(self, 21)
        self.outputs: list[weakref.ref] = []
        self.fail: type[BaseException] | None = None
        self.other = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.stem(x))
        inner = torch.relu(self.inner(h))
        out = (self.outer(inner) + h).relu_()
        self.outputs += [weakref.ref(h), weakref.ref(inner), weakref.ref(out)]
        if self.other is not None:
            out = self.other(out)
        if self.fail is not None:
            raise self.fail("raised inside the forward pass")
        return self.fc(out.mean(dim=(2, 3)))


@pytest.fixture
def no_gc():
    """Only reference counting frees objects while the test runs."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def dead(model: ResidualNet) -> bool:
    return len(model.outputs) == 3 and all(reference() is None for reference in model.outputs)


def test_nothing_of_a_call_outlives_it_when_it_returns(no_gc) -> None:
    model = ResidualNet()
    maps = backpropvis.attribute_many(model, torch.randn(2, 3, 8, 8), ["max", "random"], METHODS)
    assert dead(model)
    assert all(tensor.grad_fn is None for tensor in (*maps.values(), maps.logits))


@pytest.mark.parametrize("case", ["bad target", "model raises", "refused activation", "KeyboardInterrupt"])
def test_nothing_of_a_call_outlives_it_when_it_raises(case: str, no_gc) -> None:
    model = ResidualNet()
    targets, expected = ["max"], None
    if case == "bad target":
        targets, expected = [7], TargetError
    elif case == "model raises":
        model.fail = expected = RuntimeError
    elif case == "refused activation":
        model.other, expected = nn.GELU(), UnsupportedActivationError
    else:
        model.fail = expected = KeyboardInterrupt
    with pytest.raises(expected):
        backpropvis.attribute_many(model, torch.randn(2, 3, 8, 8), targets, METHODS)
    assert dead(model)


_FLAT_MEMORY_SCRIPT = textwrap.dedent(
    """
    import json, sys, torch
    from torch import nn
    import backpropvis

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(1024, 10),
    )
    x = torch.randn(4, 3, 96, 96)
    device = sys.argv[1]
    model, x = model.to(device), x.to(device)

    def used():
        if device == "cuda":
            torch.cuda.synchronize()
            return torch.cuda.memory_allocated()
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * 4096

    levels = []
    for call in range(30):
        maps = backpropvis.attribute_many(model, x, ["max", "random"], ["saliency", "deconvnet", "gbp"])
        del maps
        levels.append(used())
    print(json.dumps(levels))
    """
)


@pytest.mark.parametrize(
    "device",
    ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"))],
)
def test_thirty_calls_leave_memory_flat(device: str, tmp_path) -> None:
    """One call's forward pass holds ~25 MB of activations here: a leak of it per call
    would add ~700 MB over 30 calls; without one the level stays within a few MB."""
    script = tmp_path / "flat.py"
    script.write_text(_FLAT_MEMORY_SCRIPT)
    environment = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, str(script), device], capture_output=True, text=True, env=environment, timeout=300, check=True
    )
    levels = [int(level) for level in result.stdout.strip().splitlines()[-1].strip("[]").split(",")]
    growth = max(levels[5:]) - levels[4]
    assert growth < 8 << 20, f"memory grew by {growth / 2**20:.1f} MiB from call 5 to call 30: {levels}"


class ReadsFlags(nn.Module):
    """Records the float32 precision flags seen during its forward pass."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(4, 6), nn.Linear(6, 3)
        self.seen: list[tuple] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(precision_flags())
        return self.fc2(torch.relu(self.fc1(x)))


def precision_flags() -> tuple:
    if hasattr(torch.backends.cuda.matmul, "fp32_precision"):
        return (torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision)
    return (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)


@pytest.fixture
def tf32_everywhere():
    """The global flags a GPU user may have set: TF32 for matrix products and convolutions."""
    legacy = not hasattr(torch.backends.cuda.matmul, "fp32_precision")
    owners = [
        (torch.backends.cuda.matmul, "allow_tf32" if legacy else "fp32_precision"),
        (torch.backends.cudnn if legacy else torch.backends.cudnn.conv, "allow_tf32" if legacy else "fp32_precision"),
    ]
    saved = [getattr(owner, name) for owner, name in owners]
    for owner, name in owners:
        setattr(owner, name, True if legacy else "tf32")
    try:
        yield precision_flags()
    finally:
        for (owner, name), value in zip(owners, saved):
            setattr(owner, name, value)


def test_default_precision_follows_the_global_flags_and_float32_overrides_them(tf32_everywhere) -> None:
    model = ReadsFlags()
    x = torch.randn(2, 4)
    backpropvis.attribute(model, x, 0, "gbp")
    assert model.seen[-1] == tf32_everywhere  # as Captum, Zennit and torch itself: the user's flags
    backpropvis.attribute(model, x, 0, "gbp", precision="float32")
    assert model.seen[-1] in (("ieee", "ieee"), (False, False))
    assert precision_flags() == tf32_everywhere  # restored
    backpropvis.attribute(model, x, 0, "gbp", precision="tf32")
    assert model.seen[-1] in (("tf32", "tf32"), (True, True))
    with pytest.raises(TargetError):
        backpropvis.attribute(model, x, 9, "gbp", precision="float32")
    assert precision_flags() == tf32_everywhere  # restored after an error too


def test_a_compiled_model_is_refused_in_one_line() -> None:
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))
    with pytest.raises(ModelError, match="uncompiled module"):
        backpropvis.attribute(torch.compile(model), torch.randn(2, 4), 0, "gbp")
    wrapper = nn.Sequential(torch.compile(nn.Sequential(nn.Linear(4, 6), nn.ReLU())), nn.Linear(6, 3))
    with pytest.raises(UnsupportedActivationError, match="compiled module '0'"):
        backpropvis.attribute(wrapper, torch.randn(2, 4), 0, "gbp")


class ReturnsTuple(nn.Module):
    def __init__(self, kind: str) -> None:
        super().__init__()
        self.fc1, self.fc2, self.kind = nn.Linear(4, 6), nn.Linear(6, 3), kind

    def forward(self, x: torch.Tensor):
        logits = self.fc2(torch.relu(self.fc1(x)))
        return {"tuple": (logits, x), "dict": {"logits": logits, "features": x}}[self.kind]


@pytest.mark.parametrize("kind, described", [("tuple", "a tuple of 2"), ("dict", "'logits', 'features'")])
def test_a_model_returning_several_outputs_is_told_how_to_select_the_logits(kind: str, described: str) -> None:
    with pytest.raises(ModelError, match="select_output") as raised:
        backpropvis.attribute(ReturnsTuple(kind), torch.randn(2, 4), 0, "gbp")
    assert described in str(raised.value)


def test_a_model_in_training_mode_gets_a_warning_naming_its_batchnorm_and_dropout() -> None:
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Dropout(0.5), nn.Linear(6, 3))
    with pytest.warns(TrainingModeWarning, match=r"BatchNorm1d '1'.*Dropout '3'"):
        backpropvis.attribute(model, torch.randn(5, 4), 0, "gbp")
    model.eval()
    with torch.no_grad():
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("error")
            backpropvis.attribute(model, torch.randn(5, 4), 0, "gbp")  # no warning in eval mode
