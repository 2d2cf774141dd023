"""The Zeiler & Fergus view: top images per channel, receptive fields, projections, page.

- The top images of every channel are those of a hand-written loop over the images
  (spatial maxima sorted), and a scan stopped halfway and resumed ends with the same lists.
- Receptive fields: the textbook values for VGG-16 (conv1_2 5 px, conv3_3 40 px, conv5_3 196 px),
  the small net's by hand, and the unit's gradient vanishes outside its box (an independent check).
- The projections beside each patch are Captum's ``NeuronDeconvolution`` / ``NeuronGuidedBackprop``
  maps of that neuron, cut to the box; the page renders in headless Chromium.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from browser import CHROMIUM, SKIP_REASON, screenshot
from PIL import Image
from test_unit_targets import small_vgg

from backpropvis.core.errors import Interrupted, StoreError, TargetError
from backpropvis.images.sets import Samples, list_images
from backpropvis.jobs.units_view import run_units
from backpropvis.models import describe_module
from backpropvis.render import to_display
from backpropvis.stats import top_units
from backpropvis.stats.top_units import Streaming, UnitScan, parse_channels, scan_top_units
from backpropvis.theory.receptive_fields import layers_over_depth, receptive_field

captum_attr = pytest.importorskip("captum.attr")

SOURCE = Samples(4, 0)  # the six photos and four crops: ten images
QUIET = Streaming(workers=0, progress=False)


def loaded():
    return describe_module(small_vgg(), "small-vgg", "random", 32)


def test_the_top_images_are_the_highest_spatial_maxima_of_each_channel(tmp_path) -> None:
    model = loaded()
    result = scan_top_units(SOURCE, tmp_path / "scan.json", model, UnitScan("features.5", (0, 3, 7), 4), QUIET)
    keys = list_images(SOURCE)
    pixels = torch.stack([model.preprocessing(SOURCE.load(key)) for key in keys])
    with torch.no_grad():
        activation = model.module.features[:6](pixels)  # [10, 16, 16, 16]
    for channel in (0, 3, 7):
        flat = activation[:, channel].flatten(1)
        order = sorted(range(len(keys)), key=lambda i: (-float(flat[i].max()), keys[i]))[:4]
        tops = result.channels[channel]
        assert [top.image for top in tops] == [keys[i] for i in order]
        for top, i in zip(tops, order):
            assert top.activation == pytest.approx(float(flat[i].max()), rel=1e-6)
            assert activation[i, channel][top.position] == flat[i].max()


def test_a_resumed_scan_ends_with_the_uninterrupted_lists(tmp_path) -> None:
    scan = UnitScan("features.2", None, 3)
    whole = scan_top_units(SOURCE, tmp_path / "whole.json", loaded(), scan, Streaming(3, 0, progress=False))
    half = scan_top_units(SOURCE, tmp_path / "half.json", loaded(), UnitScan("features.2", None, 3, limit=4), QUIET)
    assert half.images == 4
    resumed = scan_top_units(SOURCE, tmp_path / "half.json", loaded(), scan, Streaming(3, 0, progress=False))
    assert resumed.images == 10 and resumed.channels == whole.channels
    assert sorted(whole.channels) == list(range(8))  # every channel of an 8-channel layer (fewer than 16)
    with pytest.raises(StoreError, match="other settings \\(layer"):
        scan_top_units(SOURCE, tmp_path / "half.json", loaded(), UnitScan("features.5"), QUIET)


def test_bad_layers_and_channels_fail_in_one_line(tmp_path) -> None:
    with pytest.raises(TargetError, match="no layer named 'features.9'; its layers include features"):
        scan_top_units(SOURCE, tmp_path / "a.json", loaded(), UnitScan("features.9"), QUIET)
    with pytest.raises(TargetError, match="channel 16 is outside layer 'features.5''s 16 channels"):
        scan_top_units(SOURCE, tmp_path / "b.json", loaded(), UnitScan("features.5", (1, 16)), QUIET)
    assert parse_channels("0-3, 8,2") == (0, 1, 2, 3, 8)
    for text in ("3-1", "a", "1-", ""):
        with pytest.raises(TargetError, match="ranges such as 0-15"):
            parse_channels(text)


def test_receptive_fields_are_the_textbook_ones_and_hold_the_units_gradient(vgg16_random) -> None:
    model = vgg16_random
    x = torch.zeros(1, 3, 32, 32)
    # VGG-16 (3x3 convolutions, padding 1, four 2x2 pools before conv5): conv1_2 5 px, conv3_3 40 px, conv5_3 196 px
    for layer, size, jump in (("features.2", 5, 1), ("features.14", 40, 4), ("features.28", 196, 16)):
        field = receptive_field(model, x, layer)
        assert (field.size, field.jump) == ((size, size), (jump, jump)), layer
    assert receptive_field(model, x, "classifier.0").dense
    net = small_vgg()
    field = receptive_field(net, torch.zeros(1, 3, 32, 32), "features.5")
    assert (field.size, field.jump, field.start) == ((10, 10), (2, 2), (0.5, 0.5))
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(3), requires_grad=True)
    for position in ((5, 7), (0, 0), (15, 15)):
        (grad,) = torch.autograd.grad(net.features[:6](x)[0, 4][position], x)
        top, left, bottom, right = field.box(position, (32, 32))
        outside = grad.abs().sum(dim=1)[0].clone()
        outside[top:bottom, left:right] = 0
        assert grad.abs().sum() > 0 and outside.sum() == 0, position


def test_the_view_shows_captums_projections_of_each_top_unit_in_its_receptive_field(tmp_path) -> None:
    model = loaded()
    page = run_units(SOURCE, tmp_path, model, UnitScan("features.5", (2, 5), 2), QUIET)
    summary = json.loads((tmp_path / "units.json").read_text())
    assert list(summary["channels"]) == ["2", "5"] and all(len(tops) == 2 for tops in summary["channels"].values())
    top = summary["channels"]["5"][0]
    assert top["activation"] >= summary["channels"]["5"][1]["activation"]
    x = model.preprocessing(SOURCE.load(top["image"]))[None]
    top_, left, bottom, right = top["box"]
    explainers = {"deconvnet": captum_attr.NeuronDeconvolution, "gbp": captum_attr.NeuronGuidedBackprop}
    for method, explainer in explainers.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = explainer(model.module, model.module.features[5]).attribute(
                x.clone(), neuron_selector=(5, *top["position"])
            )[0, :, top_:bottom, left:right]
        shown = np.asarray(Image.open(tmp_path / "patches" / f"c5-0-{method}.png"))
        assert np.abs(shown.astype(int) - to_display(expected).astype(int)).max() <= 1, method
    text = page.read_text()
    assert "http" not in text and text.count("<figure>") == 4


@pytest.mark.skipif(CHROMIUM is None, reason=SKIP_REASON)
def test_the_units_page_renders_in_headless_chromium(tmp_path) -> None:
    page = run_units(SOURCE, tmp_path / "view", loaded(), UnitScan("features.5", (0, 1), 3), QUIET)
    picture = screenshot(page, tmp_path, width=1100, height=600)
    assert float(picture.std()) > 20.0  # not a blank page
    patches = picture[190:290, 20:1000]  # the first channel's row of figures
    assert (np.abs(patches.astype(int) - 255).sum(axis=2) > 60).mean() > 0.3  # pictures drawn, not empty frames


def test_the_audit_panel_layers_spread_over_the_depth(vgg16_random) -> None:
    """Six of VGG-16's 13 convolutions and two hidden dense layers, the first and the last
    hidden one included, the logits' layer (classifier.6) left out."""
    picked = layers_over_depth(vgg16_random, torch.zeros(1, 3, 32, 32))
    assert len(picked) == 6 and picked[0] == "features.0" and picked[-1] == "classifier.3"
    order = [f"features.{i}" for i in (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)] + [
        "classifier.0",
        "classifier.3",
    ]
    assert [order.index(name) for name in picked] == sorted(order.index(name) for name in picked)
    assert layers_over_depth(small_vgg(), torch.zeros(1, 3, 32, 32), count=10) == [
        "features.0",
        "features.2",
        "features.5",
        "classifier.0",
    ]


