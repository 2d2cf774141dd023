"""The traps of a newcomer's first hour, each fixed and kept fixed: the output folders the
README's commands write are ignored by git (``git status`` stays clean after them)."""

from __future__ import annotations

import pathlib
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="not a git checkout")
@pytest.mark.parametrize("folder", ["report", "reproduce-out", "theory-out", "visualize-out", "audit-out"])
def test_the_commands_output_folders_are_ignored_by_git(folder: str) -> None:
    """git itself decides (check-ignore), for a file the command writes there."""
    written = f"{folder}/index.html"
    checked = subprocess.run(["git", "check-ignore", "-q", written], cwd=ROOT, capture_output=True, timeout=60)
    assert checked.returncode == 0, f"{written} is not ignored by .gitignore"
    source = subprocess.run(["git", "check-ignore", "-q", "backpropvis/report.py"], cwd=ROOT, timeout=60)
    assert source.returncode == 1  # the package's report module is not caught by the pattern
