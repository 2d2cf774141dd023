"""Our cascading randomisation against Quantus 0.6's MPRT (Model Parameter Randomisation Test).

Where the definitions coincide our numbers equal Quantus's: a model without batch norm
whose modules are registered in the order they run, saliency maps, the Spearman rank
correlation of absolute values (Quantus's default; without our 99th-percentile clipping,
which Quantus does not do), and layers whose ``reset_parameters`` is the paper's init with
our seed (Quantus redraws a layer by calling its ``reset_parameters``). Where registration
and execution orders differ, Quantus's "top" layer is the last one *registered*, ours the
last one *run*: the test shows the steps that differ and the one that agrees (all random).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from backpropvis.engine import attribute_many
from backpropvis.models.init import init_layer_
from backpropvis.sanity.adebayo import AdebayoSettings, planned_steps, redraw_seed
from backpropvis.sanity.protocol import SanityRun
from backpropvis.sanity.similarity import spearman
from backpropvis.sanity.steps import StepStore

quantus = pytest.importorskip("quantus")

SEED = 0


class PaperInit:
    """A layer whose ``reset_parameters`` (what Quantus calls to redraw it) is our redraw:
    the paper's init seeded by (our first redraw seed, its layer name)."""

    layer_name = ""

    def reset_parameters(self) -> None:
        if not self.layer_name:  # during construction: PyTorch's own init
            super().reset_parameters()  # type: ignore[misc]
            return
        init_layer_(self, redraw_seed(SEED, 0), self.layer_name)  # type: ignore[arg-type]


class Conv(PaperInit, nn.Conv2d):
    pass


class Dense(PaperInit, nn.Linear):
    pass


def named(module: PaperInit, name: str) -> PaperInit:
    module.layer_name = name
    return module


class InOrder(nn.Module):
    """conv1 -> conv2 -> fc, registered in that order (no batch norm)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.conv1 = named(Conv(1, 4, 3, padding=1), "conv1")
        self.conv2 = named(Conv(4, 4, 3, padding=1), "conv2")
        self.fc = named(Dense(4 * 12 * 12, 5), "fc")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return self.fc(x.flatten(1))


class OutOfOrder(InOrder):
    """The same network with the classifier registered first: execution order conv1, conv2,
    fc; registration order fc, conv1, conv2."""

    def __init__(self) -> None:
        nn.Module.__init__(self)
        torch.manual_seed(1)
        self.fc = named(Dense(4 * 12 * 12, 5), "fc")
        self.conv1 = named(Conv(1, 4, 3, padding=1), "conv1")
        self.conv2 = named(Conv(4, 4, 3, padding=1), "conv2")


def inputs() -> torch.Tensor:
    return torch.randn(6, 1, 12, 12, generator=torch.Generator().manual_seed(3))


def saliency(model, inputs, targets, **_) -> np.ndarray:
    x, y = torch.as_tensor(inputs, dtype=torch.float32), torch.as_tensor(targets)
    return attribute_many(model, x, [y], ["saliency"])["saliency"][0].numpy()


def quantus_scores(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, list[float]]:
    metric = quantus.MPRT(layer_order="top_down", seed=42, abs=True, normalise=True, disable_warnings=True)
    return metric(model=model, x_batch=x.numpy(), y_batch=y.numpy(), explain_func=saliency, device="cpu", batch_size=64)


def our_scores(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[tuple[tuple[str, ...], np.ndarray]]:
    """(layers redrawn, per-image |Spearman|) per cascading step of our protocol's first seed."""
    run = SanityRun(
        model=model,
        inputs=x,
        keys=[str(i) for i in range(len(x))],
        model_name="t",
        weights="t",
        store=StepStore(None, {}),
        seed=SEED,
        progress=False,
    )
    settings = AdebayoSettings(methods=("saliency",), granularity="layers", independent=False, data=False)
    reference = torch.as_tensor(saliency(model, x, y))
    found = []
    for step in planned_steps(run, settings)[1:]:
        maps = torch.as_tensor(saliency(step.build(0), x, y))
        found.append((step.redrawn, spearman(reference.abs(), maps.abs())))
    return found


def test_where_definitions_coincide_our_numbers_equal_quantus() -> None:
    model, x = InOrder().eval(), inputs()
    y = model(x).argmax(1)
    theirs = quantus_scores(model, x, y)
    ours = our_scores(model, x, y)
    assert list(theirs)[1:] == ["fc", "conv2", "conv1"]  # Quantus's top-down order: reversed registration
    assert [redrawn[0] for redrawn, _ in ours] == ["fc", "conv2", "conv1"]  # ours: reversed execution
    for (_, values), layer in zip(ours, list(theirs)[1:]):
        np.testing.assert_allclose(values, theirs[layer], rtol=1e-6, atol=1e-9)
    # the match is step by step: the steps' values differ from each other, and none is NaN
    assert not np.allclose(theirs["fc"], theirs["conv1"])
    assert all(np.isfinite(values).all() for _, values in ours)


def test_registration_order_differs_from_execution_order() -> None:
    model, x = OutOfOrder().eval(), inputs()
    y = model(x).argmax(1)
    theirs = quantus_scores(model, x, y)
    ours = our_scores(model, x, y)
    # Quantus's first "top" layer is the last registered one, conv2: a layer in the middle of the
    # network; then conv1 (the input layer); the classifier it redraws last. Ours follow the forward pass.
    assert list(theirs)[1:] == ["conv2", "conv1", "fc"]
    assert [redrawn for redrawn, _ in ours] == [("fc",), ("conv2", "fc"), ("conv1", "conv2", "fc")]
    # the first two steps redraw different layer sets, so the numbers differ ...
    assert not np.allclose(ours[0][1], theirs["conv2"])
    # ... and the last (every layer redrawn, with the same values) agrees
    np.testing.assert_allclose(ours[-1][1], theirs["fc"], rtol=1e-6, atol=1e-9)
