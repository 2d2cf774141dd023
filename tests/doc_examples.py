"""What the documentation shows a reader: its Markdown files, their links, and the command lines and
Python blocks in their code fences, read as data for tests/test_docs.py."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```(\w*)\s*$")


@dataclass(frozen=True)
class Example:
    """One command line of a shell code block: where it stands and its words."""

    path: Path
    line: int
    words: tuple[str, ...]
    typed: str = ""

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def markdown_files() -> list[Path]:
    """The README, the contributor documents and every page under docs/."""
    tops = [ROOT / name for name in ("README.md", "CONTRIBUTING.md", "ARCHITECTURE.md")]
    return [path for path in tops if path.exists()] + sorted((ROOT / "docs").glob("**/*.md"))


def links(path: Path) -> list[tuple[int, str]]:
    """(line number, target) of every Markdown link and image outside code fences."""
    found = []
    for number, line in _prose_lines(path):
        for match in LINK.finditer(line):
            found.append((number, match.group(1) or match.group(2)))
    return found


def heading_anchors(path: Path) -> set[str]:
    """GitHub's anchors of a Markdown file's headings (lower case, punctuation dropped, spaces to '-')."""
    anchors = set()
    for _, line in _prose_lines(path):
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"\s", "-", re.sub(r"[^\w\- ]", "", title)))
    return anchors


def code_blocks(path: Path) -> list[tuple[str, int, list[str]]]:
    """(language, first line number, lines) of every fenced code block."""
    blocks, language, start, lines = [], None, 0, []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        fence = FENCE.match(line.strip())
        if fence and language is None:
            language, start, lines = fence.group(1), number + 1, []
        elif line.strip() == "```" and language is not None:
            blocks.append((language, start, lines))
            language = None
        elif language is not None:
            lines.append(line)
    return blocks


def command_examples(program: str = "backpropvis") -> list[Example]:
    """Every ``program ...`` command of the shell blocks, continuation lines joined, comments dropped,
    each command of a ``&&`` chain taken apart (``torchrun ... -m backpropvis`` counts as the program)."""
    examples = []
    for path in markdown_files():
        for language, start, lines in code_blocks(path):
            if language not in ("bash", "sh", "shell", "console"):
                continue
            for number, text in _joined(start, lines):
                for part in re.split(r"&&|;|\|", text):
                    words = shlex.split(part, comments=True)
                    if "-m" in words and program in words:  # python -m backpropvis, torchrun -m backpropvis
                        words = words[words.index(program) :]
                    if words and words[0] == program:
                        examples.append(Example(path, number, tuple(words[1:]), " ".join(part.split())))
    return examples


def python_blocks() -> list[tuple[Path, int, str]]:
    """(file, first line, source) of every ``python`` code block."""
    return [
        (path, start, "\n".join(lines))
        for path in markdown_files()
        for language, start, lines in code_blocks(path)
        if language == "python"
    ]


def _prose_lines(path: Path) -> list[tuple[int, str]]:
    inside, prose = False, []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip().startswith("```"):
            inside = not inside
        elif not inside:
            prose.append((number, line))
    return prose


def _joined(start: int, lines: list[str]) -> list[tuple[int, str]]:
    joined, pending, first = [], "", start
    for offset, line in enumerate(lines):
        if not pending:
            first = start + offset
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        joined.append((first, pending + line))
        pending = ""
    return joined
