"""The documentation works: every link of README.md, CONTRIBUTING.md, ARCHITECTURE.md and docs/ leads
somewhere, every ``backpropvis`` command shown there is one the parser takes and runs (at the tiny sizes
of tests/doc_runs.py, in a folder holding tiny stand-ins for the reader's own files), every Python block
runs, and the README stays short."""

from __future__ import annotations

import argparse
import contextlib
import io
from pathlib import Path
from typing import Optional

import pytest
from cli_runner import run_cli
from doc_examples import (
    ROOT,
    Example,
    code_blocks,
    command_examples,
    heading_anchors,
    links,
    markdown_files,
    python_blocks,
)
from doc_runs import EXAMPLE_TINY, PYTHON_SETUP, PYTHON_TINY, SKIPPED, make_placeholders, substituted, tiny

import backpropvis.models.vgg
from backpropvis.cli import build_parser
from backpropvis.models.init import PAPER_STD
from backpropvis.models.randomization import layer_module

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


def test_the_readme_links_every_page_of_docs() -> None:
    readme = ROOT / "README.md"
    linked = {(ROOT / target.split("#")[0]).resolve() for _, target in links(readme)}
    missing = [
        str(p.relative_to(ROOT))
        for p in markdown_files()
        if p.relative_to(ROOT).parts[0] == "docs" and p.resolve() not in linked
    ]
    assert not missing, f"pages of docs/ the README does not link: {missing}"


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


def test_every_code_block_says_its_language() -> None:
    untagged = [
        f"{path.relative_to(ROOT)}:{start - 1}"
        for path in markdown_files()
        for language, start, _ in code_blocks(path)
        if not language
    ]
    assert not untagged, f"code fences without a language (```bash, ```python, ```text): {untagged}"


@pytest.fixture(scope="module")
def reader_folder(tmp_path_factory, monkeypatch_module) -> Path:
    """One folder where the examples run, one after the other as a reader would type them, with the
    reader's own files (images, a model file and its weights) made tiny; VGG-16's random weights are
    drawn once for the module (the same values every time: they depend on (seed, layer) only)."""
    folder = tmp_path_factory.mktemp("reader")
    make_placeholders(folder)
    monkeypatch_module.chdir(folder)
    monkeypatch_module.syspath_prepend(str(folder))
    monkeypatch_module.setattr(
        backpropvis.models.vgg, "redraw_layers_", _drawn_once(backpropvis.models.vgg.redraw_layers_)
    )
    return folder


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def _drawn_once(redraw):
    drawn: dict = {}

    def redraw_layers_(model, layers, seed, std=PAPER_STD, bias=0.0):
        key = (type(model).__name__, tuple(layers), seed, std, bias)
        if key not in drawn:
            redraw(model, layers, seed, std, bias)
            drawn[key] = {
                name: {k: v.clone() for k, v in layer_module(model, name).state_dict().items()} for name in layers
            }
        for name in layers:
            layer_module(model, name).load_state_dict(drawn[key][name])

    return redraw_layers_


def _skip_reason(example: Example) -> Optional[str]:
    page = str(example.path.relative_to(ROOT))
    for (where, start), reason in SKIPPED.items():
        if where == page and example.typed.startswith(start):
            return reason
    return None


def test_every_declared_exception_still_meets_an_example() -> None:
    typed = {(str(example.path.relative_to(ROOT)), example.typed) for example in command_examples()}
    stale = [
        key
        for key in (*SKIPPED, *EXAMPLE_TINY)
        if not any(page == key[0] and text.startswith(key[1]) for page, text in typed)
    ]
    stale += [key for key in (*PYTHON_TINY, *PYTHON_SETUP) if _python_block(*key) is None]
    assert not stale, f"tests/doc_runs.py names examples the documentation no longer has: {stale}"


def _python_block(page: str, ordinal: int) -> Optional[str]:
    sources = [source for path, _, source in python_blocks() if str(path.relative_to(ROOT)) == page]
    return sources[ordinal] if ordinal < len(sources) else None


@pytest.mark.parametrize("example", command_examples(), ids=lambda e: e.where)
def test_every_command_example_runs_at_a_tiny_size(example, reader_folder, capsys) -> None:
    reason = _skip_reason(example)
    if reason:
        pytest.skip(reason)
    argv = tiny(substituted(list(example.words)), str(example.path.relative_to(ROOT)), example.typed)
    status, out, err = run_cli(argv, capsys)
    assert status == 0, f"{example.where}: backpropvis {' '.join(argv)}\n{out[-2000:]}\n{err[-3000:]}"


@pytest.mark.parametrize(
    "path", sorted({path for path, _, _ in python_blocks()}), ids=lambda path: str(path.relative_to(ROOT))
)
def test_every_python_block_runs(path, reader_folder) -> None:
    """A page's Python blocks, in order, in one namespace (as a reader pastes them into one session)."""
    page = str(path.relative_to(ROOT))
    namespace: dict = {"__name__": "__doc_example__"}
    for ordinal, (_, start, source) in enumerate(block for block in python_blocks() if block[0] == path):
        for old, new in PYTHON_TINY.get((page, ordinal), []):
            assert old in source, f"{page}:{start}: the tiny substitution {old!r} no longer matches"
            source = source.replace(old, new)
        exec(compile(PYTHON_SETUP.get((page, ordinal), ""), f"setup of {page}:{start}", "exec"), namespace)  # noqa: S102
        exec(compile(source, f"{page}:{start}", "exec"), namespace)  # noqa: S102
