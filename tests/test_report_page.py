"""The report page a newcomer opens first: pictures as files beside it (the page stays small),
the claims that do not hold listed at the top with links to their figure and explanation, what
stands in for the paper's network said once, and how to read each trained-network figure."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import numpy as np

from backpropvis.experiments import PAPER, THEORY
from backpropvis.experiments.base import Claim, ExperimentResult
from backpropvis.experiments.networks import STAND_IN_NOTE
from backpropvis.render import save_png
from backpropvis.report.page import write_index, write_result
from backpropvis.report.readings import FINDINGS, READINGS


class _Page(HTMLParser):
    """Every id, every href and every img src of a page, and where the first <section> starts."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.links: list[str] = []
        self.images: list[str] = []
        self.first_section: int | None = None

    def handle_starttag(self, tag, attrs) -> None:
        attributes = dict(attrs)
        if "id" in attributes:
            self.ids.add(attributes["id"])
        if tag == "a" and "href" in attributes:
            self.links.append(attributes["href"])
        if tag == "img":
            self.images.append(attributes["src"])
        if tag == "section" and self.first_section is None:
            self.first_section = len(self.links)


def _write(out, name: str, model: str, notes: list[str], failing: bool, figure_pixels: int = 64) -> None:
    picture = np.random.default_rng(0).integers(0, 256, (figure_pixels, figure_pixels, 3), dtype=np.uint8)
    save_png(picture, out / name / "figure.png")
    claims = [
        Claim("holds", "a claim that holds", "a", ">=", 1.0).evaluate({"a": 2.0}),
        Claim(f"{name}_fails", f"{name}: a claim that fails", "b", "<", 0.1).evaluate({"b": 0.5 if failing else 0.0}),
    ]
    result = ExperimentResult(
        name, f"{name}'s title", "paper", model, "w", {}, 1.0, claims, {"a": 2.0}, notes=notes, figure="figure.png"
    )
    write_result(result, out)


def test_pictures_are_files_beside_the_page_which_stays_under_2_mb(tmp_path):
    """Eight figures of 7 MB each (noise does not compress): inlined they made a 10 MB page."""
    out = tmp_path / "report"
    for number in range(2, 10):
        _write(out, f"fig{number}", "m", [], failing=False, figure_pixels=1500)
    page_file = write_index(out)
    assert sum(path.stat().st_size for path in out.glob("*/figure.png")) > 40e6
    assert page_file.stat().st_size < 2e6
    page = page_file.read_text(encoding="utf-8")
    assert "data:image" not in page
    parser = _Page()
    parser.feed(page)
    assert sorted(parser.images) == [f"fig{number}/figure.png" for number in range(2, 10)]
    assert all((out / source).is_file() for source in parser.images)
    assert all(source in parser.links for source in parser.images)  # each picture links to its full-size file


def test_the_failing_claims_come_first_each_linked_to_its_figure_and_explanation(tmp_path):
    out = tmp_path / "report"
    _write(out, "fig2", "efficientnet-lite0", [], failing=True)
    _write(out, "fig4", "a random CNN", [], failing=False)
    _write(out, "fig8", "efficientnet-lite0", [], failing=True)
    page = write_index(out).read_text(encoding="utf-8")
    top = page[: page.index("<section")]
    assert "fig2: a claim that fails" in top and "fig8: a claim that fails" in top
    assert "a claim that holds" not in top and "fig4: a claim that fails" not in top
    assert "Claims that do not hold (2)" in top
    parser = _Page()
    parser.feed(page)
    before_sections = parser.links[: parser.first_section]
    for name in ("fig2", "fig8"):
        for target in (f"#{name}-figure", f"#finding-{name}-{name}_fails"):
            assert target in before_sections and target[1:] in parser.ids  # the link lands somewhere
    assert "Not explained yet" in page  # a failing claim nobody explained says so


def test_the_stand_in_note_is_said_once_at_the_top(tmp_path):
    out = tmp_path / "report"
    _write(out, "fig2", "efficientnet-lite0", [STAND_IN_NOTE, "only fig2 says this"], failing=False)
    _write(out, "fig3", "efficientnet-lite0", [STAND_IN_NOTE], failing=False)
    _write(out, "fig9", "efficientnet-lite0", [STAND_IN_NOTE], failing=False)
    page = write_index(out).read_text(encoding="utf-8")
    escaped = STAND_IN_NOTE.replace("'", "&#x27;")
    assert page.count(escaped) == 1
    assert page.index(escaped) < page.index("<section")
    assert "EfficientNet-Lite0</b>" in page[: page.index("<section")]  # what stands in for what, in words
    assert page.count("only fig2 says this") == 1 and page.index("only fig2 says this") > page.index(
        "<section id='fig2'"
    )


def test_a_trained_network_figure_says_how_to_read_it(tmp_path):
    out = tmp_path / "report"
    _write(out, "fig2", "efficientnet-lite0 and digits-vgg", [], failing=False)
    page = write_index(out).read_text(encoding="utf-8")
    reading = re.search(r"<aside class='reading'>(.*?)</aside>", page, re.S)
    assert reading and "checkerboard" in reading.group(1) and "stride-2" in reading.group(1)
    # the paper's own VGG-16 in its place: no word about EfficientNet-Lite0's checkerboard
    _write(out, "fig2", "vgg16", [], failing=False)
    assert "checkerboard" not in write_index(out).read_text(encoding="utf-8")


def test_every_reading_and_finding_names_a_real_experiment_and_claim():
    experiments = {**PAPER, **THEORY}
    assert {"fig2", "fig3", "fig7", "fig8", "fig9", "dead-zones"} <= set(READINGS)  # the trained-network figures
    assert set(READINGS) <= set(experiments)
    for name, claim in FINDINGS:
        assert claim in {declared.id for declared in experiments[name].claims}, (name, claim)
