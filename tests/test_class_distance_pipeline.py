"""The class-distance pipeline: what it hands over and when it waits changes no number.

- the workers' uint8 pixels, scaled through the lookup table, equal the float
  preprocessing written out in numpy;
- a run (one engine call per batch, pairs as functions of the engine's logits, results
  read back behind and written in groups) stores bit for bit the rows of the way main
  did it: a no-grad forward pass to choose the pairs, then the engine with the pairs as
  index tensors, then the metrics;
- function targets are checked; results come back in order and in whole groups.
"""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest
import torch
from PIL import Image

import backpropvis.stats.runner
from backpropvis.core.errors import TargetError
from backpropvis.core.metrics import class_distance, class_distance_minmax, input_similarity
from backpropvis.core.rules import resolve_rule
from backpropvis.core.targets import resolve_targets
from backpropvis.engine import attribute_many
from backpropvis.images.samples import load_image, logit_name
from backpropvis.images.sets import Samples, read_image
from backpropvis.models import TF_LITE, load_model
from backpropvis.stats import choose_pairs, run_class_distance
from backpropvis.stats.streaming import ResultsBehind

SIZE = 32


def test_uint8_pixels_through_the_table_equal_the_float_pipeline_in_numpy():
    preprocessing = TF_LITE.resized(48)
    for name in ("tabby", "camera", "rocket"):
        picture = load_image(name)
        resized = np.asarray(picture.resize(_resize_size(picture.size, preprocessing), Image.Resampling.BILINEAR))
        left = (resized.shape[1] - preprocessing.crop) // 2
        top = (resized.shape[0] - preprocessing.crop) // 2
        crop = resized[top : top + preprocessing.crop, left : left + preprocessing.crop].astype(np.float32) / 255.0
        mean, std = np.float32(preprocessing.mean), np.float32(preprocessing.std)
        expected = ((crop - mean) / std).transpose(2, 0, 1)
        pixels = preprocessing.pixels(picture)
        assert pixels.dtype == torch.uint8
        assert np.array_equal(preprocessing.from_pixels(pixels).numpy(), expected)
        assert torch.equal(preprocessing(picture), preprocessing.from_pixels(pixels))


def _resize_size(size: tuple[int, int], preprocessing) -> tuple[int, int]:
    scale = preprocessing.resize / min(size)
    return max(preprocessing.crop, round(size[0] * scale)), max(preprocessing.crop, round(size[1] * scale))


def _rows(db) -> list[tuple]:
    with sqlite3.connect(db) as connection:
        return connection.execute(
            "SELECT image, method, first_logit, second_logit, predicted, predicted_name, class_distance, "
            "class_distance_minmax, input_similarity_first, input_similarity_second FROM results ORDER BY image, method"
        ).fetchall()


def _rows_the_old_way(loaded, source, batch_size: int, pairs: str) -> list[tuple]:
    """main's per-batch steps, written out: decode in float, pad, a no-grad forward to
    choose the pairs, the engine with index targets, the metrics one image at a time."""
    rules = [resolve_rule(name) for name in ("saliency", "deconvnet", "gbp")]
    keys = source.keys()
    rows = []
    for start in range(0, len(keys), batch_size):
        names = keys[start : start + batch_size]
        inputs = torch.zeros((batch_size, 3, SIZE, SIZE))
        inputs[: len(names)] = torch.stack([loaded.preprocessing(read_image(source, key).picture) for key in names])
        with torch.no_grad():
            logits = loaded.module(inputs)[: len(names)]
        chosen = choose_pairs(pairs, logits, names, 0)
        padded = torch.zeros((2, batch_size), dtype=torch.long)
        padded[:, : len(names)] = chosen
        maps = attribute_many(loaded.module, inputs, [padded[0], padded[1]], rules)
        predicted = logits.argmax(dim=1)
        for rule in rules:
            pair = maps[rule.name][:, : len(names)]
            distance, minmax = class_distance(pair[0], pair[1]), class_distance_minmax(pair[0], pair[1])
            similarity = input_similarity(pair, inputs[: len(names)])
            for column, key in enumerate(names):
                top = int(predicted[column])
                rows.append(
                    (key, rule.name, int(chosen[0, column]), int(chosen[1, column]), top, logit_name(top, 1000))
                    + (float(distance[column]), float(minmax[column]))
                    + (float(similarity[0, column]), float(similarity[1, column]))
                )
    return sorted(rows)


