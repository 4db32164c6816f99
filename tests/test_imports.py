"""The module structure: an acyclic import graph, no private names across modules, a light core."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import fcnet

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "fcnet"


def _modules():
    return {path.stem: ast.parse(path.read_text(), str(path)) for path in sorted(PACKAGE.glob("*.py"))}


def _imports(tree):
    """``(module, names)`` of every relative import in ``tree``, at any depth (lazy imports count)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.append((node.module.split(".")[0], [a.name for a in node.names]))
            else:  # from . import a, b
                found += [(a.name, []) for a in node.names]
    return found


def import_graph():
    modules = _modules()
    return {name: {m for m, _ in _imports(tree) if m in modules and m != name} for name, tree in modules.items()}


def find_cycle(graph):
    """One cycle of ``graph`` as a list of nodes, or None."""
    state = {}

    def visit(node, path):
        state[node] = "open"
        for dep in sorted(graph[node]):
            if state.get(dep) == "open":
                return path[path.index(dep):] + [dep]
            if dep not in state:
                cycle = visit(dep, path + [dep])
                if cycle:
                    return cycle
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node, [node])
            if cycle:
                return cycle
    return None


def test_the_import_graph_is_acyclic():
    graph = import_graph()
    assert {"model", "training", "engines", "run", "cli", "commands"} <= set(graph)
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_no_private_name_is_imported_or_used_across_modules():
    modules = _modules()
    offences = []
    for name, tree in modules.items():
        imported_modules = set()
        for module, names in _imports(tree):
            offences += [f"{name}: from .{module} import {n}" for n in names if n.startswith("_")]
            if not names:
                imported_modules.add(module)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module is None:
                imported_modules.update(a.asname or a.name for a in node.names)
            if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
                imported_modules.update(a.asname or a.name for a in node.names if a.name in modules)
        for node in ast.walk(tree):  # module._private, for a module of this package
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in imported_modules and node.attr.startswith("_")
                    and not node.attr.startswith("__")):
                offences.append(f"{name}: {node.value.id}.{node.attr}")
    assert not offences, offences


def test_the_core_imports_numpy_only():
    code = ("import sys, fcnet; heavy = {'numba', 'torch', 'matplotlib', 'distributed', 'fastapi', 'PIL', 'tqdm'};"
            "print(sorted(heavy & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_heavier_modules_load_on_first_use():
    code = ("import sys, fcnet; before = 'fcnet.plots' in sys.modules; fcnet.plots.learning_curves;"
            "print(before, 'fcnet.plots' in sys.modules, fcnet.sklearn.MLPClassifier.__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "True", "MLPClassifier"]
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        fcnet.nope  # noqa: B018
