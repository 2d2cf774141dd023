"""index.html in a real browser: headless Chromium (Debian's ``chromium``) takes a
screenshot of a report holding a passing claim, a failing claim, a skipped
experiment and a figure (a PNG file beside the page), and the pixels must show all of
them; the first screen of a laptop (1280 x 800) shows the table of failing claims."""

from __future__ import annotations

import numpy as np
import pytest
from browser import CHROMIUM, SKIP_REASON, pixels_near, screenshot

from backpropvis.experiments.base import Claim, ExperimentResult
from backpropvis.render import save_png
from backpropvis.report.page import write_index, write_result

PASS_GREEN = (200, 239, 200)  # report.py's #c8efc8
FAIL_RED = (247, 198, 198)  # report.py's #f7c6c6
FIGURE_BLUE = (20, 40, 230)
FAILING_TABLE = (251, 227, 227)  # report.py's #fbe3e3


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


@pytest.mark.skipif(CHROMIUM is None, reason=SKIP_REASON)
def test_index_renders_in_headless_chromium(tmp_path):
    out = tmp_path / "report"
    _report(out)
    page = (out / "index.html").read_text(encoding="utf-8")
    assert "http://" not in page and "https://" not in page  # self-contained: nothing to fetch
    assert "&lt;does not&gt;" in page  # text is escaped, not parsed as HTML

    picture = screenshot(out / "index.html", tmp_path)
    assert picture.shape[:2] == (2000, 1280)
    assert float(picture.std()) > 20.0  # not a blank page
    assert pixels_near(picture, PASS_GREEN) > 500  # the passing verdict cells are green
    assert pixels_near(picture, FAIL_RED) > 500  # the failing one is red
    assert pixels_near(picture, FIGURE_BLUE, tolerance=10) > 20_000  # the figure file is drawn

    first_screen = screenshot(out / "index.html", tmp_path, height=800)
    assert pixels_near(first_screen, FAILING_TABLE, tolerance=3) > 5_000  # the failing claim's row, at the top
