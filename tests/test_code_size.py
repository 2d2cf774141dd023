"""Size limits of the package's code (CONTRIBUTING.md, "Code style"): no file over 400 lines,
no function over 60 lines or with more than 8 parameters (``self``/``cls`` not counted).

The command line's argument declarations (``cli.py``) are outside the limits. Anything else
over them is listed in :data:`EXCEPTIONS` with its reason; an exception that no longer
applies fails too, so the list only shrinks.
"""

from __future__ import annotations

import ast
from pathlib import Path

import backpropvis

PACKAGE = Path(backpropvis.__file__).parent

MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 60
MAX_PARAMETERS = 8

OUTSIDE_THE_LIMITS = {"cli.py"}
"""The command line: its argument declarations (one ``add_argument`` per option, with its help)."""

_EXPERIMENT = "an experiment's figure, its steps in order; to split into named steps as fig3's measure was"
_OPTIONS = "a command's options as keywords of its API call; next: settings values like top_units.Streaming"
EXCEPTIONS: dict[str, str] = {
    "theory/closed_forms.py:closed_form_map": "Eq. 7-10's terms by name: a layer's geometry, 11 parameters",
    "models/shallow.py:ThreeLayerCNN.__init__": "the paper's Figure 4-6 network's geometry, one keyword per size",
    "stats/runner.py:run_class_distance": _OPTIONS,
    "jobs/visualize.py:visualize": _OPTIONS,
    "jobs/suite.py:run_suite": _OPTIONS,
    "engine/attribution.py:attribute_many": "the engine call: Captum's keywords beside smooth, max_batch, precision",
    "experiments/fig5.py:measure": _EXPERIMENT,
    "experiments/fig5.py:draw": _EXPERIMENT,
    "experiments/fig7.py": _EXPERIMENT,
    "experiments/fig8.py:draw": _EXPERIMENT,
    "experiments/theory_recovery.py": _EXPERIMENT,
    "experiments/theory_recovery.py:draw": _EXPERIMENT,
}
"""``path`` (a file over the limit) or ``path:function`` -> why it stays over the limit for now."""


def _parameters(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    arguments = node.args
    names = [argument.arg for argument in arguments.posonlyargs + arguments.args + arguments.kwonlyargs]
    count = len(names) + (arguments.vararg is not None) + (arguments.kwarg is not None)
    return count - (bool(names) and names[0] in ("self", "cls"))


def _functions(tree: ast.AST, prefix: str = ""):
    """(qualified name, node) of every function, methods as ``Class.method``."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield prefix + node.name, node
            yield from _functions(node, prefix + node.name + ".")
        elif isinstance(node, ast.ClassDef):
            yield from _functions(node, prefix + node.name + ".")
        else:
            yield from _functions(node, prefix)


def over_the_limits() -> dict[str, str]:
    """``path`` or ``path:function`` -> what is over the limit, for the whole package."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = path.relative_to(PACKAGE).as_posix()
        if name in OUTSIDE_THE_LIMITS:
            continue
        text = path.read_text(encoding="utf-8")
        if len(text.splitlines()) > MAX_FILE_LINES:
            found[name] = f"{len(text.splitlines())} lines"
        for function, node in _functions(ast.parse(text)):
            assert node.end_lineno is not None
            length, parameters = node.end_lineno - node.lineno + 1, _parameters(node)
            if length > MAX_FUNCTION_LINES or parameters > MAX_PARAMETERS:
                found[f"{name}:{function}"] = f"{length} lines, {parameters} parameters"
    return found


def test_no_file_or_function_is_over_the_limits() -> None:
    unexpected = {key: value for key, value in over_the_limits().items() if key not in EXCEPTIONS}
    assert not unexpected, f"over the limits (split it; see CONTRIBUTING.md): {unexpected}"


def test_every_exception_is_still_needed() -> None:
    stale = sorted(set(EXCEPTIONS) - set(over_the_limits()))
    assert not stale, f"within the limits now: remove from EXCEPTIONS: {stale}"


def test_the_counter_counts(tmp_path) -> None:
    """A hand-made case: 9 parameters and 61 lines are over; ``self`` is not counted."""
    source = "class A:\n    def f(self, a, b, c, d, e, f, g, h):\n        pass\n\n\ndef g(a, b, c, d, e, f, g, h, i):\n"
    source += "    x = 1\n" * 60
    found = dict(_functions(ast.parse(source)))
    assert _parameters(found["A.f"]) == 8 and _parameters(found["g"]) == 9
    assert found["g"].end_lineno - found["g"].lineno + 1 == 61
