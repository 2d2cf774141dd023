"""The adebayo2018 protocol end to end on the digits VGG (32 px, a few images): what
``sanity.json`` holds, the order and sets of redrawn layers, the controls, the small-sample
flag, resuming, the page in a browser, and bad settings refused."""

from __future__ import annotations

import json
import math

import pytest
from browser import CHROMIUM, SKIP_REASON, screenshot

from backpropvis.core.errors import BackpropvisError
from backpropvis.sanity import PROTOCOLS, find_protocol
from backpropvis.sanity.page import format_result
from backpropvis.sanity.run import RESULT_FILE, SanityOptions, load_result, run_sanity

SETTINGS = {"independent": True, "seeds": 2, "granularity": "stages", "images": 5}


def tiny(**settings) -> SanityOptions:
    return SanityOptions(size="tiny", settings=settings, progress=False)


EXECUTION = ("conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "fc1", "fc2")


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("adebayo")
    result, claims = run_sanity("adebayo2018", out, options=tiny(**SETTINGS))
    return out, result, claims


def test_the_registry_knows_the_protocol_and_refuses_unknown_names() -> None:
    assert "adebayo2018" in PROTOCOLS and find_protocol("adebayo2018").claims
    with pytest.raises(BackpropvisError, match="unknown `protocol` 'nope'"):
        find_protocol("nope")


def test_sanity_json_holds_every_step_method_and_metric(digits_run) -> None:
    out, result, _ = digits_run
    data = json.loads((out / RESULT_FILE).read_text())
    assert data["protocol"] == "adebayo2018" and data["batch_norm"] == "reestimate" and data["order"] == "execution"
    assert [step["series"] for step in data["steps"]] == ["cascading"] * 6 + ["independent"] * 5 + ["data"]
    for step in data["steps"]:
        for method in ("saliency", "deconvnet", "gbp"):
            for metric in ("spearman_abs", "spearman_signed", "ssim", "hog"):
                number = step["methods"][method][metric]
                assert number["count"] == 5 and len(number["values"]) == 5
                assert number["low"] <= number["mean"] <= number["high"]
    assert load_result(out).to_json()["steps"] == data["steps"]


def test_cascading_redraws_from_the_top_in_execution_order(digits_run) -> None:
    _, result, _ = digits_run
    cascading = result.series("cascading")
    assert cascading[0].label == "trained" and cascading[0].redrawn == ()
    # the digits VGG's stages are the first conv of each block, fc1 and fc2: cut points from the top
    assert [step.redrawn for step in cascading[1:]] == [
        EXECUTION[6:],
        EXECUTION[5:],
        EXECUTION[4:],
        EXECUTION[2:],
        EXECUTION,
    ]
    assert [step.redrawn for step in result.series("independent")] == [
        ("fc2",),
        ("fc1",),
        ("conv3_1",),
        ("conv2_1",),
        ("conv1_1",),
    ]
    trained = cascading[0].methods["gbp"]["spearman_abs"]
    assert trained.mean == pytest.approx(1.0)
    # the network fully redrawn is further from the trained one than the top layer redrawn (for saliency)
    assert cascading[-1].methods["saliency"]["ssim"].mean < cascading[0].methods["saliency"]["ssim"].mean


def test_controls_stand_beside_every_number(digits_run) -> None:
    _, result, _ = digits_run
    for step in result.steps:
        for method in result.methods:
            controls = step.controls[method]
            assert {"random map", "edge map"} <= set(controls)
            assert abs(controls["random map"]["spearman_abs"].mean) < 0.15  # a random map: the floor
            redrawn_twice = step.series != "data" and step.label != "trained"
            assert ("other seed" in controls) == redrawn_twice
    # the honest finding: GBP's maps resemble the input's edges more than saliency's do on the trained model
    trained = result.steps[0].controls
    assert trained["gbp"]["edge map"]["spearman_signed"].mean > trained["saliency"]["edge map"]["spearman_signed"].mean


def test_claims_are_judged_and_small_samples_flagged(digits_run) -> None:
    out, result, claims = digits_run
    assert {claim["id"] for claim in claims} == {claim.id for claim in find_protocol("adebayo2018").claims}
    assert all(not math.isnan(claim["value"]) for claim in claims)
    text = format_result(result)
    assert "from 5 images only (fewer than 20)" in text and "controls: random" in text
    page = (out / "index.html").read_text()
    assert "from 5 images only (fewer than 20)" in page and "data:image/png;base64," in page


def test_a_rerun_resumes_and_another_setting_recomputes(digits_run, tmp_path) -> None:
    out, result, _ = digits_run
    again, _ = run_sanity("adebayo2018", out, options=tiny(**SETTINGS))
    assert any("12 steps kept from an earlier run" in note for note in again.notes)
    assert again.to_json()["steps"] == result.to_json()["steps"]
    other, _ = run_sanity("adebayo2018", out, options=tiny(**{**SETTINGS, "seeds": 1, "independent": False}))
    assert not any("kept from an earlier run" in note for note in other.notes)
    assert other.series("independent") == []


def test_bad_settings_are_refused_before_any_work(tmp_path) -> None:
    with pytest.raises(BackpropvisError, match="`settings` names 'sedes'"):
        run_sanity("adebayo2018", tmp_path, options=tiny(sedes=2))
    with pytest.raises(BackpropvisError, match="granularity"):
        run_sanity(
            "adebayo2018",
            tmp_path,
            options=tiny(granularity="blocks"),
        )
    with pytest.raises(BackpropvisError, match="unknown method|nope"):
        run_sanity("adebayo2018", tmp_path, options=tiny(methods=("nope",)))
    assert not (tmp_path / RESULT_FILE).exists()


@pytest.mark.skipif(CHROMIUM is None, reason=SKIP_REASON)
def test_the_page_renders_in_headless_chromium(digits_run, tmp_path) -> None:
    out, _, _ = digits_run
    alone = tmp_path / "alone.html"  # the page alone: every figure is inside it
    alone.write_bytes((out / "index.html").read_bytes())
    picture = screenshot(alone, tmp_path, height=3000)
    assert picture.shape[:2] == (3000, 1280)
    assert float(picture[300:1800].std()) > 30.0  # the curves and the map grid are drawn
