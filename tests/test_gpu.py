"""The GPU path: the engine, the command line and the streamed statistics on CUDA,
against the CPU in float64 (an independent device and precision).

Skipped without a CUDA GPU (CI has none); ``benchmarks/gpu_check.sh`` runs them on a GPU
machine. ``BACKPROPVIS_GPU_TEST_DEVICE=cpu`` runs the same checks on the CPU, so their
logic is exercised where no GPU is.
"""

from __future__ import annotations

import json
import os

import pytest
import torch
from tiny_nets import seeded_
from torch import nn

import backpropvis
from backpropvis.cli import main
from backpropvis.core.metrics import cosine_similarity
from backpropvis.models import SeededDense, seeded_dense
from backpropvis.stats import read_database

DEVICE = os.environ.get("BACKPROPVIS_GPU_TEST_DEVICE", "cuda")
pytestmark = pytest.mark.skipif(DEVICE == "cuda" and not torch.cuda.is_available(), reason="needs a CUDA GPU")
METHODS = ("saliency", "deconvnet", "gbp")


def small_vgg() -> nn.Module:
    """Two conv-ReLU-max-pool blocks, dense-ReLU-dense: [B, 3, 32, 32] -> [B, 10]."""
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 8 * 8, 64),
        nn.ReLU(),
        nn.Linear(64, 10),
    )
    return seeded_(model, 41, scale=0.2).eval()


def relative_errors(actual: torch.Tensor, expected: torch.Tensor) -> torch.Tensor:
    """Per map [T, B, ...]: ||actual - expected|| / ||expected||."""
    actual, expected = actual.double().cpu(), expected.double().cpu()
    return (actual - expected).flatten(2).norm(dim=-1) / expected.flatten(2).norm(dim=-1)


@pytest.fixture(scope="module")
def reference() -> tuple[nn.Module, torch.Tensor, backpropvis.Attributions]:
    """The model, inputs and float64 CPU maps every device and precision is compared with."""
    model = small_vgg().double()
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    maps = backpropvis.attribute_many(
        model, x, ["max", 3, "random"], METHODS, generator=torch.Generator().manual_seed(1)
    )
    return model, x, maps


@pytest.mark.parametrize("precision, bound", [("float32", 1e-5), ("tf32", 2e-2), ("bfloat16", None)])
def test_gpu_maps_match_the_cpu_in_float64(reference, precision: str, bound) -> None:
    model64, x64, expected = reference
    model = small_vgg().to(DEVICE)
    x = x64.float().to(DEVICE)
    maps = backpropvis.attribute_many(
        model, x, ["max", 3, "random"], METHODS, generator=torch.Generator().manual_seed(1), precision=precision
    )
    assert torch.equal(maps.targets.cpu(), expected.targets)
    for method in METHODS:
        assert maps[method].device.type == torch.device(DEVICE).type and maps[method].dtype == torch.float32
        if bound is not None:
            assert float(relative_errors(maps[method], expected[method]).max()) < bound, method
        else:  # bfloat16 keeps 8 bits of mantissa: close maps, a few ReLU masks flip
            assert float(cosine_similarity(maps[method].double().cpu(), expected[method]).min()) > 0.95, method


def test_gpu_memory_is_freed_after_every_call() -> None:
    model = small_vgg().to(DEVICE)
    x = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(2)).to(DEVICE)
    backpropvis.attribute_many(model, x, ["max", "random"], METHODS)
    if DEVICE == "cuda":
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
    for _ in range(5):
        backpropvis.attribute_many(model, x, ["max", "random"], METHODS)
    if DEVICE == "cuda":
        torch.cuda.synchronize()
        assert torch.cuda.memory_allocated() == before


def test_gpu_visualize_command_gives_the_cpu_numbers(tmp_path) -> None:
    summaries = {}
    for device in ("cpu", DEVICE):
        out = tmp_path / device
        assert (
            main(
                [
                    "visualize",
                    "tabby",
                    "--model",
                    "vgg16",
                    "--weights",
                    "random",
                    "--targets",
                    "max,281",
                    "--device",
                    device,
                    "--precision",
                    "float32",
                    "--out",
                    str(out),
                ]
            )
            == 0
        )
        summaries[device] = json.loads((out / "summary.json").read_text())
    for on_cpu, on_device in zip(summaries["cpu"]["maps"], summaries[DEVICE]["maps"]):
        assert (on_cpu["method"], on_cpu["target_index"]) == (on_device["method"], on_device["target_index"])
        assert abs(on_cpu["input_similarity"] - on_device["input_similarity"]) < 1e-4


def test_gpu_class_distance_command_gives_the_cpu_numbers(tmp_path) -> None:
    rows = {}
    for device in ("cpu", DEVICE):
        db = tmp_path / f"{device}.sqlite"
        assert (
            main(
                [
                    "class-distance",
                    "--samples",
                    "--model",
                    "vgg16",
                    "--weights",
                    "random",
                    "--input-size",
                    "64",
                    "--batch-size",
                    "3",
                    "--workers",
                    "0",
                    "--device",
                    device,
                    "--precision",
                    "float32",
                    "--db",
                    str(db),
                ]
            )
            == 0
        )
        rows[device] = {(row["image"], row["method"]): row for row in read_database(db).results}
    assert rows["cpu"].keys() == rows[DEVICE].keys() and rows["cpu"]
    for key, row in rows["cpu"].items():
        other = rows[DEVICE][key]
        assert (row["first_logit"], row["second_logit"]) == (other["first_logit"], other["second_logit"])
        assert abs(row["class_distance"] - other["class_distance"]) < 1e-4


def test_gpu_seeded_dense_keeps_the_cpu_draw_and_computes_with_it(monkeypatch) -> None:
    """fig5's on-the-fly layer on the device (issue 19, point 4): blocks drawn ahead (page-locked,
    copied without waiting) and the matrix kept there are the CPU's serial draw to the bit, drawn
    once; the forward and backward passes match float64 on the CPU."""
    monkeypatch.setattr(seeded_dense, "_BLOCK_BYTES", 7 * 300 * 4)  # 8 blocks of 7 columns
    expected = SeededDense(300, 50, seed=4, name="hidden", materialize_bytes=0).drawn_block(range(50))
    ahead = SeededDense(300, 50, seed=4, name="hidden", materialize_bytes=0)
    ahead.keep_drawn_on = ()
    assert torch.equal(torch.cat([rows.cpu() for _, rows in ahead.column_blocks(range(50), DEVICE)]), expected)
    kept = SeededDense(300, 50, seed=4, name="hidden", materialize_bytes=0)
    kept.keep_drawn_on = (torch.device(DEVICE).type,)
    x = torch.randn(3, 300, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    device_x = x.float().to(DEVICE).requires_grad_()
    kept(device_x)  # the first pass draws and keeps
    assert kept._kept is not None and kept._kept.device.type == torch.device(DEVICE).type
    assert torch.equal(kept._kept.cpu(), expected)
    kept.drawn_block = lambda *args: pytest.fail("drawn again")  # type: ignore[method-assign]
    output = kept(device_x)
    (grad,) = torch.autograd.grad(output[:, 9].sum(), device_x)
    torch.testing.assert_close(output.double().cpu(), x @ expected.double().T, rtol=1e-3, atol=1e-4)
    torch.testing.assert_close(grad.double().cpu(), expected.double()[9].expand(3, -1), rtol=1e-3, atol=1e-5)
