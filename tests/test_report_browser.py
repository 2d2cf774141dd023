"""index.html in a real browser: headless Chromium (Debian's ``chromium``) takes a
screenshot of a report holding a passing claim, a failing claim, a skipped
experiment and an embedded figure, and the pixels must show all of them."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from backpropvis.experiments.base import Claim, ExperimentResult
from backpropvis.render import save_png
from backpropvis.report import write_index, write_result

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PASS_GREEN = (200, 239, 200)  # report.py's #c8efc8
FAIL_RED = (247, 198, 198)  # report.py's #f7c6c6
FIGURE_BLUE = (20, 40, 230)


def _pixels_near(picture: np.ndarray, colour: tuple[int, int, int], tolerance: int = 6) -> int:
    return int((np.abs(picture.astype(int) - np.array(colour)).max(axis=-1) <= tolerance).sum())


def _report(out) -> None:
    figure = np.zeros((300, 600, 3), dtype=np.uint8)
    figure[:] = FIGURE_BLUE
    figure[100:200, 200:400] = 255  # some structure in the figure
    save_png(figure, out / "fig2" / "figure.png")
    claims = [
        Claim("holds", "a claim that holds", "a", ">=", 1.0).evaluate({"a": 2.0}),
        Claim("fails", "a claim that <does not> hold", "b", "<", 0.1).evaluate({"b": 0.5}),
    ]
    write_result(
        ExperimentResult(
            "fig2",
            "Two claims & a figure",
            "paper",
            "efficientnet-lite0",
            "imagenet",
            {"size": 96},
            1.5,
            claims,
            {"a": 2.0, "b": 0.5},
            notes=["a stand-in note"],
            figure="figure.png",
        ),
        out,
    )
    write_result(
        ExperimentResult(
            "fig3", "A skipped one", "paper", "-", "-", {}, 0.0, [], {}, skipped="needs trained VGG-16 weights"
        ),
        out,
    )
    write_index(out)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian: apt-get install chromium)")
def test_index_renders_in_headless_chromium(tmp_path):
    out = tmp_path / "report"
    _report(out)
    page = (out / "index.html").read_text(encoding="utf-8")
    assert "http://" not in page and "https://" not in page  # self-contained: nothing to fetch
    assert "&lt;does not&gt;" in page  # text is escaped, not parsed as HTML

    screenshot = tmp_path / "shot.png"
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        f"--screenshot={screenshot}",
        "--window-size=1280,2000",
        (out / "index.html").as_uri(),
    ]
    subprocess.run(command, check=True, timeout=90, capture_output=True)
    assert screenshot.is_file()
    picture = np.asarray(Image.open(screenshot).convert("RGB"))
    assert picture.shape[:2] == (2000, 1280)
    assert float(picture.std()) > 20.0  # not a blank page
    assert _pixels_near(picture, PASS_GREEN) > 500  # the passing verdict cells are green
    assert _pixels_near(picture, FAIL_RED) > 500  # the failing one is red
    assert _pixels_near(picture, FIGURE_BLUE, tolerance=10) > 20_000  # the embedded figure is drawn
