"""The house style, checked with the rest of the suite (so CI runs it): ruff's lint rules
and formatting on the whole tree, and mypy on the package, with the configuration in
pyproject.toml. CONTRIBUTING.md says how to run them by hand."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_tool(*command: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *command], cwd=ROOT, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize(
    "command", [("ruff", "check", "."), ("ruff", "format", "--check", ".")], ids=["lint", "format"]
)
def test_ruff(command: tuple[str, ...]) -> None:
    pytest.importorskip("ruff", reason="ruff comes with the test extra: pip install -e '.[test]'")
    result = run_tool(*command)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_mypy() -> None:
    pytest.importorskip("mypy", reason="mypy comes with the test extra: pip install -e '.[test]'")
    result = run_tool("mypy")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
