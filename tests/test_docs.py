"""The documentation works: every link of README.md, CONTRIBUTING.md, ARCHITECTURE.md and docs/ leads
somewhere, every ``backpropvis`` command shown there is one the parser takes, and the README stays short."""

from __future__ import annotations

import argparse
import contextlib
import io

import pytest
from doc_examples import ROOT, command_examples, heading_anchors, links, markdown_files

from backpropvis.cli import build_parser

README_LINES = 200


def test_readme_is_short() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= README_LINES, f"README.md has {len(lines)} lines; move detail to docs/"


def test_every_page_is_linked_from_the_readme_or_another_page() -> None:
    linked = set()
    for path in markdown_files():
        for _, target in links(path):
            if not target.startswith(("http:", "https:", "mailto:", "#")):
                linked.add((path.parent / target.split("#")[0]).resolve())
    orphans = [str(p.relative_to(ROOT)) for p in markdown_files()[1:] if p.resolve() not in linked]
    assert not orphans, f"pages no other page links to: {orphans}"


@pytest.mark.parametrize("path", markdown_files(), ids=lambda path: str(path.relative_to(ROOT)))
def test_links_lead_somewhere(path) -> None:
    broken = []
    for line, target in links(path):
        if target.startswith(("http:", "https:", "mailto:")):
            continue
        file_part, _, anchor = target.partition("#")
        destination = (path.parent / file_part).resolve() if file_part else path
        if not destination.exists():
            broken.append(f"line {line}: {target} (no such file)")
        elif anchor and destination.suffix == ".md" and anchor not in heading_anchors(destination):
            broken.append(f"line {line}: {target} (no such heading)")
    assert not broken, broken


def test_the_documentation_shows_commands() -> None:
    commands = {example.words[0] for example in command_examples() if example.words}
    assert {"reproduce", "visualize", "audit", "class-distance"} <= commands, commands


@pytest.mark.parametrize("example", command_examples(), ids=lambda example: example.where)
def test_every_command_example_parses(example) -> None:
    parser = build_parser()
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        try:
            arguments = parser.parse_args(list(example.words))
        except SystemExit as stop:
            pytest.fail(f"{example.where}: backpropvis {' '.join(example.words)}: {stderr.getvalue().strip()} ({stop})")
    assert isinstance(arguments, argparse.Namespace)
