"""The package's imports run downward only, and no module cycle exists (CONTRIBUTING.md, "Layers").

Every module of ``backpropvis`` is parsed with ``ast``; every import in it counts,
the ones inside functions included (a local import cannot hide a cycle). An import of a
package's submodule (``from .stats import listing``) counts as an import of that
submodule, and, from outside that subpackage, of the subpackage's ``__init__`` (which
Python runs first); a module's own parent packages are not counted.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import backpropvis

PACKAGE = Path(backpropvis.__file__).parent

LAYERS: tuple[tuple[str, ...], ...] = (
    ("core", "core.errors", "core.files", "core.devices"),
    (
        "core.rules",
        "core.activations",
        "core.smooth_activations",
        "core.targets",
        "core.metrics",
        "core.module_checks",
        "core.saved_maps",
        "core.claims",
    ),
    ("engine", "models", "images", "attacks", "theory"),
    ("",),  # backpropvis/__init__.py: the public API, re-exporting the layers below
    ("render",),
    ("stats",),
    ("experiments",),
    ("report",),
    ("jobs", "audit", "sanity"),
    ("cli", "__main__"),
)
"""The layers, bottom first; the folders are named after them. A module may import modules of its
own layer and of the layers below it; a name stands for a module or a subpackage and everything
in it, the longest name that fits deciding ("core.rules" is layer 1 though "core", the folder's
``__init__``, is layer 0; "" is the package's own ``__init__``)."""


def module_name(path: Path) -> str:
    """backpropvis/stats/runner.py -> "stats.runner"; backpropvis/stats/__init__.py -> "stats"."""
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that module ``name`` imports, anywhere in its body."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    if name == "":
        package = []
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
                module = ".".join(base + ([node.module] if node.module else []))
            elif node.module and (node.module == "backpropvis" or node.module.startswith("backpropvis.")):
                module = node.module[len("backpropvis.") :] if node.module != "backpropvis" else ""
            else:
                continue
            submodules = [f"{module}.{alias.name}".lstrip(".") for alias in node.names]
            targets = ["backpropvis." + target if target else "backpropvis" for target in [module, *submodules]]
        else:
            continue
        for target in targets:
            if target == "backpropvis" or target.startswith("backpropvis."):
                relative = target[len("backpropvis.") :] if target != "backpropvis" else ""
                if relative in known:
                    found.add(relative)
    # importing P.x from outside the subpackage P runs P's __init__ first: that is an import of P too
    for target in list(found):
        parts = target.split(".")
        for depth in range(1, len(parts)):
            parent = ".".join(parts[:depth])
            if parent in known and not (name == parent or name.startswith(parent + ".")):
                found.add(parent)
    found.discard(name)
    return found


def layer_of(name: str) -> int:
    """The layer of module ``name``: that of the longest entry of LAYERS naming it or a package above it."""
    fits = [
        (len(entry), number)
        for number, layer in enumerate(LAYERS)
        for entry in layer
        if name == entry or (entry and name.startswith(entry + "."))
    ]
    if not fits:
        raise AssertionError(f"module {name or 'backpropvis'} is in no layer: declare it in LAYERS ({__file__})")
    return max(fits)[1]


def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports(name, path, set(found)) for name, path in found.items()}


def find_cycle(edges: dict[str, set[str]]) -> list[str]:
    """One import cycle as a list of modules (first == last), or [] when there is none."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for target in sorted(edges.get(node, ())):
            if state.get(target) == 1:
                return path[path.index(target) :] + [target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return []

    for node in sorted(edges):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return []


def test_every_module_is_in_a_layer():
    for name in modules():
        layer_of(name)


def test_imports_only_run_downward():
    upward = [
        f"{name or 'backpropvis'} (layer {layer_of(name)}) imports {target or 'backpropvis'} (layer {layer_of(target)})"
        for name, targets in graph().items()
        for target in sorted(targets)
        if layer_of(target) > layer_of(name)
    ]
    assert not upward, "\n".join(upward)


def test_no_import_cycle():
    cycle = find_cycle(graph())
    assert not cycle, " -> ".join(name or "backpropvis" for name in cycle)


def test_the_checks_catch_what_they_look_for(tmp_path):
    # an upward import inside a function, and a cycle through a local import, are both seen
    (tmp_path / "low.py").write_text("def f():\n    from .high import g\n")
    (tmp_path / "high.py").write_text("from . import low\nimport backpropvis.cli\nfrom .stats.store import x\n")
    known = {"low", "high", "cli", "stats", "stats.store"}
    low = imports("low", tmp_path / "low.py", known)
    high = imports("high", tmp_path / "high.py", known)
    assert low == {"high"} and high == {"low", "cli", "stats", "stats.store"}
    assert find_cycle({"low": low, "high": high}) == ["high", "low", "high"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) == []
    with pytest.raises(AssertionError, match="in no layer"):
        layer_of("newcomer")
    # the longest entry decides: a folder's __init__ and its modules may sit on different layers
    assert (layer_of("core"), layer_of("core.errors"), layer_of("core.rules")) == (0, 0, 1)


TOP_LEVEL = {"__init__", "__main__", "cli", "render"}
"""The only modules beside the folders: the public API, the command line, and the one
module of layer 4 (a folder of one file would say nothing more)."""


def test_the_top_level_holds_folders():
    loose = {path.stem for path in PACKAGE.glob("*.py")} - TOP_LEVEL
    assert not loose, f"put {sorted(loose)} in the folder of their layer (ARCHITECTURE.md), not at the top level"
