"""Only the command line speaks flags: the library names its parameters, ``cli.py`` says them as flags."""

from __future__ import annotations

import argparse
import ast
import re
from pathlib import Path

import pytest

import backpropvis
from backpropvis.audit import run_audit
from backpropvis.cli import FLAGS, build_parser, in_flags, main
from backpropvis.core.errors import BackpropvisError
from backpropvis.images.sets import Samples

PACKAGE = Path(backpropvis.__file__).parent


def test_library_errors_name_parameters_and_the_cli_says_flags(tmp_path, capsys) -> None:
    with pytest.raises(BackpropvisError, match="`few_images` must be at least 1") as raised:
        run_audit(Samples(), tmp_path / "a", few_images=0)
    assert "--" not in str(raised.value)
    argv = ["audit", "--samples", "--few-images", "0", "--out", str(tmp_path / "b")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--few-images must be at least 1" in err and "`" not in err


def test_every_flag_of_the_mapping_exists_and_names_pass_through() -> None:
    flags = {option for action in _actions(build_parser()) for option in action.option_strings}
    assert set(FLAGS.values()) <= flags
    assert in_flags("`adversarial_steps` and `pairs`, `something_else`") == "--fgsm-steps and --pairs, something_else"


def test_no_library_message_names_a_flag() -> None:
    """No string literal outside cli.py (docstrings and the report's notes aside) holds ``--flag``."""
    found = []
    for path in PACKAGE.rglob("*.py"):
        if path.name in ("cli.py", "digits_training.py") or "experiments" in path.parts:
            continue  # digits_training has its own small command line; experiments' notes are report text
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = {id(node.value) for node in ast.walk(tree) if _is_docstring(node)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                if re.search(r"(?<![\w-])--[a-z][a-z-]+", node.value):
                    found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: {node.value[:60]}")
    assert not found, found


def _is_docstring(node: ast.AST) -> bool:
    """A string standing alone as a statement: a docstring (also of a module attribute)."""
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)


def _actions(parser):
    for action in parser._actions:
        yield action
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _actions(sub)