def test_ctrl_c_keeps_the_batches_done_and_the_same_call_finishes_the_scan(tmp_path, monkeypatch) -> None:
    scan, streaming = UnitScan("features.2", (0, 1), 2), Streaming(4, 0, progress=False)
    whole = scan_top_units(SOURCE, tmp_path / "whole.json", loaded(), scan, streaming)
    merge, calls = top_units._merge, []

    def interrupted(*args) -> None:
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        merge(*args)

    monkeypatch.setattr(top_units, "_merge", interrupted)
    with pytest.raises(Interrupted, match="4 of 10 images scanned and saved in .*; run the same command again"):
        scan_top_units(SOURCE, tmp_path / "cut.json", loaded(), scan, streaming)
    monkeypatch.setattr(top_units, "_merge", merge)
    assert len(json.loads((tmp_path / "cut.json").read_text())["done"]) == 4
    assert scan_top_units(SOURCE, tmp_path / "cut.json", loaded(), scan, streaming).channels == whole.channels


def test_a_dense_layer_has_top_images_by_value_and_the_whole_image_as_field(tmp_path) -> None:
    model = loaded()
    run_units(SOURCE, tmp_path, model, UnitScan("classifier.0", (3,), 3), QUIET)
    tops = json.loads((tmp_path / "units.json").read_text())["channels"]["3"]
    keys = list_images(SOURCE)
    with torch.no_grad():
        values = model.module.classifier[0](
            model.module.features(torch.stack([model.preprocessing(SOURCE.load(k)) for k in keys])).flatten(1)
        )[:, 3]
    expected = sorted(range(len(keys)), key=lambda i: (-float(values[i]), keys[i]))[:3]
    assert [top["image"] for top in tops] == [keys[i] for i in expected]
    assert all(top["position"] == [] and top["box"] == [0, 0, 32, 32] for top in tops)
