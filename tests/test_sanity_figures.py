"""The README's figure of each sanity protocol: the PNGs exist, are shown and small, the numbers beside them
are those of the run that drew them (``docs/images/sanity-figures.json``), and the script that makes them
(``docs/make_sanity_figures.py``) still runs, here at its tiny size."""

from __future__ import annotations

import importlib.util
import json
import math
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from backpropvis.render import pyplot
from backpropvis.sanity import PROTOCOLS, SanityResult, StepResult
from backpropvis.sanity.figures import draw_map_grid, series_positions

ROOT = Path(__file__).resolve().parent.parent
IMAGES = ROOT / "docs" / "images"
LARGEST_PNG = 150_000
"""Bytes: a figure in the README stays small."""

CITED = {
    "adebayo2018": (
        "gbp_top",
        "deconvnet_top",
        "saliency_top",
        "saliency_top_vs_edges",
        "gbp_all",
        "saliency_all",
        "gbp_data",
        "saliency_data",
    ),
    "kindermans2017": ("gradient_x_input_smallest", "gradient_x_input_first_shift"),
    "sixt2020": (
        "gbp_csc_bottom",
        "deconvnet_csc_bottom",
        "saliency_csc_bottom",
        "gaussian_csc_bottom",
        "gbp_ssim_top",
    ),
}
"""The numbers of each run that the README's table cites (two decimals)."""


def _script():
    spec = importlib.util.spec_from_file_location("make_sanity_figures", ROOT / "docs" / "make_sanity_figures.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _readme_section() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("## Sanity protocols beside the papers")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else len(text)]


def _value(number) -> float:
    return number["mean"] if isinstance(number, dict) else number


@pytest.mark.parametrize("protocol", list(PROTOCOLS))
def test_the_readme_shows_each_protocols_figure(protocol) -> None:
    path = IMAGES / f"sanity-{protocol}.png"
    assert f"](docs/images/{path.name})" in _readme_section(), f"README.md does not show {path.name}"
    assert path.stat().st_size <= LARGEST_PNG, f"{path.name}: {path.stat().st_size} bytes"
    with Image.open(path) as image:
        assert image.format == "PNG" and min(image.size) >= 400, image.size


def test_the_readmes_numbers_are_those_of_the_run_that_drew_the_figures() -> None:
    document = json.loads((IMAGES / "sanity-figures.json").read_text(encoding="utf-8"))
    assert set(document["protocols"]) == set(PROTOCOLS)
    section = _readme_section()
    cited = set(re.findall(r"-?\d+\.\d\d", section))
    missing = [
        f"{protocol}.{name} = {_value(document['protocols'][protocol]['numbers'][name]):.2f}"
        for protocol, names in CITED.items()
        for name in names
        if f"{_value(document['protocols'][protocol]['numbers'][name]):.2f}" not in cited
    ]
    assert not missing, f"the README's sanity table does not cite these numbers of the figures' runs: {missing}"


def test_the_figure_script_runs_at_its_tiny_size(tmp_path) -> None:
    script = _script()
    assert script.main(["--tiny", "--out", str(tmp_path), "--work", str(tmp_path / "work")]) == 0
    document = json.loads((tmp_path / "sanity-figures.json").read_text(encoding="utf-8"))
    for protocol in PROTOCOLS:
        with Image.open(tmp_path / f"sanity-{protocol}.png") as image:
            assert image.format == "PNG" and image.mode == "P" and min(image.size) >= 400
        entry = document["protocols"][protocol]
        assert entry["images"] == 2 and entry["claims"], entry
        written = json.loads((tmp_path / "work" / protocol / "sanity.json").read_text(encoding="utf-8"))
        assert {claim["id"]: claim["holds"] for claim in written["claims"]} == entry["claims"]
    # traced back to the run's own record: |Spearman| of GBP with the top layer redrawn (cascading step 1)
    written = json.loads((tmp_path / "work" / "adebayo2018" / "sanity.json").read_text(encoding="utf-8"))
    top = [step for step in written["steps"] if step["series"] == "cascading"][1]["methods"]["gbp"]["spearman_abs"]
    shown = document["protocols"]["adebayo2018"]["numbers"]["gbp_top"]
    assert math.isclose(shown["mean"], top["mean"], abs_tol=1e-4)
    assert math.isclose(shown["low"], top["low"], abs_tol=1e-4)


def test_the_map_grid_shows_the_chosen_series_only() -> None:
    steps = [
        StepResult("cascading", "trained"),
        StepResult("cascading", "top redrawn"),
        StepResult("independent", "only the top"),
        StepResult("csc", "relu"),  # no map kept for it
    ]
    arrays = {"maps": np.ones((3, 2, 3, 8, 8)), "image": np.zeros((3, 8, 8))}
    result = SanityResult("p", {}, "m", "w", None, "execution", ("ssim",), ("gbp", "saliency"), steps, arrays=arrays)
    assert series_positions(result, ("cascading",)) == [0, 1]
    assert series_positions(result) == [0, 1, 2]
    figure = draw_map_grid(result, ("cascading",))
    assert len(figure.axes) == 2 * (1 + 2)  # per method: the image, then two steps
    assert [axis.get_title() for axis in figure.axes[1:3]] == ["trained", "top redrawn"]
    pyplot().close(figure)
