"""ARCHITECTURE.md's layer picture says what tests/test_layers.py's LAYERS declares.

The picture's lines read ``layer N: a, b, c`` (layer 3 is ``backpropvis/__init__.py``, the
package's own ``__init__``, written "" in LAYERS). Every module of LAYERS must be on its
layer's line and on no other, and the picture names nothing LAYERS does not.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from test_layers import LAYERS

DOC = Path(__file__).resolve().parent.parent / "ARCHITECTURE.md"
_LINE = re.compile(r"^layer (\d+): (.+)$")
_INIT = "backpropvis/__init__.py"


def picture(text: str) -> dict[int, list[str]]:
    """Layer number -> the names on its line of the picture (``backpropvis/__init__.py`` as "")."""
    found: dict[int, list[str]] = {}
    for line in text.splitlines():
        match = _LINE.match(line.strip())
        if match:
            number = int(match.group(1))
            assert number not in found, f"ARCHITECTURE.md: layer {number} has two lines"
            names = [name.strip() for name in match.group(2).split(",")]
            found[number] = ["" if name == _INIT else name for name in names]
    return found


def disagreements(drawn: dict[int, list[str]], layers: tuple[tuple[str, ...], ...]) -> list[str]:
    """What the picture and LAYERS disagree on, one sentence each (empty when they agree)."""
    problems = []
    if sorted(drawn) != list(range(len(layers))):
        problems.append(f"the picture has layers {sorted(drawn)}, LAYERS has 0..{len(layers) - 1}")
    where: dict[str, list[int]] = {}
    for number, names in drawn.items():
        for name in names:
            where.setdefault(name, []).append(number)
    for number, layer in enumerate(layers):
        for name in layer:
            shown = name or _INIT
            lines = sorted(where.get(name, []))
            if lines != [number]:
                problems.append(f"{shown} is in layer {number} of LAYERS, drawn on layer lines {lines}")
    declared = {name for layer in layers for name in layer}
    problems += [f"{name or _INIT} is drawn but not in LAYERS" for name in sorted(set(where) - declared)]
    return problems


def test_the_picture_matches_the_layer_test() -> None:
    problems = disagreements(picture(DOC.read_text(encoding="utf-8")), LAYERS)
    assert not problems, "ARCHITECTURE.md's layer picture vs tests/test_layers.py:\n" + "\n".join(problems)


def test_a_disagreement_is_seen() -> None:
    layers = (("errors", "files"), ("",), ("cli",))
    good = "```\nlayer 2: cli\nlayer 1: backpropvis/__init__.py\nlayer 0: errors, files\n```"
    assert disagreements(picture(good), layers) == []
    missing = good.replace("errors, files", "errors")
    assert disagreements(picture(missing), layers) == ["files is in layer 0 of LAYERS, drawn on layer lines []"]
    moved = good.replace("layer 2: cli", "layer 2: cli, files")
    assert disagreements(picture(moved), layers) == ["files is in layer 0 of LAYERS, drawn on layer lines [0, 2]"]
    extra = good.replace("layer 2: cli", "layer 2: cli, ghost")
    assert disagreements(picture(extra), layers) == ["ghost is drawn but not in LAYERS"]
    assert disagreements(picture(good.replace("layer 2: cli\n", "")), layers)[0].startswith("the picture has")
    with pytest.raises(AssertionError, match="two lines"):
        picture(good + "\nlayer 0: devices")