@pytest.mark.parametrize("pairs", ["max-random", "top1-top2"])
def test_a_run_stores_bit_for_bit_the_rows_of_the_old_per_batch_steps(tmp_path, pairs):
    source = Samples(crops=3)
    loaded = load_model("efficientnet-lite0", weights="imagenet", input_size=SIZE)
    db = tmp_path / "run.sqlite"
    run_class_distance(source, db, model=loaded, batch_size=4, workers=1, progress=False, pairs=pairs)
    assert _rows(db) == _rows_the_old_way(loaded, source, 4, pairs)


def test_channels_last_inputs_give_the_same_numbers_to_float_rounding(tmp_path, monkeypatch):
    """The layout a CUDA run uses, checked on the CPU: other kernels, the same results."""
    import contextlib

    source = Samples()
    loaded = load_model("efficientnet-lite0", weights="imagenet", input_size=SIZE)
    common = dict(model=loaded, batch_size=3, workers=0, progress=False)
    run_class_distance(source, tmp_path / "plain.sqlite", **common)

    @contextlib.contextmanager
    def channels_last(network, device):
        network.to(memory_format=torch.channels_last)
        yield torch.channels_last

    monkeypatch.setattr(backpropvis.stats.runner, "device_layout", channels_last)
    run_class_distance(source, tmp_path / "cl.sqlite", **common)
    plain, last = _rows(tmp_path / "plain.sqlite"), _rows(tmp_path / "cl.sqlite")
    assert [row[:6] for row in plain] == [row[:6] for row in last]
    np.testing.assert_allclose([row[6:] for row in plain], [row[6:] for row in last], rtol=1e-4, atol=1e-6)


def test_function_targets_are_called_with_the_logits_and_checked():
    logits = torch.tensor([[0.0, 2.0, 1.0], [3.0, 0.0, 1.0]])
    resolved = resolve_targets([lambda found: found.argmin(dim=1), 2], logits)
    assert resolved.tolist() == [[0, 1], [2, 2]]
    with pytest.raises(TargetError, match="outside"):
        resolve_targets([lambda found: torch.tensor([0, 3])], logits)
    with pytest.raises(TargetError, match="shaped"):
        resolve_targets([lambda found: torch.tensor([0])], logits)


def test_results_come_back_in_order_and_in_whole_groups():
    written: list[list[int]] = []
    behind: ResultsBehind[int] = ResultsBehind(lambda done: written.append([item for item, _ in done]), every=3600)
    for number in range(5):
        behind.add(number, torch.full((2,), float(number)) if number != 2 else None)
    assert written == []  # within the hour: kept
    behind.flush()
    assert written == [[0, 1, 2, 3, 4]]  # one group, in order, the batch without results included
    every_batch: list[list[int]] = []
    behind = ResultsBehind(lambda done: every_batch.append([item for item, _ in done]), every=0.0)
    for number in range(3):
        behind.add(number, torch.zeros(1))
    behind.flush()
    assert every_batch == [[0], [1], [2]]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (benchmarks/gpu_check.sh runs it)")
def test_cuda_pipeline_matches_the_cpu_run(tmp_path):
    """On a GPU: pinned uint8 batches, the table on the device (bit for bit the CPU's input),
    channels-last, results read back behind; the rows agree with the CPU run's to float32
    rounding (cuDNN's kernels), the pairs and predictions exactly."""
    source = Samples(crops=6)
    loaded = load_model("efficientnet-lite0", weights="imagenet", input_size=SIZE)
    picture = load_image("tabby")
    pixels = loaded.preprocessing.pixels(picture)
    assert torch.equal(loaded.preprocessing.from_pixels(pixels.cuda()).cpu(), loaded.preprocessing(picture))
    common = dict(model=loaded, batch_size=4, workers=1, progress=False, precision="float32")
    run_class_distance(source, tmp_path / "cpu.sqlite", device="cpu", **common)
    run_class_distance(source, tmp_path / "cuda.sqlite", device="cuda", **common)
    cpu, cuda = _rows(tmp_path / "cpu.sqlite"), _rows(tmp_path / "cuda.sqlite")
    assert [row[:6] for row in cpu] == [row[:6] for row in cuda]
    np.testing.assert_allclose([row[6:] for row in cpu], [row[6:] for row in cuda], rtol=1e-2, atol=1e-4)
